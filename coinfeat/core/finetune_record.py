"""``finetune.json``: how a fine-tuned backbone was made, read and written only here.

``coinfeat fine-tune`` writes it beside ``backbone.keras``; whoever loads that backbone file
(:mod:`coinfeat.core.extraction.backbones`) reads it to say "fine-tuned above block5c_add on train (N
photos)" and whether the base weights were pretrained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.store.atomic import atomic_write

FINETUNE_RECORD = "finetune.json"
FORMAT_VERSION = 1


@dataclass(kw_only=True)
class FinetuneRecord:
    """Enough to know what a tuned backbone is and to reproduce it."""

    summary: str
    pretrained: bool
    base: dict[str, Any]
    """The base extractor: fingerprint, backbone, store."""
    cut: str | None
    """The first layer trained; None when the whole network was (``full``)."""
    mode: str
    views: int
    augmentation: dict[str, Any]
    epochs_run: int
    best_epoch: int
    stopped_by: str | None = None
    """Why training ended: "early stopping", "time budget" or "epochs"; None in older records."""
    max_minutes: float | None = None
    """The command's time budget; None: none (or an older record)."""
    learning_rate: float
    batch_size: int
    patience: int
    dropout: float
    seed: int
    ema: float | None = None
    """Momentum of the weights' moving average (0: off); None in older records."""
    objective: str | None = None
    """What was trained: "softmax" or "cosine" (class vectors with a margin); None in older
    records (softmax)."""
    val: dict[str, float]
    photos: dict[str, Any]
    """Counts and a hash of the sorted sha256 of the train and val photos; test is never used."""
    seconds: dict[str, float] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    """What the time budget chose (cut, views, rows per epoch) and why; None in older records."""
    coinfeat_version: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: Path) -> Path:
        data = asdict(self)
        extra = data.pop("extra")
        atomic_write(folder / FINETUNE_RECORD, json.dumps({**extra, **data}, indent=2))
        return folder / FINETUNE_RECORD

    @classmethod
    def beside(cls, model_file: Path) -> FinetuneRecord | None:
        """The record next to a backbone file, or None for a file fine-tune did not write."""
        try:
            data = json.loads((model_file.parent / FINETUNE_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or "summary" not in data:
            return None
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise CoinfeatError(
                f"{model_file.parent / FINETUNE_RECORD} was written by a newer coinfeat; upgrade coinfeat"
            )
        known = {f.name for f in fields(cls)} - {"extra"}
        defaults = {f.name: None for f in fields(cls) if f.name not in ("extra", "format_version")}
        values = {**defaults, **{k: v for k, v in data.items() if k in known}}
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})
