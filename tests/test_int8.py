"""int8 extraction: calibrated on the dataset's own photos, verified against fp32, never mixed with it."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_config, write_class_folders

from coinfeat import extract_features, open_store
from coinfeat.core.errors import CoinfeatError, FingerprintMismatch
from coinfeat.core.extraction.quantize import calibration_sample
from coinfeat.fit import fit_head
from coinfeat.predict import predict_images

pytestmark = pytest.mark.slow  # fine-tuning and int8 conversions take minutes


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    data = write_class_folders(root / "d", per_class=10)
    fp32 = extract_features(data, root / "fp32", tiny_config())
    int8 = extract_features(data, root / "int8", tiny_config(precision="int8", calibration=8))
    return root, data, fp32, int8


def test_int8_store_says_so_keeps_its_calibration_and_is_verified(stores):
    root, _, fp32, int8 = stores
    manifest = open_store(root / "int8").manifest.to_dict()
    assert manifest["precision"] == "int8" and manifest["backbone"]["precision"] == "int8"
    sample = manifest["int8"]
    assert len(sample["calibration"]) == 8 and not set(sample["calibration"]) & set(sample["held_out"])
    check = sample["verification"]
    assert check["calibration_images"] == 8 and check["held_out_images"] == len(sample["held_out"])
    assert 0.9 < check["min_cosine"] <= check["median_cosine"] <= 1.0
    assert int8.fingerprint != fp32.fingerprint and "int8" in int8.backbone
    assert any(note.startswith("int8: cosine to fp32") for note in int8.notes)
    a, b = open_store(root / "fp32"), open_store(root / "int8")
    assert list(a.items["path"]) == list(b.items["path"])


def test_int8_and_fp32_vectors_never_mix(stores):
    root, data, _, _ = stores
    again = extract_features(data, root / "int8", tiny_config(precision="int8", calibration=8))
    assert again.embedded == 0 and again.reused == again.total
    with pytest.raises(FingerprintMismatch):
        extract_features(data, root / "int8", tiny_config())
    with pytest.raises(FingerprintMismatch):
        extract_features(data, root / "int8", tiny_config(precision="int8", calibration=5))


def test_predict_rebuilds_the_same_int8_model_from_its_calibration_photos(stores, tmp_path, monkeypatch):
    root, data, _, _ = stores
    head = fit_head(root / "int8", "logreg", tmp_path / "head")
    photos = [str(data / "gold" / "gold0_0.jpg"), str(data / "silver" / "silver1_1.jpg")]
    cached = predict_images(photos, head.head_dir, top_k=3, tta="none")
    monkeypatch.setenv("COINFEAT_CACHE_DIR", str(tmp_path / "another-machine"))
    rebuilt = predict_images(photos, head.head_dir, top_k=3, tta="none")
    for a, b in zip(cached, rebuilt):
        assert a.labels == b.labels
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-3)


def test_int8_needs_tflite_and_train_photos(stores, tmp_path):
    _, data, _, _ = stores
    with pytest.raises(CoinfeatError, match="TFLite engine only"):
        extract_features(data, tmp_path / "k", tiny_config(precision="int8", engine="keras", calibration=4))
    with pytest.raises(CoinfeatError, match="--precision"):
        extract_features(data, tmp_path / "x", tiny_config(precision="int4"))


def test_calibration_sample_is_seeded_and_uses_train_photos_only(stores):
    root, _, _, _ = stores
    items = open_store(root / "fp32").items
    first, again = calibration_sample(items, 6, seed=0), calibration_sample(items, 6, seed=0)
    assert first == again and first["hash"] != calibration_sample(items, 6, seed=1)["hash"]
    train = set(items.loc[items["split"] == "train", "path"])
    assert set(first["calibration"]) <= train and set(first["held_out"]) <= train


def test_compare_shows_fp32_and_int8_side_by_side(stores, tmp_path):
    import json

    from coinfeat.compare import CompareConfig, compare_heads
    from coinfeat.compare.report import write_report

    root, _, _, _ = stores
    config = CompareConfig(heads=["logreg", "centroid"], top_k=[1], versus=str(root / "int8"))
    comparison = compare_heads(root / "fp32", config)
    assert comparison.versus is not None and comparison.versus.store.manifest.precision == "int8"
    write_report(comparison, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "Side by side on the same test photos" in report and "int8" in report
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["versus"]["heads"]) == {"logreg", "centroid"}
    other = write_class_folders(tmp_path / "other", per_class=6)
    extract_features(other, tmp_path / "other-store", tiny_config())
    with pytest.raises(CoinfeatError, match="same test photos"):
        compare_heads(root / "fp32", CompareConfig(heads=["centroid"], versus=str(tmp_path / "other-store")))


def test_fine_tune_of_an_int8_store_stays_int8(stores, tmp_path):
    from coinfeat.core.heads import load_head
    from coinfeat.finetune import ACTIVATIONS, FinetuneConfig, finetune

    root, data, _, _ = stores
    config = FinetuneConfig(
        views=1, epochs=1, batch_size=8, progress=False, embed_out=str(tmp_path / "tuned")
    )
    result = finetune(root / "int8", tmp_path / "ft", config)
    cache = open_store(root / "int8" / ACTIVATIONS / result.cut)
    assert cache.manifest.backbone["precision"] == "int8"
    tuned = open_store(result.store)
    assert tuned.manifest.precision == "int8" and "fine-tuned" in tuned.manifest.backbone["finetuned"]
    assert load_head(result.head_dir).meta.features.fingerprint == tuned.fingerprint
    [answer] = predict_images([str(data / "gold" / "gold0_0.jpg")], result.head_dir, top_k=1, tta="none")
    assert answer.error is None


def test_export_of_a_head_fitted_on_int8_vectors_is_int8_by_default(stores, tmp_path):
    from coinfeat.export import export_head

    root, _, _, _ = stores
    head = fit_head(root / "int8", "centroid", tmp_path / "head").head_dir
    with pytest.raises(CoinfeatError, match="learned from int8 vectors"):
        export_head(head, tmp_path / "x.keras")
    result = export_head(head, tmp_path / "x.tflite", format="tflite")
    assert result.precision == "int8"
    assert export_head(head, tmp_path / "f.tflite", format="tflite", precision="fp32").precision == "fp32"
