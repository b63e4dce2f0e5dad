"""predict on folders and manifests: one row per photo, errors as rows, accuracy equal to compare's."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from helpers import EURO, EURO_GROUPS, needs_euro, small_config, write_class_folders

from coinfeat import cli, extract_features
from coinfeat.compare import CompareConfig, compare_heads
from coinfeat.fit import fit_head
from coinfeat.predict import accuracy, predict_images


@pytest.fixture(scope="module")
def split_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("pf")
    for split, per_class in (("train", 10), ("test", 6)):
        write_class_folders(root / "d" / split, per_class=per_class)
    extract_features(root / "d", root / "s", small_config())
    head = fit_head(root / "s", "logreg", root / "head").head_dir
    return root, head


def test_a_folder_gives_one_labelled_row_per_photo_and_errors_as_rows(split_set, tmp_path):
    root, head = split_set
    folder = tmp_path / "photos"
    shutil.copytree(root / "d" / "test", folder)
    (folder / "gold" / "broken.jpg").write_bytes(b"not a jpeg")
    shutil.copy(folder / "gold" / "gold0_0.jpg", folder / "loose.jpg")
    results = predict_images([folder], head, top_k=2, tta="none")
    assert len(results) == 3 * 6 + 2
    broken = [r for r in results if r.path.endswith("broken.jpg")]
    assert broken[0].error and broken[0].truth == "gold"
    assert [r.truth for r in results if r.path.endswith("loose.jpg")] == [None]
    scores = accuracy(results)
    scored = [r for r in results if r.truth and not r.error]
    assert scores["photos"] == len(scored) == 18 and scores["unreadable"] == 1
    assert scores["top1"] == pytest.approx(sum(r.labels[0] == r.truth for r in scored) / 18)


def test_a_csv_manifest_and_the_cli_write_rows_and_accuracy(split_set, tmp_path, capsys):
    root, head = split_set
    photos = sorted((root / "d" / "test").rglob("*.jpg"))
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"path": [str(p) for p in photos], "label": [p.parent.name for p in photos]}).to_csv(
        manifest, index=False
    )
    out = tmp_path / "p.csv"
    code = cli.main(
        [
            "predict",
            str(manifest),
            "--head",
            str(head),
            "--tta",
            "none",
            "--top-k",
            "2",
            "--out",
            str(out),
            "--json",
        ]
    )
    answer = json.loads(capsys.readouterr().out)
    table = pd.read_csv(out)
    assert code == 0 and len(table) == len(photos) == answer["accuracy"]["photos"]
    assert list(table.columns[:4]) == ["path", "truth", "top1_label", "top1_name"]
    assert answer["accuracy"]["top1"] == pytest.approx((table["top1_label"] == table["truth"]).mean())


def test_predict_accuracy_equals_compare_on_the_same_photos(split_set):
    root, head = split_set
    comparison = compare_heads(root / "s", CompareConfig(heads=[], load={"lr": str(head)}, top_k=[1, 2]))
    metrics = comparison.results[0].metrics["test"]
    scores = accuracy(predict_images([root / "d" / "test"], head, top_k=2, tta="none"))
    assert scores["top1"] == pytest.approx(metrics["top1"])
    assert scores["top2"] == pytest.approx(metrics["top2"])
    assert scores["balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"])


@pytest.mark.slow
@needs_euro
def test_predict_on_the_shared_test_folder(tmp_path, capsys):
    extract_features(EURO, tmp_path / "s", small_config(group_regex=EURO_GROUPS))
    head = fit_head(tmp_path / "s", "logreg", tmp_path / "head").head_dir
    code = cli.main(
        [
            "predict",
            str(EURO / "test"),
            "--head",
            str(head),
            "--tta",
            "none",
            "--top-k",
            "3",
            "--out",
            str(tmp_path / "p.csv"),
            "-q",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and len(pd.read_csv(tmp_path / "p.csv")) == 1539
    comparison = compare_heads(tmp_path / "s", CompareConfig(heads=[], load={"lr": str(head)}, top_k=[1, 3]))
    top1 = comparison.results[0].metrics["test"]["top1"]
    assert f"accuracy on 1539 labelled photos: top-1 {top1:.3f}" in printed


@pytest.mark.slow
@needs_euro
def test_a_separately_embedded_test_folder_gives_the_ordinary_figures(tmp_path):
    extract_features(EURO, tmp_path / "all", small_config(group_regex=EURO_GROUPS))
    extract_features(EURO / "test", tmp_path / "test-only", small_config(group_regex=EURO_GROUPS))
    heads = ["logreg", "centroid"]
    ordinary = compare_heads(tmp_path / "all", CompareConfig(heads=heads, top_k=[1, 3]))
    separate = compare_heads(
        tmp_path / "all", CompareConfig(heads=heads, top_k=[1, 3], test_features=str(tmp_path / "test-only"))
    )
    assert len(separate.splits["test"]) == len(ordinary.splits["test"]) == 1539
    for a, b in zip(ordinary.results, separate.results):
        for key in ("top1", "top3", "balanced_accuracy"):
            assert b.metrics["test"][key] == pytest.approx(a.metrics["test"][key]), (a.name, key)


def test_each_label_part_gets_its_summed_probability():
    import numpy as np

    from coinfeat.core.metrics import label_parts, part_answers

    names = {"a": "1 Lira,Turkish lira,turkey", "b": "5 Lira,Turkish lira,turkey", "c": "1 Euro,Euro,spain"}
    parts = label_parts(np.array(["a", "b", "c"]), names, None)
    answers = part_answers(np.array([0.40, 0.35, 0.25]), parts)
    assert answers["country"] == {"value": "turkey", "probability": 0.75}
    assert answers["denomination"] == {"value": "1 Lira", "probability": 0.4}
    assert part_answers(np.array([0.5, 0.5]), label_parts(np.array(["x", "y"]), {}, None)) == {}
