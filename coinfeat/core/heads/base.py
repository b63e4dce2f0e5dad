"""The head interface, modelled on scikit-learn's estimators.

Every head has ``fit(X, y, X_val=None, y_val=None) -> self``, ``predict_proba(X)`` (rows sum to 1,
columns in ``classes_`` order), ``classes_``, ``get_params``/``set_params`` (each
parameter is an attribute, so ``sklearn.base.clone`` copies an unfitted head), ``save(dir)``,
``load(dir)`` and ``to_keras`` (the head as Keras layers, or a refusal with its reason). Learned
state ends in ``_``; parameters are validated in ``fit``. A saved head is data, never code:
arrays, JSON, FAISS indexes and Keras files loaded in safe mode. :class:`IncrementalHead` adds
``add`` and ``remember`` for heads that grow without refitting.
Inputs are validated here, at the boundary, so subclasses implement only ``_fit``,
``_predict_proba``, ``_save`` and ``_load`` on clean float32 arrays and integer class codes.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads.prototypes import class_prototypes, nearest_similarity
from coinfeat.core.heads.record import FORMAT_VERSION, HEAD_FILE, HeadMeta, read_head_record
from coinfeat.core.store.atomic import atomic_write

MEMORY_FILE = "memory.npz"
"""A head's prototypes per class and their class codes; see :mod:`.prototypes`."""


