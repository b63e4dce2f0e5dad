"""Inference engines: run the frozen backbone on decoded batches (the pipeline's mapper).

Two engines compute the same function: Keras ``predict`` and TFLite with the XNNPACK
delegate, converted from the Keras model. The conversion is cached per model in the user
cache directory together with a verification record (cosine agreement with Keras on real
images, and both engines' measured speed); ``auto`` picks the fastest engine verified equal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from coinfeat.backbones import BackboneSpec, build_model
from coinfeat.errors import CoinfeatError
from coinfeat.runtime import cache_dir, default_threads, import_tensorflow, log, quiet_native_output
from coinfeat.store.atomic import atomic_write

ENGINES = ("auto", "tflite", "keras")
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


def convert_to_tflite(model, path: Path) -> None:
    """Convert a Keras model to a float32 TFLite file, written atomically."""
    tf = import_tensorflow()
    started = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with quiet_native_output():
        blob = converter.convert()
    atomic_write(path, blob)
    log.info("converted backbone to TFLite in %.1fs -> %s", time.perf_counter() - started, path)


def verify(keras_engine: KerasEngine, tflite_engine: TFLiteEngine, probe: np.ndarray) -> Verification:
    """Compare both engines on ``probe`` (timed after one warm-up call each)."""
    timings = {}
    outputs = {}
    for engine in (keras_engine, tflite_engine):
        engine.embed(probe)
        started = time.perf_counter()
        outputs[engine.name] = engine.embed(probe)
        timings[engine.name] = (time.perf_counter() - started) * 1000 / len(probe)
    cos = cosine_rows(outputs["keras"].reshape(len(probe), -1), outputs["tflite"].reshape(len(probe), -1))
    return Verification(float(cos.min()), timings["keras"], timings["tflite"], len(probe))


@dataclass(frozen=True)
class Network:
    """A frozen Keras network to run on 0..255 images: the whole backbone, or a part of it (the
    lower blocks that fine-tuning caches). ``model_id`` keys its converted-model cache."""

    name: str
    model_id: str
    image_size: int
    build: Callable[[], Any]

    @classmethod
    def backbone(cls, spec: BackboneSpec) -> Network:
        return cls(spec.name, spec.model_id, spec.image_size, lambda: build_model(spec))


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
