"""A new head is one file: this one is defined here, registered, and every command takes it.

It is the example of ARCHITECTURE.md ("add a head"): a class with ``name``, ``defaults``, ``_fit``,
``_predict_proba``, ``_save`` and ``_load`` (``to_keras`` if it can be layers) and ``@register``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from sklearn.base import clone

from coinfeat.cli import main
from coinfeat.core.heads import head_types, load_head, make_head, register
from coinfeat.core.heads.base import Head, softmax


@register
class MedianHead(Head):
    """Softmax over minus the Euclidean distance to each class's per-dimension median."""

    name = "median-example"
    summary = "distance to class medians (the example head of the tests)"
    defaults: ClassVar[dict[str, Any]] = {"temperature": 1.0}

    def _fit(self, X, codes, val) -> None:
        self.medians_ = np.stack([np.median(X[codes == c], axis=0) for c in range(len(self.classes_))])

    def _predict_proba(self, X) -> np.ndarray:
        distances = np.linalg.norm(X[:, None, :] - self.medians_[None], axis=2)
        return softmax(-distances, float(self.temperature))

    def _save(self, directory: Path) -> None:
        np.save(directory / "medians.npy", self.medians_)

    def _load(self, directory: Path) -> None:
        self.medians_ = np.load(directory / "medians.npy", allow_pickle=False)


def test_the_example_head_follows_the_contract(tmp_path):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (20, 4)), rng.normal(6, 1, (20, 4))]).astype(np.float32)
    y = np.repeat(["low", "high"], 20)
    head = make_head("median-example", temperature=0.5).fit(X, y)
    assert np.mean(head.predict(X) == y) == 1.0
    assert clone(head).get_params() == {"temperature": 0.5}
    head.save(tmp_path / "h")
    np.testing.assert_allclose(load_head(tmp_path / "h").predict_proba(X), head.predict_proba(X))


@pytest.mark.slow
def test_commands_take_the_example_head_without_other_edits(tiny_store, tmp_path, capsys):
    assert "median-example" in head_types()
    out = tmp_path / "head"
    assert (
        main(
            [
                "fit-head",
                "--type",
                "median-example",
                "--features",
                str(tiny_store),
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["type"] == "median-example" and fitted["train"] > 0
    root = Path(json.loads((tiny_store / "manifest.json").read_text())["dataset"]["root"])
    photo = sorted(p for p in root.rglob("*") if p.is_file())[0]
    assert main(["predict", str(photo), "--head", str(out), "--tta", "none", "--json"]) == 0
    [answer] = json.loads(capsys.readouterr().out)
    assert answer["labels"][0] in fitted["classes"]
    assert main(["export", "--head", str(out), "--out", str(tmp_path / "m.keras")]) == 1
    assert "cannot be exported as Keras layers" in capsys.readouterr().err
