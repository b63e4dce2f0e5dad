"""coinfeat count: finding coins, the size cue, face values, the annotated photo, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    BACKGROUND,
    EURO,
    EURO_GROUPS,
    LITE0,
    PILES,
    needs_euro,
    needs_lite0,
    needs_piles,
    pile,
    small_config,
    write_class_folders,
)
from PIL import Image, ImageDraw

from coinfeat.cli import main
from coinfeat.core.images.crop import crop_coin
from coinfeat.core.images.detect import Circle, find_coins
from coinfeat.counting.count import CoinCounter, count_coins
from coinfeat.counting.money import (
    Doubt,
    FaceValue,
    class_values,
    face_value,
    format_range,
    parse_denomination,
    total_range,
    totals,
)
from coinfeat.counting.sizes import EURO_DIAMETERS_MM, class_diameters, estimate_scale, reweigh, size_fits


def detect(img: Image.Image):
    return find_coins(np.asarray(img), 1.0)


def test_discs_of_known_sizes_are_found_where_they_are():
    discs = [(200, 200, 60), (450, 220, 75), (700, 260, 90), (300, 550, 68), (620, 600, 82), (950, 450, 70)]
    found = detect(pile(discs)).coins
    assert len(found) == len(discs)
    for x, y, r in discs:
        nearest = min(found, key=lambda c: np.hypot(c.x - x, c.y - y))
        assert np.hypot(nearest.x - x, nearest.y - y) < 4 and abs(nearest.radius - r) / r < 0.05


def test_touching_coins_stay_apart_and_border_cuts_are_dropped_with_a_reason():
    touching = [(300, 300, 80), (460, 300, 80), (380, 438, 80)]
    cut = (1170, 450, 80)
    detection = detect(pile([*touching, (800, 300, 70), cut]))
    assert len(detection.coins) == 4
    assert all(np.hypot(c.x - cut[0], c.y - cut[1]) > 50 for c in detection.coins)
    reasons = {d["reason"] for d in detection.dropped if abs(d["x"] - cut[0]) < 20}
    assert "cut by the image border" in reasons


@pytest.mark.parametrize("background", ["dark", "wood", "gravel"])
def test_coins_are_found_on_dark_patterned_and_speckled_tables(background):
    discs = [(250, 250, 70), (520, 260, 85), (800, 300, 60), (350, 600, 75), (700, 620, 90)]
    detection = detect(pile(discs, background=background, seed=3))
    assert len(detection.coins) == len(discs), [
        (round(c.x), round(c.y), round(c.radius)) for c in detection.coins
    ]
    for x, y, r in discs:
        nearest = min(detection.coins, key=lambda c: np.hypot(c.x - x, c.y - y))
        # the drawn coin has a ring at 93% of its radius, which the rim fit may take on a busy table
        assert np.hypot(nearest.x - x, nearest.y - y) < 6 and abs(nearest.radius - r) / r < 0.08


def test_overlapping_coins_are_both_found_and_reported_as_overlapping():
    from coinfeat.counting.results import Coin, mark_overlaps

    discs = [(300, 300, 80), (400, 330, 70), (800, 400, 75), (955, 400, 80)]  # 1 over 2; 3 touches 4
    found = detect(pile(discs)).coins
    assert len(found) == 4
    coins = [
        Coin(
            number=n,
            x=c.x,
            y=c.y,
            diameter_px=c.diameter,
            label="x",
            name="x",
            probability=1.0,
            unknown=False,
        )
        for n, c in enumerate(sorted(found, key=lambda c: c.x), 1)
    ]
    mark_overlaps(coins)
    assert [c.overlaps for c in coins] == [[2], [1], [], []]


def test_a_photo_without_coins_finds_none():
    assert detect(pile([])).coins == []


def test_radius_limits_follow_the_image_not_pixel_constants():
    small = [(x * 0.25, y * 0.25, r * 0.25) for x, y, r in [(200, 200, 60), (450, 220, 75), (700, 260, 90)]]
    big = [(x * 2, y * 2, r * 2) for x, y, r in [(200, 200, 60), (450, 220, 75), (700, 260, 90)]]
    assert len(detect(pile(small, size=(300, 225))).coins) == 3
    assert len(detect(pile(big, size=(2400, 1800))).coins) == 3


def test_crop_is_square_with_the_margin_and_filled_outside_the_photo():
    photo = pile([(100, 100, 50)])
    crop = crop_coin(photo, Circle(100, 100, 50), margin=0.1)
    assert crop.size == (120, 120)
    corner = crop_coin(photo, Circle(20, 20, 50), margin=0.1)
    assert corner.size == (120, 120) and corner.getpixel((2, 2)) != (0, 0, 0)
    assert crop_coin(photo, Circle(100, 100, 50), 0.1, max_side=60).size == (60, 60)


EURO_CLASSES = ["10c", "1c", "1e", "20c", "2c", "2e", "50c", "5c"]


def _one_hot(labels: list[str], sure: float = 0.9) -> np.ndarray:
    proba = np.full((len(labels), len(EURO_CLASSES)), (1 - sure) / (len(EURO_CLASSES) - 1))
    for row, label in enumerate(labels):
        proba[row, EURO_CLASSES.index(label)] = sure
    return proba


def test_scale_is_estimated_from_all_coins_despite_a_few_wrong_ones():
    rng = np.random.default_rng(1)
    truth = ["1c", "2c", "5c", "10c", "20c", "50c", "1e", "2e"] * 2
    measured = np.array([EURO_DIAMETERS_MM[t] * 12.0 for t in truth]) * rng.normal(1, 0.01, len(truth))
    believed = list(truth)
    believed[0], believed[5], believed[9] = "2e", "1c", "50c"  # three coins the classifier gets wrong
    diameters = class_diameters(EURO_CLASSES, {})
    scale = estimate_scale(measured, _one_hot(believed), diameters)
    assert scale == pytest.approx(12.0, rel=0.02)
    assert estimate_scale(measured[:1], _one_hot(believed[:1]), diameters) is None


def test_sizes_re_weigh_a_coin_between_two_look_alike_classes():
    diameters = class_diameters(EURO_CLASSES, {})
    proba = np.full((1, 8), 0.0)
    proba[0, EURO_CLASSES.index("10c")], proba[0, EURO_CLASSES.index("20c")] = 0.55, 0.45
    at_20c = np.array([EURO_DIAMETERS_MM["20c"] * 10.0])
    weighed = reweigh(at_20c, proba, diameters=diameters, scale=10.0, spread=0.03)
    assert EURO_CLASSES[int(weighed.argmax())] == "20c" and weighed.sum() == pytest.approx(1)
    unknown_size = class_diameters(["10c", "mystery"], {})
    assert np.isnan(unknown_size[1])
    kept = reweigh(np.array([197.5]), np.array([[0.3, 0.7]]), diameters=unknown_size, scale=10.0, spread=0.03)
    assert kept[0, 1] > 0.4  # no opinion about a class of unknown size


def test_size_fits_leave_only_the_classes_a_coin_can_be_at_the_photos_scale():
    diameters = class_diameters([*EURO_CLASSES, "mystery"], {})
    measured = np.array([EURO_DIAMETERS_MM[c] * 10.0 for c in ("1c", "20c", "2e")])
    proba = np.full((3, 9), 1 / 9)
    fits = size_fits(measured, proba, diameters=diameters, scale=10.0)
    named = [{c for c, ok in zip([*EURO_CLASSES, "mystery"], row) if ok} for row in fits]
    assert named[0] == {"1c", "mystery"} and named[2] == {"2e", "mystery"}
    assert {"20c", "1e"} <= named[1] and "1c" not in named[1] and "2e" not in named[1]


def test_a_total_becomes_a_range_when_coins_may_be_another_class():
    eur = lambda v: FaceValue(v, "EUR")  # noqa: E731
    total = {"EUR": 3.45}
    up = [Doubt(7, eur(0.1), [("20c", eur(0.2))])]
    assert total_range(total, up) == ({"EUR": 3.45}, {"EUR": 3.55})
    assert format_range(total, up) == "3.45 EUR, up to 3.55 EUR if coin 7 is 20c"
    both = [*up, Doubt(2, eur(0.02), [("1c", eur(0.01)), ("5c", eur(0.05))])]
    assert total_range(total, both) == ({"EUR": 3.44}, {"EUR": 3.58})
    assert format_range(total, both) == (
        "3.45 EUR, 3.44 EUR to 3.58 EUR if coin 7 is 20c or coin 2 is 1c or 5c"
    )
    down = [Doubt(1, eur(2.0), [("1e", eur(1.0))])]
    assert format_range(total, down) == "3.45 EUR, down to 2.45 EUR if coin 1 is 1e"
    assert format_range(total, []) == "3.45 EUR"
    other = [Doubt(1, eur(2.0), [("2 pounds", FaceValue(2.0, "GBP"))])]
    assert total_range(total, other) == (total, total), "currencies are never mixed"


@pytest.mark.parametrize(
    "text, value, currency",
    [
        ("50c", 0.5, "EUR"),
        ("2e", 2.0, "EUR"),
        ("1 Cent", 0.01, "EUR"),
        ("2 Euro", 2.0, "EUR"),
        ("10 Kroner", 10.0, "krone"),
        ("50 Euro Cent", 0.5, "EUR"),
        ("€2", 2.0, "EUR"),
    ],
)
def test_face_values_are_read_from_common_label_forms(text, value, currency):
    assert parse_denomination(text) == FaceValue(value, currency)


def test_display_names_give_the_currency_and_unknown_values_are_not_guessed():
    assert face_value("7", "1 Cent,Australian dollar,australia") == FaceValue(0.01, "Australian dollar")
    assert face_value("55", "1 Euro Cent,Euro,spain") == FaceValue(0.01, "EUR")
    values = class_values(["a", "b"], {"a": "5 Kurus,Turkish lira,turkey", "b": "Queen's head"})
    assert values == {"a": FaceValue(0.05, "Turkish lira"), "b": None}
    assert totals([FaceValue(0.5, "EUR"), FaceValue(2, "EUR"), FaceValue(10, "krone")]) == {
        "EUR": 2.5,
        "krone": 10,
    }
    assert class_diameters(["x"], {"x": "20 Euro Cent"})[0] == EURO_DIAMETERS_MM["20c"]


@pytest.fixture(scope="module")
def synthetic_head(tmp_path_factory):
    """A random-weights head over euro labels, and a pile photo with a disc of each."""
    root = tmp_path_factory.mktemp("count")
    colours = {"10c": (212, 175, 55), "20c": (200, 160, 50), "2e": (170, 170, 180)}
    data = write_class_folders(root / "d", per_class=6, colours=colours)
    extract_features_quietly(data, root / "s")
    from coinfeat.fit import fit_head

    fit_head(root / "s", "logreg", root / "head")
    scale = 6.0
    discs = [
        (200 + 260 * i, 300 + 120 * (i % 2), EURO_DIAMETERS_MM[c] * scale / 2) for i, c in enumerate(colours)
    ]
    pile(discs, size=(1000, 700)).save(root / "pile.jpg", quality=92)
    return root


def extract_features_quietly(data, out):
    from coinfeat.core.extraction.extract import extract_features

    extract_features(data, out, small_config())


def test_count_end_to_end_writes_table_json_and_annotated_png(synthetic_head, tmp_path, capsys):
    root = synthetic_head
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (800, 600), BACKGROUND).save(blank)
    (tmp_path / "notes.jpg").write_text("not a photo")
    photos = [str(root / "pile.jpg"), str(blank), str(tmp_path / "notes.jpg")]
    code = main(
        [
            "count",
            *photos,
            "--head",
            str(root / "head"),
            "--tta",
            "none",
            "--out",
            str(tmp_path / "out"),
            "--json",
        ]
    )
    assert code == 1  # one photo could not be read; the others still answered
    pile_result, blank_result, broken = json.loads(capsys.readouterr().out)
    assert len(pile_result["coins"]) == 3 and broken["error"] and not blank_result["coins"]
    assert blank_result["message"] == "no coin found in this photo"
    coin = pile_result["coins"][0]
    assert {"classifier", "with_sizes", "diameter_px", "diameter_mm", "value", "currency"} <= set(coin)
    assert pile_result["scale_px_per_mm"] == pytest.approx(6.0, rel=0.05)
    assert set(pile_result["totals"]) == {"classifier", "with_sizes"}
    counted = [c for c in pile_result["coins"] if not c["unknown"]]
    assert pile_result["total"] == totals([FaceValue(c["value"], c["currency"]) for c in counted])
    png = tmp_path / "out" / "pile_count.png"
    assert pile_result["annotated"] == str(png)
    with Image.open(png) as img:
        x, y, r = coin["x"], coin["y"], coin["diameter_px"] / 2
        rim = img.getpixel((round(x), round(y - r)))
        assert rim in {(0, 170, 60), (230, 60, 0)}  # a green (counted) or orange (unknown) circle

    main(
        ["count", str(root / "pile.jpg"), "--head", str(root / "head"), "--tta", "none", "--threshold", "0.9"]
    )
    printed = capsys.readouterr().out
    assert "pile.jpg: 3 coin(s)" in printed and "NOT PRETRAINED" in printed and "annotated" not in printed
    [again] = count_coins([root / "pile.jpg"], root / "head", tta="none", threshold=0.9)
    assert [c.unknown for c in again.coins] == [c.probability < 0.9 for c in again.coins]
    known = [FaceValue(c.value, c.currency) for c in again.coins if not c.unknown]
    assert again.total == totals(known)
    [plain] = count_coins([root / "pile.jpg"], root / "head", sizes=False, tta="none")
    assert (
        plain.answer == "classifier" and plain.scale_px_per_mm is None and set(plain.totals) == {"classifier"}
    )
    assert all(c.with_sizes is None and c.diameter_mm is None for c in plain.coins)


def test_coins_with_more_than_one_class_in_their_answer_set_give_a_range(synthetic_head, tmp_path):
    from coinfeat.core.answer_sets import AnswerSets

    head = tmp_path / "head"
    shutil.copytree(synthetic_head / "head", head)
    classes = np.array(["10c", "20c", "2e"])
    every_class_possible = AnswerSets(classes, np.ones(30), np.repeat(classes, 10), score="hinge")
    every_class_possible.save(head)
    [plain] = count_coins([synthetic_head / "pile.jpg"], head, sizes=False, tta="none", threshold=0.0)
    values = {"10c": 0.1, "20c": 0.2, "2e": 2.0}
    assert all(c.doubtful and c.answer_set[0] == c.label and len(c.answer_set) == 3 for c in plain.coins)
    low = sum(min(values.values()) for _ in plain.coins)
    high = sum(max(values.values()) for _ in plain.coins)
    assert plain.total_range == {"EUR": [round(low, 2), round(high, 2)]}
    assert plain.message.startswith(f"3 coin(s): {plain.total['EUR']:.2f} EUR, ")
    assert f"coin 1 is {' or '.join(plain.coins[0].answer_set_names[1:])}" in plain.message
    [sized] = count_coins([synthetic_head / "pile.jpg"], head, tta="none", threshold=0.0, out=tmp_path)
    by_size = sorted(sized.coins, key=lambda c: c.diameter_px)
    assert "2e" not in by_size[0].answer_set[1:] and "10c" not in by_size[-1].answer_set[1:]
    with Image.open(sized.annotated) as img:
        for coin in sized.coins:
            rim = img.getpixel((round(coin.x), round(coin.y - coin.diameter_px / 2)))
            assert rim == ((30, 90, 220) if coin.doubtful else (0, 170, 60))
    top_class_enough = AnswerSets(classes, np.zeros(30), np.repeat(classes, 10), score="hinge")
    top_class_enough.save(head)
    [sure] = count_coins([synthetic_head / "pile.jpg"], head, sizes=False, tta="none", threshold=0.0)
    assert not sure.doubts and not sure.total_range and all(len(c.answer_set) == 1 for c in sure.coins)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_photo_rotated_by_its_exif_tag_is_counted_as_it_is_shown(synthetic_head, tmp_path, orientation):
    discs = [(200, 200, 60), (500, 260, 75), (760, 480, 66)]
    shown = pile(discs, size=(1000, 700), seed=5)
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    exif = Image.Exif()
    exif[0x0112] = orientation  # the camera stores the sensor's pixels and says how to turn them
    shown.transpose(undo[orientation]).save(tmp_path / "turned.jpg", exif=exif, quality=92)
    [counted] = count_coins([tmp_path / "turned.jpg"], synthetic_head / "head", tta="none", sizes=False)
    assert counted.image_size == shown.size and len(counted.coins) == len(discs)
    for x, y, r in discs:
        nearest = min(counted.coins, key=lambda c: np.hypot(c.x - x, c.y - y))
        assert np.hypot(nearest.x - x, nearest.y - y) < 6 and abs(nearest.diameter_px / 2 - r) / r < 0.06


def test_bad_photos_each_get_one_clear_line_and_the_rest_are_counted(synthetic_head, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(synthetic_head / "pile.jpg", photos / "pile.jpg")
    Image.new("RGB", (800, 600), BACKGROUND).save(photos / "blank.png")
    screenshot = Image.new("RGB", (900, 600), (255, 255, 255))
    draw = ImageDraw.Draw(screenshot)
    draw.rectangle([0, 0, 900, 60], fill=(40, 90, 200))
    draw.ellipse([40, 120, 140, 220], fill=(200, 60, 60))  # a round avatar: not a coin
    for row in range(10):
        draw.text((180, 120 + 40 * row), "a message in a chat app " * 3, fill=(0, 0, 0))
    screenshot.save(photos / "screenshot.png")
    pile([(300 + 600 * i, 150, 90) for i in range(4)], size=(2700, 300)).save(photos / "panorama.jpg")
    data = (synthetic_head / "pile.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "truth.csv").write_text(
        "photo,10c,3e,value_cents\npile.jpg,1,0,10\nblank.png,0,0,0\ntruncated.jpg,0,1,300\n"
    )
    args = ["count", str(photos), "--head", str(synthetic_head / "head"), "--tta", "none"]
    assert main(args) == 1, "the truncated photo is an error"
    printed = capsys.readouterr().out
    lines = {
        Path(line.split(":")[0]).name: line
        for line in printed.splitlines()
        if ".png:" in line or ".jpg:" in line
    }
    assert lines["blank.png"].endswith("no coin found in this photo")
    assert "skipped: corrupt or truncated image" in lines["truncated.jpg"]
    assert "pile.jpg: 3 coin(s)" in lines["pile.jpg"]
    assert "note: a panorama (2700x300): coins under about" in printed
    assert "note: flat colours, as in a screenshot" in printed
    assert printed.count("note: ") == 2, "the real photos get no note"
    assert main([*args, "--truth", str(tmp_path / "truth.csv"), "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert "note: the truth names classes the head never learned: 3e" in printed
    assert "photos: 3" in printed and "unreadable: 1" in printed
    assert "corrupt or truncated" in (tmp_path / "report" / "report.md").read_text()


def test_user_mistakes_are_one_line_errors(synthetic_head, tmp_path, capsys):
    root = synthetic_head
    (tmp_path / "sizes.json").write_text('{"10c": "big"}')
    for extra, message in (
        (["--threshold", "1.5"], "--threshold"),
        (["--margin", "-1"], "--margin"),
        (["--sizes", str(tmp_path / "sizes.json")], "diameter in mm"),
        (["--values", str(tmp_path / "missing.json")], "values file not found"),
    ):
        assert main(["count", str(root / "pile.jpg"), "--head", str(root / "head"), *extra]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


@pytest.mark.slow
@needs_euro
@needs_lite0
@needs_piles
def test_a_real_pile_photo_end_to_end(tmp_path):
    """A Lite0 head fitted on part of euro-coins/test (never these coins) counts train_1.jpg."""
    from coinfeat.core.extraction.extract import ExtractConfig, extract_features
    from coinfeat.fit import fit_head

    for class_dir in sorted((EURO / "test").iterdir()):
        (tmp_path / "d" / class_dir.name).mkdir(parents=True)
        for photo in sorted(class_dir.glob("*.jpg"))[::4]:
            shutil.copy(photo, tmp_path / "d" / class_dir.name / photo.name)
    config = ExtractConfig(
        backbone=str(LITE0), group_regex=EURO_GROUPS, split=(0.85, 0.15, 0), progress=False
    )
    extract_features(tmp_path / "d", tmp_path / "s", config)
    fit_head(tmp_path / "s", "logreg", tmp_path / "head")
    [result] = count_coins([PILES / "train" / "train_1.jpg"], tmp_path / "head", out=tmp_path / "out")
    assert abs(len(result.coins) - 29) <= 1  # 29 coins visible (28 were cropped for euro-coins)
    assert result.answer == "sizes" and 12 < result.scale_px_per_mm < 20
    assert set(result.total) == {"EUR"} and 5 < result.total["EUR"] < 15  # truth: 10.00 EUR
    assert CoinCounter(tmp_path / "head").crop_side == 150


def test_crop_convention_tells_fixed_size_crops_from_coin_filling_ones(tmp_path):
    from coinfeat.core.images.crop import CropConvention, measure_crops

    classes = ["1c", "10c", "20c", "2e"]
    diameters = class_diameters(classes, {})
    fixed = CropConvention(150, {c: 26.0 / d for c, d in zip(classes, diameters)})  # one physical size
    filling = CropConvention(150, {c: 1.2 for c in classes})  # every coin fills its crop alike
    assert fixed.fixed_side_mm(classes, diameters) == pytest.approx(26.0)
    assert filling.fixed_side_mm(classes, diameters) is None and filling.margin() == pytest.approx(0.1)
    assert CropConvention().margin() == 0.1

    paths = []
    for label, ratio in (("small", 1.6), ("big", 1.1)):
        path, side, r = tmp_path / f"{label}.jpg", 150, 150 / ratio / 2
        img = Image.new("RGB", (side, side), BACKGROUND)
        ImageDraw.Draw(img).ellipse(
            [side / 2 - r, side / 2 - r, side / 2 + r, side / 2 + r], fill=(180, 120, 60)
        )
        img.save(path, quality=95)
        paths.append(path)
    record = measure_crops(paths, ["small", "big"])
    assert record["photo_side_px"] == 150
    assert record["ratio"]["small"] == pytest.approx(1.6, rel=0.03) and record["ratio"][
        "big"
    ] == pytest.approx(1.1, rel=0.03)


def test_many_photos_are_looked_at_ahead_and_answered_in_order(synthetic_head, tmp_path):
    """count_coins decodes and searches the next photos on another thread while the network works
    on this one; the answers are those of counting each photo alone, in the order given."""
    root = synthetic_head
    photos = []
    for i in range(4):
        photos.append(tmp_path / f"p{i}.jpg")
        shutil.copy(root / "pile.jpg", photos[-1])
        if i == 1:
            photos.append(tmp_path / "broken.jpg")
            photos[-1].write_bytes(b"not a photo")
    Image.new("RGB", (500, 400), BACKGROUND).save(tmp_path / "blank.jpg")
    photos.append(tmp_path / "blank.jpg")
    together = count_coins(photos, root / "head", tta="none")
    counter = CoinCounter(root / "head", tta="none")
    alone = [counter.count(photo) for photo in photos]
    assert [r.path for r in together] == [str(p) for p in photos]
    strip = lambda r: {k: v for k, v in r.to_dict().items() if k != "seconds"}  # noqa: E731
    assert [strip(r) for r in together] == [strip(r) for r in alone]
    assert together[2].error and not together[-1].coins and len(together[0].coins) == 3


def test_run_ahead_keeps_a_window_of_calls_in_flight_and_the_order():
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from coinfeat.core.extraction.pipeline import run_ahead

    started, lock = [], threading.Lock()

    def work(n: int) -> int:
        with lock:
            started.append(n)
        time.sleep(0.01 * (5 - n % 5))  # later items finish first
        return n * n

    with ThreadPoolExecutor(3) as pool:
        seen = []
        for n, future in run_ahead(pool, work, range(12), window=3):
            with lock:
                assert max(started) <= n + 2, "no more than the window (3, this one included) in flight"
            seen.append((n, future.result()))
    assert seen == [(n, n * n) for n in range(12)]
