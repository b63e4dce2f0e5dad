"""The frozen backbone: which network and weights embed the photos, and its fingerprint.

:func:`resolve_backbone` validates the user's choice and describes it without importing
TensorFlow (so a re-run with nothing new to embed starts instantly); :func:`build_model`
builds the Keras model that maps a batch of 0..255 RGB images to one vector per image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import urllib.request
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from coinfeat.core.errors import CoinfeatError, WeightsUnavailable
from coinfeat.core.finetune_record import FinetuneRecord
from coinfeat.core.images.crop import CROP_VERSION
from coinfeat.core.images.decode import DECODER_VERSION, DEFAULT_IMAGE_SIZE
from coinfeat.core.runtime import file_hash, import_keras, keras_cache_dir, log

DEFAULT_BACKBONE = "efficientnetb0"
PRECISIONS = ("fp32", "int8")
RANDOM_SEED = 0
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/keras-applications/"
PACKAGED = "coinfeat:"
"""Prefix of a model file inside the installed package (``coinfeat:builtin/...``): records keep it
so heads and stores made with a bundled network work wherever coinfeat is installed."""
OFFLINE_FALLBACK = PACKAGED + "builtin/efficientnet_lite0_imagenet_notop.keras"
"""The ImageNet-pretrained EfficientNet-Lite0 shipped with coinfeat (Apache-2.0, builtin/NOTICE):
used when EfficientNetB0's ImageNet weights cannot be downloaded."""


@dataclass(frozen=True)
class Application:
    """A Keras application usable as a backbone, with its ImageNet no-top weights file."""

    constructor: str
    weights_file: str
    weights_md5: str | None
    preprocess: str  # how 0..255 RGB becomes the network's input: "none" | "tf" | "caffe"


APPLICATIONS = {
    "efficientnetb0": Application(
        "EfficientNetB0", "efficientnetb0_notop.h5", "50bc09e76180e00e4465e1a485ddc09d", "none"
    ),
    "mobilenetv2": Application(
        "MobileNetV2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", None, "tf"
    ),
    "resnet50": Application(
        "ResNet50",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626",
        "caffe",
    ),
}


@dataclass(frozen=True)
class BackboneSpec:
    """Everything about the backbone that changes a vector, plus what a person wants to read."""

    name: str
    weights: str
    weights_id: str
    pretrained: bool
    image_size: int
    model_file: str | None = None
    finetuned: str | None = None
    """For a backbone written by ``coinfeat fine-tune``: from what, and on which photos."""
    precision: str = "fp32"
    """``int8``: run as a TFLite full-integer model calibrated on the photos ``calibration`` hashes."""
    calibration: str | None = None

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def model_id(self) -> str:
        """Identifies the network itself (not the resizing): keys the converted-model cache."""
        ident = {"name": self.name, "weights_id": self.weights_id, "size": self.image_size}
        if self.precision != "fp32":
            ident.update(precision=self.precision, calibration=self.calibration)
        return _digest(ident)

    @property
    def label(self) -> str:
        trained = "pretrained" if self.pretrained else "NOT PRETRAINED (random weights)"
        tuned = f", {self.finetuned}" if self.finetuned else ""
        precision = f", {self.precision}" if self.precision != "fp32" else ""
        return f"{self.name} [{self.weights_id}] {self.image_size}px, {trained}{tuned}{precision}"


def _digest(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:length]


def fingerprint(spec: BackboneSpec, resize: str, crop: str = "none") -> str:
    """The extractor fingerprint: two stores may share vectors only if these are equal (stores made
    before the coin crop have ``crop="none"`` and keep their fingerprint)."""
    parts: dict[str, Any] = {
        "model": spec.model_id,
        "resize": resize,
        "decoder": DECODER_VERSION,
        "pooling": "avg",
    }
    if crop != "none":
        parts["crop"] = f"{crop}-v{CROP_VERSION}"
    return _digest(parts)


