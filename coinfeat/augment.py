"""Augmented views of training photos: coins lie at any angle, under any light.

``extract-features --augment N`` caches N views of each train photo beside its clean vector
(``view`` 1..N in items.parquet). Each view is a seeded function of the photo's content and view
number, so it is reproducible and cached like any other vector. Evaluation never uses views.
When :func:`augment` changes, bump ``coinfeat.store.keys.AUGMENT_VERSION`` (it is part of a view's key).
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from coinfeat.images import border_colour


def augment(img: Image.Image, key: str) -> Image.Image:
    """A random rotation, flip, zoom, brightness and contrast change, seeded by ``key``."""
    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:12], 16))
    fill = border_colour(img)
    size = img.size
    out = img.rotate(float(rng.uniform(0, 360)), resample=Image.Resampling.BICUBIC, fillcolor=fill)
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    zoom = float(rng.uniform(0.9, 1.1))
    scaled = out.resize(
        (max(1, round(size[0] * zoom)), max(1, round(size[1] * zoom))), Image.Resampling.BICUBIC
    )
    canvas = Image.new("RGB", size, fill)
    canvas.paste(scaled, ((size[0] - scaled.size[0]) // 2, (size[1] - scaled.size[1]) // 2))
    out = ImageEnhance.Brightness(canvas).enhance(float(rng.uniform(0.8, 1.2)))
    return ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.8, 1.2)))
