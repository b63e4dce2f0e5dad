"""A single store: plain files that every later stage reads.

A store is a directory::

    embeddings.npy   N rows (float32 N x D for vectors; any row shape and dtype, e.g. float16
                     activations), row i belongs to items row i (zeros for skipped files)
    items.parquet    path, sha256, size, mtime_ns, label, split, group, status, error, view, framing
    manifest.json    fingerprint, counts, and whatever the stage that wrote it records
    parts/           batches finished by a run that has not committed yet

Crash safety: every finished batch is first written as a part (atomically, by rename).
A commit writes new ``*.tmp`` files, then a journal naming the renames, then renames them;
an interrupted commit is completed from the journal on the next open, and parts are deleted
only after the commit is whole. So ``kill -9`` at any moment loses at most the batch in
flight and never leaves a store whose files disagree.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from coinfeat.core.errors import CoinfeatError, FingerprintMismatch, StoreBusy
from coinfeat.core.store import keys as store_keys
from coinfeat.core.store.atomic import atomic_write, fsync_path, write_synced
from coinfeat.core.store.keys import ITEM_COLUMNS, OK, SKIPPED, item_keys, usable
from coinfeat.core.store.manifest import FORMAT_VERSION, Manifest, manifest_json, read_manifest_file

EMBEDDINGS, ITEMS, MANIFEST = "embeddings.npy", "items.parquet", "manifest.json"
PARTS, JOURNAL, LOCK = "parts", "commit-journal.json", ".lock"
_COPY_CHUNK = 4096


@dataclass
class Store:
    """A committed store opened for reading; ``embeddings`` is memory-mapped."""

    path: Path
    manifest: Manifest
    items: pd.DataFrame
    embeddings: np.ndarray

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    @property
    def pretrained(self) -> bool:
        return bool(self.manifest.pretrained)

    def rows(self, split: str | None = None, include_views: bool = False) -> np.ndarray:
        """Positions of the usable vectors (status ok), optionally of one split, in store order."""
        return np.flatnonzero(usable(self.items, split, include_views).to_numpy(dtype=bool))

    def select(
        self, split: str | None = None, include_views: bool = False
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """Usable vectors (status ok) and their items, optionally for one split."""
        rows = self.rows(split, include_views)
        return np.asarray(self.embeddings[rows]), self.items.iloc[rows].reset_index(drop=True)


def open_single(path: Path) -> Store:
    """Open a committed single store, finishing an interrupted commit and checking its files agree."""
    if (path / JOURNAL).exists():
        with store_lock(path, wait=30):
            recover(path)
    manifest = read_manifest(path)
    if manifest is None:
        raise CoinfeatError(
            f"{path} is not a finished feature store (no {MANIFEST}); re-run extract-features"
        )
    try:
        items = pd.read_parquet(path / ITEMS)
        embeddings = np.load(path / EMBEDDINGS, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise CoinfeatError(
            f"feature store {path} is damaged ({exc}); re-run extract-features --force"
        ) from None
    if "framing" not in items:
        items["framing"] = None
    rows = manifest.rows
    if not (len(items) == embeddings.shape[0] == rows):
        raise CoinfeatError(
            f"feature store {path} is damaged: {embeddings.shape[0]} vectors, {len(items)} items, "
            f"manifest says {rows}; re-run extract-features to rebuild it"
        )
    return Store(path, manifest, items, embeddings)


def read_manifest(path: Path) -> Manifest | None:
    """The manifest of a store folder, or None when it has none yet."""
    return read_manifest_file(path)


@contextmanager
def store_lock(path: Path, wait: float = 0) -> Iterator[None]:
    """One writer per store; the OS releases the lock if the process dies."""
    lock = FileLock(str(path / LOCK), timeout=wait)
    try:
        lock.acquire()
    except Timeout:
        raise StoreBusy(
            f"another coinfeat process is writing {path}; wait for it to finish or use another --out"
        ) from None
    try:
        yield
    finally:
        lock.release()


def recover(path: Path) -> None:
    """Finish an interrupted commit and clear half-written files (caller holds the lock)."""
    journal = path / JOURNAL
    if journal.exists():
        for tmp, final in json.loads(journal.read_text())["renames"]:
            if (path / tmp).exists():
                os.replace(path / tmp, path / final)
        fsync_path(path)
        journal.unlink()
    for stray in path.glob("*.tmp"):
        stray.unlink()
    parts = path / PARTS
    if parts.is_dir():
        for stray in parts.glob("*.tmp"):
            stray.unlink()
        for npy in parts.glob("*.npy"):
            if not npy.with_suffix(".parquet").exists():
                npy.unlink()


# --------------------------------------------------------------------------- parts


class PartWriter:
    """The pipeline's writer: each finished batch becomes one part on disk, atomically."""

    def __init__(self, path: Path, fingerprint: str, partition: int = 0) -> None:
        self.folder = path / PARTS
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prefix = f"{fingerprint}-{time.time_ns()}-{os.getpid()}-p{partition}"
        self.count = 0

    def write(
        self,
        keys: list[str],
        vectors: np.ndarray,
        failures: list[tuple[str, str]],
        framing: Sequence[str | None] = (),
    ) -> None:
        stem = self.folder / f"{self.prefix}-{self.count:06d}"
        self.count += 1
        table = pd.DataFrame(
            {
                "key": list(keys) + [key for key, _ in failures],
                "status": [OK] * len(keys) + [SKIPPED] * len(failures),
                "error": [None] * len(keys) + [reason for _, reason in failures],
                "row": list(range(len(keys))) + [-1] * len(failures),
                "framing": list(framing or [None] * len(keys)) + [None] * len(failures),
            }
        )
        atomic_write(stem.with_suffix(".npy"), lambda tmp: _save_npy(tmp, vectors))
        atomic_write(stem.with_suffix(".parquet"), lambda tmp: table.to_parquet(tmp, index=False))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array))


