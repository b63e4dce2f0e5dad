"""The coin crop: how training photos frame their coins, and a square crop around a found coin.

``fit-head`` and ``fine-tune`` measure the :class:`CropConvention` of a head's training photos
(:func:`measure_crops`, recorded in head.json as ``crops``); ``count`` cuts crops from whole photos
the same way (:func:`crop_coin`), so a coin from a pile looks like what the head learned from.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from coinfeat.core.detect import Circle, central_coin
from coinfeat.core.errors import DecodeError
from coinfeat.core.images import decode, read_bytes

MARGIN = 0.1
"""Crop margin on each side, as a share of the diameter, when the head's crops were not measured."""


@dataclass
class CropConvention:
    """How a head's training photos frame their coins (see the module docstring)."""

    photo_side_px: int | None = None
    ratio: dict[str, float] = field(default_factory=dict)
    """Per class, the median crop side over coin diameter."""

    @classmethod
    def of(cls, meta: Any) -> CropConvention:
        """The convention a head's metadata (:class:`~coinfeat.core.heads.HeadMeta`) records."""
        record = meta.crops or {}
        return cls(record.get("photo_side_px"), dict(record.get("ratio") or {}))

    def margin(self) -> float:
        """The margin on each side of a coin in a typical training photo (``MARGIN`` if unknown)."""
        return (float(np.median(list(self.ratio.values()))) - 1) / 2 if self.ratio else MARGIN

    def fixed_side_mm(self, classes: list[str], diameters: np.ndarray) -> float | None:
        """The physical side of the training crops when they were cut at one size for all coins
        (the side in mm varies less across classes than the fill does); None otherwise."""
        pairs = [
            (self.ratio[c], d) for c, d in zip(classes, diameters) if c in self.ratio and not np.isnan(d)
        ]
        if len(pairs) < 3:
            return None
        ratio = np.array([r for r, _ in pairs])
        side_mm = ratio * np.array([d for _, d in pairs])
        spread = lambda a: float(np.std(a) / np.mean(a))  # noqa: E731
        return float(np.median(side_mm)) if spread(side_mm) < spread(ratio) else None


def measure_crops(paths: list[Path], labels: list[str]) -> dict[str, Any]:
    """The :class:`CropConvention` record of a sample of training photos: their median short side
    and, per label, the median crop side over the diameter of the coin each is centred on."""
    sides, ratios = [], {}
    for path, label in zip(paths, labels):
        try:
            data = read_bytes(path)
            with Image.open(io.BytesIO(data)) as img:
                sides.append(min(img.size))
            small = decode(data, draft_size=256)
        except (OSError, DecodeError):
            continue
        coin = central_coin(np.asarray(small))
        if coin is not None:
            ratios.setdefault(str(label), []).append(min(small.size) / coin.diameter)
    return {
        "photo_side_px": int(np.median(sides)) if sides else None,
        "ratio": {label: round(float(np.median(r)), 3) for label, r in sorted(ratios.items())},
    }


def crop_coin(
    full: Image.Image, circle: Circle, margin: float = MARGIN, max_side: int | None = None
) -> Image.Image:
    """A square crop centred on the coin, its side ``diameter * (1 + 2 * margin)`` (at most
    ``max_side`` pixels, scaled down); what lies outside the photo is filled with its edge colour."""
    half = circle.radius * (1 + 2 * margin)
    box = tuple(round(v) for v in (circle.x - half, circle.y - half, circle.x + half, circle.y + half))
    side = box[2] - box[0]
    inside = (max(0, box[0]), max(0, box[1]), min(full.width, box[2]), min(full.height, box[3]))
    canvas = Image.new("RGB", (side, side), _edge_colour(full))
    canvas.paste(full.crop(inside), (inside[0] - box[0], inside[1] - box[1]))
    if max_side and side > max_side:
        return canvas.resize((max_side, max_side), Image.Resampling.BICUBIC)
    return canvas


def _edge_colour(img: Image.Image) -> tuple[int, int, int]:
    small = np.asarray(img.reduce(max(1, max(img.size) // 200)))
    ring = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    return tuple(int(v) for v in np.median(ring, axis=0))
