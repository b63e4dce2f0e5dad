"""Coins of a type a head never learned: a score per photo, and a rule calibrated on val.

A head always answers with one of its classes; a score says how much the photo looks like what
the head learned, and the rule calls a photo *unknown* below a threshold chosen so that a set share
of val photos (known coins) is accepted. Two scores: the head's best probability, and the cosine
similarity to the nearest thing the head learned (a prototype of one of its classes, or for k-NN
its nearest photo: :meth:`~coinfeat.core.heads.base.Head.similarity_to_known`). ``compare
--open-set K`` measures both; :data:`DEFAULT_SCORE` says which is the default and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

UNKNOWN_SCORES = ("max_probability", "similarity")
DEFAULT_SCORE = "max_probability"
"""Chosen on the euro coins, two classes held out in five draws (BENCHMARKS.md "Unknown coins"):
mean AUROC 0.68 against 0.62 for logistic regression, 0.66 against 0.62 for the dense head."""
ACCEPT = 0.95
"""Share of known coins (val photos) the rule accepts for ``predict`` and ``serve``."""
COUNT_ACCEPT = 0.99
"""Share accepted in ``count``: in a pile, a known coin left out of the total costs more than an
unknown one counted."""
LEVELS = (ACCEPT, COUNT_ACCEPT)
MIN_PHOTOS = 20
"""Fewest known val photos a rule is calibrated on; fewer give no rule."""


@dataclass(kw_only=True)
class UnknownRule:
    """A photo whose ``score`` is below ``threshold`` is an unknown coin (``head.json``: ``unknown``)."""

    score: str
    thresholds: dict[str, float]
    """Threshold by share of known val photos accepted ("0.95", "0.99")."""
    photos: int

    def threshold(self, accept: float = ACCEPT) -> float:
        return self.thresholds[f"{accept:g}"]

    def is_unknown(self, scores: np.ndarray, accept: float = ACCEPT) -> np.ndarray:
        return np.asarray(scores) < self.threshold(accept)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> UnknownRule | None:
        return cls(**data) if data else None


def unknown_scores(
    head: Any, X: np.ndarray, score: str = DEFAULT_SCORE, proba: np.ndarray | None = None
) -> np.ndarray:
    """Each photo's ``score`` (higher: more like the coins the head learned)."""
    if score == "max_probability":
        return (head.predict_proba(X) if proba is None else proba).max(axis=1)
    if score == "similarity":
        return head.similarity_to_known(X)
    raise ValueError(f"unknown score {score!r}; choose from {', '.join(UNKNOWN_SCORES)}")


def available_score(head: Any, score: str = DEFAULT_SCORE) -> str:
    """``score``, or the best probability for a head that keeps no memory of its classes."""
    if score == "similarity" and head.keeps_memory and not hasattr(head, "memory_"):
        return "max_probability"
    return score


def calibrate_rule(
    head: Any, X_val: np.ndarray, y_val: Any, score: str = DEFAULT_SCORE
) -> UnknownRule | None:
    """The thresholds that accept each share of :data:`LEVELS` of the val photos of classes the
    head knows, or None when there are fewer than :data:`MIN_PHOTOS` of them."""
    known = np.isin(np.asarray(y_val).astype(str), head.classes_)
    if known.sum() < MIN_PHOTOS:
        return None
    score = available_score(head, score)
    return rule_from_scores(unknown_scores(head, np.asarray(X_val)[known], score), score)


def rule_from_scores(values: np.ndarray, score: str) -> UnknownRule:
    """The rule whose thresholds accept each share of :data:`LEVELS` of ``values``, the scores of
    photos of coins the head knows."""
    thresholds = {
        f"{accept:g}": round(float(np.quantile(values, 1 - accept, method="lower")), 6) for accept in LEVELS
    }
    return UnknownRule(score=score, thresholds=thresholds, photos=len(values))
