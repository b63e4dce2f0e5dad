"""Camera-like augmented views: reproducible by key, never mirrored, each part can be switched off."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw

from coinfeat.core.augment import CameraViews, augment

OFF = dict(
    light=0.0,
    p_colour=0,
    p_saturation=0,
    p_gray=0,
    p_gamma=0,
    p_blur=0,
    p_low_res=0,
    p_noise=0,
    p_jpeg=0,
    p_glare=0,
)


def _numeral(size: int = 96) -> Image.Image:
    """A light disc with a dark "F" (no rotation of an F is its mirror)."""
    img = Image.new("RGB", (size, size), (230, 230, 225))
    draw = ImageDraw.Draw(img)
    draw.ellipse([8, 8, size - 8, size - 8], fill=(200, 160, 60))
    draw.rectangle([30, 25, 40, 70], fill=(40, 30, 20))
    draw.rectangle([30, 25, 65, 35], fill=(40, 30, 20))
    draw.rectangle([30, 45, 55, 53], fill=(40, 30, 20))
    return img


def test_views_are_a_function_of_their_key_even_across_threads():
    img = _numeral()
    first = np.asarray(augment(img, "abc#1"))
    with ThreadPoolExecutor(4) as pool:
        again = list(pool.map(lambda k: np.asarray(augment(img, k)), ["abc#1", "abc#2"] * 4))
    assert all(np.array_equal(first, a) for a in again[::2])
    assert not np.array_equal(first, again[1])
    assert first.shape == (96, 96, 3)


def test_no_view_is_a_mirror_of_the_photo():
    img = _numeral()
    geometry_only = CameraViews(zoom=(1.0, 1.0), **OFF)
    yy, xx = np.mgrid[:96, :96]
    inside = np.hypot(yy - 47.5, xx - 47.5) < 36
    original = np.asarray(img).astype(float)[inside]

    def closest(view: Image.Image) -> float:
        return min(
            np.abs(np.asarray(view.rotate(a, Image.Resampling.BILINEAR))[inside] - original).mean()
            for a in range(0, 360, 2)
        )

    for k in range(12):
        view = geometry_only(img, f"k{k}")
        assert closest(view) < closest(view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), (
            f"view {k} looks mirrored"
        )


def test_colour_parts_change_colour_and_can_be_switched_off():
    img = _numeral()
    plain = CameraViews(zoom=(1.0, 1.0), **OFF)
    colour = CameraViews(zoom=(1.0, 1.0), **{**OFF, "p_colour": 1.0})
    shifts = [
        np.abs(
            np.asarray(colour(img, f"c{k}")).astype(float).mean((0, 1))
            - np.asarray(plain(img, f"c{k}")).mean((0, 1))
        )
        for k in range(6)
    ]
    assert max(s.max() for s in shifts) > 3, "a colour cast moves the mean colour"
    assert (
        np.abs(np.asarray(plain(img, "c0")).astype(float).mean((0, 1)) - np.asarray(img).mean((0, 1))).max()
        < 3
    )


def test_grey_views_keep_the_design_and_drop_the_colour():
    img = _numeral()
    grey = CameraViews(zoom=(1.0, 1.0), **{**OFF, "p_gray": 1.0})(img, "g0")
    pixels = np.asarray(grey).astype(int)
    assert np.abs(pixels - pixels[..., :1]).max() <= 1, "every channel equal: a grey view"
    plain = np.asarray(CameraViews(zoom=(1.0, 1.0), **OFF)(img, "g0")).astype(float).mean(axis=2)
    assert np.corrcoef(plain.ravel(), pixels[..., 0].ravel())[0, 1] > 0.9, "same picture, in grey"
