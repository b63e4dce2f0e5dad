"""Embed individual photos with the exact extractor that made a store (for predict and similar).

The extractor is rebuilt from a store or head manifest and must reproduce its fingerprint; a
query is never embedded by a different network than the vectors it is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coinfeat.core.errors import CoinfeatError, DecodeError, FingerprintMismatch
from coinfeat.core.extraction.backbones import BackboneSpec, fingerprint, resolve_backbone
from coinfeat.core.extraction.engines import Engine, Network, open_engine
from coinfeat.core.extraction.quantize import calibration_loader
from coinfeat.core.heads.record import ExtractorRecord
from coinfeat.core.images.decode import DEFAULT_MAX_PIXELS
from coinfeat.core.images.model_input import load_image

TTA_MODES = ("none", "rotations")
DEFAULT_TTA = "rotations"
"""What predict, count and serve use. Measured on euro-coins with pretrained Lite0 features: +0.016
balanced accuracy on average over 8 head/training variants, +0.037 at most (BENCHMARKS.md), for 4x
the embedding time."""


@dataclass
class Embedded:
    """Vectors for the photos that decoded, in input order, and the reasons for those that did not."""

    paths: list[str]
    vectors: np.ndarray
    errors: dict[str, str] = field(default_factory=dict)


class Embedder:
    """Decodes photos and runs the backbone exactly as ``extract-features`` did for a store."""

    def __init__(self, record: ExtractorRecord, engine: str = "auto", threads: int | None = None) -> None:
        self.record = record
        self.resize = record.resize
        self.crop = record.crop
        self.spec = self._rebuild(record)
        self.engine_kind, self.threads = engine, threads
        self._engine: Engine | None = None

    @staticmethod
    def _rebuild(record: ExtractorRecord) -> BackboneSpec:
        b = record.backbone
        source = b.get("model_file") or b["name"]
        weights = b.get("weights", "imagenet") if not b.get("model_file") else "imagenet"
        try:
            spec = resolve_backbone(
                source,
                weights,
                image_size=int(b["image_size"]),
                precision=b.get("precision", "fp32"),
                calibration=b.get("calibration"),
            )
        except CoinfeatError as exc:
            raise CoinfeatError(f"cannot rebuild the extractor these vectors came from: {exc}") from None
        actual = fingerprint(spec, record.resize, record.crop)
        if actual != record.fingerprint:
            raise FingerprintMismatch(
                f"the extractor rebuilt from {source} has fingerprint {actual}, but the vectors were made "
                f"with {record.fingerprint} (was the weights or model file changed?)"
            )
        return spec

    def engine(self, probe: np.ndarray | None = None) -> Engine:
        if self._engine is None:
            sample = self.record.int8
            calibration = (
                calibration_loader(sample["root"], sample, self.spec.image_size, self.resize, self.crop)
                if sample
                else None
            )
            network = Network.backbone(self.spec, calibration)
            self._engine = open_engine(network, self.engine_kind, self.threads, probe)
        return self._engine

    def embed(
        self, paths: list[str | Path], tta: str = "none", max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> Embedded:
        """Embed photos; with ``tta="rotations"`` each is embedded at 0/90/180/270 degrees and averaged."""
        if tta not in TTA_MODES:
            raise CoinfeatError(f"unknown --tta {tta!r}; choose from {', '.join(TTA_MODES)}")
        images, kept, errors = [], [], {}
        for path in paths:
            try:
                images.append(load_image(path, self.spec.image_size, self.resize, max_pixels, self.crop))
                kept.append(str(path))
            except DecodeError as exc:
                errors[str(path)] = str(exc)
        if not images:
            return Embedded([], np.zeros((0, 0), np.float32), errors)
        return Embedded(kept, self.embed_images(np.stack(images), tta), errors)

    def embed_images(self, batch: np.ndarray, tta: str = "none") -> np.ndarray:
        """Embed already decoded and resized images (B, S, S, 3), 0..255."""
        views = rotations(batch) if tta == "rotations" else [batch]
        engine = self.engine(batch[:8])
        return np.mean([engine.embed(view) for view in views], axis=0).astype(np.float32)


def rotations(batch: np.ndarray) -> list[np.ndarray]:
    """The batch at 0, 90, 180 and 270 degrees (lossless on square images)."""
    return [np.ascontiguousarray(np.rot90(batch, k, axes=(1, 2))) for k in range(4)]
