"""Training the part above the cut: batches from the cache (or from photos for ``full``), class
weights, early stopping, validation figures, the learning curves."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from coinfeat.core.curves import plot_history
from coinfeat.core.extraction.backbones import (
    BackboneSpec,
)
from coinfeat.core.extraction.pipeline import ImageReader, WorkItem
from coinfeat.core.images.augment import FINETUNE_VIEWS
from coinfeat.core.progress import keras_verbosity
from coinfeat.core.runtime import default_threads, import_keras
from coinfeat.core.store import (
    Store,
    atomic_write,
)
from coinfeat.finetune.budget import balanced_sample
from coinfeat.finetune.network import probabilities, training_loss
from coinfeat.finetune.records import FinetuneConfig

EMA_START_SHARE = 0.1
"""With ``--ema``, the weights an epoch started from may weigh at most this much in the average at
its end (:func:`ema_momentum`)."""


def ema_momentum(requested: float, steps_per_epoch: int) -> float:
    """The ``--ema`` momentum to train with: ``requested``, lowered on a small collection so that the
    average forgets the epoch's start (Keras' average is not bias-corrected and replaces the weights
    at each epoch's end: 0.99 over 20 steps would keep mostly the first step's weights)."""
    if requested == 0:
        return 0.0
    return min(requested, EMA_START_SHARE ** (1 / max(1, steps_per_epoch)))


def _balanced_weights(codes: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    per_class = len(codes) / (n_classes * np.maximum(counts, 1))
    return per_class[codes].astype(np.float32)


def _batches_class(keras):
    class Batches(keras.utils.PyDataset):
        """Batches read on demand (memory-mapped cache rows, or photos decoded per batch), so
        memory does not grow with the number of photos; train batches are reshuffled per epoch."""

        def __init__(
            self, read, n: int, codes, weights, batch_size: int, shuffle: bool, seed: int, sample=None
        ) -> None:
            super().__init__()
            self.read, self.n, self.codes, self.weights = read, n, codes, weights
            self.batch_size, self.shuffle, self.sample = batch_size, shuffle, sample
            self.epoch = 0
            self.rng = np.random.default_rng(seed)
            self.order = self._next_order()

        def _next_order(self) -> np.ndarray:
            if self.sample is not None:
                return self.rng.permutation(balanced_sample(self.codes, self.sample, self.rng))
            return self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)

        def __len__(self) -> int:
            return -(-len(self.order) // self.batch_size)

        def __getitem__(self, index: int):
            picked = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
            x = self.read(picked, self.epoch)
            if self.weights is None:
                return x, self.codes[picked]
            return x, self.codes[picked], self.weights[picked]

        def on_epoch_end(self) -> None:
            self.epoch += 1
            if self.shuffle:
                self.order = self._next_order()

    return Batches


def cached_batches(
    cache: Store, classes: np.ndarray, cfg: FinetuneConfig, *, views: int, rows_per_epoch: int | None = None
):
    """(train, val) batches of cached activations: train photos and their first ``views`` views,
    val photos. With ``rows_per_epoch``, each train epoch is a fresh class-balanced sample of that
    many rows (so no class weights); else every train row, with balanced class weights."""
    keras = import_keras()
    Batches = _batches_class(keras)
    out = []
    for split, with_views in (("train", True), ("val", False)):
        rows = cache.rows(split, include_views=with_views)
        rows = rows[cache.items["view"].to_numpy()[rows] <= views]
        codes = np.searchsorted(classes, cache.items["label"].to_numpy(dtype=str)[rows])
        known = np.isin(cache.items["label"].to_numpy(dtype=str)[rows], classes)
        rows, codes = rows[known], codes[known]
        train = split == "train"
        sample = rows_per_epoch if train else None
        weights = _balanced_weights(codes, len(classes)) if train and sample is None else None
        array = cache.embeddings

        def read(picked, epoch, rows=rows, array=array):
            return np.asarray(array[rows[picked]], dtype=np.float32)

        out.append(Batches(read, len(rows), codes, weights, cfg.batch_size, train, cfg.seed, sample))
    return out[0], out[1]


def photo_batches(store: Store, spec: BackboneSpec, train, val, classes, cfg: FinetuneConfig):
    """(train, val) batches of decoded photos for ``--full``: train photos get a fresh seeded
    augmentation every epoch, like a classic fine-tune."""
    keras = import_keras()
    Batches = _batches_class(keras)
    root = Path(store.manifest.dataset.root)
    m = store.manifest
    reader = ImageReader([], 1, 1, spec.image_size, m.resize, augmenter=FINETUNE_VIEWS, crop=m.crop)
    threads = cfg.threads or default_threads()
    out = []
    for items, augmented in ((train, True), (val, False)):
        paths = [root / p for p in items["path"]]
        shas = items["sha256"].tolist()
        codes = np.searchsorted(classes, items["label"].to_numpy(dtype=str))

        def read(picked, epoch, paths=paths, shas=shas, augmented=augmented):
            from concurrent.futures import ThreadPoolExecutor

            work = [
                WorkItem(f"{shas[i]}#full{epoch}" if augmented else shas[i], paths[i], int(augmented))
                for i in picked
            ]
            with ThreadPoolExecutor(threads) as pool:
                return np.stack([image for image, _ in pool.map(reader.load, work)]).astype(np.float32)

        weights = _balanced_weights(codes, len(classes)) if augmented else None
        out.append(Batches(read, len(items), codes, weights, cfg.batch_size, augmented, cfg.seed))
    return out[0], out[1]


def _time_budget_class(keras):
    class TimeBudget(keras.callbacks.Callback):
        """Stops training before an epoch that would end past ``deadline`` (a ``time.perf_counter()``
        value), judged by the slowest epoch so far; at least one epoch always runs."""

        def __init__(self, deadline: float, epochs: int) -> None:
            super().__init__()
            self.deadline, self.epochs = deadline, epochs
            self.slowest, self.began, self.stopped = 0.0, 0.0, False

        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            now = time.perf_counter()
            self.slowest = max(self.slowest, now - self.began)
            last = epoch + 1 >= self.epochs or self.model.stop_training
            if not last and now + self.slowest > self.deadline:
                self.model.stop_training = True
                self.stopped = True

    return TimeBudget


def train_model(
    keras, model: Any, train: Any, val: Any, cfg: FinetuneConfig, deadline: float | None = None
) -> tuple[dict[str, list[float]], str]:
    """Adam on the objective's loss with balanced class weights; early stopping on val loss
    restores the best epoch, and no epoch starts that would end past ``deadline``. Returns the
    history and why training ended: "early stopping", "time budget" or "epochs" (all of them ran)."""
    averaged = dict(use_ema=True, ema_momentum=cfg.ema, ema_overwrite_frequency=len(train)) if cfg.ema else {}
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate, **averaged),
        loss=training_loss(keras, cfg.objective, int(model.output_shape[-1])),
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    callbacks = [stop]
    if deadline is not None:
        callbacks.append(_time_budget_class(keras)(deadline, cfg.epochs))
    fitted = model.fit(
        train,
        validation_data=val,
        epochs=cfg.epochs,
        callbacks=callbacks,
        verbose=keras_verbosity(cfg.progress),
    )
    history = {k: [float(v) for v in values] for k, values in fitted.history.items()}
    if stop.stopped_epoch > 0:
        return history, "early stopping"
    return history, "time budget" if deadline is not None and callbacks[-1].stopped else "epochs"


def val_predictions(model: Any, val: Any, objective: str = "softmax") -> tuple[np.ndarray, np.ndarray]:
    """The trained model's class probabilities on the val batches, and the true class codes."""
    proba = probabilities(objective, np.asarray(model.predict(val, verbose=0)))
    truth = np.concatenate([val[i][1] for i in range(len(val))])
    return proba, truth


