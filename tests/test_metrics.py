"""Metrics against values computed by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coinfeat.core.metrics import (
    confusion,
    label_parts,
    most_confused_pairs,
    part_accuracies,
    per_class_metrics,
    summary_metrics,
    top_k_accuracy,
)

CLASSES = np.array(["a", "b", "c"])
# Four test rows; class "c" never occurs in the truth (absent from the test split).
PROBA = np.array(
    [
        [0.7, 0.2, 0.1],  # true a: top1 hit
        [0.5, 0.3, 0.2],  # true b: top1 miss (a), top2 hit
        [0.1, 0.2, 0.7],  # true b: top1 miss (c), top2 hit
        [0.2, 0.6, 0.2],  # true b: top1 hit
    ]
)
TRUE = np.array(["a", "b", "b", "b"])


def test_top_k_with_a_class_absent_from_the_test_split():
    assert top_k_accuracy(TRUE, PROBA, CLASSES, 1) == pytest.approx(2 / 4)
    assert top_k_accuracy(TRUE, PROBA, CLASSES, 2) == pytest.approx(4 / 4)
    assert top_k_accuracy(TRUE, PROBA, CLASSES, 5) == pytest.approx(1.0)


def test_a_true_label_the_head_never_saw_counts_as_a_miss():
    truth = np.array(["a", "b", "b", "zz"])
    assert top_k_accuracy(truth, PROBA, CLASSES, 1) == pytest.approx(1 / 4)
    assert top_k_accuracy(truth, PROBA, CLASSES, 3) == pytest.approx(3 / 4)


def test_summary_metrics_by_hand():
    m = summary_metrics(TRUE, PROBA, CLASSES, [1, 2])
    # recall a = 1/1, recall b = 1/3 -> balanced accuracy over the true classes = (1 + 1/3) / 2
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 / 3) / 2)
    # precision a = 1/2 (a predicted twice), recall a = 1 -> F1 a = 2/3; b: P=1, R=1/3 -> F1 = 1/2
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.2, 0.6])))
    assert m["top1"] == pytest.approx(0.5) and m["top2"] == pytest.approx(1.0)
    assert m["confidence_when_right"] == pytest.approx((0.7 + 0.6) / 2)
    assert m["confidence_when_wrong"] == pytest.approx((0.5 + 0.7) / 2)
    assert m["n"] == 4 and m["unseen_label_rows"] == 0


def test_per_class_confusion_and_pairs():
    pred = np.array(["a", "a", "c", "b"])
    table = per_class_metrics(TRUE, pred).set_index("class")
    assert table.loc["a", "precision"] == pytest.approx(0.5) and table.loc["a", "recall"] == 1.0
    assert table.loc["b", "recall"] == pytest.approx(1 / 3) and table.loc["b", "support"] == 3
    assert table.loc["c", "support"] == 0 and table.loc["c", "precision"] == 0
    assert confusion(TRUE, pred, ["a", "b", "c"]).tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    pairs = most_confused_pairs(TRUE, pred)
    assert set(zip(pairs["true"], pairs["predicted"])) == {("b", "a"), ("b", "c")}
    assert pairs["share_of_true_class"].tolist() == pytest.approx([1 / 3, 1 / 3])


def test_hierarchical_label_parts():
    names = {
        "1": "1 Cent,Australian dollar,australia",
        "2": "1 Cent,Euro,germany",
        "3": "2 Euro,Euro,germany",
    }
    parts = label_parts(np.array(["1", "2"]), names, None)
    assert list(parts.columns) == ["denomination", "currency", "country"]
    acc = part_accuracies(np.array(["1", "2", "3"]), np.array(["2", "2", "2"]), names, None)
    assert acc["denomination"] == pytest.approx(2 / 3)
    assert acc["country"] == pytest.approx(2 / 3)
    assert acc["currency"] == pytest.approx(2 / 3)
    assert part_accuracies(np.array(["x"]), np.array(["y"]), {}, None) == {}
    custom = part_accuracies(
        np.array(["de-2e", "fr-2e"]), np.array(["de-1e", "de-2e"]), {}, r"(?P<country>[a-z]+)-(?P<value>\w+)"
    )
    assert custom == {"country": 0.5, "value": 0.5}


def test_empty_split_gives_nan_not_a_crash():
    assert math.isnan(top_k_accuracy(np.array([]), np.zeros((0, 3)), CLASSES, 1))


def test_no_confusions_gives_an_empty_table():
    pairs = most_confused_pairs(np.array(["a", "b"]), np.array(["a", "b"]))
    assert pairs.empty and list(pairs.columns) == ["true", "predicted", "count", "share_of_true_class"]


def test_accuracy_over_groups_of_classes_counts_answers_inside_the_true_group():
    from coinfeat.core.metrics import group_accuracy, parse_groups

    euro = parse_groups("euro")
    assert {"10c", "20c", "50c"} in euro and len(euro) == 3
    y_true = np.array(["1c", "10c", "1e", "5c", "gold"])
    y_pred = np.array(["2c", "5c", "2e", "5c", "gold"])  # family, wrong family, family, right, own group
    assert group_accuracy(y_true, y_pred, euro) == pytest.approx(4 / 5)
    assert parse_groups("a,b; c") == [{"a", "b"}, {"c"}]
    with pytest.raises(ValueError, match="appear in two groups"):
        parse_groups("a,b;b,c")


def test_an_answer_set_is_said_at_the_level_its_classes_agree_on():
    from coinfeat.core.metrics import label_parts, set_answer

    classes = np.array(["dk1", "dk2", "no1", "se1"])
    names = {
        "dk1": "1 Krone,Danish krone,denmark",
        "dk2": "2 Kroner,Danish krone,denmark",
        "no1": "1 Krone,Norwegian krone,norway",
        "se1": "1 Krona,Swedish krona,sweden",
    }
    parts = label_parts(classes, names, None)
    assert set_answer(["dk2", "dk1"], names, parts, classes) == "denmark, Danish krone: 2 Kroner or 1 Krone"
    assert set_answer(["dk1"], names, parts, classes) == "1 Krone,Danish krone,denmark"
    assert set_answer(["no1", "se1"], names, parts, classes) == (
        "1 Krone,Norwegian krone,norway or 1 Krona,Swedish krona,sweden"
    ), "nothing shared: the names"
    assert set_answer(["a", "b"], {}, None, np.array(["a", "b"])) == "a or b"


def test_answer_sets_are_scored_per_label_part():
    from coinfeat.core.metrics import label_parts, part_set_figures

    classes = np.array(["dk1", "dk2", "no1"])
    names = {"dk1": "1,krone,denmark", "dk2": "2,krone,denmark", "no1": "1,krone,norway"}
    parts = label_parts(classes, names, None)
    sets = [["dk1", "dk2"], ["no1"], ["dk1"]]
    truth = np.array(["dk2", "dk1", "no1"])
    figures = part_set_figures(sets, truth, parts, classes)
    assert figures["country"] == {"coverage": pytest.approx(1 / 3, abs=1e-4), "size": 1.0}
    assert figures["denomination"]["coverage"] == 1.0, "right denomination, wrong country"
    assert figures["denomination"]["size"] == pytest.approx(4 / 3, abs=1e-3)
