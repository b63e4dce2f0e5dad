"""``compare --open-set`` and ``compare --enrol`` on generated clusters, where the answers are known:
well-separated clusters are easy to enrol and easy to tell apart from the ones held out."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import raw_markdown

from coinfeat.compare.enrolment import enrolment
from coinfeat.compare.open_set import held_out_classes, open_set
from coinfeat.core.errors import CoinfeatError


class ClusterStore:
    """What the protocols read of a store: ``select(split)`` -> (vectors, items)."""

    path = "generated"

    def __init__(self, n_classes: int = 8, per_split=(20, 15, 10), seed: int = 0, spread: float = 0.5):
        rng = np.random.default_rng(seed)
        centres = rng.gamma(2.0, 1.0, size=(n_classes, 24))
        self.splits = {}
        for split, n in zip(("train", "val", "test"), per_split):
            labels = np.repeat(np.arange(n_classes), n)
            X = np.abs(centres[labels] + rng.normal(scale=spread, size=(len(labels), 24))).astype(np.float32)
            items = pd.DataFrame(
                {"label": [f"k{c}" for c in labels], "path": [f"{split}/{i}.jpg" for i in range(len(labels))]}
            )
            self.splits[split] = (X, items)

    def select(self, split):
        return self.splits[split]


def test_held_out_unknowns_are_told_apart_by_both_scores():
    found = open_set(ClusterStore(), ["logreg", "knn", "centroid"], k=2)
    assert len(found["unknown_classes"]) == 2 and found["unknown_test"] == 20 and found["known_test"] == 60
    for head, scores in found["heads"].items():
        assert set(scores) == {"similarity", "max_probability"}
        assert scores["similarity"]["auroc"] > 0.95, head
        assert 0 <= scores["max_probability"]["auroc"] <= 1
        rule = scores["similarity"]
        assert rule["known_accepted"] >= 0.8 and rule["unknown_rejected"] >= 0.8, head
        assert json.dumps(found)  # it goes into metrics.json as it is


def test_overlapping_unknowns_score_near_chance():
    store = ClusterStore(seed=1)
    X, items = store.splits["test"]
    held = held_out_classes(store.splits["train"][1]["label"].to_numpy(), items["label"].to_numpy(), 2)
    for split in ("train", "val", "test"):  # make the unknown classes copies of a known one
        X, items = store.splits[split]
        known = X[items["label"].eq("k0" if "k0" not in held else "k1").to_numpy()]
        for label in held:
            rows = items["label"].eq(label).to_numpy()
            X[rows] = known[: rows.sum()] + np.random.default_rng(2).normal(
                scale=0.01, size=(rows.sum(), X.shape[1])
            )
    found = open_set(store, ["centroid"], k=2)
    assert found["unknown_classes"] == held
    assert found["heads"]["centroid"]["similarity"]["auroc"] < 0.7


def test_classes_enrolled_from_a_few_photos_are_recognised_and_the_old_ones_kept():
    found = enrolment(ClusterStore(), ["logreg", "centroid", "knn", "dense"], k=2, shots=3)
    assert found["shots"] == 3 and len(found["new_classes"]) == 2
    for head, figures in found["heads"].items():
        assert figures["new_top1"] >= 0.9, head
        assert figures["old_top1"] >= figures["old_top1_before"] - 0.05, head
        assert figures["refit_new_top1"] >= 0.8, head
        assert figures["enrol_seconds"] >= 0


def test_protocols_refuse_what_cannot_be_held_out():
    with pytest.raises(CoinfeatError, match="at least 2 must stay known"):
        open_set(ClusterStore(n_classes=3), ["centroid"], k=2)
    with pytest.raises(CoinfeatError, match="cannot hold"):
        enrolment(ClusterStore(per_split=(2, 2, 2)), ["centroid"], k=1, shots=5)


@pytest.mark.slow
def test_compare_reports_open_set_and_enrolment(tmp_path):
    from helpers import small_config, write_class_folders

    from coinfeat import extract_features
    from coinfeat.compare import CompareConfig, compare_heads
    from coinfeat.compare.report import write_report

    data = write_class_folders(tmp_path / "coins", per_class=14)
    extract_features(data, tmp_path / "store", small_config())
    config = CompareConfig(heads=["logreg", "centroid"], top_k=[1], open_set=1, enrol=1, shots=2)
    comparison = compare_heads(tmp_path / "store", config)
    page = write_report(comparison, tmp_path / "report")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(metrics["open_set"]["heads"]) == {"logreg", "centroid"}
    assert set(metrics["enrolment"]["heads"]["logreg"]) >= {"new_top1", "old_top1", "refit_new_top1"}
    assert "Unknown coins (--open-set)" in page.read_text() and "Enrolment (--enrol)" in page.read_text()
    assert raw_markdown(page.read_text()) == []
