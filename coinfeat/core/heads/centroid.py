"""Nearest class prototype with cosine similarity: a strong, instant baseline on good embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads import register
from coinfeat.core.heads.base import Head, check_matrix, softmax
from coinfeat.core.heads.prototypes import class_prototypes, per_class_similarity
from coinfeat.core.index import normalise

CENTROIDS_FILE = "centroids.npy"
CODES_FILE = "centroid_classes.npy"


@register
class CentroidHead(Head):
    """Nearest class prototype by cosine, softmax over each class's best similarity:
    ``make_head("centroid", prototypes=4)``. With one prototype a class is its mean; with more, its
    k-means centres, so the two sides of a coin (or two lights) stay two looks of one class.

    Parameters (keywords of ``make_head``, ``--param key=value``):

    - ``temperature``: softmax temperature over cosine similarities; default 0.05
    - ``prototypes``: prototypes per class (fewer when a class has fewer photos); default 1
    """

    name = "centroid"
    summary = "nearest class prototype (cosine), softmax over similarities"
    defaults: ClassVar[dict[str, Any]] = {"temperature": 0.05, "prototypes": 1}

    def _validate_params(self) -> None:
        if int(self.prototypes) < 1:
            raise CoinfeatError("centroid prototypes must be at least 1")

    def _fit(self, X, codes, val) -> None:
        self.centroids_, self.centroid_codes_ = self._prototypes(X, codes)

    @classmethod
    def from_prototypes(cls, vectors: np.ndarray, classes: np.ndarray, **params: Any) -> CentroidHead:
        """A fitted head whose prototypes are given, one row of ``vectors`` per class of
        ``classes`` (e.g. the class vectors learned by fine-tune's cosine objective)."""
        vectors = check_matrix(np.asarray(vectors, dtype=np.float32), "prototypes")
        if len(vectors) != len(classes):
            raise CoinfeatError(f"{len(vectors)} prototypes for {len(classes)} classes")
        head = cls(**params)
        head.classes_ = np.asarray(classes)
        head.n_features_in_ = int(vectors.shape[1])
        head.centroids_, head.centroid_codes_ = normalise(vectors), np.arange(len(classes))
        return head

    def _prototypes(self, X: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if int(self.prototypes) == 1:
            found = np.unique(codes)
            return normalise(np.stack([normalise(X[codes == c]).mean(axis=0) for c in found])), found
        centres, owners = class_prototypes(X, codes, int(self.prototypes))
        return normalise(centres), owners

    def _predict_proba(self, X) -> np.ndarray:
        best = per_class_similarity(X, self.centroids_, self.centroid_codes_, len(self.classes_))
        return softmax(best, float(self.temperature))

    def _enrol(self, X, labels, classes) -> None:
        new, owners = self._prototypes(X, np.searchsorted(classes, labels))
        old = np.searchsorted(classes, self.classes_)[self.centroid_codes_]
        self.centroids_ = np.concatenate([self.centroids_, new])
        self.centroid_codes_ = np.concatenate([old, owners])

    def to_keras(self, keras: Any) -> Any:
        """Unit length, one column per prototype (each class's prototypes repeated to the same
        count, prototype-major), the best prototype per class, softmax."""
        n_classes = len(self.classes_)
        per_class = [self.centroids_[self.centroid_codes_ == c] for c in range(n_classes)]
        depth = max(len(p) for p in per_class)
        kernel = np.stack([p[np.arange(depth) % len(p)] for p in per_class], axis=1)  # depth x classes x d
        dense = keras.layers.Dense(depth * n_classes, use_bias=False, name="centroids")
        dense.build((None, int(self.n_features_in_)))
        dense.set_weights(
            [kernel.reshape(depth * n_classes, -1).T.astype(np.float32) / float(self.temperature)]
        )
        unit = keras.layers.UnitNormalization(name="unit_length")
        per_prototype = keras.layers.Reshape((depth, n_classes), name="per_prototype")
        best = keras.layers.GlobalMaxPooling1D(name="best_prototype")
        probabilities = keras.layers.Softmax(name="probabilities")
        return lambda x: probabilities(best(per_prototype(dense(unit(x)))))

    def _save(self, directory: Path) -> None:
        np.save(directory / CENTROIDS_FILE, self.centroids_)
        np.save(directory / CODES_FILE, self.centroid_codes_)

    def _load(self, directory: Path) -> None:
        self.centroids_ = np.load(directory / CENTROIDS_FILE)
        codes = directory / CODES_FILE  # absent in heads saved before prototypes: one per class
        self.centroid_codes_ = np.load(codes) if codes.exists() else np.arange(len(self.centroids_))
