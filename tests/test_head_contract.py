"""scikit-learn's estimator contract for every head, and saved heads as data, never code."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from coinfeat.cli import main
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads import head_types, load_head, make_head

FAST = {"dense": {"epochs": 5}}


def clusters(seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 8)) * 5
    y = np.repeat(["a", "b", "c"], 30)
    return (centres[np.repeat(np.arange(3), 30)] + rng.normal(size=(90, 8))).astype(np.float32), y


@pytest.mark.parametrize("name", [n for n in head_types() if n != "dense"])
def test_clone_copies_parameters_and_no_learned_state(name):
    X, y = clusters()
    head = make_head(name).fit(X, y)
    twin = clone(head)
    assert twin.get_params() == head.get_params()
    assert not hasattr(twin, "classes_")
    for key, value in head.get_params().items():
        assert getattr(head, key) == value  # each parameter is an attribute


def test_set_params_changes_attributes_and_refuses_unknown_names():
    head = make_head("knn").set_params(k=3, weights="uniform")
    assert head.k == 3 and head.get_params()["weights"] == "uniform"
    with pytest.raises(CoinfeatError, match="no parameter"):
        head.set_params(neighbours=3)


def test_parameter_values_are_validated_in_fit_not_in_init():
    head = make_head("knn", weights="loudest")  # accepted, as scikit-learn does
    X, y = clusters()
    with pytest.raises(CoinfeatError, match="weights"):
        head.fit(X, y)


def test_metadata_cannot_overwrite_what_the_head_writes(tmp_path):
    X, y = clusters()
    head = make_head("centroid").fit(X, y)
    head.meta.extra.update({"type": "dense", "classes": ["x"], "params": {"temperature": 9}})
    head.save(tmp_path / "h")
    record = json.loads((tmp_path / "h" / "head.json").read_text())
    assert record["type"] == "centroid" and record["classes"] == ["a", "b", "c"]
    loaded = load_head(tmp_path / "h")
    assert loaded.name == "centroid" and loaded.temperature == 0.05


def test_a_logreg_head_is_plain_arrays_and_a_tampered_file_is_refused(tmp_path):
    X, y = clusters()
    make_head("logreg").fit(X, y).save(tmp_path / "h")
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == ["head.json", "memory.npz", "model.npz"]
    memory = (tmp_path / "h" / "memory.npz").read_bytes()
    np.savez(
        tmp_path / "h" / "memory.npz", prototypes=np.array([{"code": "run me"}], dtype=object), codes=[0]
    )
    with pytest.raises(CoinfeatError, match="damaged"):
        load_head(tmp_path / "h")
    (tmp_path / "h" / "memory.npz").write_bytes(memory)
    load_head(tmp_path / "h")
    np.savez(tmp_path / "h" / "model.npz", weights=np.array([{"code": "run me"}], dtype=object), bias=[0])
    with pytest.raises(CoinfeatError, match="damaged"):
        load_head(tmp_path / "h")


def test_logreg_folds_the_scaler_exactly():
    X, y = clusters()
    head = make_head("logreg").fit(X, y)
    reference = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
    reference.fit(X, np.searchsorted(head.classes_, y))
    np.testing.assert_allclose(head.predict_proba(X), reference.predict_proba(X), atol=1e-5)


def test_a_pickled_head_from_coinfeat_0_1_is_refused_until_converted(tmp_path, capsys):
    X, y = clusters()
    head = make_head("logreg").fit(X, y)
    head.save(tmp_path / "h")
    (tmp_path / "h" / "model.npz").unlink()
    old = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
    old.fit(X, np.searchsorted(head.classes_, y))
    joblib.dump(old, tmp_path / "h" / "model.joblib")
    with pytest.raises(CoinfeatError, match="pickle"):
        load_head(tmp_path / "h")
    assert main(["fit-head", "--convert", str(tmp_path / "h")]) == 0
    assert "holds no pickle" in capsys.readouterr().out
    assert not (tmp_path / "h" / "model.joblib").exists()
    np.testing.assert_allclose(load_head(tmp_path / "h").predict_proba(X), old.predict_proba(X), atol=1e-5)


@pytest.mark.slow
def test_a_dense_head_whose_model_file_carries_code_is_refused(tmp_path):
    from coinfeat.core.runtime import import_keras

    keras = import_keras()
    X, y = clusters()
    make_head("dense", **FAST["dense"]).fit(X, y).save(tmp_path / "h")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Lambda(lambda x: x * 0), keras.layers.Dense(3)])
    model.save(tmp_path / "h" / "model.keras")
    with pytest.raises(CoinfeatError, match="damaged"):
        load_head(tmp_path / "h")


def test_knn_refuses_keras_with_its_reason():
    X, y = clusters()
    with pytest.raises(CoinfeatError, match="database, not a layer"):
        make_head("knn").fit(X, y).to_keras(None)


def test_head_metadata_is_a_typed_record_and_newer_formats_are_refused(tmp_path):
    from coinfeat.core.heads import ExtractorRecord, HeadMeta

    X, y = clusters()
    head = make_head("centroid").fit(X, y)
    head.meta = HeadMeta(
        features=ExtractorRecord(fingerprint="abc", resize="pad", backbone={"name": "x"}),
        label_names={"a": "1 Cent"},
        extra={"note": "kept as it was"},
    )
    head.save(tmp_path / "h")
    loaded = load_head(tmp_path / "h")
    assert loaded.meta == head.meta and loaded.meta.features.fingerprint == "abc"
    record = json.loads((tmp_path / "h" / "head.json").read_text())
    (tmp_path / "h" / "head.json").write_text(json.dumps({**record, "format_version": 99}))
    with pytest.raises(CoinfeatError, match="newer coinfeat"):
        load_head(tmp_path / "h")
