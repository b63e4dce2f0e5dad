"""``coinfeat export``: one self-contained model file per head, for a phone app or a small server.

The file maps a batch of square RGB images (float 0..255, NHWC, the size the head's extractor
uses) to class probabilities: the head's own backbone and pooling, then the head expressed as
Keras layers. Dense heads are Keras already; logistic regression becomes standardisation + one
dense softmax layer, and the centroid head unit normalisation + one dense layer of centroids +
softmax, both exactly. An int8 TFLite export quantizes the backbone and keeps the head float.
k-NN heads are refused: they search every stored vector, which is a
database rather than a layer. ``FILE.labels.json`` beside it names the classes and the
preprocessing, so no coinfeat is needed to use it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.extraction.backbones import PRECISIONS, build_model
from coinfeat.core.extraction.embedder import Embedder
from coinfeat.core.extraction.engines import convert_to_tflite
from coinfeat.core.extraction.quantize import calibration_loader, calibration_sample
from coinfeat.core.heads import ExtractorRecord, Head, load_head
from coinfeat.core.options import resolve
from coinfeat.core.runtime import import_keras
from coinfeat.core.store import atomic_write, open_store

FORMATS = ("keras", "tflite")


@dataclass(kw_only=True)
class ExportResult:
    model: str
    labels: str
    format: str
    precision: str
    size_bytes: int
    classes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExportConfig:
    """The model file's format (Keras or TFLite) and, for TFLite, its precision."""

    format: str = "keras"
    precision: str | None = None
    """None: the precision of the head's own extractor, so the file answers as ``predict`` does."""

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise CoinfeatError(f"--format {self.format!r}: choose from {', '.join(FORMATS)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise CoinfeatError(f"--precision {self.precision!r}: choose from {', '.join(PRECISIONS)}")
        if self.precision == "int8" and self.format != "tflite":
            raise CoinfeatError("int8 export is a TFLite model: use --format tflite")


def export_head(
    head_dir: str | Path, out: str | Path, config: ExportConfig | None = None, **options: Any
) -> ExportResult:
    """Write backbone + pooling + head as one model file ``out`` and ``out.labels.json``; options
    are :class:`ExportConfig`'s."""
    cfg = resolve(ExportConfig, config, options)
    head = load_head(head_dir)
    record = head.meta.extractor(head_dir)
    spec = Embedder(record).spec
    fmt, precision = cfg.format, cfg.precision or spec.precision
    if precision == "int8" and fmt != "tflite":
        raise CoinfeatError(
            "this head learned from int8 vectors: export --format tflite (int8, as predict runs it), or "
            "--precision fp32 to export a float model that will not always agree with predict"
        )
    keras = import_keras()
    backbone = build_model(spec)
    model = keras.Model(backbone.input, head.to_keras(keras)(backbone.output), name="coinfeat_export")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "keras":
        if out.suffix != ".keras":
            raise CoinfeatError(f"a Keras model file must end in .keras: {out}")
        model.save(out)
    else:
        calibration = _calibration(record, spec) if precision == "int8" else None
        convert_to_tflite(model, out, calibration, float_head=True)
    labels = Path(f"{out}.labels.json")
    atomic_write(labels, json.dumps(_labels(head, record, spec, fmt, precision), indent=2))
    return ExportResult(
        model=str(out),
        labels=str(labels),
        format=fmt,
        precision=precision,
        size_bytes=out.stat().st_size,
        classes=len(head.classes_),
    )


def _calibration(record: ExtractorRecord, spec) -> np.ndarray:
    """The photos an int8 export calibrates on: the head store's own int8 sample, or a sample of
    its train photos."""
    sample = record.int8
    if sample is None:
        try:
            store = open_store(record.store or "")
        except CoinfeatError:
            raise CoinfeatError(
                "an int8 export calibrates on the head's train photos, but its feature store is gone; "
                "export fp32, or fit the head again"
            ) from None
        sample = {**calibration_sample(store.items), "root": store.manifest.dataset.root}
    return calibration_loader(sample["root"], sample, spec.image_size, record.resize, record.crop)()[0]


def _labels(head: Head, record: ExtractorRecord, spec, fmt: str, precision: str) -> dict[str, Any]:
    names = head.meta.label_names
    return {
        "classes": head.classes_.tolist(),
        "names": [names.get(c, c) for c in head.classes_],
        "input": {
            "shape": [None, spec.image_size, spec.image_size, 3],
            "dtype": "float32",
            "range": "RGB 0..255 (no scaling: the model normalises inside)",
            "resize": record.resize,
            "resize_note": "pad: pad the photo to a square with its border colour, then resize; crop: "
            "centre square; stretch: resize as is",
            "crop": record.crop,
            "crop_note": "applied before resize. coin: find the coin the photo is centred on and crop "
            "to its rim plus 4% (coinfeat.core.images.crop.frame(img, 'coin'), or "
            "coinfeat.core.images.model_input.load_image(path, size, resize, crop=...) for the whole "
            "preprocessing); coin-balanced: "
            "each channel of the photo scaled so its mean is grey (coinfeat.core.images.crop.grey_world), "
            "then the coin crop; coin-masked: the coin crop with the outside painted grey; none: the photo "
            "as it is",
        },
        "output": "probabilities, one column per class in 'classes' order",
        "head": head.name,
        "backbone": spec.label,
        "format": fmt,
        "precision": precision,
        "pretrained": bool(record.pretrained),
        "fingerprint": record.fingerprint,
    }
