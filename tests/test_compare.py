"""coinfeat compare: every report file exists, opens, and agrees with the predictions."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import raw_markdown, small_config, write_class_folders
from PIL import Image

from coinfeat import extract_features, open_store
from coinfeat.compare import CompareConfig, compare_heads
from coinfeat.compare.plots import cluster_order
from coinfeat.compare.report import write_report
from coinfeat.core.errors import CoinfeatError

COLOURS = {
    "copper": (184, 115, 51),
    "gold": (212, 175, 55),
    "silver": (170, 170, 180),
    "black": (20, 20, 20),
    "green": (30, 160, 60),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    data = write_class_folders(root / "coins", per_class=14, colours=COLOURS)
    names = {
        label: f"{i + 1} Unit,{'Euro' if i % 2 else 'Dollar'},{label}land" for i, label in enumerate(COLOURS)
    }
    (data / "cat_to_name.json").write_text(json.dumps(names))
    extract_features(data, root / "store", small_config())
    return root / "store"


@pytest.mark.slow
def test_report_files_exist_open_and_agree(store, tmp_path):
    config = CompareConfig(heads=["logreg", "knn", "centroid"], top_k=[1, 2], cv=2, confusion_top=4)
    comparison = compare_heads(store, config, heads_dir=tmp_path / "heads")
    html_path = write_report(comparison, tmp_path)
    assert raw_markdown(html_path.read_text()) == []
    assert "<b>Use <code>" in html_path.read_text()
    for name in (
        "report.md",
        "report.html",
        "metrics.json",
        "per_class.csv",
        "predictions.parquet",
        "topk.png",
        "confusion_logreg.png",
        "confusion_knn.png",
        "confusion_centroid.png",
    ):
        assert (tmp_path / name).is_file(), name
    for png in tmp_path.glob("*.png"):
        with Image.open(png) as img:
            img.verify()
        with Image.open(png) as img:
            assert 300 <= img.width <= 5000 and 250 <= img.height <= 5000
    html = html_path.read_text()
    assert "data:image/png;base64," in html and 'src="http' not in html
    assert "NOT PRETRAINED" in html and "NOT PRETRAINED" in (tmp_path / "report.md").read_text()

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    test = predictions[predictions.split == "test"]
    assert len(test) == metrics["split_sizes"]["test"]
    for head in ("logreg", "knn", "centroid"):
        recomputed_top1 = np.mean(test[f"{head}_top1_label"] == test.true_label)
        recomputed_top2 = np.mean(
            (test[f"{head}_top1_label"] == test.true_label) | (test[f"{head}_top2_label"] == test.true_label)
        )
        assert metrics["heads"][head]["test"]["top1"] == pytest.approx(recomputed_top1)
        assert metrics["heads"][head]["test"]["top2"] == pytest.approx(recomputed_top2)
        assert set(metrics["heads"][head]["cv"]) >= {"top1", "balanced_accuracy"}
        assert metrics["heads"][head]["size_bytes"] > 0
        assert set(metrics["heads"][head]["label_parts"]) == {"denomination", "currency", "country"}
    assert metrics["recommended_head"] in {"logreg", "knn", "centroid"}
    per_class = pd.read_csv(tmp_path / "per_class.csv")
    assert set(per_class["head"]) == {"logreg", "knn", "centroid"}
    assert (tmp_path / "heads" / "knn" / "head.json").is_file()


def test_loaded_heads_are_evaluated_and_checked(store, tmp_path):
    from coinfeat.fit import fit_head

    fit_head(store, "centroid", tmp_path / "mine")
    comparison = compare_heads(store, CompareConfig(heads=["knn"], load={"mine": str(tmp_path / "mine")}))
    assert [r.name for r in comparison.results] == ["knn", "mine"]
    with pytest.raises(CoinfeatError, match="unknown head type"):
        compare_heads(store, CompareConfig(heads=["forest"]))


def test_cluster_order_puts_confused_classes_together():
    m = np.eye(4) * 10
    m[0, 3] = m[3, 0] = 5
    m[1, 2] = m[2, 1] = 5
    order = list(cluster_order(m))
    assert abs(order.index(0) - order.index(3)) == 1 and abs(order.index(1) - order.index(2)) == 1


@pytest.mark.slow
def test_compare_cli(store, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "coinfeat",
            "compare",
            "--features",
            str(store),
            "--heads",
            "knn,centroid",
            "--param",
            "knn.k=3",
            "--top-k",
            "1,3",
            "--out",
            str(tmp_path / "r"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["recommended_head"] in {"knn", "centroid"}
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["heads"]["knn"]["params"]["k"] == 3
    bad = subprocess.run(
        [sys.executable, "-m", "coinfeat", "compare", "--features", str(store), "--param", "k=3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and "HEAD.KEY=VALUE" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_confusion_png_stays_readable_for_300_classes(tmp_path):
    from types import SimpleNamespace

    import pandas as pd

    from coinfeat.compare.plots import plot_confusion

    rng = np.random.default_rng(0)
    classes = np.array([f"coin{i:03d}" for i in range(300)])
    y_true = rng.choice(classes, 3000)
    proba = rng.random((3000, 300))
    proba[np.arange(3000), np.searchsorted(classes, y_true)] += 3
    result = SimpleNamespace(name="big", proba={"test": proba}, head=SimpleNamespace(classes_=classes))
    for top in (None, 40, 300):
        comparison = SimpleNamespace(
            splits={"test": pd.DataFrame({"label": y_true})},
            eval_split="test",
            config=SimpleNamespace(confusion_top=top),
            names={},
        )
        path = plot_confusion(comparison, result, tmp_path / f"c{top}.png")
        with Image.open(path) as img:
            assert img.width <= 4000 and img.height <= 4000
    with Image.open(tmp_path / "c40.png") as small, Image.open(tmp_path / "c300.png") as full:
        assert small.width < full.width
    with Image.open(tmp_path / "cNone.png") as default, Image.open(tmp_path / "c40.png") as small:
        assert default.size == small.size, "300 classes show the 40 most confused by default"


def test_a_300_class_report_lists_the_worst_classes_not_all_of_them():
    from types import SimpleNamespace

    import pandas as pd

    from coinfeat.compare.tables import worst_classes_frame
    from coinfeat.core.metrics import per_class_metrics

    rng = np.random.default_rng(1)
    classes = np.array([f"coin{i:03d}" for i in range(300)])
    y_true = np.repeat(classes, 5)
    y_pred = y_true.copy()
    y_pred[y_true == "coin007"] = "coin008"  # every coin007 read as coin008
    y_pred[(y_true == "coin100")] = ["coin100", "coin101", "coin101", "coin102", "coin100"]
    proba = np.eye(300)[np.searchsorted(classes, y_pred)] + rng.random((1500, 300)) * 0.01
    best = SimpleNamespace(
        name="logreg",
        proba={"test": proba},
        head=SimpleNamespace(classes_=classes),
        per_class=per_class_metrics(y_true, y_pred),
    )
    comparison = SimpleNamespace(
        splits={"test": pd.DataFrame({"label": y_true})},
        eval_split="test",
        best=best,
        names={"coin008": "8 Kroner,Danish krone,denmark"},
    )
    worst = worst_classes_frame(comparison)
    assert len(worst) == 10
    assert worst.iloc[0].tolist() == ["coin007", 0.0, 5, "8 Kroner,Danish krone,denmark (coin008)"]
    assert worst.iloc[1]["class"] == "coin100" and worst.iloc[1]["most often taken for"] == "coin101"


def test_metrics_json_is_strict_json_when_a_head_makes_no_mistake(store, tmp_path):
    comparison = compare_heads(store, CompareConfig(heads=["centroid"], top_k=[1]))
    for metrics in comparison.results[0].metrics.values():
        metrics["confidence_when_wrong"] = float("nan")  # what a head with no mistake gets

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    write_report(comparison, tmp_path)
    document = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    centroid = document["heads"]["centroid"]
    assert centroid[comparison.eval_split]["confidence_when_wrong"] is None


@pytest.mark.slow
def test_keras_heads_keep_their_learning_curves_and_the_report_draws_them(store, tmp_path):
    config = CompareConfig(heads=["dense", "centroid"], top_k=[1], params={"dense": {"epochs": 4}})
    comparison = compare_heads(store, config, heads_dir=tmp_path / "heads")
    history = json.loads((tmp_path / "heads" / "dense" / "history.json").read_text())
    assert len(history["loss"]) == len(history["val_accuracy"]) == comparison.results[0].head.epochs_
    write_report(comparison, tmp_path / "report")
    with Image.open(tmp_path / "report" / "curves_dense.png") as img:
        assert img.size[0] > 500
    assert not (tmp_path / "report" / "curves_centroid.png").exists()
    assert "![dense](curves_dense.png)" in (tmp_path / "report" / "report.md").read_text()


def test_another_dataset_as_the_test_set_matches_labels_and_sets_unseen_apart(store, tmp_path):
    from helpers import write_class_folders as folders

    other = folders(tmp_path / "other", per_class=4, colours={k: COLOURS[k] for k in ("gold", "silver")})
    folders(tmp_path / "other", per_class=3, colours={"purple": (120, 40, 160)})
    extract_features(other, tmp_path / "other-store", small_config())
    config = CompareConfig(heads=["centroid", "knn"], top_k=[1], test_features=str(tmp_path / "other-store"))
    comparison = compare_heads(store, config)
    test = comparison.splits["test"]
    assert len(test) == 8 and set(test["label"]) == {"gold", "silver"}
    notes = " ".join(comparison.notes)
    assert "3 photo(s) of 1 class(es) the heads never saw" in notes and "purple" in notes
    assert "absent from the test set" in notes and "copper" in notes
    assert comparison.results[0].metrics["test"]["n"] == 8
    own = comparison.results[0].metrics["own_test"]
    assert own["n"] == len(open_store(store).select("test")[1]), "in-domain figures beside the external ones"
    write_report(comparison, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "own test top-1" in text and "the store's own test photos are scored beside" in text
    extract_features(other, tmp_path / "crop-store", small_config(resize="crop"))
    with pytest.raises(CoinfeatError, match="same extractor"):
        compare_heads(store, CompareConfig(heads=["centroid"], test_features=str(tmp_path / "crop-store")))


def test_reports_similar_and_duplicates_show_display_names_and_parts(store, tmp_path):
    from coinfeat.similar import find_duplicates, find_similar, write_duplicates

    comparison = compare_heads(store, CompareConfig(heads=["centroid"], top_k=[1]))
    write_report(comparison, tmp_path)
    names = json.loads((tmp_path / "metrics.json").read_text())
    assert set(names["heads"]["centroid"]["subsets"]["all"]["label_parts"]) == {
        "denomination",
        "currency",
        "country",
    }
    per_class = pd.read_csv(tmp_path / "per_class.csv")
    assert dict(zip(per_class["class"], per_class["name"]))["gold"] == "2 Unit,Euro,goldland"
    markdown = (tmp_path / "report.md").read_text()
    assert "Accuracy per label part" in markdown
    confused = markdown.split("## Most confused pairs")[1].split("##")[0]
    rows = [line for line in confused.splitlines() if line.startswith("| ![](thumbs/")]
    assert rows and all(line.count("Unit,") == 2 and line.count("land (") == 2 for line in rows)

    [result] = find_similar(["gold/gold3_0.jpg"], store, k=5, split="all", exclude_self=True)
    assert result.error is None and len(result.neighbours) == 5
    weights = pd.Series(
        [n.similarity for n in result.neighbours], [n.name.split(",")[2] for n in result.neighbours]
    )
    share = weights.groupby(level=0).sum() / weights.sum()
    assert result.parts["country"] == {"value": share.idxmax(), "probability": round(share.max(), 4)}

    duplicates = find_duplicates(store, threshold=0.0, neighbours=2)
    assert duplicates["name_a"].str.contains(",").all() and duplicates["name_a"].str.endswith(")").all()
    csv, sheet = write_duplicates(duplicates, store, tmp_path / "dups")
    assert "name_a" in pd.read_csv(csv).columns and sheet.stat().st_size > 1000


def test_class_groups_add_a_group_accuracy_and_bad_groups_are_refused(store):
    from coinfeat.core.metrics import group_accuracy, parse_groups

    config = CompareConfig(heads=["centroid"], top_k=[1], class_groups="copper,gold;silver")
    comparison = compare_heads(store, config)
    result = comparison.results[0]
    split = comparison.splits[comparison.eval_split]
    truth = split["label"].to_numpy()
    answer = result.head.classes_[result.proba[comparison.eval_split].argmax(axis=1)]
    expected = group_accuracy(truth, answer, parse_groups("copper,gold;silver"))
    assert result.subsets["all"]["label_parts"]["class group"] == pytest.approx(expected)
    assert expected >= result.metrics[comparison.eval_split]["top1"]
    with pytest.raises(CoinfeatError, match="--class-groups"):
        compare_heads(store, CompareConfig(heads=["centroid"], class_groups="gold;gold"))
