"""What the network sees: a photo decoded, framed by its crop and resized to the model's square.

The one preprocessing shared by extraction, ``predict``, ``serve`` and ``count``, kept apart from
decoding (:mod:`coinfeat.core.images.decode`) and framing (:mod:`coinfeat.core.images.crop`),
which it composes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from coinfeat.core.images.crop import framed
from coinfeat.core.images.decode import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MAX_PIXELS,
    decode,
    fit_square,
    read_bytes,
    to_model_input,
)


def model_square(
    data: bytes,
    size: int,
    policy: str,
    max_pixels: int,
    crop: str,
    scene: Callable[[Image.Image], Image.Image] | None = None,
) -> tuple[Image.Image, str | None]:
    """Decode (at reduced scale where the crop allows), frame by ``crop`` and resize to the square
    the model sees: the one preprocessing of extraction, ``predict`` and ``serve``. Also says how
    the photo was framed (:func:`coinfeat.core.images.crop.framed`). ``scene`` changes the decoded photo
    before it is framed (an augmented view's light and table)."""
    draft = size if crop == "none" else 4 * size  # a coin crop keeps only part of the photo
    img = decode(data, draft_size=draft, max_pixels=max_pixels)
    img, how = framed(scene(img) if scene else img, crop)
    return fit_square(img, size, policy), how


def load_image(
    source: str | Path | bytes,
    size: int = DEFAULT_IMAGE_SIZE,
    policy: str = "pad",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    crop: str = "none",
) -> np.ndarray:
    """Read, decode, frame (:func:`coinfeat.core.images.crop.frame`) and resize one image for the model;
    raises :class:`DecodeError`."""
    data = source if isinstance(source, bytes) else read_bytes(source)
    return to_model_input(model_square(data, size, policy, max_pixels, crop)[0])
