"""The FAISS index shared by the k-NN head and the similar-coin lookup."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import small_config, write_class_folders

from coinfeat import extract_features, open_store
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.index import VectorIndex, default_nlist, default_nprobe, normalise
from coinfeat.core.store import Manifest, Store
from coinfeat.similar import Collection, find_similar


def test_exact_search_returns_cosine_and_ids():
    x = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    index = VectorIndex(2)
    index.add(x)
    sims, ids = index.search(np.array([[2.0, 0.0]]), 2)
    assert ids[0].tolist() == [0, 2]
    assert sims[0] == pytest.approx([1.0, 1 / np.sqrt(2)], abs=1e-6)
    assert np.allclose(np.linalg.norm(normalise(x), axis=1), 1)
    with pytest.raises(CoinfeatError, match="dimension"):
        index.search(np.zeros((1, 3)), 1)


def test_default_ivf_settings_are_bounded():
    assert default_nlist(1_000_000) == 1024 and default_nprobe(1024) == 64
    assert default_nlist(1000) == 1000 // 39
    assert default_nprobe(4) == 4


def test_ivf_and_hnsw_collections_are_cached_per_commit(tmp_path):
    data = write_class_folders(tmp_path / "d", per_class=40)
    store_path = tmp_path / "s"
    extract_features(data, store_path, small_config())
    store = open_store(store_path)
    for kind in ("ivf", "hnsw"):
        first = Collection(store, "all", kind)
        cached = list((store_path / "indexes").glob(f"all-{kind}-*.faiss"))
        assert len(cached) == 1
        again = Collection(store, "all", kind)
        assert again.index.ntotal == first.index.ntotal == 120
    query = str(data / "gold" / "gold3_1.jpg")
    [result] = find_similar([query], store_path, k=3, split="all", index="ivf")
    assert result.neighbours[0].path == str((data / "gold" / "gold3_1.jpg").resolve())


@pytest.mark.slow
def test_ivfpq_index_trained_on_a_sample_and_filled_in_chunks(tmp_path):
    import pandas as pd

    from coinfeat.core.index import build_index, pq_subquantizers

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, 128)).astype(np.float32)
    X = normalise(
        centres[rng.integers(0, 200, 12_000)] + 0.3 * rng.standard_normal((12_000, 128)).astype(np.float32)
    )
    items = pd.DataFrame(
        {"status": "ok", "view": 0, "split": "train", "path": [f"p{i}" for i in range(12_000)]}
    )
    store = Store(
        tmp_path,
        Manifest.from_dict({"fingerprint": "f", "commit": "c1", "dataset": {"root": str(tmp_path)}}),
        items,
        X,
    )
    assert [pq_subquantizers(d) for d in (1280, 2048, 128, 10)] == [64, 64, 8, 1]
    index = build_index(store, "ivfpq", sample=10_000, chunk=3_000)
    assert index.ntotal == 12_000 and index.kind == "ivfpq"
    _, ids = index.search(X[:200], 10)
    exact = VectorIndex(128)
    exact.add(X)
    _, truth = exact.search(X[:200], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)])
    assert recall > 0.25, "8-byte codes of 128-d vectors: far above chance (10 in 12,000), not exact"
    sims, reranked = Collection(store, "train", "ivfpq").neighbours(X[:200], 10)
    recall_reranked = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(reranked, truth)])
    assert recall_reranked > max(recall, 0.9)
    np.testing.assert_allclose(sims, np.einsum("qkd,qd->qk", X[reranked], X[:200]), atol=1e-5)
    with pytest.raises(CoinfeatError, match="needs at least"):
        VectorIndex(128, "ivfpq", nlist=4).train(X[:100])