@dataclass
class Known:
    """Everything already computed for a store, by vector key (content hash, plus view)."""

    arrays: list[np.ndarray] = field(default_factory=list)
    vectors: dict[str, tuple[int, int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    framing: dict[str, str] = field(default_factory=dict)
    """How each embedded photo was framed, where recorded (see ``ITEM_COLUMNS``)."""
    part_files: list[Path] = field(default_factory=list)
    row_shape: tuple[int, ...] | None = None
    dtype: str | None = None

    def add_row(self, key: str, array: int, row: int, status: str, error: str, framing: str | None) -> None:
        if status != OK:
            self.skipped[key] = error
            return
        self.vectors[key] = (array, row)
        if isinstance(framing, str):
            self.framing[key] = framing

    def add_array(self, array: np.ndarray) -> int:
        self.arrays.append(array)
        if array.ndim >= 2 and array.shape[0] and all(array.shape[1:]) and self.row_shape is None:
            self.row_shape, self.dtype = tuple(int(n) for n in array.shape[1:]), str(array.dtype)
        return len(self.arrays) - 1


def load_known(path: Path, store: Store | None, fingerprint: str) -> Known:
    """Collect vectors from the committed store and from parts a previous run left behind."""
    known = Known()
    if store is not None:
        if store.manifest.row_shape:
            known.row_shape = tuple(store.manifest.row_shape)
            known.dtype = store.manifest.dtype
        elif store.manifest.dim:
            known.row_shape, known.dtype = (int(store.manifest.dim),), "float32"
        idx = known.add_array(store.embeddings)
        items = store.items
        stale_views = views_are_stale(store.manifest)
        for row, (key, status, error, framing, view) in enumerate(
            zip(item_keys(items), items["status"], items["error"], items["framing"], items["view"])
        ):
            if key is not None and not (stale_views and view):
                known.add_row(key, idx, row, status, error, framing)
    for parquet in sorted((path / PARTS).glob(f"{fingerprint}-*.parquet")):
        table = pd.read_parquet(parquet)
        if "framing" not in table:
            table["framing"] = None
        idx = known.add_array(np.load(parquet.with_suffix(".npy"), mmap_mode="r"))
        for key, status, error, row, framing in zip(
            table["key"], table["status"], table["error"], table["row"], table["framing"]
        ):
            known.add_row(key, idx, int(row), status, error, framing)
        known.part_files += [parquet, parquet.with_suffix(".npy")]
    return known


def views_are_stale(manifest: Manifest) -> bool:
    """The committed augmented views were made by another version of the policy (or by one that
    did not record its version): their rows are not reused, since a row's key is computed from
    the current version and would otherwise name an old view as a new one."""
    return manifest.augment.get("version") != store_keys.AUGMENT_VERSION


def foreign_parts(path: Path, fingerprint: str) -> list[Path]:
    """Parts left by a run with another fingerprint."""
    return [p for p in (path / PARTS).glob("*.parquet") if not p.name.startswith(f"{fingerprint}-")]


# --------------------------------------------------------------------------- commit


def commit(path: Path, items: pd.DataFrame, known: Known, manifest: Manifest) -> None:
    """Write ``items`` (with vectors looked up in ``known`` by key) as the new store."""
    row_shape = known.row_shape or (0,)
    tmp_emb = path / f"{EMBEDDINGS}.tmp"
    out = np.lib.format.open_memmap(
        tmp_emb, mode="w+", dtype=np.dtype(known.dtype or "float32"), shape=(len(items), *row_shape)
    )
    _fill_vectors(out, item_keys(items), items["status"].tolist(), known)
    out.flush()
    del out
    fsync_path(tmp_emb)
    write_synced(path / f"{ITEMS}.tmp", lambda tmp: items[ITEM_COLUMNS].to_parquet(tmp, index=False))
    manifest = manifest.updated_with(
        format_version=FORMAT_VERSION,
        commit=uuid.uuid4().hex,
        rows=len(items),
        dim=int(np.prod(row_shape)),
        row_shape=list(row_shape),
        dtype=known.dtype or "float32",
    )
    write_synced(path / f"{MANIFEST}.tmp", manifest_json(manifest))
    renames = [[f"{name}.tmp", name] for name in (EMBEDDINGS, ITEMS, MANIFEST)]
    atomic_write(path / JOURNAL, json.dumps({"renames": renames}))
    recover(path)
    for part in known.part_files:
        part.unlink(missing_ok=True)


def _fill_vectors(out: np.ndarray, keys: list[str | None], statuses: list[str], known: Known) -> None:
    """Copy each row's vector from its source array, source by source, in bounded chunks."""
    by_source: dict[int, tuple[list[int], list[int]]] = {}
    for target, (key, status) in enumerate(zip(keys, statuses)):
        if status == OK:
            source, row = known.vectors[key]
            targets, rows = by_source.setdefault(source, ([], []))
            targets.append(target)
            rows.append(row)
    for source, (targets, rows) in by_source.items():
        array = known.arrays[source]
        for start in range(0, len(targets), _COPY_CHUNK):
            t = np.asarray(targets[start : start + _COPY_CHUNK])
            r = np.asarray(rows[start : start + _COPY_CHUNK])
            out[t] = array[r]


def check_fingerprint(path: Path, manifest: Manifest | None, fingerprint: str, description: str) -> None:
    """Refuse to mix vectors from two extractors in one store."""
    theirs = manifest.fingerprint if manifest else None
    if theirs is None:
        others = foreign_parts(path, fingerprint)
        theirs = others[0].name.split("-")[0] if others else None
    if theirs is not None and theirs != fingerprint:
        made_by = describe_extractor(manifest) if manifest else "an unfinished run"
        raise FingerprintMismatch(
            f"store {path} holds vectors from another extractor ({theirs}: {made_by}); this run is "
            f"{fingerprint} ({description}). Use --force to rebuild it or --out for a new store"
        )


def describe_extractor(manifest: Manifest) -> str:
    """One line naming the backbone, weights, size and resizing that made a store."""
    b = manifest.backbone
    trained = "pretrained" if manifest.pretrained else "NOT PRETRAINED"
    size, resize = b.get("image_size"), manifest.resize
    tuned = f", {b['finetuned']}" if b.get("finetuned") else ""
    precision = f", {b['precision']}" if b.get("precision", "fp32") != "fp32" else ""
    return f"{b.get('name')} [{b.get('weights_id')}] {size}px, resize {resize}, {trained}{tuned}{precision}"


def wipe(path: Path) -> None:
    """Remove a store's files (``--force``), leaving the directory and its lock."""
    for name in (EMBEDDINGS, ITEMS, MANIFEST, JOURNAL):
        (path / name).unlink(missing_ok=True)
    parts = path / PARTS
    if parts.is_dir():
        for part in parts.iterdir():
            part.unlink()