def resolve_backbone(
    backbone: str = DEFAULT_BACKBONE,
    weights: str = "imagenet",
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    precision: str = "fp32",
    calibration: str | None = None,
) -> BackboneSpec:
    """Validate a backbone choice: an application name or a ``.keras`` model file, run at
    ``precision`` (int8 needs the hash of its ``calibration`` photos)."""
    if precision not in PRECISIONS:
        raise CoinfeatError(f"--precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    spec = _resolve(backbone, weights, image_size)
    return replace(spec, precision=precision, calibration=calibration) if precision != "fp32" else spec


def _resolve(backbone: str, weights: str, image_size: int) -> BackboneSpec:
    if image_size < 32:
        raise CoinfeatError(f"--image-size {image_size} is too small; use 32 or more (224 is standard)")
    key = backbone.lower()
    if key in APPLICATIONS:
        return _resolve_application(key, weights, image_size)
    path = local_path(backbone)
    if path.suffix == ".keras":
        if not path.is_file():
            raise CoinfeatError(f"backbone model file not found: {path}")
        tuned = FinetuneRecord.beside(path)
        return BackboneSpec(
            name=path.name,
            weights="file",
            weights_id=f"sha256:{file_hash(path)[:16]}",
            pretrained=bool(tuned.pretrained) if tuned else True,
            image_size=image_size,
            model_file=portable(path),
            finetuned=tuned.summary if tuned else None,
        )
    raise CoinfeatError(
        f"unknown backbone {backbone!r}: use {', '.join(APPLICATIONS)} or a .keras model file"
    )


def _resolve_application(key: str, weights: str, image_size: int) -> BackboneSpec:
    app = APPLICATIONS[key]
    if weights.lower() == "none":
        return BackboneSpec(key, "none", f"random-seed{RANDOM_SEED}", False, image_size)
    if weights.lower() == "imagenet" and key == DEFAULT_BACKBONE and not imagenet_weights_reachable(app):
        _say_fallback_once()
        return _resolve(OFFLINE_FALLBACK, "imagenet", image_size)
    if weights.lower() == "imagenet":
        weights_id = f"imagenet:md5:{app.weights_md5}" if app.weights_md5 else f"imagenet:{app.weights_file}"
        return BackboneSpec(key, "imagenet", weights_id, True, image_size)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CoinfeatError(f"weights file not found: {path} (use imagenet, none or a path to a .h5 file)")
    if path.name == app.weights_file and app.weights_md5:
        actual = file_hash(path, "md5")
        if actual != app.weights_md5:
            raise CoinfeatError(
                f"weights file {path} has md5 {actual}, but Keras publishes {app.weights_md5} for "
                f"{app.weights_file}: the file is damaged or not that model's weights; download it again"
            )
        return BackboneSpec(key, str(path.resolve()), f"imagenet:md5:{actual}", True, image_size)
    return BackboneSpec(key, str(path.resolve()), f"sha256:{file_hash(path)[:16]}", True, image_size)


def local_path(model_file: str) -> Path:
    """A model file on this machine: ``coinfeat:...`` inside the installed package, else the path."""
    if model_file.startswith(PACKAGED):
        return Path(str(resources.files("coinfeat").joinpath(model_file.removeprefix(PACKAGED))))
    return Path(model_file).expanduser()


def portable(path: Path) -> str:
    """How a model file is recorded: ``coinfeat:...`` when it is inside the installed package (so
    records made with it work wherever coinfeat is installed), else its absolute path."""
    package = Path(str(resources.files("coinfeat"))).resolve()
    path = path.resolve()
    return PACKAGED + path.relative_to(package).as_posix() if path.is_relative_to(package) else str(path)


def imagenet_weights_reachable(app: Application) -> bool:
    """Whether Keras can have the ImageNet weights: already in its cache, or downloadable now (a
    quick look at the server; ``COINFEAT_OFFLINE=1`` says no without looking)."""
    if (keras_cache_dir() / app.weights_file).is_file():
        return True
    if os.environ.get("COINFEAT_OFFLINE") == "1":
        return False
    try:
        request = urllib.request.Request(KERAS_WEIGHTS_URL + app.weights_file, method="HEAD")
        with urllib.request.urlopen(request, timeout=5):
            return True
    except OSError:
        return False


_FALLBACK_SAID = False


def _say_fallback_once() -> None:
    global _FALLBACK_SAID
    if not _FALLBACK_SAID:
        _FALLBACK_SAID = True
        log.warning(
            "EfficientNetB0's ImageNet weights cannot be downloaded here (no internet?): using the bundled "
            "ImageNet-pretrained EfficientNet-Lite0 instead (real pretrained features; figures are "
            "Lite0's). --weights PATH uses B0's weights file; --weights none, random weights."
        )


def build_model(spec: BackboneSpec):
    """Build the frozen Keras model: (batch, S, S, 3) float 0..255 -> (batch, D) float32."""
    model = assemble(spec, base_network(spec))
    model.trainable = False
    return model


def base_network(spec: BackboneSpec):
    """The backbone's own network (the application, or the model in the file), before any
    preprocessing and pooling: what fine-tuning splits into a frozen and a trained part."""
    keras = import_keras()
    keras.utils.set_random_seed(RANDOM_SEED)
    if spec.model_file:
        return keras.models.load_model(local_path(spec.model_file), compile=False)
    return _application(spec, keras)


def assemble(spec: BackboneSpec, base):
    """0..255 RGB images -> the backbone's preprocessing -> ``base`` -> average pooling."""
    keras = import_keras()
    inputs = image_input(spec)
    features = base(preprocess(spec, inputs))
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name="avg_pool_vector")(features)
    if len(features.shape) != 2:
        raise CoinfeatError(
            f"backbone {spec.name} outputs shape {features.shape}; need a feature map or vector"
        )
    return keras.Model(inputs, features, name=f"coinfeat_{spec.name.removesuffix('.keras')}")


