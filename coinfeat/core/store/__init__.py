"""The feature store: single stores (:mod:`.single`), sharded stores (:mod:`.sharded`), and above
both, opening one for reading (:func:`open_store`) or for writing (:func:`open_layout`).

Nothing here imports image or network code: a store is plain files (``.npy`` + Parquet + JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coinfeat.core.errors import CoinfeatError, FingerprintMismatch
from coinfeat.core.store.atomic import atomic_write
from coinfeat.core.store.keys import (
    ITEM_COLUMNS,
    OK,
    SKIPPED,
    augment_record,
    item_keys,
    manifest_counts,
    usable,
    vector_key,
)
from coinfeat.core.store.manifest import DatasetInfo, Manifest
from coinfeat.core.store.sharded import (
    SHARDS_FILE,
    ShardedArray,
    ShardRouter,
    is_sharded,
    open_sharded,
    read_shards,
    shard_name,
    shard_of,
    write_shards,
)
from coinfeat.core.store.single import (
    JOURNAL,
    MANIFEST,
    PARTS,
    Known,
    PartWriter,
    Store,
    check_fingerprint,
    commit,
    describe_extractor,
    load_known,
    open_single,
    read_manifest,
    recover,
    store_lock,
    wipe,
)


def open_store(path: str | Path) -> Store:
    """Open a committed store (or a sharded one, as one store), checking that its files agree."""
    path = Path(path)
    if not path.is_dir():
        raise CoinfeatError(f"feature store not found: {path} (run `coinfeat extract-features` first)")
    return open_sharded(path) if is_sharded(path) else open_single(path)


def open_committed(path: Path) -> Store | None:
    """The store at ``path`` if one was ever committed there, else None."""
    path = Path(path)
    return open_store(path) if is_sharded(path) or read_manifest(path) is not None else None


@dataclass
class Layout:
    """Where a run writes: one store folder, or the shard folders of a sharded store."""

    root: Path
    dirs: list[Path]
    sharded: bool

    def owners(self, sha256: pd.Series) -> np.ndarray:
        """The index in ``dirs`` of the folder each photo's rows belong to."""
        return np.asarray([shard_of(sha, len(self.dirs)) if self.sharded else 0 for sha in sha256], int)

    def writer(self, fingerprint: str, partition: int = 0) -> PartWriter | ShardRouter:
        """A pipeline writer that puts every batch in the parts of the right folder."""
        if not self.sharded:
            return PartWriter(self.root, fingerprint, partition)
        return ShardRouter([PartWriter(d, fingerprint, partition) for d in self.dirs])

    def finish(self, fingerprint: str) -> None:
        """After every folder is committed: list the shards, so readers see the new store."""
        if self.sharded:
            write_shards(self.root, [d.name for d in self.dirs], fingerprint)


def open_layout(
    root: Path, fingerprint: str, *, description: str, shards: int | None = None, force: bool = False
) -> Layout:
    """Prepare ``root`` for a run (the caller holds its lock): wipe it with ``force``, finish
    interrupted commits, refuse another extractor's vectors, and decide single or sharded: an
    existing store keeps its kind; a new one is sharded when ``shards`` is given."""
    recover_all(root, force)
    if is_sharded(root):
        record = read_shards(root)
        if record["fingerprint"] != fingerprint:
            raise FingerprintMismatch(
                f"sharded store {root} holds vectors from another extractor ({record['fingerprint']}); this "
                f"run is {fingerprint} ({description}). Use --force to rebuild it or --out for a new store"
            )
        names = record["shards"]
    elif read_manifest(root) is not None:
        if shards is not None:
            raise CoinfeatError(f"{root} is a single (unsharded) store; use another --out for a sharded run")
        names = []
    else:
        names = [shard_name(i) for i in range(shards)] if shards else []
    layout = Layout(root, [root / n for n in names] or [root], bool(names))
    for folder in layout.dirs:
        folder.mkdir(exist_ok=True)
        recover(folder)
        check_fingerprint(folder, read_manifest(folder), fingerprint, description)
    return layout


def recover_all(root: Path, force: bool = False) -> None:
    """Finish interrupted commits in ``root`` and its shards (the caller holds the lock), after
    wiping everything with ``force``; then :func:`open_committed` reads a whole store."""
    if force:
        wipe_all(root)
    recover(root)
    if is_sharded(root):
        for name in read_shards(root)["shards"]:
            if (root / name).is_dir():
                recover(root / name)


def wipe_all(root: Path) -> None:
    """Remove a store's files, and every shard's (``--force``)."""
    wipe(root)
    if is_sharded(root):
        for name in read_shards(root)["shards"]:
            if (root / name).is_dir():
                wipe(root / name)
        (root / SHARDS_FILE).unlink()


__all__ = [
    "ITEM_COLUMNS",
    "JOURNAL",
    "MANIFEST",
    "OK",
    "PARTS",
    "SKIPPED",
    "DatasetInfo",
    "Known",
    "Layout",
    "Manifest",
    "PartWriter",
    "ShardRouter",
    "ShardedArray",
    "Store",
    "atomic_write",
    "augment_record",
    "commit",
    "describe_extractor",
    "item_keys",
    "load_known",
    "manifest_counts",
    "open_committed",
    "open_layout",
    "open_store",
    "read_manifest",
    "recover_all",
    "shard_of",
    "store_lock",
    "usable",
    "vector_key",
    "wipe_all",
]
