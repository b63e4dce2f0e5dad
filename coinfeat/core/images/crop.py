"""The coin crop: every photo of a coin becomes the same canonical input, and a square around a
found coin.

:func:`coin_centred` is the one place a photo is framed for recognition (``--crop coin``): the coin
the photo is centred on is found and cropped to its rim plus ``COIN_MARGIN`` (the corners keep a
little of the surface, a colour reference), so a head learns the coin, not the paper, the
neighbours or how much of the frame the coin fills (a false size cue on any other camera). Photos
too small to search or with no coin found are kept whole (the reason is returned).

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
from PIL import Image, ImageDraw

from coinfeat.core.errors import DecodeError
from coinfeat.core.images.decode import decode, read_bytes
from coinfeat.core.images.detect import Circle, central_coin

CROPS = ("coin", "coin-balanced", "coin-masked", "none")
"""``coin``: :func:`coin_centred`; ``coin-balanced``: the photo white-balanced first
(:func:`grey_world`; measured better on val and on another phone with frozen heads, BENCHMARKS.md
"White balance"); ``coin-masked``: the coin crop with the outside of the coin painted ``FILL``
(measured worse: it also hides the surface that tells a yellow light from a copper coin); ``none``:
the photo as it is (a fixed rig; stores made before the coin crop)."""
DEFAULT_CROP = "coin-balanced"
"""The crop of a new store (measured best on val and on another phone, BENCHMARKS.md "White
balance" and README "Does it work on my photos?"); a re-run keeps its store's own crop."""
COIN_MARGIN = 0.04
"""Margin of the coin crop beyond the rim, as a share of the diameter on each side."""
FILL = (128, 128, 128)
"""What the coin crop paints outside the coin's circle."""
MIN_SEARCH_SIDE = 96
"""Photos whose short side is smaller are kept whole: too few pixels to find a rim reliably."""
SEARCH_SIDE = 256
"""Short side of the copy the coin is searched in."""
CROP_VERSION = 1
"""Bump when :func:`coin_centred` changes the pixels it makes; part of the extractor fingerprint."""

MAX_GAIN = 1.6
""":func:`grey_world` scales no channel by more than this (or less than its inverse)."""

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


def coin_centred(img: Image.Image, masked: bool = False) -> tuple[Image.Image, str]:
    """The canonical coin input for a photo and what happened: ``cropped``, ``small`` (kept
    whole, short side under ``MIN_SEARCH_SIDE``) or ``no coin`` (kept whole)."""
    if min(img.size) < MIN_SEARCH_SIDE:
        return img, "small"
    coin = find_central(img)
    if coin is None:
        return img, "no coin"
    return coin_square(img, coin, masked), "cropped"


def find_central(img: Image.Image) -> Circle | None:
    """The coin a photo is centred on, searched in a copy of short side ``SEARCH_SIDE``, in the
    photo's own pixels; None when there is none."""
    scale = min(1.0, SEARCH_SIDE / min(img.size))
    small = img if scale == 1.0 else img.resize((round(img.width * scale), round(img.height * scale)))
    coin = central_coin(np.asarray(small), min_share=0.12)
    return None if coin is None else Circle(coin.x / scale, coin.y / scale, coin.radius / scale)


def coin_square(img: Image.Image, coin: Circle, masked: bool = False) -> Image.Image:
    """The coin crop of a coin already found (``count`` finds them in a pile)."""
    square = square_around(img, coin.x, coin.y, coin.radius * (1 + 2 * COIN_MARGIN))
    if masked:
        mask = Image.new("L", square.size, 0)
        ImageDraw.Draw(mask).ellipse((0, 0, square.width - 1, square.height - 1), fill=255)
        square = Image.composite(square, Image.new("RGB", square.size, FILL), mask)
    return square


KEPT_WHOLE = {
    "small": f"too small to search for a coin (short side under {MIN_SEARCH_SIDE} px)",
    "no coin": "no coin found in the photo",
}
"""What :func:`coin_centred` says when it keeps a photo whole, and what that means; stores record
it per photo and extraction counts it."""


def frame(img: Image.Image, crop: str) -> Image.Image:
    """A decoded photo framed for the model by the ``crop`` policy (see ``CROPS``)."""
    return framed(img, crop)[0]


def framed(img: Image.Image, crop: str) -> tuple[Image.Image, str | None]:
    """:func:`frame` and what happened: ``cropped``, one of ``KEPT_WHOLE``, or None (``crop=none``)."""
    if crop == "none":
        return img, None
    masked = _masked(crop)
    return coin_centred(grey_world(img) if crop == "coin-balanced" else img, masked=masked)


def grey_world(img: Image.Image) -> Image.Image:
    """The photo with each channel scaled so that its mean is grey (at most ``MAX_GAIN``): a colour
    cast of the light or the camera goes, and with it the coin's own hue, so a head reads the design
    (``--crop coin-balanced``)."""
    return balanced(img, np.asarray(img, dtype=np.float32).reshape(-1, 3).mean(axis=0))


def balanced(img: Image.Image, means: np.ndarray) -> Image.Image:
    """The photo with each channel scaled so that colour ``means`` (R, G, B, measured wherever the
    caller trusts to be grey) becomes grey, no gain beyond ``MAX_GAIN``."""
    gains = np.clip(means.mean() / np.maximum(means, 1.0), 1 / MAX_GAIN, MAX_GAIN)
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) * gains, 0, 255).astype(np.uint8))


