"""The coin crop (``--crop coin``): one canonical input for any photo of a coin."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from helpers import SMALL, pile, tiny_config
from PIL import Image

from coinfeat import extract_features
from coinfeat.core.extraction.backbones import fingerprint, resolve_backbone
from coinfeat.core.images.crop import (
    COIN_MARGIN,
    FILL,
    MAX_GAIN,
    coin_centred,
    frame,
    frame_found,
    grey_world,
)
from coinfeat.core.store import Manifest


def _located(square: Image.Image, photo_size: int, expected_radius: float) -> None:
    """The crop is a square whose side is the coin's diameter plus the margin."""
    assert square.width == square.height
    assert square.width == pytest.approx(2 * expected_radius * (1 + 2 * COIN_MARGIN), rel=0.08)
    assert square.width < photo_size


def test_an_off_centre_coin_is_found_and_cropped_to_its_rim():
    photo = pile([(330, 270, 110)], size=(600, 500))
    square, status = coin_centred(photo)
    assert status == "cropped"
    _located(square, 500, 110)
    middle = np.asarray(square)[square.height // 2, square.width // 2].astype(int)
    assert np.abs(middle - np.array((184, 115, 51))).max() < 40, "the crop is centred on the coin"


def test_of_two_coins_the_one_nearest_the_middle_is_kept():
    photo = pile([(180, 250, 90), (420, 250, 120)], size=(700, 500))
    square, status = coin_centred(photo)
    assert status == "cropped"
    _located(square, 500, 120)


def test_masked_crop_paints_outside_the_circle():
    photo = pile([(300, 250, 120)], size=(600, 500))
    square = frame(photo, "coin-masked")
    corner = np.asarray(square)[2, 2]
    assert tuple(int(v) for v in corner) == FILL
    assert tuple(int(v) for v in np.asarray(frame(photo, "coin"))[2, 2]) != FILL


def test_tiny_photos_and_photos_without_a_coin_are_kept_whole():
    tiny = pile([(40, 40, 30)], size=(80, 80))
    assert coin_centred(tiny) == (tiny, "small")
    blank = Image.fromarray(np.random.default_rng(0).integers(200, 215, (300, 400, 3)).astype(np.uint8))
    assert coin_centred(blank) == (blank, "no coin")
    assert frame(blank, "none") is blank
    with pytest.raises(ValueError, match="unknown crop"):
        frame(blank, "circle")


def test_a_tight_crop_stays_about_the_same_framing():
    tight = pile([(150, 150, 142)], size=(300, 300))
    square, status = coin_centred(tight)
    if status == "cropped":  # found: cropped to the rim, which is about the whole photo
        assert square.width == pytest.approx(300, rel=0.12)
    else:
        assert square is tight


def test_crop_is_part_of_the_fingerprint_and_old_stores_keep_theirs():
    spec = resolve_backbone("efficientnetb0", "none", image_size=SMALL)
    assert fingerprint(spec, "pad") == fingerprint(spec, "pad", "none")
    assert len({fingerprint(spec, "pad", c) for c in ("none", "coin", "coin-balanced", "coin-masked")}) == 4
    old = Manifest.from_dict({"fingerprint": "abc", "resize": "pad"})
    assert old.crop == "none"


@pytest.mark.parametrize("crop", ["coin", "coin-balanced"])
def test_a_store_made_with_the_coin_crop_records_it_and_predict_frames_alike(tmp_path, crop):
    from coinfeat import extract_features, fit_head, predict_images
    from coinfeat.core.store import open_store

    data = tmp_path / "coins"
    for label, k in (("copper", 0), ("gold", 1)):
        (data / label).mkdir(parents=True)
        for i in range(4):
            disc = (200 + 15 * i, 160 + 10 * i, 70 + 5 * i)
            photo = pile([disc], size=(400, 320), seed=10 * k + i)
            if label == "gold":  # a gold coin: brighter inside
                arr = np.asarray(photo).copy()
                arr[np.hypot(*np.mgrid[:320, :400][::-1] - np.array(disc[:2])[:, None, None]) < 60] = (
                    212,
                    175,
                    55,
                )
                photo = Image.fromarray(arr)
            photo.save(data / label / f"{label}{i}_0.jpg")
    summary = extract_features(data, tmp_path / "store", tiny_config(crop=crop, split=(0.5, 0.0, 0.5)))
    store = open_store(summary.store)
    assert store.manifest.crop == crop
    assert json.loads((tmp_path / "store" / "manifest.json").read_text())["crop"] == crop
    fit_head(summary.store, "centroid", tmp_path / "head")
    head = json.loads((tmp_path / "head" / "head.json").read_text())
    assert head["features"]["crop"] == crop
    X, items = store.select(None)
    from coinfeat.core.extraction.embedder import Embedder
    from coinfeat.core.heads import load_head

    embedder = Embedder(load_head(tmp_path / "head").meta.extractor(tmp_path / "head"))
    assert embedder.crop == crop
    again = embedder.embed([store.manifest.dataset.absolute(p) for p in items["path"]]).vectors
    assert np.allclose(again, X, atol=1e-3), "predict frames a photo exactly as the store did"
    uncropped = extract_features(data, tmp_path / "plain", tiny_config())
    assert open_store(uncropped.store).fingerprint != store.fingerprint
    assert predict_images([data / "gold" / "gold0_0.jpg"], tmp_path / "head", top_k=1)[0].labels


def test_photos_kept_whole_are_recorded_per_photo_and_counted_in_the_summary(tmp_path, capsys):
    from coinfeat.cli import main
    from coinfeat.core.store import open_store

    data = tmp_path / "coins"
    (data / "a").mkdir(parents=True)
    (data / "b").mkdir()
    pile([(200, 160, 80)], size=(400, 320)).save(data / "a" / "found_0.jpg")
    pile([(40, 40, 30)], size=(80, 80)).save(data / "a" / "tiny_0.jpg")
    blank = np.random.default_rng(0).integers(200, 215, (300, 400, 3)).astype(np.uint8)
    Image.fromarray(blank).save(data / "b" / "blank_0.jpg")
    pile([(190, 150, 70)], size=(400, 320), seed=3).save(data / "b" / "found_1.jpg")
    config = tiny_config(crop="coin", split=(0.5, 0.0, 0.5))
    summary = extract_features(data, tmp_path / "store", config)
    assert summary.kept_whole == {"small": 1, "no coin": 1}
    framing = open_store(summary.store).items.set_index("path")["framing"].to_dict()
    assert framing == {
        "a/found_0.jpg": "cropped",
        "a/tiny_0.jpg": "small",
        "b/blank_0.jpg": "no coin",
        "b/found_1.jpg": "cropped",
    }
    again = extract_features(data, tmp_path / "store", replace(config, crop=None))
    assert again.reused == 4 and again.kept_whole == summary.kept_whole, "counted from the store's rows"
    assert open_store(again.store).manifest.crop == again.crop == "coin", "a re-run keeps its store's crop"
    new = extract_features(data, tmp_path / "new", replace(config, crop=None))
    assert open_store(new.store).manifest.crop == "coin-balanced", "a new store gets the default"
    plain = extract_features(data, tmp_path / "plain", tiny_config(split=(0.5, 0.0, 0.5)))
    assert plain.kept_whole == {} and open_store(plain.store).items["framing"].isna().all()
    args = ["extract-features", "--data", str(data), "--out", str(tmp_path / "store"), "-q"]
    args += ["--backbone", config.backbone, "--weights", "none", "--image-size", str(SMALL), "--crop", "coin"]
    assert main([*args, "--split", "50/0/50"]) == 0
    printed = capsys.readouterr().out
    assert "kept whole 1: no coin found in the photo" in printed and "kept whole 1: too small" in printed
    assert "; crop coin\n" in printed


def test_coin_balanced_takes_a_colour_cast_out_before_the_crop():
    photo = pile([(200, 160, 80)], size=(400, 320))
    cast = Image.fromarray(np.clip(np.asarray(photo) * np.array([1.25, 1.0, 0.7]), 0, 255).astype(np.uint8))
    means = lambda img: np.asarray(img, np.float32).reshape(-1, 3).mean(0)  # noqa: E731
    assert np.ptp(means(cast)) > 40 and np.ptp(means(grey_world(cast))) < 3
    neutral = Image.fromarray(np.dstack([np.tile(np.arange(256, dtype=np.uint8), (64, 1))] * 3))
    assert np.abs(np.asarray(grey_world(neutral), int) - np.asarray(neutral, int)).max() <= 1
    red = Image.new("RGB", (120, 120), (200, 20, 20))
    assert means(grey_world(red))[1] == pytest.approx(20 * MAX_GAIN, abs=1), "gains are capped"
    balanced = frame(cast, "coin-balanced")
    assert balanced.tobytes() == coin_centred(grey_world(cast))[0].tobytes()
    unbalanced_gap = np.abs(means(frame(cast, "coin")) - means(frame(photo, "coin"))).max()
    balanced_gap = np.abs(means(balanced) - means(frame(photo, "coin-balanced"))).max()
    assert balanced_gap < unbalanced_gap / 3, "the cast photo's crop looks like the plain photo's"
    from coinfeat.core.images.detect import Circle

    found = frame_found(cast, Circle(200, 160, 80), "coin-balanced")
    plain = frame_found(cast, Circle(200, 160, 80), "coin")
    assert found.tobytes() == grey_world(plain).tobytes(), "a pile's coin is balanced on its own square"
    assert np.ptp(means(found)) < np.ptp(means(plain)) / 2
