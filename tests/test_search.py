"""The FAISS index shared by the k-NN head and the similar-coin lookup."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_config, write_class_folders

from coinfeat import extract_features, open_store
from coinfeat.errors import CoinfeatError
from coinfeat.search import VectorIndex, default_nlist, default_nprobe, normalise
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
