"""Decoding and resizing: every mode to RGB, EXIF applied, bad files become DecodeError."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from coinfeat.core.errors import DecodeError
from coinfeat.core.images.decode import decode, fit_square, read_bytes
from coinfeat.core.images.model_input import load_image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = np.asarray(decode(encode(img, "JPEG", exif=exif, quality=95)))
    assert out.shape == (40, 20, 3)
    assert out[2, 10, 0] > 200 and out[2, 10, 2] < 60, "red stripe must end up on top"
    assert out[-3, 10, 2] > 200


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGB", "1"])
def test_plain_modes_become_rgb(mode):
    img = (
        Image.new(mode, (16, 12), 0 if mode == "CMYK" else 255)
        if mode != "RGB"
        else Image.new("RGB", (16, 12))
    )
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    out = decode(encode(img, fmt))
    assert out.mode == "RGB" and out.size == (16, 12)


def test_alpha_is_composited_over_white():
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.putpixel((5, 5), (10, 20, 30, 255))
    out = np.asarray(decode(encode(img, "PNG")))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[5, 5]) == (10, 20, 30)


def test_la_and_palette_with_transparency():
    la = Image.new("LA", (8, 8), (0, 0))
    assert tuple(np.asarray(decode(encode(la, "PNG")))[0, 0]) == (255, 255, 255)
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.info["transparency"] = 0
    out = np.asarray(decode(encode(pal, "PNG", transparency=0)))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[1, 1]) == (200, 10, 10)


def test_16bit_grayscale_is_scaled_not_clipped():
    arr = np.full((6, 6), 32768, dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    out = np.asarray(decode(encode(img, "PNG")))
    assert 120 <= out[0, 0, 0] <= 135  # half of full scale, not clipped to 255


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = np.asarray(decode(buf.getvalue()))
    assert out[0, 0, 0] > 200 and out[0, 0, 2] < 50


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"this is a text file, not a photo", "not an image"),
        (encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")[:300], "truncated"),
    ],
)
def test_bad_files_raise_decode_error(data, reason):
    with pytest.raises(DecodeError, match=reason):
        decode(data)


def test_decompression_bomb_guard():
    data = encode(Image.new("L", (400, 400)), "PNG")
    with pytest.raises(DecodeError, match="too large"):
        decode(data, max_pixels=100_000)


def test_read_bytes_reports_missing_and_unreadable(tmp_path):
    with pytest.raises(DecodeError, match="not found"):
        read_bytes(tmp_path / "nope.jpg")
    with pytest.raises(DecodeError, match="directory"):
        read_bytes(tmp_path)


def test_pad_keeps_whole_coin_and_uses_border_colour():
    img = Image.new("RGB", (200, 100), (250, 250, 250))
    img.paste((200, 0, 0), (0, 0, 20, 100))  # red band at the far left edge must survive padding
    out = np.asarray(fit_square(img, 64, "pad"))
    assert out.shape == (64, 64, 3)
    assert tuple(out[2, 32]) == (250, 250, 250)  # padding above is the border colour
    assert out[32, 2, 0] > 150 and out[32, 2, 1] < 80  # red band still there


def test_crop_and_stretch():
    img = Image.new("RGB", (200, 100), (250, 250, 250))
    img.paste((200, 0, 0), (0, 0, 20, 100))
    cropped = np.asarray(fit_square(img, 64, "crop"))
    assert cropped[32, 2, 1] > 200  # the left band is cropped away
    stretched = np.asarray(fit_square(img, 64, "stretch"))
    assert stretched[32, 2, 0] > 150 and stretched[32, 2, 1] < 80
    with pytest.raises(ValueError):
        fit_square(img, 64, "squash")


def test_model_input_is_float_0_255_not_0_1():
    """The /255 trap: Keras EfficientNet rescales inside, so pixels must arrive as 0..255."""
    white = encode(Image.new("RGB", (30, 30), (255, 255, 255)), "PNG")
    arr = load_image(white, size=32)
    assert arr.dtype == np.float32
    assert arr.shape == (32, 32, 3)
    assert arr.max() == 255.0
