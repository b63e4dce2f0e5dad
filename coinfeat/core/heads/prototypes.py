"""A head's memory of its training photos: a few prototypes per class, kept beside its weights.

Coins have two sides and are shot in many lights, so one mean per class blurs two looks into
one; a handful of k-means centres per class keeps them apart. The memory serves three jobs:
the centroid head's prototypes, a head-independent "how close is this to anything I learned"
score for unknown coins (:func:`nearest_similarity`), and the negatives that let a weight-based
head enrol a new class without refitting (:func:`refit_new_columns`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from coinfeat.core.index import normalise

PROTOTYPES = 4
"""Prototypes kept per class (fewer when a class has fewer photos)."""


def class_prototypes(
    X: np.ndarray, codes: np.ndarray, per_class: int = PROTOTYPES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(prototypes, their class codes): each class's vectors grouped into up to ``per_class``
    k-means clusters by direction (cosine), each prototype the mean of its cluster's vectors as
    they are (every vector itself when a class has that many or fewer)."""
    from sklearn.cluster import KMeans

    X = np.asarray(X, dtype=np.float32)
    centres, owners = [], []
    for code in np.unique(codes):
        members = X[codes == code]
        if len(members) <= per_class:
            found = members
        else:
            groups = KMeans(per_class, n_init=1, random_state=seed).fit_predict(normalise(members))
            found = np.stack([members[groups == g].mean(axis=0) for g in np.unique(groups)])
        centres.append(found)
        owners.append(np.full(len(found), code))
    return np.concatenate(centres).astype(np.float32), np.concatenate(owners).astype(np.int64)


def nearest_similarity(X: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``X`` to its nearest prototype."""
    return (normalise(X) @ normalise(prototypes).T).max(axis=1)


def per_class_similarity(
    X: np.ndarray, prototypes: np.ndarray, owners: np.ndarray, n_classes: int
) -> np.ndarray:
    """N x classes: each row's cosine to the nearest prototype of each class (-1 where a class has none)."""
    sims = normalise(X) @ normalise(prototypes).T
    best = np.full((len(X), n_classes), -1.0, dtype=np.float32)
    for code in np.unique(owners):
        best[:, code] = sims[:, owners == code].max(axis=1)
    return best


def refit_new_columns(
    features: np.ndarray,
    codes: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray,
    *,
    trainable: np.ndarray,
    l2: float = 1e-3,
    steps: int = 300,
    learning_rate: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """A softmax layer (``features @ weights + bias``) with only the columns in ``trainable``
    learned, by Adam on class-balanced cross-entropy over ``features`` (the old classes' memory
    and the new classes' photos); the other columns stay as they were. The new columns are learned
    on standardised features (so any feature scale trains alike) and folded back; they start from
    their classes' mean direction, scaled like the old columns (weight imprinting)."""
    features = np.asarray(features, np.float64)
    W, b = weights.astype(np.float64).copy(), bias.astype(np.float64).copy()
    old = ~np.isin(np.arange(W.shape[1]), trainable)
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-12
    Z = (features - mean) / std
    fixed = features @ W[:, old] + b[old]
    scale = float(np.linalg.norm(W[:, old] * std[:, None], axis=0).mean()) if old.any() else 1.0
    w = np.stack([_direction(Z[codes == column]) * scale for column in trainable], axis=1)
    c = np.full(len(trainable), float((b[old] + mean @ W[:, old]).mean()) if old.any() else 0.0)
    counts = np.bincount(codes, minlength=W.shape[1]).astype(np.float64)
    sample_weight = (1.0 / np.maximum(counts, 1))[codes]
    sample_weight /= sample_weight.sum()
    onehot = np.eye(W.shape[1])[codes]
    adam_w, adam_c = _Adam(learning_rate), _Adam(learning_rate)
    logits = np.empty((len(features), W.shape[1]))
    logits[:, old] = fixed
    for _ in range(steps):
        logits[:, trainable] = Z @ w + c
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        error = (proba - onehot)[:, trainable] * sample_weight[:, None]
        w -= adam_w.step(Z.T @ error + l2 * w)
        c -= adam_c.step(error.sum(axis=0))
    W[:, trainable] = w / std[:, None]
    b[trainable] = c - (mean / std) @ w
    return W.astype(np.float32), b.astype(np.float32)


def _direction(rows: np.ndarray) -> np.ndarray:
    centre = rows.mean(axis=0)
    return centre / max(float(np.linalg.norm(centre)), 1e-12)


class _Adam:
    """Adam's update for one array (Kingma and Ba), enough for a handful of softmax columns."""

    def __init__(self, learning_rate: float, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.learning_rate, self.beta1, self.beta2 = learning_rate, beta1, beta2
        self.m = self.v = 0.0
        self.t = 0

    def step(self, grad: np.ndarray) -> np.ndarray:
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad**2
        m_hat, v_hat = self.m / (1 - self.beta1**self.t), self.v / (1 - self.beta2**self.t)
        return self.learning_rate * m_hat / (np.sqrt(v_hat) + 1e-8)


def enrol_softmax(
    features: Callable[[np.ndarray], np.ndarray],
    weights: np.ndarray,
    bias: np.ndarray,
    *,
    memory: tuple[np.ndarray, np.ndarray],
    old_classes: np.ndarray,
    X: np.ndarray,
    labels: np.ndarray,
    classes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The weights and bias of a head's final softmax layer over ``classes`` (the old ones and
    the new, sorted): old columns kept, new columns learned by :func:`refit_new_columns` from
    ``X`` (labelled ``labels``) against the memory of the old classes. ``features`` maps input
    vectors to the layer's input (identity for a linear head, the hidden layers for an MLP)."""
    old = np.searchsorted(classes, old_classes)
    new = np.setdiff1d(np.arange(len(classes)), old)
    W = np.zeros((weights.shape[0], len(classes)), np.float32)
    b = np.zeros(len(classes), np.float32)
    W[:, old], b[old] = weights, bias
    prototypes, owners = memory
    rows = np.concatenate([features(prototypes), features(X)])
    codes = np.concatenate([old[owners], np.searchsorted(classes, labels)])
    return refit_new_columns(rows, codes, W, b, trainable=new)
