"""The classic transfer-learning head in Keras: Dense(256) - Dropout - Dense(128) - Dropout - softmax.

Adam, balanced class weights, early stopping on validation loss restoring the best weights,
seeded. Without a validation set, a stratified 15% of the training vectors stands in for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from coinfeat.core.heads import register
from coinfeat.core.heads.base import Head
from coinfeat.core.heads.prototypes import enrol_softmax
from coinfeat.core.runtime import import_keras
from coinfeat.core.store.atomic import atomic_write

MODEL_FILE, HISTORY_FILE = "model.keras", "history.json"
SEED = 0


@register
class DenseHead(Head):
    """A small Keras MLP on the vectors: ``make_head("dense", epochs=50)`` or ``--type dense``.

    Parameters (keywords of ``make_head``, ``--param key=value``):

    - ``epochs``: most epochs (early stopping usually ends sooner); default 100
    - ``batch_size``: vectors per step; default 32
    - ``learning_rate``: Adam's step; default 1e-3
    - ``dropout``: after each hidden layer; default 0.3
    - ``hidden``: hidden layer widths, comma separated; default "256,128"
    - ``patience``: epochs without val-loss gain before stopping (the best weights are restored); default 5
    - ``min_delta``: smallest val-loss drop that counts as a gain; default 1e-3
    - ``class_weight``: "balanced" (every class weighs the same) or "none"; default "balanced"
    """

    name = "dense"
    summary = "Keras MLP 256-128 with dropout, class weights and early stopping"
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 100,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "dropout": 0.3,
        "hidden": "256,128",
        "patience": 5,
        "min_delta": 1e-3,
        "class_weight": "balanced",
    }

    def _fit(self, X, codes, val) -> None:
        keras = import_keras()
        keras.utils.set_random_seed(SEED)
        if val is None:
            X, X_val, codes, y_val = _holdout(X, codes)
        else:
            X_val, y_val = val
        self.model_ = self._build(keras, X.shape[1])
        stop = keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=int(self.patience),
            min_delta=float(self.min_delta),
            restore_best_weights=True,
        )
        history = self.model_.fit(
            X,
            codes,
            validation_data=(X_val, y_val),
            epochs=int(self.epochs),
            batch_size=int(self.batch_size),
            class_weight=self._class_weights(codes),
            callbacks=[stop],
            verbose=0,
            shuffle=True,
        )
        self.history_ = {k: [float(v) for v in values] for k, values in history.history.items()}
        self.epochs_ = len(history.history["loss"])
        self.best_epoch_ = int(np.argmin(history.history["val_loss"])) + 1
        self.meta.training = {"epochs_run": self.epochs_, "best_epoch": self.best_epoch_}

    def _build(self, keras, dim: int):
        hidden = [int(h) for h in str(self.hidden).split(",") if h.strip()]
        layers = [keras.Input((dim,))]
        for units in hidden:
            layers += [
                keras.layers.Dense(units, activation="relu"),
                keras.layers.Dropout(float(self.dropout)),
            ]
        layers.append(keras.layers.Dense(len(self.classes_), activation="softmax"))
        model = keras.Sequential(layers)
        model.compile(
            optimizer=keras.optimizers.Adam(float(self.learning_rate)),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=32,
        )
        return model

    def _class_weights(self, codes: np.ndarray) -> dict[int, float] | None:
        if self.class_weight in (None, "none"):
            return None
        present = np.unique(codes)
        weights = compute_class_weight("balanced", classes=present, y=codes)
        return {int(c): float(w) for c, w in zip(present, weights)}

    def _predict_proba(self, X) -> np.ndarray:
        # A direct call: ``predict`` costs ~50 ms of set-up per call, too slow for one query.
        return np.concatenate(
            [np.asarray(self.model_(X[i : i + 4096], training=False)) for i in range(0, len(X), 4096)]
        )

    def _enrol(self, X, labels, classes) -> None:
        keras = import_keras()
        hidden, last = self.model_.layers[:-1], self.model_.layers[-1]

        def features(x: np.ndarray) -> np.ndarray:
            for layer in hidden:
                x = layer(x, training=False)
            return np.asarray(x)

        kernel, bias = enrol_softmax(
            features,
            *last.get_weights(),
            memory=(self.memory_, self.memory_codes_),
            old_classes=self.classes_,
            X=X,
            labels=labels,
            classes=classes,
        )
        output = keras.layers.Dense(len(classes), activation="softmax")
        self.model_ = keras.Sequential([keras.Input((int(self.n_features_in_),)), *hidden, output])
        output.set_weights([kernel, bias])

    def to_keras(self, keras: Any) -> Any:
        return self.model_

    @classmethod
    def from_keras(cls, layer: Any, classes: np.ndarray, **params: Any) -> DenseHead:
        """A fitted head (no hidden layers) around a trained softmax layer, e.g. fine-tune's."""
        keras = import_keras()
        head = cls(**{**params, "hidden": ""})
        head.classes_ = np.asarray(classes)
        head.n_features_in_ = int(layer.kernel.shape[0])
        head.model_ = keras.Sequential(
            [keras.Input((head.n_features_in_,)), keras.layers.Dense(len(classes), activation="softmax")]
        )
        head.model_.layers[-1].set_weights(layer.get_weights())
        return head

    def _save(self, directory: Path) -> None:
        self.model_.save(directory / MODEL_FILE)
        if getattr(self, "history_", None):
            atomic_write(directory / HISTORY_FILE, json.dumps(self.history_, indent=2))

    def _load(self, directory: Path) -> None:
        keras = import_keras()
        self.model_ = keras.models.load_model(directory / MODEL_FILE, compile=False, safe_mode=True)
        if (directory / HISTORY_FILE).exists():
            self.history_ = json.loads((directory / HISTORY_FILE).read_text())


def _holdout(X: np.ndarray, codes: np.ndarray):
    """A stratified 15% validation share (plain random where a class has a single example)."""
    counts = np.bincount(codes)
    stratify = codes if counts[counts > 0].min() >= 2 else None
    return train_test_split(X, codes, test_size=0.15, random_state=SEED, stratify=stratify)
