"""Backbone choice, weights handling, and the TFLite engine's equality with Keras."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import EURO, LITE0, SMALL, needs_euro, needs_lite0

from coinfeat.core.errors import CoinfeatError, WeightsUnavailable
from coinfeat.core.extraction import engines
from coinfeat.core.extraction.backbones import APPLICATIONS, build_model, fingerprint, resolve_backbone
from coinfeat.core.extraction.engines import KerasEngine, cosine_rows, open_engine, tflite_cache_paths
from coinfeat.core.images.model_input import load_image


def test_fingerprint_covers_what_changes_a_vector(tmp_path):
    base = resolve_backbone("efficientnetb0", "none", image_size=224)
    assert fingerprint(base, "pad") == fingerprint(
        resolve_backbone("efficientnetb0", "none", image_size=224), "pad"
    )
    others = {
        fingerprint(base, "crop"),
        fingerprint(resolve_backbone("efficientnetb0", "none", image_size=192), "pad"),
        fingerprint(resolve_backbone("mobilenetv2", "none", image_size=224), "pad"),
        fingerprint(resolve_backbone("efficientnetb0", "imagenet", image_size=224), "pad"),
    }
    assert fingerprint(base, "pad") not in others and len(others) == 4
    assert base.pretrained is False and "NOT PRETRAINED" in base.label


def test_bad_backbone_choices_are_clear_errors(tmp_path):
    with pytest.raises(CoinfeatError, match="unknown backbone"):
        resolve_backbone("vgg99")
    with pytest.raises(CoinfeatError, match="weights file not found"):
        resolve_backbone("efficientnetb0", str(tmp_path / "w.h5"))
    with pytest.raises(CoinfeatError, match="model file not found"):
        resolve_backbone(str(tmp_path / "mine.keras"))
    with pytest.raises(CoinfeatError, match="too small"):
        resolve_backbone("efficientnetb0", "none", image_size=16)


def test_standard_weights_file_with_wrong_md5_is_refused(tmp_path):
    fake = tmp_path / APPLICATIONS["efficientnetb0"].weights_file
    fake.write_bytes(b"not the real weights")
    with pytest.raises(CoinfeatError, match="md5"):
        resolve_backbone("efficientnetb0", str(fake))


@pytest.mark.slow
def test_local_weights_file_is_loaded(tmp_path):
    spec = resolve_backbone("efficientnetb0", "none", image_size=SMALL)
    model = build_model(spec)
    path = tmp_path / "my_b0.weights.h5"
    model.layers[-2].save_weights(path)  # the EfficientNetB0 sub-model
    local = resolve_backbone("efficientnetb0", str(path), image_size=SMALL)
    assert local.pretrained and local.weights_id.startswith("sha256:")
    x = np.random.default_rng(0).uniform(0, 255, (2, SMALL, SMALL, 3)).astype(np.float32)
    np.testing.assert_allclose(
        build_model(local).predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4
    )


@pytest.mark.slow
def test_download_failure_names_the_fix(monkeypatch):
    import keras

    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: Name or service not known")

    monkeypatch.setattr(keras.applications, "EfficientNetB0", offline)
    monkeypatch.setattr("coinfeat.core.extraction.backbones.imagenet_weights_reachable", lambda app: True)
    with pytest.raises(WeightsUnavailable, match="--weights PATH"):
        build_model(resolve_backbone("efficientnetb0", "imagenet", image_size=SMALL))


def test_keras_model_file_with_feature_map_output(tmp_path):
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(7, 3, strides=2)(x)
    path = tmp_path / "tiny.keras"
    keras.Model(inputs, x).save(path)
    spec = resolve_backbone(str(path), image_size=SMALL)
    model = build_model(spec)
    assert model.output_shape == (None, 7)
    assert spec.weights_id.startswith("sha256:")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dim"), [("mobilenetv2", 1280), ("resnet50", 2048)])
def test_other_applications_take_0_255_input(name, dim):
    model = build_model(resolve_backbone(name, "none", image_size=SMALL))
    assert model.output_shape == (None, dim)


@pytest.mark.slow
def test_converted_model_is_cached_and_reused(monkeypatch):
    spec = resolve_backbone("efficientnetb0", "none", image_size=SMALL)
    first = open_engine(spec, "auto")
    model_path, record_path = tflite_cache_paths(spec)
    assert model_path.exists() and json.loads(record_path.read_text())["min_cosine"] >= 0.9999

    def no_conversion(*a, **k):
        raise AssertionError("the cached conversion should be reused")

    monkeypatch.setattr(engines, "convert_to_tflite", no_conversion)
    again = open_engine(spec, "tflite")
    x = engines.synthetic_probe(SMALL, 6)
    assert cosine_rows(first.embed(x), again.embed(x)).min() > 0.99999


@pytest.mark.slow
def test_auto_falls_back_to_keras_when_tflite_disagrees(monkeypatch):
    spec = resolve_backbone("efficientnetb0", "none", image_size=SMALL)
    open_engine(spec, "tflite")
    _, record_path = tflite_cache_paths(spec)
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "min_cosine": 0.5}))
    try:
        assert open_engine(spec, "auto").name == "keras"
        with pytest.raises(CoinfeatError, match="disagrees"):
            open_engine(spec, "tflite")
    finally:
        record_path.write_text(json.dumps(record))


def test_coinfeat_engine_says_what_auto_means_on_this_machine(monkeypatch):
    spec = resolve_backbone("efficientnetb0", "none", image_size=SMALL)
    monkeypatch.setenv(engines.ENGINE_ENV, "keras")
    assert open_engine(spec, "auto").name == "keras"
    monkeypatch.setenv(engines.ENGINE_ENV, "fast")
    with pytest.raises(CoinfeatError, match=r"\$COINFEAT_ENGINE='fast'"):
        open_engine(spec, "auto")
    assert open_engine(spec, "keras").name == "keras", "an explicit engine does not ask"


def _euro_photos(n: int, size: int) -> np.ndarray:
    files = sorted(EURO.rglob("*.jpg"))[:: max(1, 2830 // n)][:n]
    return np.stack([load_image(f, size) for f in files])


@pytest.mark.slow
@needs_euro
@pytest.mark.parametrize(
    "backbone",
    ["efficientnetb0", pytest.param(str(LITE0), marks=needs_lite0, id="pretrained-lite0")],
)
def test_tflite_equals_keras_on_real_photos(backbone):
    spec = resolve_backbone(backbone, "none" if backbone == "efficientnetb0" else "imagenet", image_size=224)
    photos = _euro_photos(12, 224)
    tflite = open_engine(spec, "tflite", probe=photos)
    keras_vectors = KerasEngine(build_model(spec)).embed(photos)
    assert cosine_rows(tflite.embed(photos), keras_vectors).min() >= 0.9999


@pytest.mark.slow
@needs_euro
@needs_lite0
def test_dividing_by_255_would_change_pretrained_features():
    """The pipeline feeds 0..255; a /255 input gives clearly different (wrong) vectors."""
    model = build_model(resolve_backbone(str(LITE0), image_size=224))
    photos = _euro_photos(6, 224)
    assert photos.max() > 200
    right = model.predict(photos, verbose=0)
    wrong = model.predict(photos / 255.0, verbose=0)
    assert cosine_rows(right, wrong).max() < 0.9


def test_offline_the_default_backbone_is_the_bundled_pretrained_lite0(monkeypatch, caplog, tmp_path):
    import logging

    from coinfeat.core.extraction import backbones

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # nothing cached
    monkeypatch.setenv("COINFEAT_OFFLINE", "1")
    monkeypatch.setattr(backbones, "_FALLBACK_SAID", False)
    with caplog.at_level(logging.WARNING, logger="coinfeat"):
        spec = resolve_backbone("efficientnetb0", "imagenet")
        again = resolve_backbone("efficientnetb0", "imagenet")
    assert spec == again and spec.pretrained and spec.name == "efficientnet_lite0_imagenet_notop.keras"
    assert spec.model_file == "coinfeat:builtin/efficientnet_lite0_imagenet_notop.keras", "portable"
    assert backbones.local_path(spec.model_file).is_file()
    said = [r.message for r in caplog.records if "bundled" in r.message]
    assert len(said) == 1 and "EfficientNet-Lite0" in said[0], "said once, plainly"
    assert not resolve_backbone("efficientnetb0", "none").pretrained, "random weights only when asked"


def test_with_the_weights_in_keras_cache_the_default_stays_b0(monkeypatch, tmp_path):
    from coinfeat.core.extraction import backbones

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "efficientnetb0_notop.h5").write_bytes(b"cached")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("COINFEAT_OFFLINE", "1")
    spec = backbones.resolve_backbone("efficientnetb0", "imagenet")
    assert spec.name == "efficientnetb0" and spec.weights == "imagenet"
