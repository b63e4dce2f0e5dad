"""Inference engines: run the frozen backbone on decoded batches (the pipeline's mapper).

Two engines compute the same function: Keras ``predict`` and TFLite with the XNNPACK
delegate, converted from the Keras model. The conversion is cached per model in the user
cache directory together with a verification record (cosine agreement with Keras on real
images, and both engines' measured speed); ``auto`` picks the fastest engine verified equal.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.extraction.backbones import BackboneSpec, build_model
from coinfeat.core.runtime import cache_dir, default_threads, import_tensorflow, log, quiet_native_output
from coinfeat.core.store.atomic import atomic_write

ENGINES = ("auto", "tflite", "keras")
ENGINE_ENV = "COINFEAT_ENGINE"
"""Set to ``keras`` or ``tflite`` to make ``auto`` mean that engine on this machine (skips the
one-off TFLite conversion of each new model when set to keras; int8 stays on TFLite)."""
EQUAL_COSINE = 0.9999


class Engine(Protocol):
    name: str

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) float32 0..255 -> (B, D) float32."""


class KerasEngine:
    name = "keras"

    def __init__(self, model) -> None:
        self.model = model

    def embed(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(images, batch_size=len(images), verbose=0), dtype=np.float32)


TFLITE_BATCH = 4
"""Images per TFLite invoke: measured fastest here (7.0 ms/image at 4 vs 9.3 at 32 on 2 cores)."""


def interpreter_class():
    """LiteRT's interpreter (imports in ~0.1 s) or, without it, TensorFlow's deprecated one."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return import_tensorflow().lite.Interpreter
    return Interpreter


class TFLiteEngine:
    """A TFLite interpreter with a fixed invoke size; short chunks are padded."""

    name = "tflite"

    def __init__(self, model_path: Path, batch_size: int = TFLITE_BATCH, threads: int | None = None) -> None:
        self.batch_size = batch_size
        interpreter = interpreter_class()
        with quiet_native_output():
            self.interpreter = interpreter(
                model_path=str(model_path), num_threads=threads or default_threads()
            )
            inp = self.interpreter.get_input_details()[0]
            self._input = inp["index"]
            self.interpreter.resize_tensor_input(self._input, [batch_size, *inp["shape"][1:]])
            self.interpreter.allocate_tensors()
        self._output = self.interpreter.get_output_details()[0]["index"]

    def embed(self, images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                pad = np.zeros((self.batch_size - n, *chunk.shape[1:]), dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
            self.interpreter.set_tensor(self._input, np.ascontiguousarray(chunk, dtype=np.float32))
            self.interpreter.invoke()
            out.append(self.interpreter.get_tensor(self._output)[:n].copy())
        return np.concatenate(out).astype(np.float32, copy=False)


@dataclass
class Verification:
    """How a converted model compared with Keras on a probe batch of real images."""

    min_cosine: float
    keras_ms_per_image: float
    tflite_ms_per_image: float
    probe_images: int

    @property
    def equal(self) -> bool:
        return self.min_cosine >= EQUAL_COSINE

    @property
    def tflite_faster(self) -> bool:
        return self.tflite_ms_per_image < self.keras_ms_per_image


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows; two all-zero rows count as equal."""
    num = np.sum(a * b, axis=1, dtype=np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = den == 0
    return np.where(both_zero, 1.0, num / np.where(both_zero, 1.0, den))


def tflite_cache_paths(spec: BackboneSpec | Network) -> tuple[Path, Path]:
    """Where the converted model and its verification record live (keyed by model and TF version)."""
    tf_version = metadata.version("tensorflow")
    folder = cache_dir() / "tflite"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{spec.model_id}-tf{tf_version}"
    return folder / f"{stem}.tflite", folder / f"{stem}.json"


def convert_to_tflite(
    model, path: Path, calibration: np.ndarray | None = None, float_head: bool = False
) -> None:
    """Convert a Keras model to a TFLite file, written atomically: float32, or with
    ``calibration`` images full-integer int8 inside (float input and output); with ``float_head``
    a classifier head on top stays float (see :func:`_convert_float_head`)."""
    tf = import_tensorflow()
    started = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.float32
    try:
        with quiet_native_output():
            head_stays_float = float_head and calibration is not None
            blob = (
                _convert_float_head(tf, converter, calibration) if head_stays_float else converter.convert()
            )
    except Exception as exc:
        if calibration is None:
            raise
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CoinfeatError(
            f"the TFLite converter cannot quantize this model to int8 ({reason}); use --precision fp32"
        ) from None
    atomic_write(path, blob)
    kind = "int8" if calibration is not None else "float32"
    log.info("converted backbone to TFLite (%s) in %.1fs -> %s", kind, time.perf_counter() - started, path)


def _convert_float_head(tf, converter, calibration: np.ndarray) -> bytes:
    """Quantize every op but the head's (fully connected, softmax, normalisation): the head's
    logits amplify int8 rounding far more than the backbone's pooled features do."""
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=["FULLY_CONNECTED", "SOFTMAX", "L2_NORMALIZATION"]
    )
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=lambda: ([image[None]] for image in calibration[:8]),
        debug_options=options,
    )
    return debugger.get_nondebug_quantized_model()


