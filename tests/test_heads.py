"""Heads: one interface, learn separable data, know nothing from shuffled labels, round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import SMALL, ChunkOnlyVectors, coin_image, small_config, write_class_folders

from coinfeat import extract_features
from coinfeat.core.errors import CoinfeatError, FingerprintMismatch
from coinfeat.core.heads import head_types, load_head, make_head
from coinfeat.core.provenance import check_compatible
from coinfeat.core.store import open_store
from coinfeat.fit import enrol_photos, fit_head, parse_params
from coinfeat.predict import predict_images

ALL = [pytest.param(n, marks=pytest.mark.slow) if n == "dense" else n for n in head_types()]
"""Every head; the Keras one trains for seconds, so it runs in the slow tier."""
FAST = {"dense": {"epochs": 40}}


def clusters(n_classes=4, per_class=40, dim=32, spread=6.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * spread
    labels = np.repeat([f"c{i}" for i in range(n_classes)], per_class)
    X = centres[np.repeat(np.arange(n_classes), per_class)] + rng.normal(size=(len(labels), dim))
    return X.astype(np.float32), labels


def test_registry_lists_the_required_heads():
    assert {"dense", "logreg", "knn", "centroid"} <= set(head_types())


@pytest.mark.parametrize("name", ALL)
def test_separable_clusters_are_learned(name):
    X, y = clusters()
    Xt, yt = clusters(seed=0)[0][1::2], y[1::2]
    head = make_head(name, **FAST.get(name, {})).fit(X[::2], y[::2], X[1::2], y[1::2])
    proba = head.predict_proba(Xt)
    assert proba.shape == (len(Xt), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert list(head.classes_) == ["c0", "c1", "c2", "c3"]
    assert np.mean(head.classes_[proba.argmax(1)] == yt) >= 0.98


@pytest.mark.parametrize("name", ALL)
def test_shuffled_labels_stay_near_chance(name):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 16)).astype(np.float32)
    y = rng.permutation(np.repeat(["a", "b", "c", "d"], 100))
    Xt = rng.normal(size=(400, 16)).astype(np.float32)
    yt = rng.permutation(np.repeat(["a", "b", "c", "d"], 100))
    head = make_head(name, **FAST.get(name, {})).fit(X, y, X[:80], y[:80])
    assert abs(np.mean(head.predict(Xt) == yt) - 0.25) < 0.1


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip_gives_identical_probabilities(name, tmp_path):
    X, y = clusters()
    head = make_head(name, **FAST.get(name, {})).fit(X, y)
    head.save(tmp_path / name)
    again = load_head(tmp_path / name)
    assert type(again) is type(head) and list(again.classes_) == list(head.classes_)
    np.testing.assert_array_equal(again.predict_proba(X), head.predict_proba(X))
    assert json.loads((tmp_path / name / "head.json").read_text())["type"] == name


def test_boundary_validation():
    X, y = clusters()
    with pytest.raises(CoinfeatError, match="no parameter"):
        make_head("logreg", K=3)
    with pytest.raises(CoinfeatError, match="unknown head type"):
        make_head("forest")
    with pytest.raises(CoinfeatError, match="not fitted"):
        make_head("knn").predict_proba(X)
    head = make_head("centroid").fit(X, y)
    with pytest.raises(CoinfeatError, match="dimensions"):
        head.predict_proba(X[:, :5])
    with pytest.raises(CoinfeatError, match="NaN"):
        head.predict_proba(np.full((2, 32), np.nan))
    with pytest.raises(CoinfeatError, match="at least 2 classes"):
        make_head("logreg").fit(X, ["same"] * len(X))
    with pytest.raises(CoinfeatError, match="index=flat"):
        make_head("knn", index="ivf", nlist=100).fit(X, y)


def test_knn_index_kinds_and_weightings():
    X, y = clusters(per_class=400, dim=16)
    for params in (
        {"index": "ivf", "nlist": 8, "nprobe": 4},
        {"index": "hnsw"},
        {"weights": "uniform"},
        {"weights": "distance"},
    ):
        head = make_head("knn", **params).fit(X[::2], y[::2])
        assert np.mean(head.predict(X[1::2]) == y[1::2]) > 0.98, params


@pytest.mark.parametrize("index", ["flat", "ivf", pytest.param("ivfpq", marks=pytest.mark.slow)])
def test_knn_fits_from_a_store_chunk_by_chunk_like_in_memory(index):
    import pandas as pd

    from coinfeat.core.store import Store

    X, y = clusters(n_classes=5, per_class=4_400, dim=64)
    params = {"index": index, "nlist": 16, "nprobe": 16, "sample": 10_000, "chunk": 1_500}
    vectors = ChunkOnlyVectors(X)
    store = Store(None, {}, pd.DataFrame({"label": y}), vectors)
    rows = np.arange(1, len(X), 2)
    streamed = make_head("knn", **params).fit_from_store(store, rows, y[rows])
    assert vectors.largest == (10_000 if index != "flat" else 1_500)
    assert streamed.index_.ntotal == len(rows)
    queries = X[::2][:300]
    in_memory = make_head("knn", **params).fit(X[rows], y[rows])
    agree = np.mean(streamed.predict(queries) == in_memory.predict(queries))
    assert agree == 1.0 if index == "flat" else agree > 0.95
    assert np.mean(streamed.predict(queries) == y[::2][:300]) > 0.95


def test_knn_add_makes_a_new_class_predictable_without_refitting(tmp_path):
    X, y = clusters(n_classes=5)
    old = y != "c4"
    head = make_head("knn", k=5).fit(X[old], y[old])
    index_before = head.index_
    assert "c4" not in head.classes_
    head.add(X[~old][::2], y[~old][::2])
    assert head.index_ is index_before, "add must not rebuild the index"
    assert "c4" in head.classes_
    assert np.mean(head.predict(X[~old][1::2]) == "c4") >= 0.95
    head.save(tmp_path / "k")
    assert "c4" in load_head(tmp_path / "k").classes_


def test_damaged_or_missing_head_directories(tmp_path):
    with pytest.raises(CoinfeatError, match="not found"):
        load_head(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CoinfeatError, match=r"head\.json missing"):
        load_head(tmp_path / "empty")
    X, y = clusters()
    make_head("knn").fit(X, y).save(tmp_path / "k")
    (tmp_path / "k" / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(CoinfeatError, match="index"):
        load_head(tmp_path / "k")
    make_head("logreg").fit(X, y).save(tmp_path / "l")
    (tmp_path / "l" / "head.json").write_text("{not json")
    with pytest.raises(CoinfeatError, match="damaged"):
        load_head(tmp_path / "l")


def test_parse_params():
    assert parse_params(["k=5", "weights=distance", "C=0.5", "class_weight=none"]) == {
        "k": 5,
        "weights": "distance",
        "C": 0.5,
        "class_weight": None,
    }
    with pytest.raises(CoinfeatError, match="key=value"):
        parse_params(["k5"])


@pytest.fixture
def store_and_data(tmp_path):
    colours = {
        "copper": (184, 115, 51),
        "gold": (212, 175, 55),
        "silver": (170, 170, 180),
        "black": (20, 20, 20),
    }
    data = write_class_folders(tmp_path / "coins", per_class=12, colours=colours)
    extract_features(data, tmp_path / "store", small_config(augment=1))
    return tmp_path / "store", data


def test_fit_head_records_provenance_and_refuses_other_features(store_and_data, tmp_path):
    store_path, data = store_and_data
    result = fit_head(store_path, "logreg", tmp_path / "head", params={"C": 0.5})
    record = json.loads((tmp_path / "head" / "head.json").read_text())
    assert record["params"]["C"] == 0.5 and record["counts"]["train"] == result.train
    assert record["features"]["fingerprint"] == open_store(store_path).fingerprint
    assert record["features"]["pretrained"] is False
    augmented = fit_head(store_path, "logreg", tmp_path / "head-aug", use_augmented=True)
    assert augmented.train == 2 * result.train
    extract_features(data, tmp_path / "other", small_config(resize="crop"))
    with pytest.raises(FingerprintMismatch, match="trained on features"):
        check_compatible(load_head(tmp_path / "head"), open_store(tmp_path / "other"))


def test_predict_photos_with_the_heads_own_extractor(store_and_data, tmp_path):
    store_path, data = store_and_data
    fit_head(store_path, "knn", tmp_path / "knn", params={"k": 3})
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    photos = [data / "gold" / "gold0_0.jpg", bad]
    results = predict_images(photos, tmp_path / "knn", top_k=2)
    assert results[0].labels[0] == "gold" and len(results[0].labels) == 2
    assert results[1].error and "not an image" in results[1].error
    rotated = predict_images(photos[:1], tmp_path / "knn", top_k=1, tta="rotations")
    assert rotated[0].labels == ["gold"]


def test_knn_add_from_a_folder_of_new_photos(store_and_data, tmp_path):
    store_path, _ = store_and_data
    fit_head(store_path, "knn", tmp_path / "knn", params={"k": 3})
    new = tmp_path / "new"
    for i in range(6):
        (new / "green").mkdir(parents=True, exist_ok=True)
        coin_image((30, 200, 60), seed=300 + i).save(new / "green" / f"g{i}_0.jpg")
    result = enrol_photos(tmp_path / "knn", new, progress=False)
    assert result.photos == 6 and result.new_classes == ["green"]
    assert enrol_photos(tmp_path / "knn", new, progress=False).photos == 0, "no double adds"
    query = tmp_path / "q.jpg"
    coin_image((30, 200, 60), seed=999).save(query)
    assert predict_images([query], tmp_path / "knn", top_k=1)[0].labels == ["green"]
    assert (
        json.loads((tmp_path / "knn" / "head.json").read_text())["features"]["backbone"]["image_size"]
        == SMALL
    )


@pytest.mark.slow
def test_registry_finds_every_head_whichever_is_imported_first():
    import subprocess
    import sys

    code = "import coinfeat.core.heads.knn; from coinfeat.core.heads import make_head, head_types; "
    code += "make_head('dense'); print(sorted(head_types()))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['centroid', 'dense', 'knn', 'logreg']"


@pytest.mark.parametrize("name", ALL)
def test_get_set_params_and_sklearn_clone_give_an_unfitted_copy(name):
    from sklearn.base import clone

    X, y = clusters()
    head = make_head(name).set_params(**FAST.get(name, {})).fit(X, y)
    copy = clone(head)
    assert type(copy) is type(head) and copy.get_params() == head.get_params()
    assert not hasattr(copy, "classes_")
    np.testing.assert_array_equal(copy.fit(X, y).predict(X), head.predict(X))
    with pytest.raises(CoinfeatError, match="no parameter"):
        head.set_params(nonsense=1)


def test_any_head_enrols_a_new_coin_type_from_a_few_photos_of_one_folder(store_and_data, tmp_path):
    store_path, _ = store_and_data
    fit_head(store_path, "logreg", tmp_path / "logreg")
    one_type = tmp_path / "my new coin"
    one_type.mkdir()
    for i in range(5):
        coin_image((30, 200, 60), seed=400 + i).save(one_type / f"n{i}.jpg")
    result = enrol_photos(tmp_path / "logreg", one_type, label="2 Euro,Euro,vatican", out=tmp_path / "grown")
    assert result.new_classes == ["2_Euro_Euro_vatican"] and result.photos == 5
    assert result.answer_sets in ("kept", "none")
    query = tmp_path / "q.jpg"
    coin_image((30, 200, 60), seed=998).save(query)
    [answer] = predict_images([query], tmp_path / "grown", top_k=1)
    assert answer.labels == ["2_Euro_Euro_vatican"] and answer.names == ["2 Euro,Euro,vatican"]
    assert "2_Euro_Euro_vatican" not in load_head(tmp_path / "logreg").classes_, (
        "the original is left as it was"
    )
    assert load_head(tmp_path / "grown").classes_.size == load_head(tmp_path / "logreg").classes_.size + 1
