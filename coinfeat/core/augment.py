"""Augmented views of training photos: coins lie at any angle, under any light.

``extract-features --augment N`` caches N views of each train photo beside its clean vector
(``view`` 1..N in items.parquet); ``fine-tune --views N`` caches the activations of N views.
Each view is a seeded function of the photo's content and view number (its key), so it is
reproducible and cached like any other vector. Evaluation never uses views.
When a policy changes, bump ``coinfeat.core.store.keys.AUGMENT_VERSION`` (it is part of a view's key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from coinfeat.core.images import border_colour


@dataclass(frozen=True)
class Augmentation:
    """A random rotation (full circle, border colour as fill), optional mirror, zoom, brightness
    and contrast change, seeded by the view's key."""

    zoom: tuple[float, float] = (0.9, 1.1)
    light: float = 0.2
    """Brightness and contrast each change by a factor in 1 +- light."""
    mirror: bool = True

    def __call__(self, img: Image.Image, key: str) -> Image.Image:
        rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:12], 16))
        fill = border_colour(img)
        size = img.size
        out = img.rotate(float(rng.uniform(0, 360)), resample=Image.Resampling.BICUBIC, fillcolor=fill)
        if rng.random() < 0.5 and self.mirror:
            out = ImageOps.mirror(out)
        zoom = float(rng.uniform(*self.zoom))
        scaled = out.resize(
            (max(1, round(size[0] * zoom)), max(1, round(size[1] * zoom))), Image.Resampling.BICUBIC
        )
        canvas = Image.new("RGB", size, fill)
        canvas.paste(scaled, ((size[0] - scaled.size[0]) // 2, (size[1] - scaled.size[1]) // 2))
        lo, hi = 1 - self.light, 1 + self.light
        out = ImageEnhance.Brightness(canvas).enhance(float(rng.uniform(lo, hi)))
        return ImageEnhance.Contrast(out).enhance(float(rng.uniform(lo, hi)))


augment = Augmentation()
"""The views ``extract-features --augment`` caches: rotation, mirror, zoom 0.9-1.1, light +-20%."""

FINETUNE_VIEWS = Augmentation(zoom=(0.85, 1.1), light=0.25, mirror=False)
"""The views fine-tuning trains on: rotation, zoom 0.85-1.1, light +-25%, never mirrored (a
mirrored coin is no real coin, and a fine-tuned network can learn the difference)."""
