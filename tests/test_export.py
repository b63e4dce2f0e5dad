"""coinfeat export: one model file per head that plain Keras / LiteRT load and that agrees with predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import EURO_GROUPS, LITE0, needs_lite0, run_exported, run_exported_models, tiny_config

from coinfeat import extract_features, open_store
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.images.crop import DEFAULT_CROP
from coinfeat.core.images.model_input import load_image
from coinfeat.demo import sample_dir
from coinfeat.export import export_head
from coinfeat.fit import fit_head
from coinfeat.predict import predict_images


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    extract_features(sample_dir(), root / "s", tiny_config())
    store = open_store(root / "s")
    test = store.items.iloc[store.rows("test")]
    photos = [str(sample_dir() / p) for p in test["path"][:24]]
    images = np.stack([load_image(p, 64, "pad") for p in photos]).astype(np.float32)
    np.save(root / "images.npy", images)
    fitted = {
        name: fit_head(
            root / "s", name, root / name, params={"epochs": 30} if name == "dense" else {}
        ).head_dir
        for name in ("dense", "logreg", "centroid", "knn")
    }
    return root, photos, fitted


@pytest.mark.slow
def test_exported_models_load_without_coinfeat_and_agree_with_predict(heads):
    root, photos, fitted = heads
    cases = [("dense", "keras"), ("logreg", "keras"), ("centroid", "tflite"), ("logreg", "tflite")]
    results = [export_head(fitted[name], root / f"{name}.{fmt}", format=fmt) for name, fmt in cases]
    answers = run_exported_models([r.model for r in results], root / "images.npy")
    for (name, fmt), result, answer in zip(cases, results, answers):
        assert not answer["coinfeat_loaded"]
        np.testing.assert_allclose(answer["sums"], 1.0, atol=1e-3)
        labels = json.loads((root / f"{name}.{fmt}.labels.json").read_text())
        exported = [labels["classes"][i] for i in answer["argmax"]]
        predicted = [p.labels[0] for p in predict_images(photos, fitted[name], top_k=1, tta="none")]
        assert exported == predicted, (name, fmt)
        assert labels["input"]["shape"] == [None, 64, 64, 3] and labels["input"]["resize"] == "pad"
        assert len(labels["names"]) == len(labels["classes"]) == result.classes


@pytest.mark.slow
def test_int8_tflite_export_is_smaller_and_loads(heads):
    root, _, fitted = heads
    fp32 = export_head(fitted["logreg"], root / "fp32.tflite", format="tflite")
    int8 = export_head(fitted["logreg"], root / "int8.tflite", format="tflite", precision="int8")
    assert int8.size_bytes < 0.5 * fp32.size_bytes
    answer = run_exported(int8.model, root / "images.npy")
    np.testing.assert_allclose(answer["sums"], 1.0, atol=0.02)


@pytest.mark.slow
@needs_lite0
def test_exported_model_answers_as_predict_on_real_photos(tmp_path):
    from coinfeat import ExtractConfig

    config = ExtractConfig(backbone=str(LITE0), group_regex=EURO_GROUPS, progress=False)
    store = open_store(extract_features(sample_dir(), tmp_path / "s", config).store)
    assert store.manifest.crop == DEFAULT_CROP == "coin-balanced"
    test = store.items.iloc[store.rows("test")]
    photos = [str(sample_dir() / p) for p in test["path"]]
    head = fit_head(tmp_path / "s", "logreg", tmp_path / "logreg").head_dir
    predicted = [p.labels[0] for p in predict_images(photos, head, top_k=1, tta="none")]

    same = export_head(head, tmp_path / "fp32.tflite", format="tflite")
    int8 = export_head(head, tmp_path / "int8.tflite", format="tflite", precision="int8")
    assert same.precision == "fp32"
    labels = json.loads(Path(same.labels).read_text())
    assert json.loads(Path(int8.labels).read_text())["input"] == labels["input"]
    preprocess = labels["input"]  # the documented preprocessing, applied as a user would
    images = [load_image(p, 224, preprocess["resize"], crop=preprocess["crop"]) for p in photos]
    np.save(tmp_path / "images.npy", np.stack(images).astype(np.float32))
    answers = run_exported_models([same.model, int8.model], tmp_path / "images.npy")
    fp32_agree, int8_agree = (
        float(np.mean([labels["classes"][i] == p for i, p in zip(answer["argmax"], predicted)]))
        for answer in answers
    )
    assert fp32_agree >= 0.99, "the exported model is predict's extractor and head"
    print(f"int8 export agrees with fp32 predict on {int8_agree:.0%} of {len(photos)} real test photos")
    assert int8_agree >= 0.8  # int8 vectors + the same fp32 head agree on 85% here (48 photos, a weak head)


@pytest.mark.slow
def test_export_refusals_are_one_line(heads, tmp_path):
    _, _, fitted = heads
    with pytest.raises(CoinfeatError, match="k-NN searches every stored vector"):
        export_head(fitted["knn"], tmp_path / "knn.keras")
    with pytest.raises(CoinfeatError, match="--format"):
        export_head(fitted["dense"], tmp_path / "x.onnx", format="onnx")
    with pytest.raises(CoinfeatError, match="int8 export is a TFLite model"):
        export_head(fitted["dense"], tmp_path / "x.keras", format="keras", precision="int8")
    with pytest.raises(CoinfeatError, match=r"must end in \.keras"):
        export_head(fitted["dense"], tmp_path / "x.h5", format="keras")
