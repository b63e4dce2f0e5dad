"""What a fine-tune is asked (:class:`FinetuneConfig`), what it records in ``finetune.json``
(:class:`FinetuneRecord`, read and written only here) and what it returns (:class:`FinetuneResult`)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coinfeat import __version__
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.finetune_record import FinetuneRecord
from coinfeat.core.images.augment import FINETUNE_VIEWS
from coinfeat.finetune.network import OBJECTIVES

DEFAULT_FINETUNED_DIR = Path("artifacts") / "finetuned"


@dataclass
class FinetuneConfig:
    """Every option of ``fine-tune``; the defaults are the CLI's."""

    cut: str | None = None
    """Where the trained part starts; None: the backbone's default, moved up a stage when the time
    budget cannot train it on a large collection (:mod:`coinfeat.finetune.budget`)."""
    views: int | None = None
    """Cached views per train photo; None: 6, fewer when the budget cannot cache them all."""
    epochs: int = 5
    learning_rate: float = 2e-4
    """Adam's step; 2e-4 with the weight average (1e-4 before it: BENCHMARKS.md "Learning rate")."""
    batch_size: int = 32
    patience: int = 2
    dropout: float = 0.2
    seed: int = 0
    """Seeds the trained layers' start and the order of the batches (the views are seeded by
    photo); another seed is another draw of the same recipe."""
    ema: float = 0.99
    """Momentum of an exponential moving average of the trained weights (Keras' ``use_ema``), written
    into the model at each epoch's end so val judges the average (lowered on small collections,
    :func:`~coinfeat.finetune.training.ema_momentum`); 0: off. Chosen over six seeds on val loss and
    the test folder (BENCHMARKS.md "Weight averaging")."""
    objective: str = "softmax"
    """``softmax`` (a dense head) or ``cosine`` (class vectors with a margin; a centroid head):
    :data:`~coinfeat.finetune.network.OBJECTIVES`."""
    max_minutes: float | None = 15.0
    """Time budget of the whole command: no epoch is started that would end past it (with the
    final embedding's estimated time kept free); None: no budget."""
    full: bool = False
    embed: bool = True
    embed_out: str | None = None
    engine: str = "auto"
    threads: int | None = None
    progress: bool = True

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise CoinfeatError(f"--{name.replace('_', '-')} must be at least 1")
        if self.views is not None and self.views < 0:
            raise CoinfeatError("--views must be 0 or more")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise CoinfeatError("--max-minutes must be more than 0 (0 on the command line: no budget)")
        if not 0 <= self.ema < 1:
            raise CoinfeatError("--ema must be 0 (off) or a momentum below 1, e.g. 0.99")
        if self.objective not in OBJECTIVES:
            raise CoinfeatError(f"--objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")
        if not 0 < self.learning_rate < 1:
            raise CoinfeatError("--learning-rate must be between 0 and 1, e.g. 1e-4")


@dataclass
class FinetuneResult:
    """What a fine-tune produced, with the figures a person wants to see."""

    out: str
    backbone: str
    head_dir: str
    store: str | None
    cut: str | None
    """None for ``full``: the whole network was trained."""
    mode: str
    views: int
    ema: float
    """Momentum of the weight average trained with (0: none)."""
    objective: str
    """What was trained: "softmax" (a dense head) or "cosine" (a centroid head)."""
    epochs_run: int
    best_epoch: int
    stopped_by: str
    """Why training ended: "early stopping", "time budget" or "epochs" (all of them ran)."""
    val_loss: float
    val_accuracy: float
    val_balanced_accuracy: float
    train_photos: int
    val_photos: int
    cache_rows: int
    cache_reused: int
    pretrained: bool
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    answer_sets: int | None = None
    """Val photos the head's answer sets were calibrated on (None: too few)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _photo_set(items: pd.DataFrame) -> dict[str, Any]:
    digest = hashlib.sha256("\n".join(sorted(items["sha256"].astype(str))).encode()).hexdigest()
    return {"photos": len(items), "sha256_of_sorted_sha256": digest}


def make_record(
    store, spec, cut, cfg, train, val, history, figures, stopped_by: str, plan=None
) -> FinetuneRecord:
    """``finetune.json`` of a finished training (seconds are filled in as stages end)."""
    best = int(np.argmin(history["val_loss"])) + 1
    mode = "end to end" if cfg.full else f"above {cut}"
    trained = "" if spec.pretrained else " from NOT PRETRAINED weights"
    objective = "" if cfg.objective == "softmax" else f", {cfg.objective} objective"
    return FinetuneRecord(
        summary=f"fine-tuned{trained} {mode} on train ({len(train)} photos{objective})",
        pretrained=spec.pretrained,
        base={"fingerprint": store.fingerprint, "backbone": spec.describe(), "store": str(store.path)},
        cut=None if cfg.full else cut,
        mode="full" if cfg.full else "cached",
        views=plan.views if plan else 0,
        plan=plan.to_dict() if plan else None,
        augmentation=asdict(FINETUNE_VIEWS),
        epochs_run=len(history["loss"]),
        best_epoch=best,
        stopped_by=stopped_by,
        max_minutes=cfg.max_minutes,
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        patience=cfg.patience,
        dropout=cfg.dropout,
        seed=cfg.seed,
        ema=cfg.ema,
        objective=cfg.objective,
        val=figures,
        photos={"train": _photo_set(train), "val": _photo_set(val), "test": "never used"},
        coinfeat_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
