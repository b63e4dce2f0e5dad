"""Answer sets with a guarantee: split conformal prediction (crepes) calibrated on val.

A head answers with probabilities; a person wants "10c", or "10c or 20c" when the photo cannot
tell them apart. At a chosen confidence (say 0.9), the answer set holds every class whose conformal
p-value is at least 1 - confidence; on photos like the calibration photos, the true class is in the
set at least that often. ``class_conditional`` calibrates each class on its own photos
(Mondrian), so rare classes get their coverage too, at the cost of larger sets.

Non-conformity (``score``) is RAPS by default (regularised adaptive prediction sets, Angelopoulos
et al. 2021): the probability mass of the classes ranked at or above a class, less a tie-break
share ``u`` of its own probability, plus ``RAPS_PENALTY`` per rank beyond the first. A set then
grows on the photos the head is unsure of and stays one class where it is sure. The plain hinge
score (1 - the probability of the class) cannot do that for a head that is right on more than the
asked share of val (a fine-tuned one): every set shrinks to its top class, and photos from
elsewhere are covered only as often as the head is right (BENCHMARKS.md "Someone else's photos").
``u`` is uniform in theory; here it is drawn from a hash of the probabilities, so the same answer
always gives the same set.

The calibration scores are saved beside the head as arrays (``answer_sets.npz``, never a pickle),
so ``predict``, ``serve``, ``similar`` and ``count`` can show sets without the calibration photos.
Photos from another camera are not exchangeable with val: expect lower coverage there, and measure
it (``compare --test-features``). Calibrating on labelled photos from that camera instead
(``fit-head --head DIR --calibrate DATA``) makes the guarantee hold for photos like those.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coinfeat.core.errors import CoinfeatError

ANSWER_SETS_FILE = "answer_sets.npz"
DEFAULT_CONFIDENCE = 0.9
MIN_CALIBRATION = 20
"""Fewer val photos than this give no answer sets (the guarantee would be vacuous)."""
SCORES = ("raps", "hinge")
RAPS_PENALTY = 0.05
"""RAPS's lambda: what each class beyond the first adds to the score, so that sets stay short.
Measured for 0 to 0.2 on the euro-coins test folder (fine-tuned dense head, val-calibrated): every
value from 0.01 to 0.2 gave 90% sets covering 0.89-0.93 with 1.07-1.28 classes; 0 gave 1.33."""


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
    score: str = "raps"
    """The non-conformity score (``SCORES``); files saved before there was a choice used ``hinge``."""
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
        score: str = "raps",
    ) -> AnswerSets:
        """Scores of calibration photos (``proba`` of a head that never trained on them)."""
        classes, y = np.asarray(classes).astype(str), np.asarray(y).astype(str)
        known = np.isin(y, classes)
        if known.sum() < MIN_CALIBRATION:
            raise CoinfeatError(
                f"answer sets need at least {MIN_CALIBRATION} calibration photos of known classes "
                f"(got {int(known.sum())})"
            )
        truth = np.array([np.flatnonzero(classes == label)[0] for label in y[known]])
        scores = nonconformity(np.asarray(proba)[known], score)[np.arange(len(truth)), truth]
        return cls(classes, scores, y[known], class_conditional, source, score)

    def _conformal(self) -> Any:
        if self._fitted is None:
            from crepes import ConformalClassifier

            conformal = ConformalClassifier()
            conformal.fit(self.scores, bins=self.labels if self.class_conditional else None)
            self._fitted = conformal
        return self._fitted

    def p_values(self, proba: np.ndarray) -> np.ndarray:
        """(n, classes) conformal p-values of each class for each photo."""
        alphas = nonconformity(np.asarray(proba), self.score)
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
            score=np.array(self.score),
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
                score = str(data["score"]) if "score" in data else "hinge"
                if score not in SCORES:
                    raise ValueError(f"unknown score {score!r}")
                conditional = bool(data["class_conditional"])
                return cls(data["classes"], data["scores"], data["labels"], conditional, source, score)
        except (ValueError, KeyError, OSError) as exc:
            raise CoinfeatError(f"{path} is not a valid answer-set calibration ({exc})") from None


def nonconformity(proba: np.ndarray, score: str = "raps") -> np.ndarray:
    """(n, classes) non-conformity of every class for every photo: high means "unlikely to be it"."""
    proba = np.asarray(proba, dtype=np.float64)
    if score == "hinge":
        return 1.0 - proba
    if score != "raps":
        raise CoinfeatError(f"unknown answer-set score {score!r}; one of {', '.join(SCORES)}")
    order = np.argsort(-proba, axis=1, kind="stable")
    rank = np.argsort(order, axis=1)
    mass_to_rank = np.cumsum(np.take_along_axis(proba, order, axis=1), axis=1)
    mass = np.take_along_axis(mass_to_rank, rank, axis=1)
    return mass - tie_breaks(proba)[:, None] * proba + RAPS_PENALTY * rank


def tie_breaks(proba: np.ndarray) -> np.ndarray:
    """One number in [0, 1) per photo, a hash of its probabilities: RAPS's randomisation, made
    reproducible."""
    rows = np.ascontiguousarray(np.asarray(proba, dtype=np.float32))
    digests = [hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in rows]
    return np.array([int.from_bytes(d, "little") for d in digests], dtype=np.float64) / 2.0**64


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
