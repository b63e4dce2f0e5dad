"""Image decoding and resizing: any file a user may have -> a square float32 RGB array, 0..255.

Pixels stay in 0..255 on purpose: Keras's EfficientNet rescales inside the model, and
dividing by 255 here is a classic silent bug that still "works" but ruins the features.
"""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from coinfeat.core.errors import DecodeError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
RESIZE_POLICIES = ("pad", "crop", "stretch")
DEFAULT_IMAGE_SIZE = 224
DEFAULT_MAX_PIXELS = 2 * 89_478_485
"""Refuse images larger than this many pixels (Pillow's own decompression-bomb limit)."""

DECODER_VERSION = 1
"""Bump when decoding or resizing changes the pixels a model sees; it is part of the fingerprint."""

_RESAMPLE = Image.Resampling.BICUBIC
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_bytes(path: str | Path) -> bytes:
    """Read a file, turning OS errors into a :class:`DecodeError` with a short reason."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    except PermissionError:
        raise DecodeError("permission denied") from None
    except IsADirectoryError:
        raise DecodeError("is a directory") from None
    except OSError as exc:
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None


def decode(data: bytes, draft_size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes to an RGB PIL image with EXIF orientation applied.

    ``draft_size`` lets JPEG decode at a reduced scale (never below that size), which
    makes large phone photos several times cheaper without visible loss at 224 px.
    """
    if not data:
        raise DecodeError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if draft_size and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            width, height = img.size
            if width * height > max_pixels:
                raise DecodeError(
                    f"image too large ({width}x{height} pixels > {max_pixels:,}; decompression-bomb guard)"
                )
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"image too large (decompression-bomb guard): {exc}") from None
    except UnidentifiedImageError:
        raise DecodeError("not an image (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError) as exc:
        raise DecodeError(f"corrupt or truncated image: {exc}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited over white."""
    if img.mode in _HIGH_DEPTH_MODES:
        img = _to_8bit_gray(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit or float grayscale down to 8 bits (Pillow's convert would clip at 255)."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        top = 1.0 if arr.size and np.nanmax(arr) <= 1.0 else 255.0
    else:
        top = 65535.0 if arr.size and arr.max() > 255 else 255.0
    scaled = np.clip(np.nan_to_num(arr) * (255.0 / top), 0, 255)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def border_colour(img: Image.Image) -> tuple[int, int, int]:
    """Median colour of the outermost pixel ring: the background a coin was shot on."""
    arr = np.asarray(img)
    ring = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return tuple(int(v) for v in np.median(ring, axis=0))


def fit_square(img: Image.Image, size: int = DEFAULT_IMAGE_SIZE, policy: str = "pad") -> Image.Image:
    """Resize an RGB image to ``size`` x ``size`` by padding, centre-cropping or stretching."""
    if policy == "stretch":
        return img.resize((size, size), _RESAMPLE)
    if policy == "crop":
        return ImageOps.fit(img, (size, size), _RESAMPLE)
    if policy != "pad":
        raise ValueError(f"unknown resize policy {policy!r}; choose from {', '.join(RESIZE_POLICIES)}")
    width, height = img.size
    scale = size / max(width, height)
    inner = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = Image.new("RGB", (size, size), border_colour(img))
    canvas.paste(img.resize(inner, _RESAMPLE), ((size - inner[0]) // 2, (size - inner[1]) // 2))
    return canvas


def to_model_input(img: Image.Image) -> np.ndarray:
    """An RGB image as the float32 array the backbone expects: H x W x 3, values 0..255."""
    return np.asarray(img, dtype=np.float32)


def data_url(img: Image.Image | bytes, image_format: str = "PNG", **save: object) -> str:
    """An image (or the bytes of a PNG/JPEG file) as a ``data:`` URL, for self-contained pages."""
    if isinstance(img, bytes):
        data = img
    else:
        buffer = io.BytesIO()
        img.save(buffer, image_format, **save)
        data = buffer.getvalue()
    return f"data:image/{image_format.lower()};base64," + base64.b64encode(data).decode()
