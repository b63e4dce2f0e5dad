"""Similar-coin lookup, duplicates and unknown coins, on real photos with the pretrained backbone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import EURO, EURO_GROUPS, LITE0, needs_euro, needs_lite0
from PIL import Image

from coinfeat import ExtractConfig, extract_features
from coinfeat.similar import calibrate_unknown, find_duplicates, find_similar, similar_sheet

pytestmark = [needs_euro, needs_lite0]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A 300-photo slice of euro-coins with one planted duplicate under a wrong label."""
    root = tmp_path_factory.mktemp("similar")
    data = root / "euro"
    for split, per_class in (("train", 28), ("test", 10)):
        for class_dir in sorted((EURO / split).iterdir()):
            target = data / split / class_dir.name
            target.mkdir(parents=True)
            for photo in sorted(class_dir.glob("*.jpg"))[:per_class]:
                shutil.copy(photo, target / photo.name)
    planted = sorted((data / "train" / "1e").glob("*.jpg"))[0]
    shutil.copy(planted, data / "train" / "2e" / f"planted_{planted.name}")
    config = ExtractConfig(backbone=str(LITE0), group_regex=EURO_GROUPS, progress=False)
    store = extract_features(data, root / "store", config).store
    return data, root / "store", planted, store


@pytest.mark.slow
def test_a_stored_photo_is_its_own_nearest_neighbour(real):
    data, store, _, _ = real
    query = sorted((data / "train" / "20c").glob("*.jpg"))[3]
    [result] = find_similar([str(query)], store, k=3, split="all")
    assert result.neighbours[0].path == str(query.resolve())
    assert result.neighbours[0].similarity == pytest.approx(1.0, abs=1e-4)
    [excluded] = find_similar([str(query)], store, k=3, split="all", exclude_self=True)
    assert str(query.resolve()) not in [n.path for n in excluded.neighbours]
    assert len(excluded.neighbours) == 3


def test_planted_duplicate_with_another_label_is_flagged(real, tmp_path):
    _, store, planted, _ = real
    pairs = find_duplicates(store, threshold=0.97)
    conflicts = pairs[pairs.label_conflict]
    assert len(conflicts) >= 1
    first = conflicts.iloc[0]
    assert {first.label_a, first.label_b} == {"1e", "2e"} and first.similarity > 0.999
    assert planted.name in first.path_a + first.path_b
    sheet = tmp_path / "dups.png"
    from coinfeat.similar import duplicates_sheet

    duplicates_sheet(pairs, sheet)
    with Image.open(sheet) as img:
        img.verify()


def test_a_rotated_copy_finds_its_original(real, tmp_path):
    data, store, _, _ = real
    original = sorted((data / "test" / "50c").glob("*.jpg"))[2]
    rotated = tmp_path / "rotated.jpg"
    Image.open(original).rotate(90, expand=True).save(rotated, quality=95)
    [result] = find_similar([str(rotated)], store, k=5, split="all")
    assert str(original.resolve()) in [n.path for n in result.neighbours]


@pytest.mark.slow
def test_noise_and_a_non_coin_are_unknown_at_the_calibrated_threshold(real, tmp_path):
    data, store, _, _ = real
    record = calibrate_unknown(store, target_false_match=0.05)
    assert 0 < record["threshold"] < 1 and record["false_match_rate_val"] <= 0.05
    assert json.loads((store / "unknown-threshold.json").read_text())["threshold"] == record["threshold"]
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(noise)
    checker = tmp_path / "checkerboard.png"
    board = (np.indices((224, 224)).sum(axis=0) // 28 % 2 * 255).astype(np.uint8)
    Image.fromarray(np.stack([board, board // 2, 255 - board], axis=-1)).save(checker)
    coin = sorted((data / "train" / "5c").glob("*.jpg"))[0]
    results = find_similar([str(noise), str(checker), str(coin)], store, k=3)
    assert results[0].unknown and results[1].unknown
    assert not results[2].unknown, "a photo from the collection is not unknown"


@pytest.mark.slow
def test_contact_sheet_and_cli(real, tmp_path):
    data, store, _, _ = real
    query = sorted((data / "test" / "1c").glob("*.jpg"))[0]
    [result] = find_similar([str(query)], store, k=4)
    sheet = similar_sheet(result, tmp_path / "sheet.png")
    with Image.open(sheet) as img:
        assert img.format == "PNG" and img.width >= 4 * 160
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "coinfeat",
            "similar",
            str(query),
            "--features",
            str(store),
            "--k",
            "2",
            "--json",
            "--sheet",
            str(tmp_path / "cli.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    parsed = json.loads(out.stdout)
    assert len(parsed[0]["neighbours"]) == 2 and (tmp_path / "cli.png").is_file()
    missing = subprocess.run(
        [sys.executable, "-m", "coinfeat", "similar", "--features", str(store)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 1 and "QUERY" in missing.stderr and "Traceback" not in missing.stderr


def test_grouped_euro_coins_splits_have_no_twins_and_the_planted_conflict_is_dropped(real, tmp_path):
    from coinfeat.compare import CompareConfig, compare_heads
    from coinfeat.compare.report import leakage_line

    _, store, _, _ = real
    comparison = compare_heads(store, CompareConfig(heads=["centroid"], top_k=[1], drop_conflicts=True))
    twins = comparison.twins["test"]
    assert len(twins) == 80 and twins["twin_kind"].eq("").all() and comparison.headline == "all"
    assert twins["twin_similarity"].max() < 0.97
    assert leakage_line(comparison).startswith("Leakage: none of the 80 test photos")
    [note] = comparison.notes
    dropped = [int(word) for word in note.split() if word.isdigit()]
    assert dropped[0] + dropped[1] == 2, note
