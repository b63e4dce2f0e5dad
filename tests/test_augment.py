"""Camera-like augmented views: reproducible by key, never mirrored, each part can be switched off."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw

from coinfeat.core.images.augment import CameraViews, augment

OFF = dict(
    light=0.0,
    p_colour=0,
    p_table=0,
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


def test_colour_parts_change_the_scene_colour_and_can_be_switched_off():
    img = _numeral()
    plain = CameraViews(zoom=(1.0, 1.0), **OFF)
    colour = CameraViews(zoom=(1.0, 1.0), **{**OFF, "p_colour": 1.0})
    shifts = [
        np.abs(
            np.asarray(colour.scene(img, f"c{k}")).astype(float).mean((0, 1))
            - np.asarray(plain.scene(img, f"c{k}")).mean((0, 1))
        )
        for k in range(6)
    ]
    assert max(s.max() for s in shifts) > 3, "a colour cast moves the mean colour"
    for view in (plain.scene(img, "c0"), colour(img, "c0")):
        assert np.abs(np.asarray(view).astype(float).mean((0, 1)) - np.asarray(img).mean((0, 1))).max() < 3


def _coin_on_paper(side: int = 160, paper: tuple[int, int, int] = (236, 234, 228)) -> Image.Image:
    img = Image.new("RGB", (side, side), paper)
    draw = ImageDraw.Draw(img)
    draw.ellipse([30, 30, side - 30, side - 30], fill=(190, 120, 70), outline=(90, 60, 30), width=3)
    return img


def test_table_views_paint_the_paper_around_the_coin_and_leave_the_coin():
    img = _coin_on_paper()
    table = CameraViews(zoom=(1.0, 1.0), **{**OFF, "p_table": 1.0})
    views = [np.asarray(table.scene(img, f"t{k}")).astype(int) for k in range(4)]
    before = np.asarray(img).astype(int)
    for view in views:
        assert np.abs(view[80, 80] - before[80, 80]).max() <= 1, "the coin keeps its colour"
        assert np.abs(view[5:20, 5:20] - before[5:20, 5:20]).mean() > 20, "the paper is a table now"
    assert np.array_equal(views[0], np.asarray(table.scene(img, "t0"))), "same key, same table"
    assert len({tuple(v[10, 10]) for v in views}) > 1, "keys pick different tables"
    blank = Image.new("RGB", (160, 160), (236, 234, 228))
    assert np.array_equal(np.asarray(table.scene(blank, "t0")), np.asarray(blank)), "no coin, no table"
    assert table.scene(_coin_on_paper().convert("L"), "t0").mode == "RGB", "a grey photo is painted too"


def test_table_views_keep_a_table_that_is_not_pale_paper():
    table = CameraViews(zoom=(1.0, 1.0), **{**OFF, "p_table": 1.0})
    for own_table in [(70, 45, 30), (150, 30, 40)]:  # dark wood, red cloth: the user's own table stays
        img = _coin_on_paper(paper=own_table)
        assert np.array_equal(np.asarray(table.scene(img, "t0")), np.asarray(img))


def test_grey_views_keep_the_design_and_drop_the_colour():
    img = _numeral()
    grey = CameraViews(zoom=(1.0, 1.0), **{**OFF, "p_gray": 1.0})(img, "g0")
    pixels = np.asarray(grey).astype(int)
    assert np.abs(pixels - pixels[..., :1]).max() <= 1, "every channel equal: a grey view"
    plain = np.asarray(CameraViews(zoom=(1.0, 1.0), **OFF)(img, "g0")).astype(float).mean(axis=2)
    assert np.corrcoef(plain.ravel(), pixels[..., 0].ravel())[0, 1] > 0.9, "same picture, in grey"


def test_a_view_changes_the_scene_before_the_photo_is_framed(tmp_path):
    from coinfeat.core.extraction.pipeline import ImageReader, WorkItem

    path = tmp_path / "coin.png"
    photo = Image.new("RGB", (300, 200), (236, 234, 228))
    ImageDraw.Draw(photo).ellipse([110, 60, 190, 140], fill=(190, 120, 70))
    photo.save(path)
    seen = []

    class Recorder:
        def scene(self, img, key):
            seen.append(("scene", img.size, key))
            return img

        def __call__(self, img, key):
            seen.append(("camera", img.size, key))
            return img

    reader = ImageReader([], 1, 1, 64, "pad", augmenter=Recorder(), crop="coin-balanced")
    reader.load(WorkItem("k#aug.1", path, 1))
    assert seen == [("scene", (300, 200), "k#aug.1"), ("camera", (64, 64), "k#aug.1")]
    seen.clear()
    reader.load(WorkItem("k", path, 0))
    assert seen == [], "the photo itself is never augmented"
