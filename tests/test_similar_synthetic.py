"""Duplicates, label noise and unknown-coin calibration on generated photos (no shared data needed)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import ChunkOnlyVectors, small_config, write_class_folders

from coinfeat import cli, extract_features, open_store
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.store import Manifest, Store
from coinfeat.predict import predict_images
from coinfeat.similar import CALIBRATION_FILE, calibrate_unknown, find_duplicates, find_similar


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Generated coins with one photo copied into its own class and one copied under a wrong label."""
    root = tmp_path_factory.mktemp("dups")
    data = write_class_folders(root / "d", per_class=12)
    shutil.copy(data / "gold" / "gold0_0.jpg", data / "gold" / "gold0_7.jpg")
    shutil.copy(data / "gold" / "gold1_0.jpg", data / "silver" / "gold1_0.jpg")
    extract_features(data, root / "s", small_config())
    return data, root / "s"


def test_find_duplicates_flags_copies_and_label_noise(planted):
    _, store = planted
    pairs = find_duplicates(store, threshold=0.999)
    named = {
        frozenset((a.split("/d/")[1], b.split("/d/")[1])): row
        for a, b, row in zip(pairs["path_a"], pairs["path_b"], pairs.itertuples())
    }
    copy = named[frozenset(("gold/gold0_0.jpg", "gold/gold0_7.jpg"))]
    noise = named[frozenset(("gold/gold1_0.jpg", "silver/gold1_0.jpg"))]
    assert not copy.label_conflict and copy.similarity == pytest.approx(1.0, abs=1e-4)
    assert noise.label_conflict and {noise.label_a, noise.label_b} == {"gold", "silver"}
    assert pairs["label_conflict"].iloc[0]  # conflicts are listed first


def test_duplicates_command_writes_csv_and_sheet(planted, tmp_path, capsys):
    _, store = planted
    code = cli.main(
        [
            "similar",
            "--duplicates",
            "--features",
            str(store),
            "--threshold",
            "0.999",
            "--out",
            str(tmp_path / "dups"),
            "--json",
        ]
    )
    assert code == 0
    answer = json.loads(capsys.readouterr().out)
    table = pd.read_csv(answer["csv"])
    assert answer["pairs"] == len(table) >= 2 and answer["label_conflicts"] == int(
        table["label_conflict"].sum()
    )
    assert (tmp_path / "dups" / "duplicates.png").stat().st_size > 1000


def test_calibrate_unknown_meets_its_false_match_target_and_is_used(planted):
    _, store = planted
    record = calibrate_unknown(store, target_false_match=0.2)
    assert record["false_match_rate_val"] <= 0.2
    assert record["val_queries"] == len(open_store(store).rows("val")) > 0
    assert 0 <= record["known_accepted_rate_val"] <= 1
    assert json.loads((store / CALIBRATION_FILE).read_text())["threshold"] == record["threshold"]
    query = open_store(store).select("train")[1]["path"].iloc[0]
    [result] = find_similar([query], store, k=3)
    assert result.threshold == record["threshold"]


def test_calibrate_unknown_streams_the_train_split(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    labels = np.repeat([f"c{i}" for i in range(4)], 150)
    X = (centres[np.repeat(np.arange(4), 150)] + 0.3 * rng.normal(size=(600, 16))).astype(np.float32)
    split = np.where(np.arange(600) % 150 < 120, "train", "val")
    items = pd.DataFrame({"label": labels, "split": split, "status": "ok", "view": 0, "path": "p"})
    vectors = ChunkOnlyVectors(X)
    fake = Store(tmp_path, Manifest(fingerprint="f"), items, vectors)
    monkeypatch.setattr("coinfeat.similar.unknown.open_store", lambda features: fake)
    record = calibrate_unknown(tmp_path, target_false_match=0.05, chunk=50)
    assert vectors.largest <= 50
    assert record["val_queries"] == 120 and record["known_accepted_correct_rate_val"] == 1.0


def test_k_and_top_k_are_checked_from_python_too(planted, tmp_path):
    data, store = planted
    with pytest.raises(CoinfeatError, match="--k must be at least 1"):
        find_similar([str(data / "gold" / "gold0_0.jpg")], store, k=0)
    with pytest.raises(CoinfeatError, match="--top-k must be at least 1"):
        predict_images([str(data / "gold" / "gold0_0.jpg")], tmp_path / "no-head", top_k=0)
