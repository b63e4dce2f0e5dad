"""Multinomial logistic regression on standardised vectors (scikit-learn), saved as plain arrays.

Once fitted, the scaler and the model are one affine map followed by a softmax: the head keeps
that map (``weights_``, ``bias_``) and saves it as ``model.npz`` (no pickle), so loading a head
someone sent you runs no code, and ``to_keras`` is a single Dense layer.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads import register
from coinfeat.core.heads.base import Head, softmax
from coinfeat.core.heads.prototypes import enrol_softmax

AUTO_C = (0.01, 0.1, 1.0, 10.0)
"""Regularisations tried by ``C=auto``, on val log loss."""
MODEL_FILE = "model.npz"
PICKLED_FILE = "model.joblib"
"""What coinfeat 0.1 saved: a joblib pickle, which can run code when loaded."""


@register
class LogRegHead(Head):
    """Multinomial logistic regression behind a standard scaler: ``make_head("logreg", C=0.5)``.

    Parameters (keywords of ``make_head``, ``--param key=value``):

    - ``C``: inverse regularisation strength, or "auto": the one of 0.01, 0.1, 1, 10 with the lowest
      val log loss (1.0 when there is no val); default "auto" (euro coins, frozen Lite0: test
      top-1 0.731 against 0.715 with C=1, balanced accuracy 0.774 against 0.759)
    - ``class_weight``: "balanced" (every class weighs the same) or "none"; default "balanced"
    - ``max_iter``: solver iterations; default 2000
    """

    name = "logreg"
    summary = "logistic regression (scikit-learn) on standardised vectors"
    defaults: ClassVar[dict[str, Any]] = {"C": "auto", "class_weight": "balanced", "max_iter": 2000}

    def _validate_params(self) -> None:
        if str(self.C) != "auto" and not float(self.C) > 0:
            raise CoinfeatError("logreg C must be a positive number or 'auto' (chosen on val)")

    def _fit(self, X, codes, val) -> None:
        class_weight = None if self.class_weight in (None, "none") else self.class_weight
        scaler = StandardScaler().fit(X)
        model = LogisticRegression(class_weight=class_weight, max_iter=int(self.max_iter), warm_start=True)
        if str(self.C) == "auto" and val is not None:
            model, self.C_ = _best_on_val(model, scaler.transform(X), codes, scaler.transform(val[0]), val[1])
        else:
            self.C_ = 1.0 if str(self.C) == "auto" else float(self.C)
            model.set_params(C=self.C_).fit(scaler.transform(X), codes)
        self.meta.training = {"C": self.C_}
        self._adopt(scaler, model)

    def _adopt(self, scaler: StandardScaler, model: LogisticRegression) -> None:
        """Fold the scaler into the coefficients: ((x - m) / s) W + b = x (W / s) + (b - (m / s) W)."""
        weights, bias = full_coefficients(model, len(self.classes_), int(self.n_features_in_))
        self.weights_ = (weights / scaler.scale_[:, None]).astype(np.float32)
        self.bias_ = (bias - (scaler.mean_ / scaler.scale_) @ weights).astype(np.float32)

    def _predict_proba(self, X) -> np.ndarray:
        return softmax(X.astype(np.float64) @ self.weights_ + self.bias_)

    def _enrol(self, X, labels, classes) -> None:
        self.weights_, self.bias_ = enrol_softmax(
            lambda x: x,
            self.weights_,
            self.bias_,
            memory=(self.memory_, self.memory_codes_),
            old_classes=self.classes_,
            X=X,
            labels=labels,
            classes=classes,
        )

    def to_keras(self, keras: Any) -> Any:
        dense = keras.layers.Dense(len(self.classes_), activation="softmax", name="logreg")
        dense.build((None, int(self.n_features_in_)))
        dense.set_weights([self.weights_, self.bias_])
        return dense

    def _save(self, directory: Path) -> None:
        np.savez(directory / MODEL_FILE, weights=self.weights_, bias=self.bias_)
        (directory / PICKLED_FILE).unlink(missing_ok=True)

    def _load(self, directory: Path) -> None:
        if not (directory / MODEL_FILE).exists() and (directory / PICKLED_FILE).exists():
            raise CoinfeatError(
                f"{directory} is a logreg head saved by coinfeat 0.1 as a pickle, which can run code "
                "when loaded; refit it (seconds), or if you made it yourself convert it once with "
                f"`coinfeat fit-head --convert {directory}`"
            )
        with np.load(directory / MODEL_FILE, allow_pickle=False) as arrays:
            self.weights_, self.bias_ = arrays["weights"], arrays["bias"]
        expected = (int(self.n_features_in_), len(self.classes_))
        if self.weights_.shape != expected or self.bias_.shape != expected[1:]:
            raise ValueError(
                f"{MODEL_FILE} holds weights of shape {self.weights_.shape}, expected {expected}"
            )

    def convert_pickle(self, directory: Path) -> None:
        """Read a coinfeat 0.1 ``model.joblib`` (trusted by the caller) into plain arrays."""
        import joblib

        pipeline = joblib.load(directory / PICKLED_FILE)
        self._adopt(pipeline.steps[0][1], pipeline.steps[-1][1])


def _best_on_val(model, X, codes, X_val, y_val) -> tuple[LogisticRegression, float]:
    """The regularisation of :data:`AUTO_C` with the lowest val log loss (each fit starts from the
    previous one's weights, weakest regularisation last), and that C."""
    from sklearn.metrics import log_loss

    best, best_loss, best_C = None, np.inf, AUTO_C[0]
    for C in AUTO_C:
        model.set_params(C=C).fit(X, codes)
        loss = log_loss(y_val, model.predict_proba(X_val), labels=model.classes_)
        if loss < best_loss:
            best, best_loss, best_C = copy.deepcopy(model), loss, C
    return best, best_C


def full_coefficients(model: LogisticRegression, n_classes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's coefficients as one softmax layer over every class of the head (a binary
    model's single logit z becomes the two logits 0 and z: softmax gives the same probabilities)."""
    coef, intercept = np.asarray(model.coef_, np.float64), np.asarray(model.intercept_, np.float64)
    if coef.shape[0] == 1:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    weights = np.zeros((dim, n_classes))
    bias = np.full(n_classes, -1e4)  # classes the model never saw get probability 0
    weights[:, model.classes_] = coef.T
    bias[model.classes_] = intercept
    return weights, bias
