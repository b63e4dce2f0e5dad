"""Multinomial logistic regression behind a StandardScaler (scikit-learn), saved with joblib."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from coinfeat.core.heads import register
from coinfeat.core.heads.base import Head

MODEL_FILE = "model.joblib"


@register
class LogRegHead(Head):
    name = "logreg"
    summary = "logistic regression (scikit-learn) on standardised vectors"
    defaults: ClassVar[dict[str, Any]] = {"C": 1.0, "class_weight": "balanced", "max_iter": 2000}

    def _fit(self, X, codes, val) -> None:
        class_weight = None if self.params["class_weight"] in (None, "none") else self.params["class_weight"]
        self.model_ = make_pipeline(
            StandardScaler(),
            LogisticRegression(
                C=float(self.params["C"]), class_weight=class_weight, max_iter=int(self.params["max_iter"])
            ),
        )
        self.model_.fit(X, codes)

    def _predict_proba(self, X) -> np.ndarray:
        proba = np.zeros((len(X), len(self.classes_)))
        proba[:, self.model_.classes_] = self.model_.predict_proba(X)
        return proba

    def _save(self, directory: Path) -> None:
        joblib.dump(self.model_, directory / MODEL_FILE)

    def _load(self, directory: Path) -> None:
        self.model_ = joblib.load(directory / MODEL_FILE)