def cached_train_vectors(keras, model: Any, cache: Store, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The trained network's pooled vectors (what its output layer reads) of the cached train
    photos, without their views, and their labels: the head's memory of its classes when the
    dataset is not embedded again (``--no-embed``)."""
    rows = cache.rows("train")
    pooled = keras.Model(model.inputs, model.get_layer("dropout").input)
    vectors = [
        np.asarray(
            pooled.predict_on_batch(np.asarray(cache.embeddings[rows[i : i + batch_size]], np.float32))
        )
        for i in range(0, len(rows), batch_size)
    ]
    return np.concatenate(vectors), cache.items["label"].to_numpy(dtype=str)[rows]


def validation_figures(
    proba: np.ndarray, truth: np.ndarray, history: dict[str, list[float]]
) -> dict[str, float]:
    """Best val loss, accuracy and balanced accuracy of the kept model."""
    from sklearn.metrics import balanced_accuracy_score

    best = int(np.argmin(history["val_loss"]))
    predicted = np.argmax(proba, axis=1)
    return {
        "loss": round(history["val_loss"][best], 4),
        "accuracy": round(float(np.mean(predicted == truth)), 4),
        "balanced_accuracy": round(float(balanced_accuracy_score(truth, predicted)), 4),
    }


def save_history(history: dict[str, list[float]], out: Path, title: str = "") -> Path:
    """``history.json`` and ``curves.png``: loss and accuracy per epoch, train and val."""
    atomic_write(out / "history.json", json.dumps(history, indent=2))
    return plot_history(history, out / "curves.png", title)