def verify(keras_engine: KerasEngine, tflite_engine: TFLiteEngine, probe: np.ndarray) -> Verification:
    """Compare both engines on ``probe`` (timed after one warm-up call each)."""
    cos, keras_ms, tflite_ms = compare_engines(keras_engine, tflite_engine, probe)
    return Verification(float(cos.min()), keras_ms, tflite_ms, len(probe))


def compare_engines(
    reference: Engine, candidate: Engine, probe: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """(cosine per image, reference ms/image, candidate ms/image), each timed after a warm-up call."""
    timings, outputs = [], []
    for engine in (reference, candidate):
        engine.embed(probe)
        started = time.perf_counter()
        outputs.append(engine.embed(probe).reshape(len(probe), -1))
        timings.append((time.perf_counter() - started) * 1000 / len(probe))
    return cosine_rows(*outputs), timings[0], timings[1]


@dataclass(frozen=True)
class Network:
    """A frozen Keras network to run on 0..255 images: the whole backbone, or a part of it (the
    lower blocks that fine-tuning caches). ``model_id`` keys its converted-model cache."""

    name: str
    model_id: str
    image_size: int
    build: Callable[[], Any]
    precision: str = "fp32"
    calibration: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    """int8: loads (calibration images, held-out images to verify against fp32)."""

    @classmethod
    def backbone(cls, spec: BackboneSpec, calibration=None) -> Network:
        return cls(
            spec.name, spec.model_id, spec.image_size, lambda: build_model(spec), spec.precision, calibration
        )


def open_engine(
    spec: BackboneSpec | Network,
    kind: str = "auto",
    threads: int | None = None,
    probe: np.ndarray | None = None,
) -> Engine:
    """Open the engine to run a backbone (or a :class:`Network`) with; ``probe`` (real decoded
    images) verifies a new conversion."""
    if kind not in ENGINES:
        raise CoinfeatError(f"unknown engine {kind!r}; choose from {', '.join(ENGINES)}")
    network = spec if isinstance(spec, Network) else Network.backbone(spec)
    threads = threads or default_threads()
    if network.precision == "int8":
        return _open_int8(network, kind, threads)
    if kind == "auto":
        kind = preferred_engine()
    if kind == "keras":
        return KerasEngine(network.build())
    model_path, record_path = tflite_cache_paths(network)
    record = _read_record(record_path) if model_path.exists() else None
    keras_engine = None
    if record is None:
        model = network.build()
        keras_engine = KerasEngine(model)
        convert_to_tflite(model, model_path)
        if probe is None or len(probe) == 0:
            probe = synthetic_probe(network.image_size)
        tfl = TFLiteEngine(model_path, TFLITE_BATCH, threads)
        record = verify(keras_engine, tfl, probe)
        atomic_write(record_path, json.dumps(record.__dict__, indent=2).encode())
        log.info(
            "TFLite vs Keras: min cosine %.6f, %.1f vs %.1f ms/image",
            record.min_cosine,
            record.tflite_ms_per_image,
            record.keras_ms_per_image,
        )
    if kind == "tflite":
        if not record.equal:
            raise CoinfeatError(
                f"the TFLite conversion of {network.name} disagrees with Keras (min cosine "
                f"{record.min_cosine:.5f} < {EQUAL_COSINE}); use --engine keras"
            )
        return TFLiteEngine(model_path, TFLITE_BATCH, threads)
    if record.equal and record.tflite_faster:
        return TFLiteEngine(model_path, TFLITE_BATCH, threads)
    log.warning("using the Keras engine (TFLite %s)", "is slower" if record.equal else "disagrees")
    return keras_engine or KerasEngine(network.build())


def preferred_engine() -> str:
    """What ``auto`` means here: ``$COINFEAT_ENGINE`` when set, else auto (fastest verified)."""
    chosen = os.environ.get(ENGINE_ENV, "auto").strip().lower() or "auto"
    if chosen not in ENGINES:
        raise CoinfeatError(f"${ENGINE_ENV}={chosen!r}: choose from {', '.join(ENGINES)}")
    return chosen


@dataclass
class Int8Verification:
    """How an int8 conversion compares with the fp32 network on held-out photos of the dataset."""

    median_cosine: float
    min_cosine: float
    held_out_images: int
    calibration_images: int
    fp32_ms_per_image: float
    int8_ms_per_image: float


def _open_int8(network: Network, kind: str, threads: int) -> Engine:
    """The int8 TFLite model of ``network``: converted once (calibrated on the dataset's photos),
    verified against fp32 on held-out photos, and cached with that record."""
    if kind == "keras":
        raise CoinfeatError("int8 runs on the TFLite engine only: use --engine auto or tflite")
    model_path, record_path = tflite_cache_paths(network)
    if not (model_path.exists() and record_path.exists()):
        if network.calibration is None:
            raise CoinfeatError(
                f"the int8 model of {network.name} is not cached and no calibration photos are known"
            )
        calibrate, held = network.calibration()
        model = network.build()
        convert_to_tflite(model, model_path, calibrate)
        int8 = TFLiteEngine(model_path, TFLITE_BATCH, threads)
        cos, fp32_ms, int8_ms = compare_engines(KerasEngine(model), int8, held)
        verified = Int8Verification(
            float(np.median(cos)), float(cos.min()), len(held), len(calibrate), fp32_ms, int8_ms
        )
        atomic_write(record_path, json.dumps(verified.__dict__, indent=2))
        log.info(
            "int8 vs fp32 on %d held-out photos: median cosine %.4f, min %.4f",
            len(held),
            verified.median_cosine,
            verified.min_cosine,
        )
        return int8
    return TFLiteEngine(model_path, TFLITE_BATCH, threads)


def int8_record(spec: BackboneSpec) -> dict | None:
    """The verification record of a cached int8 conversion (None if not converted here yet)."""
    _, record_path = tflite_cache_paths(Network.backbone(spec))
    try:
        return json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None


def synthetic_probe(size: int, n: int = 8) -> np.ndarray:
    """Smooth seeded images (gradients and discs) for when no real image is at hand."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        cx, cy, r = [*rng.uniform(0.3, 0.7, 2).tolist(), rng.uniform(0.2, 0.4)]
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r**2)[..., None]
        base = np.stack([xx, yy, 1 - xx], axis=-1) * rng.uniform(50, 255, 3)
        images.append(np.where(disc, rng.uniform(0, 255, 3), base))
    return np.asarray(images, dtype=np.float32)


def _read_record(path: Path) -> Verification | None:
    try:
        return Verification(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
