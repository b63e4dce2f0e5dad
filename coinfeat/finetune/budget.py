"""How a fine-tune spends its minutes: views per photo, rows per epoch and the cut, chosen from the
collection's size and this machine's measured speed so the whole command fits ``--max-minutes``.

The cost of a cached fine-tune is (1 + views) x train photos cache rows, then epochs x the rows
each epoch trains on, then one embedding of the whole dataset. On a small collection (the euro
coins: 1,110 train photos) the defaults fit the 15-minute budget and nothing changes. On a large one
the plan keeps the epochs (so early stopping and the weight average still have several
checkpoints) and gives up, in this order: views beyond what a share of the budget can cache,
then rows per epoch (each epoch trains on a fresh class-balanced sample of the cached rows), then,
where even one look at each train photo per epoch does not fit, the cut moves one stage up
(fewer layers trained, cheaper rows). Each choice is logged and recorded with its reason.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DEFAULT_VIEWS = 6
"""Cached views per train photo when the budget allows (chosen on the euro coins, BENCHMARKS.md)."""

LARGE_ROWS = 12_000
"""Cache rows ((1 + views) x train photos) above which the plan measures this machine and adapts;
below it the defaults are known to fit (euro coins: 7,770 rows in 10-13 minutes on 2 cores)."""

CACHE_SHARE = 0.4
"""At most this share of the time left (after the final embedding) goes to caching views."""

MIN_EPOCHS = 3
"""Fewest epochs the plan keeps room for before it cuts rows or moves the cut up."""

SAFETY = 1.25
"""Measured seconds are scaled by this before planning (validation, checkpoints, other load)."""

PROBE_STEPS = 5
"""Timed training steps of the probe (their median; one step alone varies by half)."""

FINISH_SECONDS = 30.0
"""Kept free after the last epoch besides the final embedding: validation answers, saving the
network and the head, answer sets and the unknown-coin rule."""

OVERHEAD_SECONDS = 60.0
"""Building and saving models, calibration and writing records: kept free of the plan."""

VIEW_COST = 1.3
"""A view costs this much more than its photo to cache (the augmentation)."""

STAGE_LADDER = ("block3b_add", "block4c_add", "block5c_add", "block6d_add")
"""Stage outputs of EfficientNet-B0 and -Lite0, lowest first: where a cut can move up to."""


@dataclass
class FinetunePlan:
    """What the fine-tune will do, and why (recorded in ``finetune.json`` as ``plan``)."""

    cut: str
    views: int
    rows_per_epoch: int | None = None
    """Train rows each epoch trains on (a class-balanced sample); None: every cached train row."""
    train_rows: int | None = None
    seconds_per_train_row: float | None = None
    seconds_per_cache_row: float | None = None
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_large(train_photos: int, views: int) -> bool:
    """Whether the collection is large enough for the plan to measure and adapt."""
    return train_photos * (1 + views) > LARGE_ROWS


def seconds_left(deadline: float | None) -> float | None:
    """Seconds the plan may spend before ``deadline`` (a ``time.perf_counter()`` value), less
    :data:`OVERHEAD_SECONDS`; None: no budget."""
    if deadline is None:
        return None
    return max(0.0, deadline - time.perf_counter() - OVERHEAD_SECONDS)


def higher_cut(cut: str, layers: list[str]) -> str | None:
    """The next stage output above ``cut`` on the ladder that the network has (``layers``: its
    layer names), or None (the top stage, or not a B0-family cut)."""
    if cut not in STAGE_LADDER:
        return None
    above = STAGE_LADDER[STAGE_LADDER.index(cut) + 1 :]
    return next((name for name in above if name in layers), None)


def training_fits(train_photos: int, seconds: float, seconds_per_row: float, epochs: int) -> bool:
    """Whether ``min(epochs, MIN_EPOCHS)`` epochs with one row of each train photo fit ``seconds``."""
    return min(epochs, MIN_EPOCHS) * train_photos * seconds_per_row * SAFETY <= seconds


def affordable_views(
    train_photos: int, *, seconds: float, seconds_per_row: float, requested: int, cached: int = 0
) -> tuple[int, str | None]:
    """Views per train photo whose caching fits ``CACHE_SHARE`` of ``seconds`` (views already
    cached cost nothing); the requested number when it fits, else fewer, with the reason."""
    if requested <= cached:
        return requested, None
    per_view = train_photos * seconds_per_row * VIEW_COST * SAFETY
    fits = cached + int(max(0.0, CACHE_SHARE * seconds) // max(per_view, 1e-9))
    if fits >= requested:
        return requested, None
    views = max(0, fits)
    return views, (
        f"{views} cached view(s) per train photo instead of {requested}: caching {requested} would take "
        f"about {requested * per_view / 60:.0f} min of the {seconds / 60:.0f} min left "
        f"({train_photos} train photos, {seconds_per_row * 1000:.0f} ms a row here)"
    )


def rows_per_epoch(
    train_rows: int, *, seconds: float, seconds_per_row: float, epochs: int, batch_size: int
) -> tuple[int | None, str | None]:
    """Train rows per epoch so that ``epochs`` epochs fit ``seconds``: None (all of them) when they
    fit, else a sample size, with the reason."""
    fits = int(seconds // (epochs * seconds_per_row * SAFETY))
    if fits >= train_rows:
        return None, None
    rows = max(batch_size, fits)
    return rows, (
        f"each epoch trains on a class-balanced sample of {rows} of the {train_rows} cached train rows, "
        f"so {epochs} epochs fit the {seconds / 60:.0f} min left ({seconds_per_row * 1000:.1f} ms a row here)"
    )


def balanced_sample(codes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` row positions drawn without replacement, each class about equally often (a class
    with few rows gives all of them and the rest is shared among the others)."""
    counts = np.bincount(codes)
    weights = 1.0 / counts[codes]
    return np.sort(
        rng.choice(len(codes), size=min(size, len(codes)), replace=False, p=weights / weights.sum())
    )


def train_seconds_per_row(
    keras,
    model: Any,
    row_shape: tuple[int, ...],
    n_classes: int,
    batch_size: int,
    loss: Any,
) -> float:
    """Seconds one cached row costs to train on this machine: a few steps of a copy of ``model``
    (same layers, other weights, trained on ``loss``) on random activations; the model itself is
    not touched."""
    probe = keras.models.clone_model(model)
    probe.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss)
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *row_shape), dtype=np.float32)
    y = rng.integers(0, n_classes, batch_size)
    for _ in range(2):  # tracing, then a first real step
        probe.train_on_batch(x, y)
    seconds = []
    for _ in range(PROBE_STEPS):
        started = time.perf_counter()
        probe.train_on_batch(x, y)
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)) / batch_size
