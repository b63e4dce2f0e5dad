"""Nearest-neighbour search over L2-normalised vectors with FAISS (inner product = cosine).

One implementation serves the k-NN head and the similar-coin lookup. Index kinds: ``flat``
(exact, default), ``ivf`` (inverted lists; needs at least 39 x nlist training vectors) and
``hnsw`` (graph). Row ids are positions in insertion order; callers keep labels and paths
beside the index in a Parquet file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from coinfeat.core.errors import CoinfeatError

INDEX_KINDS = ("flat", "ivf", "hnsw", "ivfpq")
PQ_SUBQUANTIZERS = 64
"""ivfpq stores each vector in at most 64 bytes (1280-d float32 is 5,120): 80x less memory, approximate."""
PQ_MIN_SUBVECTOR = 16
"""Each byte codes at least this many dimensions: finer codes cost training time for little recall."""
MIN_POINTS_PER_CENTROID = 39


def pq_subquantizers(dim: int) -> int:
    """Bytes per vector of an ivfpq index: the most (up to ``PQ_SUBQUANTIZERS``) that split ``dim``
    evenly into sub-vectors of at least ``PQ_MIN_SUBVECTOR`` dimensions (1280-d: 64 of 20)."""
    fits = [m for m in range(1, PQ_SUBQUANTIZERS + 1) if dim % m == 0 and dim // m >= PQ_MIN_SUBVECTOR]
    return max(fits, default=1)


def default_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: about 4 sqrt(n), at most 1024 (k-means training time grows
    with nlist squared), with at least 39 training points each."""
    return int(max(1, min(4 * np.sqrt(max(n, 1)), 1024, n // MIN_POINTS_PER_CENTROID)))


def default_nprobe(nlist: int) -> int:
    """Lists visited per query: measured to keep recall@10 >= 0.95 (BENCHMARKS.md)."""
    return int(max(1, min(nlist, max(16, nlist // 16))))


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as contiguous float32."""
    x = np.ascontiguousarray(vectors, dtype=np.float32).copy()
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


class VectorIndex:
    """A FAISS index over normalised vectors; ``search`` returns cosine similarities and row ids."""

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        nlist: int = 100,
        nprobe: int = 10,
        hnsw_m: int = 32,
        ef_search: int = 64,
    ) -> None:
        if kind not in INDEX_KINDS:
            raise CoinfeatError(f"unknown index {kind!r}; choose from {', '.join(INDEX_KINDS)}")
        self.dim, self.kind = dim, kind
        self.nlist, self.nprobe, self.hnsw_m, self.ef_search = nlist, nprobe, hnsw_m, ef_search
        self.index = self._make()

    def _make(self) -> faiss.Index:
        if self.kind == "ivf":
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            index.nprobe = self.nprobe
            return index
        if self.kind == "ivfpq":
            quantizer = faiss.IndexFlatIP(self.dim)
            m = pq_subquantizers(self.dim)
            index = faiss.IndexIVFPQ(quantizer, self.dim, self.nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            index.nprobe = self.nprobe
            return index
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.ef_search
            return index
        return faiss.IndexFlatIP(self.dim)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def train(self, vectors: np.ndarray) -> None:
        """Train an IVF index (on a sample, for collections too large to hold in memory)."""
        x = self._check(vectors)
        needed = MIN_POINTS_PER_CENTROID * max(self.nlist, 256 if self.kind == "ivfpq" else 0)
        if len(x) < needed and self.kind == "ivfpq":
            raise CoinfeatError(
                f"an ivfpq index needs at least {needed} vectors to train its codebooks (got {len(x)}); "
                "it is meant for hundreds of thousands of photos: use index=flat (exact) or ivf"
            )
        if len(x) < needed:
            raise CoinfeatError(
                f"an ivf index with nlist={self.nlist} needs at least {needed} vectors to train "
                f"(got {len(x)}); lower nlist or use index=flat (exact)"
            )
        self.index.train(x)

    def add(self, vectors: np.ndarray) -> None:
        """Add vectors (normalised here); an untrained IVF index is trained on this first batch."""
        if not self.index.is_trained:
            self.train(vectors)
        self.index.add(self._check(vectors))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (similarities, ids) per query; ids are -1 where fewer than k exist."""
        if self.ntotal == 0:
            raise CoinfeatError("the index is empty")
        return self.index.search(self._check(queries), min(k, self.ntotal))

    def save(self, path: str | Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: str | Path, kind: str, nprobe: int = 10, ef_search: int = 64) -> VectorIndex:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise CoinfeatError(f"cannot read FAISS index {path}: {str(exc).splitlines()[0]}") from None
        obj = cls.__new__(cls)
        obj.dim, obj.kind, obj.index = index.d, kind, index
        obj.nlist = getattr(index, "nlist", 0)
        obj.nprobe, obj.hnsw_m, obj.ef_search = nprobe, 0, ef_search
        if kind in ("ivf", "ivfpq"):
            faiss.extract_index_ivf(index).nprobe = nprobe
        elif kind == "hnsw":
            index.hnsw.efSearch = ef_search
        return obj

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise CoinfeatError(f"expected vectors of dimension {self.dim}, got shape {x.shape}")
        return normalise(x)


RERANK_FACTOR = 10
"""An approximate (ivfpq) search fetches this many times k candidates, re-scored exactly."""


def rerank(
    queries: np.ndarray, ids: np.ndarray, vectors_of: Callable[[np.ndarray], np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score each query's candidate ids (from a compressed index) by exact cosine against the
    original vectors, read on demand by ``vectors_of(ids)``; keep the best k. PQ codes rank only
    roughly, but the true neighbours are usually among ten times as many candidates."""
    q = normalise(queries)
    sims = np.full((len(q), k), -np.inf, np.float32)
    best = np.full((len(q), k), -1, np.int64)
    for i, row in enumerate(ids):
        found = row[row >= 0]
        if not len(found):
            continue
        exact = normalise(vectors_of(found)) @ q[i]
        top = np.argsort(-exact, kind="stable")[:k]
        sims[i, : len(top)], best[i, : len(top)] = exact[top], found[top]
    return sims, best


def fill_index(
    index: VectorIndex,
    vectors: np.ndarray,
    rows: np.ndarray,
    *,
    sample: int = 100_000,
    chunk: int = 50_000,
    seed: int = 0,
) -> VectorIndex:
    """Fill ``index`` with ``vectors[rows]`` without holding them all: an IVF index is trained on a
    random sample of at most ``sample`` rows, then rows are added ``chunk`` at a time in order
    (shard by shard for a sharded store). Peak memory is the sample or one chunk, plus the index."""
    rows = np.asarray(rows)
    if index.kind in ("ivf", "ivfpq") and not index.index.is_trained and len(rows):
        picked = np.sort(np.random.default_rng(seed).choice(rows, min(sample, len(rows)), replace=False))
        index.train(np.asarray(vectors[picked]))
    for start in range(0, len(rows), chunk):
        block = np.asarray(vectors[rows[start : start + chunk]])
        if not np.isfinite(block).all():
            raise CoinfeatError("the store holds NaN or infinite vectors; re-run extract-features --force")
        index.add(block)
    return index


def build_index(
    store,
    kind: str = "ivfpq",
    *,
    split: str | None = None,
    sample: int = 100_000,
    chunk: int = 50_000,
    seed: int = 0,
) -> VectorIndex:
    """Index a store too large for memory (see :func:`fill_index`), with nlist and nprobe chosen
    for its size."""
    rows = store.rows(split)
    if len(rows) == 0:
        raise CoinfeatError(f"store {store.path} has no usable vectors to index")
    nlist = default_nlist(min(sample, len(rows)))
    index = VectorIndex(store.embeddings.shape[1], kind, nlist=nlist, nprobe=default_nprobe(nlist))
    return fill_index(index, store.embeddings, rows, sample=sample, chunk=chunk, seed=seed)
