"""Nearest class mean with cosine similarity: a strong, instant baseline on good embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from coinfeat.core.heads import register
from coinfeat.core.heads.base import Head, softmax
from coinfeat.core.index import normalise

CENTROIDS_FILE = "centroids.npy"


@register
class CentroidHead(Head):
    """Nearest class mean by cosine, softmax over the similarities: ``make_head("centroid")``.

    Parameters (keywords of ``make_head``, ``--param key=value``):

    - ``temperature``: softmax temperature over cosine similarities; default 0.05
    """

    name = "centroid"
    summary = "nearest class mean (cosine), softmax over similarities"
    defaults: ClassVar[dict[str, Any]] = {"temperature": 0.05}

    def _fit(self, X, codes, val) -> None:
        x = normalise(X)
        means = np.stack([x[codes == c].mean(axis=0) for c in range(len(self.classes_))])
        self.centroids_ = normalise(means)

    def _predict_proba(self, X) -> np.ndarray:
        return softmax(normalise(X) @ self.centroids_.T, float(self.temperature))

    def to_keras(self, keras: Any) -> Any:
        dense = keras.layers.Dense(len(self.classes_), use_bias=False, name="centroids")
        dense.build((None, int(self.n_features_in_)))
        dense.set_weights([np.asarray(self.centroids_, np.float32).T / float(self.temperature)])
        unit = keras.layers.UnitNormalization(name="unit_length")
        probabilities = keras.layers.Softmax(name="probabilities")
        return lambda x: probabilities(dense(unit(x)))

    def _save(self, directory: Path) -> None:
        np.save(directory / CENTROIDS_FILE, self.centroids_)

    def _load(self, directory: Path) -> None:
        self.centroids_ = np.load(directory / CENTROIDS_FILE)
