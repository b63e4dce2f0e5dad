"""Answer sets with a guarantee: split conformal prediction (crepes) calibrated on val.

A head answers with probabilities; a person wants "10c", or "10c or 20c" when the photo cannot
tell them apart. At a chosen confidence (say 0.9), the answer set holds every class whose conformal
p-value is at least 1 - confidence; on photos like the calibration photos, the true class is in the
set at least that often. Non-conformity is the hinge score (1 - the probability of the true
class). ``class_conditional`` calibrates each class on its own photos (Mondrian), so rare classes
get their coverage too, at the cost of larger sets.

The calibration scores are saved beside the head as arrays (``answer_sets.npz``, never a pickle),
so ``predict``, ``serve``, ``similar`` and ``count`` can show sets without the calibration photos.
Photos from another camera are not exchangeable with val: expect lower coverage there, and measure
it (``compare --test-features``). Calibrating on labelled photos from that camera instead
(``fit-head --head DIR --calibrate DATA``) makes the guarantee hold for photos like those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coinfeat.core.errors import CoinfeatError

ANSWER_SETS_FILE = "answer_sets.npz"
DEFAULT_CONFIDENCE = 0.9
MIN_CALIBRATION = 20
"""Fewer val photos than this give no answer sets (the guarantee would be vacuous)."""


@dataclass
class AnswerSets:
    """Calibration scores of one head: non-conformity and true label of each val photo."""

    classes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_conditional: bool = False
    source: str = "val"
    """Which photos calibrated the sets: the head's val photos, or a store of the user's own
    (``fit-head --calibrate``)."""
    _fitted: Any = field(default=None, init=False, repr=False, compare=False)
    """The crepes classifier fitted on ``scores``, made on first use (serve asks on every request)."""

    @classmethod
    def calibrate(
        cls,
        proba: np.ndarray,
        y: np.ndarray,
        classes: np.ndarray,
        *,
        class_conditional: bool = False,
        source: str = "val",
    ) -> AnswerSets:
        """Scores of calibration photos (``proba`` of a head that never trained on them)."""
        from crepes.extras import hinge

        classes, y = np.asarray(classes).astype(str), np.asarray(y).astype(str)
        known = np.isin(y, classes)
        if known.sum() < MIN_CALIBRATION:
            raise CoinfeatError(
                f"answer sets need at least {MIN_CALIBRATION} calibration photos of known classes "
                f"(got {int(known.sum())})"
            )
        scores = hinge(np.asarray(proba)[known], classes, y[known])
        return cls(classes, np.asarray(scores, dtype=np.float64), y[known], class_conditional, source)

    def _conformal(self) -> Any:
        if self._fitted is None:
            from crepes import ConformalClassifier

            conformal = ConformalClassifier()
            conformal.fit(self.scores, bins=self.labels if self.class_conditional else None)
            self._fitted = conformal
        return self._fitted

    def p_values(self, proba: np.ndarray) -> np.ndarray:
        """(n, classes) conformal p-values of each class for each photo."""
        from crepes.extras import hinge

        alphas = hinge(np.asarray(proba, dtype=np.float64))
        conformal = self._conformal()
        if not self.class_conditional:
            return conformal.predict_p(alphas, smoothing=False)
        columns = []
        for c, label in enumerate(self.classes):
            if not np.any(self.labels == label):  # no val photo of this class: never excluded
                columns.append(np.ones(len(alphas)))
                continue
            columns.append(conformal.predict_p(alphas, np.full(len(alphas), label), smoothing=False)[:, c])
        return np.column_stack(columns)

    def sets(self, proba: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> list[list[str]]:
        """Each photo's answer set, most probable class first (never empty: the top class at least)."""
        check_confidence(confidence)
        proba = np.asarray(proba)
        inside = self.p_values(proba) >= 1 - confidence
        inside[np.arange(len(proba)), proba.argmax(axis=1)] = True
        return [
            [str(self.classes[j]) for j in np.argsort(-row) if keep[j]] for row, keep in zip(proba, inside)
        ]

    def evaluate(
        self, proba: np.ndarray, y: np.ndarray, confidence: float = DEFAULT_CONFIDENCE
    ) -> dict[str, float]:
        """Empirical coverage (true class in the set) and mean set size on labelled photos."""
        sets = self.sets(proba, confidence)
        truth = np.asarray(y).astype(str)
        covered = [t in s for t, s in zip(truth, sets)]
        return {
            "confidence": confidence,
            "coverage": float(np.mean(covered)) if covered else float("nan"),
            "mean_size": float(np.mean([len(s) for s in sets])) if sets else float("nan"),
            "single": float(np.mean([len(s) == 1 for s in sets])) if sets else float("nan"),
            "n": len(sets),
        }

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / ANSWER_SETS_FILE
        np.savez(
            path,
            classes=self.classes.astype(str),
            scores=self.scores,
            labels=self.labels.astype(str),
            class_conditional=np.array(self.class_conditional),
            source=np.array(self.source),
        )
        return path

    @classmethod
    def load(cls, directory: str | Path) -> AnswerSets | None:
        """The head's calibration, or None for a head saved without one."""
        path = Path(directory) / ANSWER_SETS_FILE
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                source = str(data["source"]) if "source" in data else "val"
                return cls(
                    data["classes"], data["scores"], data["labels"], bool(data["class_conditional"]), source
                )
        except (ValueError, KeyError, OSError) as exc:
            raise CoinfeatError(f"{path} is not a valid answer-set calibration ({exc})") from None


def calibrate_beside(
    directory: str | Path,
    proba: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray,
    *,
    class_conditional: bool = False,
    source: str = "val",
) -> int | None:
    """Calibrate a saved head's answer sets on labelled photos' probabilities (its val photos, or
    ``source``) and save them in its ``directory``; the number of photos used, or None (and no file)
    when there are too few."""
    (Path(directory) / ANSWER_SETS_FILE).unlink(missing_ok=True)
    if len(proba) < MIN_CALIBRATION:
        return None
    try:
        sets = AnswerSets.calibrate(proba, y, classes, class_conditional=class_conditional, source=source)
    except CoinfeatError:
        return None
    sets.save(directory)
    return len(sets.scores)


def check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise CoinfeatError(f"--confidence {confidence}: a level between 0 and 1, e.g. 0.9")