def frame_found(full: Image.Image, circle: Circle, crop: str) -> Image.Image:
    """A coin found in a whole photo, framed by a coin ``crop`` policy as single-coin photos are
    (``coin-balanced``: the coin's own square is balanced, as a single-coin photo, mostly coin, is);
    a coin seen at an angle is first made round again (:func:`unsquashed`)."""
    full, circle = unsquashed(full, circle)
    square = coin_square(full, circle, masked=_masked(crop))
    return grey_world(square) if crop == "coin-balanced" else square


def _masked(crop: str) -> bool:
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose from {', '.join(CROPS)}")
    return crop == "coin-masked"


def crop_coin(
    full: Image.Image, circle: Circle, margin: float = MARGIN, max_side: int | None = None
) -> Image.Image:
    """A square crop centred on the coin, its side ``diameter * (1 + 2 * margin)`` (at most
    ``max_side`` pixels, scaled down); what lies outside the photo is filled with its edge colour.
    A coin seen at an angle is first made round again (:func:`unsquashed`)."""
    full, circle = unsquashed(full, circle)
    canvas = square_around(full, circle.x, circle.y, circle.radius * (1 + 2 * margin))
    if max_side and canvas.width > max_side:
        return canvas.resize((max_side, max_side), Image.Resampling.BICUBIC)
    return canvas


UNSQUASH_SIDE = 1.6
"""Half-side of the region made round around a tilted coin, in coin radii (room for any margin)."""


def unsquashed(full: Image.Image, coin: Circle) -> tuple[Image.Image, Circle]:
    """A coin seen at an angle (an ellipse) and its surroundings stretched along its minor axis so
    that it is round again, an affine un-squash, with the coin as a circle of its major radius in
    the result's pixels; a round coin comes back as it is."""
    if not coin.tilted:
        return full, coin
    theta, squash = np.radians(coin.angle), coin.axis_ratio
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    to_photo = rotation @ np.diag([1.0, squash]) @ rotation.T  # round output -> squashed photo
    half = coin.radius * UNSQUASH_SIDE
    side = max(1, round(2 * half))
    shift = np.array([coin.x, coin.y]) - to_photo @ np.array([half, half])
    data = (*to_photo[0], shift[0], *to_photo[1], shift[1])
    region = full.transform(
        (side, side), Image.Transform.AFFINE, data, Image.Resampling.BICUBIC, fillcolor=_edge_colour(full)
    )
    return region, Circle(half, half, coin.radius)


def square_around(full: Image.Image, cx: float, cy: float, half: float) -> Image.Image:
    """The square of half-side ``half`` centred on (cx, cy); what lies outside the photo is
    filled with the photo's edge colour."""
    box = tuple(round(v) for v in (cx - half, cy - half, cx + half, cy + half))
    side = max(1, box[2] - box[0])
    inside = (max(0, box[0]), max(0, box[1]), min(full.width, box[2]), min(full.height, box[3]))
    canvas = Image.new("RGB", (side, side), _edge_colour(full))
    if inside[2] > inside[0] and inside[3] > inside[1]:
        canvas.paste(full.crop(inside), (inside[0] - box[0], inside[1] - box[1]))
    return canvas


def _edge_colour(img: Image.Image) -> tuple[int, int, int]:
    small = np.asarray(img.reduce(max(1, max(img.size) // 200)))
    ring = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    return tuple(int(v) for v in np.median(ring, axis=0))
