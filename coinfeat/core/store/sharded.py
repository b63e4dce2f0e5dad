"""Sharded stores: several single stores under one directory, read as one.

Layout: ``shards.json`` (format, fingerprint, shard names) beside ``shard-00000/`` ... each a
complete single store. A photo always goes to the shard its sha256 picks, so incremental runs,
crash safety and the fingerprint rule work per shard. Vectors stay memory-mapped per shard and
only the rows asked for are read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.store.atomic import atomic_write
from coinfeat.core.store.keys import manifest_counts
from coinfeat.core.store.single import PartWriter, Store, open_single

SHARDS_FILE = "shards.json"
SHARDS_FORMAT = 1


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def shard_of(key: str | None, shards: int) -> int:
    """The shard a photo's content (sha256, or a vector key starting with it) belongs to;
    unreadable files, without a hash, go to shard 0."""
    return int(key[:8], 16) % shards if isinstance(key, str) else 0


class ShardedArray:
    """The rows of several memory-mapped (n_i, D) arrays seen as one (N, D) array."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays
        self.offsets = np.cumsum([0] + [len(a) for a in arrays])
        dims = {a.shape[1] for a in arrays if len(a)}
        self.dim = dims.pop() if dims else 0
        self.dtype = np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.offsets[-1]), self.dim

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            shard = int(np.searchsorted(self.offsets, index, side="right") - 1)
            return np.asarray(self.arrays[shard][index - self.offsets[shard]])
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        out = np.empty((len(rows), self.dim), dtype=self.dtype)
        owner = np.searchsorted(self.offsets, rows, side="right") - 1
        for shard in np.unique(owner):
            mine = owner == shard
            out[mine] = self.arrays[shard][rows[mine] - self.offsets[shard]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        full = self[np.arange(len(self))]
        return full.astype(dtype) if dtype is not None else full


class ShardRouter:
    """A pipeline writer for a sharded store: each key's row goes to its own shard's parts."""

    def __init__(self, writers: list[PartWriter]) -> None:
        self.writers = writers

    def write(
        self,
        keys: list[str],
        vectors: np.ndarray,
        failures: list[tuple[str, str]],
        framing: Sequence[str | None] = (),
    ) -> None:
        owner = np.asarray([shard_of(k, len(self.writers)) for k in keys], dtype=int)
        failed_owner = [shard_of(k, len(self.writers)) for k, _ in failures]
        for shard in sorted(set(owner.tolist()) | set(failed_owner)):
            mine = owner == shard
            self.writers[shard].write(
                [k for k, m in zip(keys, mine) if m],
                vectors[mine] if len(keys) else vectors,
                [f for f, o in zip(failures, failed_owner) if o == shard],
                [f for f, m in zip(framing, mine) if m],
            )


def is_sharded(path: str | Path) -> bool:
    return (Path(path) / SHARDS_FILE).is_file()


def read_shards(path: Path) -> dict[str, Any]:
    try:
        record = json.loads((path / SHARDS_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CoinfeatError(f"{path / SHARDS_FILE} is unreadable ({exc}); re-run extract-features") from None
    if record.get("format", 0) > SHARDS_FORMAT:
        raise CoinfeatError(f"sharded store {path} was written by a newer coinfeat; upgrade coinfeat")
    return record


def write_shards(path: Path, names: list[str], fingerprint: str) -> None:
    record = {"format": SHARDS_FORMAT, "fingerprint": fingerprint, "shards": names}
    atomic_write(path / SHARDS_FILE, json.dumps(record, indent=2))


def open_sharded(path: Path) -> Store:
    """Open every shard and present them as one :class:`Store`."""
    record = read_shards(path)
    shards = [open_single(path / name) for name in record["shards"]]
    if not shards:
        raise CoinfeatError(f"sharded store {path} lists no shards")
    if {s.fingerprint for s in shards} != {record["fingerprint"]}:
        raise CoinfeatError(f"sharded store {path} mixes fingerprints; rebuild it with --force")
    items = pd.concat([s.items.assign(shard=i) for i, s in enumerate(shards)], ignore_index=True)
    manifest = shards[0].manifest.updated_with(
        rows=len(items),
        shards=record["shards"],
        commit=hashlib.sha256("".join(s.manifest.commit or "" for s in shards).encode()).hexdigest(),
        counts=manifest_counts(items),
    )
    return Store(path, manifest, items, ShardedArray([s.embeddings for s in shards]))