class Head(ABC):
    """Base class: subclasses set ``name`` and ``defaults`` (every parameter with its default)."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    summary: ClassVar[str] = ""
    keeps_memory: ClassVar[bool] = True
    """Whether the head keeps a few prototypes per class (:mod:`.prototypes`) beside its weights:
    for the unknown-coin score and for enrolling new classes (k-NN keeps every vector instead)."""

    def __init__(self, **params: Any) -> None:
        self._check_param_names(params)
        for key, value in {**self.defaults, **params}.items():
            setattr(self, key, value)
        self.meta = HeadMeta()

    # ------------------------------------------------------------------ public API

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Every parameter and its value, as scikit-learn's ``clone`` and search tools expect."""
        return {key: getattr(self, key) for key in self.defaults}

    def set_params(self, **params: Any) -> Head:
        """Change parameters (takes effect at the next ``fit``)."""
        self._check_param_names(params)
        for key, value in params.items():
            setattr(self, key, value)
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as a dict (read-only view of :meth:`get_params`)."""
        return self.get_params()

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != self.defaults[k]}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def fit(self, X: np.ndarray, y: Any, X_val: np.ndarray | None = None, y_val: Any = None) -> Head:
        """Learn from vectors ``X`` and labels ``y``; ``X_val``/``y_val`` drive early stopping."""
        X = check_matrix(X, "X")
        self._train(y, X.shape, X_val, y_val, lambda codes, val: self._fit(X, codes, val))
        self.memorise(X, y)
        return self

    def fit_from_store(
        self, store: Any, rows: np.ndarray, y: Any, *, X_val: np.ndarray | None = None, y_val: Any = None
    ) -> Head:
        """Fit on the vectors at ``rows`` of a (possibly sharded, memory-mapped) store; see
        :meth:`_fit_rows` for how each head reads them."""
        rows = np.asarray(rows)
        shape = (len(rows), store.embeddings.shape[1])
        self._train(
            y, shape, X_val, y_val, lambda codes, val: self._fit_rows(store.embeddings, rows, codes, val)
        )
        if self.keeps_memory:
            self.memorise(check_matrix(store.embeddings[rows], "X"), y)
        return self

    def similarity_to_known(self, X: np.ndarray) -> np.ndarray:
        """Cosine similarity of each vector to the nearest thing the head learned (a prototype of
        one of its classes): low for a coin of a type it never saw. An unknown-coin score."""
        self._check_fitted()
        X = self._check_dim(check_matrix(X, "X"))
        if not hasattr(self, "memory_"):
            raise CoinfeatError(
                f"this {self.name} head keeps no memory of its classes (saved by an older coinfeat): "
                "fit it again"
            )
        return nearest_similarity(X, self.memory_)

    def enrol(self, X: np.ndarray, labels: Any) -> Head:
        """Add classes from a few labelled vectors each, without refitting the head: labels it has
        not seen become new classes (:meth:`_enrol` says how, per head); returns the head."""
        self._check_fitted()
        X = self._check_dim(check_matrix(X, "X"))
        labels = np.asarray(labels).astype(str)
        if len(labels) != len(X) or len(X) == 0:
            raise CoinfeatError(
                f"enrolment needs one label per vector, got {len(X)} vectors and {len(labels)}"
            )
        if self.keeps_memory:
            self._check_memory("to enrol new coins")
        classes = np.unique(np.concatenate([self.classes_, labels]))
        self._enrol(X, labels, classes)
        if self.keeps_memory:
            old = np.searchsorted(classes, self.classes_)[self.memory_codes_]
            new, owners = class_prototypes(X, np.searchsorted(classes, labels))
            self.memory_ = np.concatenate([self.memory_, new])
            self.memory_codes_ = np.concatenate([old, owners])
        self.classes_ = classes
        return self

    def _enrol(self, X: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> None:
        """Take in ``X`` (labelled ``labels``) so the head predicts over ``classes`` (the old and
        the new, sorted); the base class refuses."""
        raise CoinfeatError(f"a {self.name} head cannot enrol new classes without refitting")

    def _check_memory(self, purpose: str) -> None:
        if not hasattr(self, "memory_"):
            raise CoinfeatError(
                f"this {self.name} head keeps no memory of its classes (saved by an older coinfeat): "
                f"fit it again {purpose}"
            )

    def memorise(self, X: np.ndarray, y: Any) -> None:
        """Keep a few prototypes per class of ``X`` (labels ``y``, classes the head knows): done by
        ``fit``; for a head made another way (fine-tune's), from vectors of its own extractor."""
        if self.keeps_memory:
            codes = np.searchsorted(self.classes_, np.asarray(y).astype(str))
            self.memory_, self.memory_codes_ = class_prototypes(X, codes)

    def _train(self, y: Any, shape: tuple[int, int], X_val, y_val, fit) -> Head:
        """Validate parameters, labels and validation data, then time ``fit(codes, val)``."""
        self._validate_params()
        codes = self._learn_classes(y, *shape)
        val = self._check_val(X_val, y_val)
        started = time.perf_counter()
        fit(codes, val)
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = self._check_dim(check_matrix(X, "X"))
        if len(X) == 0:
            return np.zeros((0, len(self.classes_)), np.float32)
        proba = np.asarray(self._predict_proba(X), dtype=np.float64)
        proba = np.clip(proba, 0, None)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def save(self, directory: str | Path) -> Path:
        """Write the head's own files plus ``head.json`` (type, params, classes, metadata)."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save(directory)
        if hasattr(self, "memory_"):
            np.savez(
                directory / MEMORY_FILE, prototypes=self.memory_.astype(np.float16), codes=self.memory_codes_
            )
        record = {
            **self.meta.to_dict(),
            "format_version": FORMAT_VERSION,
            "type": self.name,
            "params": self.get_params(),
            "classes": self.classes_.tolist(),
            "n_features_in": int(self.n_features_in_),
            "fit_seconds": getattr(self, "fit_seconds_", None),
        }
        atomic_write(directory / HEAD_FILE, json.dumps(record, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Head:
        record = read_head_record(directory)
        head = cls(**record["params"])
        head.classes_ = np.asarray(record["classes"], dtype=str)
        head.n_features_in_ = int(record["n_features_in"])
        head.fit_seconds_ = record.get("fit_seconds")
        head.meta = HeadMeta.from_dict(record)
        try:
            head._load(Path(directory))
            if (Path(directory) / MEMORY_FILE).exists():
                with np.load(Path(directory) / MEMORY_FILE, allow_pickle=False) as memory:
                    head.memory_ = memory["prototypes"].astype(np.float32)
                    head.memory_codes_ = memory["codes"].astype(np.int64)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise CoinfeatError(f"head at {directory} is damaged ({exc}); fit it again") from None
        return head

    def to_keras(self, keras: Any) -> Any:
        """A callable from pooled vectors (a Keras tensor) to class probabilities, made of Keras
        layers with this head's learned weights, so backbone + head become one model file.
        Heads that cannot be layers refuse with the reason (``keras_refusal``)."""
        raise CoinfeatError(f"a {self.name} head cannot be exported as Keras layers: {self.keras_refusal}")

    keras_refusal: ClassVar[str] = "it has no Keras form"

    # ------------------------------------------------------------------ for subclasses

    def _validate_params(self) -> None:
        """Check parameter values; called by ``fit`` (never ``__init__``, as scikit-learn does)."""
        return None

    @abstractmethod
    def _fit(self, X: np.ndarray, codes: np.ndarray, val: tuple[np.ndarray, np.ndarray] | None) -> None: ...

    def _fit_rows(self, vectors: Any, rows: np.ndarray, codes: np.ndarray, val) -> None:
        """Heads that learn weights load the rows into memory; heads that keep every vector (k-NN)
        override this to stream them, so a million-photo store is never loaded whole."""
        self._fit(check_matrix(vectors[rows], "X"), codes, val)

    @abstractmethod
    def _predict_proba(self, X: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _save(self, directory: Path) -> None: ...

    @abstractmethod
    def _load(self, directory: Path) -> None: ...

    # ------------------------------------------------------------------ checks

    def _check_param_names(self, params: dict[str, Any]) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise CoinfeatError(
                f"head {self.name!r} has no parameter {', '.join(unknown)} (it takes: {known})"
            )

    def _learn_classes(self, y: Any, n_rows: int, dim: int) -> np.ndarray:
        """Set ``classes_`` and ``n_features_in_`` from the training labels; return class codes."""
        y = np.asarray(y).astype(str)
        if len(y) != n_rows:
            raise CoinfeatError(f"X has {n_rows} rows but y has {len(y)} labels")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise CoinfeatError(f"need at least 2 classes to train a head, got {len(self.classes_)}")
        self.n_features_in_ = dim
        return np.searchsorted(self.classes_, y)

    def _check_val(self, X_val: np.ndarray | None, y_val: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """Validation vectors and codes of the classes seen in training, or None."""
        if X_val is None or y_val is None or not len(X_val):
            return None
        X_val = self._check_dim(check_matrix(X_val, "X_val"))
        y_val = np.asarray(y_val).astype(str)
        known = np.isin(y_val, self.classes_)
        return (X_val[known], np.searchsorted(self.classes_, y_val[known])) if known.any() else None

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise CoinfeatError(f"this {self.name} head is not fitted yet; call fit first")

    def _check_dim(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != self.n_features_in_:
            raise CoinfeatError(
                f"vectors have {X.shape[1]} dimensions but the head was trained on {self.n_features_in_}"
            )
        return X


class IncrementalHead(Head):
    """A head that keeps its training rows, so new labelled photos join it without refitting
    (``fit-head --add``); it also records where each row came from."""

    @abstractmethod
    def add(self, X: np.ndarray, labels: Any, sources: Any = None) -> IncrementalHead:
        """Add labelled vectors; labels never seen become new classes."""

    @abstractmethod
    def remember(self, sources: Any) -> None:
        """Record the source (photo path) of every training row, in fit order."""


def check_matrix(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise CoinfeatError(f"{name} must be a 2-D array of vectors, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise CoinfeatError(f"{name} contains NaN or infinite values")
    return X


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
