"""Nearest photos of a collection: the searchable vectors of a store (:class:`Collection`) and
:func:`find_similar` with its answer records."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.extraction.embedder import Embedder
from coinfeat.core.heads import ExtractorRecord
from coinfeat.core.index import (
    RERANK_FACTOR,
    VectorIndex,
    build_index,
    default_nlist,
    default_nprobe,
    rerank,
)
from coinfeat.core.metrics import label_parts, part_answers
from coinfeat.core.options import resolve
from coinfeat.core.runtime import log
from coinfeat.core.store import Store, atomic_write, open_store, usable
from coinfeat.similar.unknown import calibrated_threshold

SPLITS = ("train", "all")


@dataclass(kw_only=True)
class Neighbour:
    rank: int
    label: str
    name: str
    similarity: float
    path: str


@dataclass(kw_only=True)
class SimilarResult:
    query: str
    source: str = ""
    neighbours: list[Neighbour] = field(default_factory=list)
    unknown: bool = False
    threshold: float | None = None
    error: str | None = None
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """For hierarchical display names: each part's most common value among the neighbours, with
    its similarity-weighted share, e.g. {"country": {"value": "turkey", "probability": 0.9}}."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Collection:
    """The searchable photos of a store: clean vectors of one split (or all), in a FAISS index."""

    def __init__(self, store: Store, split: str = "train", index: str = "flat") -> None:
        if split not in SPLITS:
            raise CoinfeatError(f"--split {split!r}: choose from {', '.join(SPLITS)}")
        self.store = store
        self.rows = store.rows(None if split == "all" else split)
        if len(self.rows) == 0:
            raise CoinfeatError(f"store {store.path} has no usable vectors in split {split!r}")
        self.items = store.items.iloc[self.rows].reset_index(drop=True)
        self.index = self._index(split, index)
        self.root = Path(store.manifest.dataset.root)
        self.names = store.manifest.label_names

    def _index(self, split: str, kind: str) -> VectorIndex:
        """Build the index; an ivf or hnsw index (minutes for a million vectors) is cached in the
        store's ``indexes/`` folder for the store's current commit and reused until it changes."""
        cached = self.store.path / "indexes" / f"{split}-{kind}-{self.store.manifest.commit}.faiss"
        if kind != "flat" and cached.exists():
            return VectorIndex.load(cached, kind, nprobe=default_nprobe(default_nlist(len(self.rows))))
        index = build_index(self.store, kind, split=None if split == "all" else split)
        if kind != "flat":
            try:
                cached.parent.mkdir(exist_ok=True)
                for stale in cached.parent.glob(f"{split}-{kind}-*.faiss"):
                    stale.unlink()
                atomic_write(cached, index.save)
            except OSError as exc:
                log.info("could not cache the %s index in %s: %s", kind, cached.parent, exc)
        return index

    def vectors(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """Stored vectors of collection rows, read from the (memory-mapped) store on demand."""
        return np.asarray(self.store.embeddings[self.rows[np.asarray(rows)]])

    def absolute(self, row: int) -> str:
        return str(self.root / self.items["path"].iloc[row])

    def row_of(self, query: str) -> int | None:
        """The collection row of a stored photo named by its relative or absolute path."""
        hits = np.flatnonzero(self.items["path"].eq(_relative(query, self.root)).to_numpy())
        return int(hits[0]) if len(hits) else None

    def neighbours(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (cosine, row) per query vector; compressed (ivfpq) candidates are re-scored exactly
        against the stored vectors, so reported similarities are true cosines."""
        if self.index.kind != "ivfpq":
            return self.index.search(vectors, k)
        _, candidates = self.index.search(vectors, k * RERANK_FACTOR)
        return rerank(vectors, candidates, self.vectors, min(k, self.index.ntotal))

    def nearest(
        self, vector: np.ndarray, k: int, skip: set[int] | frozenset[int] = frozenset()
    ) -> list[tuple[float, int]]:
        """The k rows most similar to one vector, as (cosine, row), leaving out the rows in ``skip``."""
        sims, ids = self.neighbours(np.reshape(vector, (1, -1)), k + len(skip))
        return [(float(s), int(i)) for s, i in zip(sims[0], ids[0]) if i >= 0 and i not in skip][:k]

    def same_photo(self, row: int) -> set[int]:
        """The row and every row holding the same file content (sha256)."""
        shas = self.items["sha256"]
        return {row, *np.flatnonzero((shas == shas.iloc[row]).to_numpy()).tolist()}


@dataclass
class SimilarConfig:
    """How ``similar`` searches: how many neighbours, in which photos, with which index; a query's
    own photo left out or not; the similarity below which the answer is "unknown"."""

    k: int = 8
    split: str = "train"
    exclude_self: bool = False
    threshold: float | None = None
    tta: str = "none"
    index: str = "flat"

    def validate(self) -> None:
        if self.k < 1:
            raise CoinfeatError(f"--k must be at least 1 (got {self.k})")


def find_similar(
    queries: list[str], features: str | Path, config: SimilarConfig | None = None, **options: Any
) -> list[SimilarResult]:
    """The k most similar stored photos for each query (a stored path or any image file); options
    are :class:`SimilarConfig`'s."""
    cfg = resolve(SimilarConfig, config, options)
    k, split, exclude_self, threshold, tta, index = (
        cfg.k,
        cfg.split,
        cfg.exclude_self,
        cfg.threshold,
        cfg.tta,
        cfg.index,
    )
    store = open_store(features)
    collection = Collection(store, split, index)
    threshold = threshold if threshold is not None else calibrated_threshold(store)
    vectors, results = _query_vectors(queries, collection, tta)
    for query, vector in zip(queries, vectors):
        if vector is None:
            continue
        result = results[query]
        own = collection.row_of(query) if exclude_self else None
        kept = collection.nearest(vector, k, collection.same_photo(own) if own is not None else frozenset())
        result.neighbours = [_neighbour(collection, rank, s, i) for rank, (s, i) in enumerate(kept, 1)]
        result.parts = neighbour_parts(result.neighbours, collection.names)
        result.threshold = threshold
        result.unknown = is_unknown(kept, threshold)
    return [results[q] for q in queries]


def neighbour_parts(neighbours: list[Neighbour], names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per label part, the value the neighbours vote for, weighted by similarity."""
    if not neighbours:
        return {}
    votes = pd.Series([max(n.similarity, 0.0) for n in neighbours], [n.label for n in neighbours])
    votes = votes.groupby(level=0).sum()
    share = votes.to_numpy() / votes.sum() if votes.sum() > 0 else np.full(len(votes), 1 / len(votes))
    return part_answers(share, label_parts(votes.index.to_numpy(), names, None))


def is_unknown(nearest: list[tuple[float, int]], threshold: float | None) -> bool:
    """No similar coin in the collection: even the best neighbour is below the threshold."""
    return threshold is not None and (not nearest or nearest[0][0] < threshold)


def _neighbour(collection: Collection, rank: int, similarity: float, row: int) -> Neighbour:
    label = str(collection.items["label"].iloc[row])
    return Neighbour(
        rank=rank,
        label=label,
        name=collection.names.get(label, label),
        similarity=round(float(similarity), 4),
        path=collection.absolute(row),
    )


def _query_vectors(queries: list[str], collection: Collection, tta: str):
    """Stored photos (any split) use their stored vector; other files are embedded with the
    store's extractor (a path relative to the dataset root also works)."""
    results = {q: SimilarResult(query=q) for q in queries}
    vectors: list[np.ndarray | None] = [None] * len(queries)
    stored = _stored_rows(collection.store)
    to_embed: dict[int, str] = {}
    for i, query in enumerate(queries):
        key = _relative(query, collection.root)
        if key in stored and tta == "none":
            vectors[i] = np.asarray(collection.store.embeddings[stored[key]])
            results[query].source = str(collection.root / key)
        else:
            on_disk = Path(query).exists() or not (collection.root / query).exists()
            to_embed[i] = results[query].source = query if on_disk else str(collection.root / query)
    if to_embed:
        embedder = Embedder(ExtractorRecord.of_manifest(collection.store.manifest))
        embedded = embedder.embed(list(to_embed.values()), tta=tta)
        by_path = dict(zip(embedded.paths, embedded.vectors))
        for i, path in to_embed.items():
            if path in by_path:
                vectors[i] = by_path[path]
            else:
                results[queries[i]].error = embedded.errors.get(path, "could not be embedded")
    return vectors, results


def _stored_rows(store: Store) -> dict[str, int]:
    ok = usable(store.items)
    return {path: int(row) for row, path in zip(np.flatnonzero(ok.to_numpy()), store.items["path"][ok])}


def _relative(query: str, root: Path) -> str:
    path = Path(query)
    if path.is_absolute():
        with contextlib.suppress(ValueError):
            return path.resolve().relative_to(root).as_posix()
    return path.as_posix()