def _application(spec: BackboneSpec, keras):
    app = APPLICATIONS[spec.name]
    constructor = getattr(keras.applications, app.constructor)
    weights = None if spec.weights == "none" else spec.weights
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras prints "Downloading data from" on stdout
            return constructor(include_top=False, weights=weights, input_shape=(spec.image_size,) * 2 + (3,))
    except Exception as exc:
        if spec.weights == "imagenet" and "fetch" in str(exc).lower():
            raise WeightsUnavailable(weights_download_help(spec.name)) from None
        if spec.weights not in ("none", "imagenet"):
            raise CoinfeatError(f"cannot load weights {spec.weights} into {spec.name}: {exc}") from None
        raise


def weights_download_help(name: str) -> str:
    app = APPLICATIONS[name]
    return (
        f"could not download the ImageNet weights for {name} (no internet?): fetch "
        f"{KERAS_WEIGHTS_URL}{app.weights_file} on a connected machine and pass --weights PATH "
        f"(or copy it into {keras_cache_dir()}), or use --weights none for untrained features"
    )


def image_input(spec: BackboneSpec):
    """The Keras input every coinfeat network takes: (S, S, 3) RGB, float 0..255."""
    size = spec.image_size
    return import_keras().Input((size, size, 3), name="rgb_0_255")


def preprocess(spec: BackboneSpec, inputs):
    """The backbone's own preprocessing of 0..255 images (none for EfficientNet and model files,
    whose networks rescale inside)."""
    mode = "none" if spec.model_file else APPLICATIONS[spec.name].preprocess
    return _preprocess(inputs, mode, import_keras())


def _preprocess(inputs, mode: str, keras):
    if mode == "tf":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_minus1_1")(inputs)
    if mode == "caffe":
        return keras.applications.resnet50.preprocess_input(inputs)
    return inputs
