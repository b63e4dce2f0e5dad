"""Learning curves: loss and accuracy per epoch, train and val, as the seed notebooks plotted them.

Written by ``fine-tune`` (``curves.png``) and by ``compare`` for every Keras head it trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_history(history: dict[str, list[float]], path: str | Path, title: str = "") -> Path:
    """Two panels (loss, accuracy) with train and val per epoch and the best epoch (lowest val
    loss) marked; metrics missing from ``history`` are left out."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.4), dpi=110)
    epochs = np.arange(1, len(history["loss"]) + 1)
    best = int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else None
    for ax, metric in zip(figure.subplots(1, 2), ("loss", "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "val")):
            if history.get(key):
                ax.plot(epochs, history[key], "o-", label=label)
        if best:
            ax.axvline(best, color="grey", ls=":", label="best (val loss)")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    return Path(path)
