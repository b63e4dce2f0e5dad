"""The report's plots: confusion matrices ordered so confusions sit together, accuracy against k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import leaves_list, linkage

from coinfeat.compare.evaluate import Comparison, HeadResult
from coinfeat.core.data.datasets import display_label
from coinfeat.core.metrics import confusion, predicted_labels

LABELLED_TICKS_MAX = 60


def cluster_order(matrix: np.ndarray) -> np.ndarray:
    """Class order that puts classes confused with each other next to each other."""
    if len(matrix) < 3:
        return np.arange(len(matrix))
    symmetric = matrix + matrix.T
    np.fill_diagonal(symmetric, 0)
    distance = 1.0 - symmetric / max(symmetric.max(), 1e-9)
    condensed = distance[np.triu_indices(len(matrix), 1)]
    return leaves_list(linkage(condensed, method="average"))


AUTO_CONFUSION_TOP = 40
"""Without ``--confusion-top``, a matrix of more classes shows the 40 most confused (all: per_class.csv)."""


def plot_confusion(c: Comparison, r: HeadResult, path: Path) -> Path:
    """Row-normalised confusion matrix, clustered; ``confusion_top`` keeps the most confused classes."""
    items = c.splits[c.eval_split]
    y_true = items["label"].to_numpy()
    y_pred = predicted_labels(r.proba[c.eval_split], r.head.classes_)
    labels = sorted(set(y_true) | set(y_pred))
    counts = confusion(y_true, y_pred, labels)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    keep = np.arange(len(labels))
    top = c.config.confusion_top or (AUTO_CONFUSION_TOP if len(labels) > AUTO_CONFUSION_TOP else None)
    if top and len(labels) > top:
        errors = normalised.sum(axis=1) - np.diag(normalised) + normalised.sum(axis=0) - np.diag(normalised)
        keep = np.sort(np.argsort(-errors)[:top])
    order = keep[cluster_order(normalised[np.ix_(keep, keep)])]
    shown = normalised[np.ix_(order, order)]
    n = len(order)
    side = min(max(5.0, 0.28 * n + 2), 40.0)
    fig = Figure(figsize=(side, side * 0.9))
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= LABELLED_TICKS_MAX:
        names = [_short(display_label(labels[i], c.names)) for i in order]
        ax.set_xticks(range(n), names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if shown[i, j] >= 0.01:
                    ax.text(
                        j,
                        i,
                        f"{shown[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if shown[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    subset = f", {n} most confused of {len(labels)} classes" if n < len(labels) else ""
    ax.set_title(f"{r.name}: confusion on {c.eval_split} (row-normalised{subset})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_topk(c: Comparison, path: Path) -> Path:
    ks = sorted(c.config.top_k)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for r in c.results:
        ax.plot(ks, [r.subsets[c.headline][f"top{k}"] for k in ks], marker="o", label=r.name)
    ax.set_xlabel("k")
    ax.set_ylabel(f"top-k accuracy ({c.eval_split}, {subset_words(c.headline)})")
    ax.set_xticks(ks)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def subset_words(subset: str) -> str:
    words = {"all": "all photos", "clean": "clean photos (no twin in training)", "twins": "twin photos"}
    return words[subset]
