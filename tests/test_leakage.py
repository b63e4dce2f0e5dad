"""Leakage-aware evaluation: twins of training photos in the test split, and label conflicts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import small_config
from PIL import Image
from sklearn.metrics import balanced_accuracy_score

from coinfeat.compare import CompareConfig, compare_heads
from coinfeat.compare.report import write_report
from coinfeat.core.extraction.extract import extract_features
from coinfeat.fit import fit_head

TWINS = {"test/a/copy_0.jpg": "identical", "test/b/resaved_0.jpg": "near", "test/c/shift_0.jpg": "near"}


def photo(seed: int, size: int = 96) -> Image.Image:
    """A smooth random colour field: photos of different seeds are far apart even for random weights."""
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 255, (6, 6, 3)).astype(np.uint8)).resize(
        (size, size), Image.BICUBIC
    )
    arr = np.asarray(low).astype(np.int16) + rng.integers(-10, 10, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def leaky_store(tmp_path_factory):
    """train/val/test folders; the test split holds 6 new photos, one byte-identical copy of a train
    photo, one re-saved at JPEG quality 70 and one shifted by a pixel."""
    root = tmp_path_factory.mktemp("leaky")
    data = root / "data"
    for k, label in enumerate("abc"):
        for split, count, base in (("train", 4, 0), ("val", 1, 50), ("test", 2, 1000)):
            (data / split / label).mkdir(parents=True)
            for i in range(count):
                photo(base + 100 * k + i).save(
                    data / split / label / f"{split[:2]}{label}{i}_0.jpg", quality=95
                )
    shutil.copy(data / "train/a/tra0_0.jpg", data / "test/a/copy_0.jpg")
    Image.open(data / "train/b/trb1_0.jpg").save(data / "test/b/resaved_0.jpg", quality=70)
    shifted = np.roll(np.asarray(Image.open(data / "train/c/trc2_0.jpg")), 1, axis=1)
    Image.fromarray(shifted).save(data / "test/c/shift_0.jpg", quality=95)
    extract_features(data, root / "store", small_config())
    return root / "store"


@pytest.mark.slow
def test_twins_are_found_and_every_figure_is_split_three_ways(leaky_store, tmp_path):
    comparison = compare_heads(leaky_store, CompareConfig(heads=["centroid", "knn"], top_k=[1, 2]))
    items, twins = comparison.splits["test"], comparison.twins["test"]
    found = dict(zip(items["path"][twins["twin_kind"].ne("")], twins["twin_kind"][twins["twin_kind"].ne("")]))
    assert found == TWINS
    matched = dict(zip(items["path"], twins["twin"]))
    assert matched["test/a/copy_0.jpg"] == "train/a/tra0_0.jpg"
    assert matched["test/b/resaved_0.jpg"] == "train/b/trb1_0.jpg"
    assert matched["test/c/shift_0.jpg"] == "train/c/trc2_0.jpg"
    assert comparison.headline == "clean"

    twin_rows = items["path"].isin(list(TWINS)).to_numpy()
    y_true = items["label"].to_numpy()
    for r in comparison.results:
        y_pred = r.head.classes_[np.argmax(r.proba["test"], axis=1)]
        for subset, mask in (("all", np.ones_like(twin_rows)), ("clean", ~twin_rows), ("twins", twin_rows)):
            m = r.subsets[subset]
            assert m["n"] == mask.sum()
            assert m["top1"] == pytest.approx(np.mean(y_pred[mask] == y_true[mask]))
            assert m["balanced_accuracy"] == pytest.approx(
                balanced_accuracy_score(y_true[mask], y_pred[mask])
            )
            in_top2 = [
                t in r.head.classes_[np.argsort(-p)[:2]] for t, p in zip(y_true[mask], r.proba["test"][mask])
            ]
            assert m["top2"] == pytest.approx(np.mean(in_top2))
    best = max(comparison.results, key=lambda r: r.subsets["clean"]["balanced_accuracy"])
    assert comparison.best.subsets["clean"]["balanced_accuracy"] == best.subsets["clean"]["balanced_accuracy"]

    write_report(comparison, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["headline"] == "clean"
    assert metrics["twins"]["counts"]["test"] == {"all": 9, "clean": 6, "twins": 3, "identical": 1, "near": 2}
    assert metrics["heads"]["knn"]["subsets"]["twins"]["n"] == 3
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    test_rows = predictions[predictions["split"].eq("test")].set_index("path")
    assert test_rows.loc["test/b/resaved_0.jpg", "twin"] == "train/b/trb1_0.jpg"
    assert test_rows.loc["test/a/tea0_0.jpg", "twin"] == ""
    report = (tmp_path / "report.md").read_text()
    assert "Leakage: 3 of 9 test photos have a twin" in report
    assert "1 identical, 2 near-identical" in report and "All, clean and twin test photos" in report


def test_twin_threshold_decides_what_near_means(leaky_store):
    strict = compare_heads(leaky_store, CompareConfig(heads=["centroid"], top_k=[1], twin_threshold=0.99999))
    twins = strict.twins["test"]
    assert list(twins["twin_kind"][twins["twin_kind"].ne("")]) == ["identical"]
    loose = compare_heads(leaky_store, CompareConfig(heads=["centroid"], top_k=[1], twin_threshold=0.5))
    assert loose.twins["test"]["twin_kind"].ne("").all() and loose.headline == "all"


def test_drop_conflicts_leaves_out_photos_filed_under_two_labels(leaky_store, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(leaky_store.parent / "data", data)
    shutil.copy(data / "train/a/tra1_0.jpg", data / "train/b/conflict_0.jpg")
    extract_features(data, tmp_path / "store", small_config())
    kept = fit_head(tmp_path / "store", "centroid", out=tmp_path / "h1")
    dropped = fit_head(tmp_path / "store", "centroid", out=tmp_path / "h2", drop_conflicts=True)
    assert (kept.train, kept.dropped_conflicts) == (13, 0)
    assert (dropped.train, dropped.dropped_conflicts) == (11, 2)
    comparison = compare_heads(
        tmp_path / "store", CompareConfig(heads=["centroid"], top_k=[1], drop_conflicts=True)
    )
    assert len(comparison.splits["train"]) == 11
    assert any("left out 2 train and 0 val" in note for note in comparison.notes)


def test_conflict_pairs_by_hand():
    from coinfeat.core.data.leakage import conflict_pairs

    items = pd.DataFrame(
        {
            "path": ["tr/a1", "tr/b1", "te/a1", "va/c1", "tr/c9", "te/x"],
            "sha256": ["h1", "h1", "h2", "h3", "h4", "h5"],
            "label": ["a", "b", "a", "c", "c", "d"],
            "split": ["train", "train", "test", "val", "train", "test"],
            "status": "ok",
            "view": 0,
        }
    )
    X = np.eye(6, dtype=np.float32)
    X[3] = X[4] = [0, 0, 0, 1, 1, 0]  # va/c1 is a near twin of tr/c9 (cosine 1)
    X[2] = X[0]  # te/a1 looks like tr/a1 but is filed under the same label: a cross-split twin
    pairs = conflict_pairs(items, X).sort_values("path_b").reset_index(drop=True)
    assert pairs[["kind", "path_a", "label_a", "path_b", "label_b", "split_b"]].values.tolist() == [
        ["cross-split twin", "tr/a1", "a", "te/a1", "a", "test"],
        ["label conflict", "tr/a1", "a", "tr/b1", "b", "train"],
        ["cross-split twin", "tr/c9", "c", "va/c1", "c", "val"],
    ]


@pytest.mark.slow
def test_extraction_lists_label_conflicts_and_cross_split_copies_in_a_csv(tmp_path):
    from coinfeat.core.data.leakage import CONFLICTS_FILE

    data = tmp_path / "data"
    for k, label in enumerate("ab"):
        for split, base in (("train", 0), ("test", 500)):
            (data / split / label).mkdir(parents=True)
            for i in range(3):
                photo(base + 100 * k + i).save(data / split / label / f"{split[:2]}{label}{i}_0.jpg")
    shutil.copy(data / "train/a/tra0_0.jpg", data / "train/b/filed_twice_0.jpg")
    shutil.copy(data / "train/b/trb1_0.jpg", data / "test/b/copy_0.jpg")
    summary = extract_features(data, tmp_path / "store", small_config(image_size=32))
    listed = pd.read_csv(tmp_path / "store" / CONFLICTS_FILE)
    conflicts = listed[listed["kind"].eq("label conflict")]
    assert {conflicts["path_a"].iloc[0], conflicts["path_b"].iloc[0]} == {
        "train/a/tra0_0.jpg",
        "train/b/filed_twice_0.jpg",
    }
    assert set(conflicts[["label_a", "label_b"]].iloc[0]) == {"a", "b"}
    crossing = listed[listed["kind"].eq("cross-split twin") & listed["path_b"].eq("test/b/copy_0.jpg")]
    assert crossing["path_a"].tolist() == ["train/b/trb1_0.jpg"]
    assert any(CONFLICTS_FILE in note and "1 label conflict" in note for note in summary.notes)
