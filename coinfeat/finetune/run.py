"""``finetune``: the whole command, from a feature store to a tuned backbone, its head and a new store."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coinfeat.core.answer_sets import calibrate_beside
from coinfeat.core.data.leakage import identical_copies
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.extraction.backbones import (
    BackboneSpec,
    assemble,
    base_network,
    resolve_backbone,
)
from coinfeat.core.extraction.embedder import Embedder
from coinfeat.core.extraction.extract import (
    ExtractConfig,
    default_store_dir,
    extract_features,
    make_writable_dir,
)
from coinfeat.core.heads import ExtractorRecord
from coinfeat.core.heads.unknown import rule_from_scores
from coinfeat.core.runtime import import_keras, log
from coinfeat.core.store import (
    Store,
    atomic_write,
    open_store,
)
from coinfeat.finetune.budget import (
    CACHE_SHARE,
    DEFAULT_VIEWS,
    FINISH_SECONDS,
    MIN_EPOCHS,
    FinetunePlan,
    affordable_views,
    higher_cut,
    is_large,
    rows_per_epoch,
    seconds_left,
    train_seconds_per_row,
    training_fits,
)
from coinfeat.finetune.cache import build_cache, cached_views
from coinfeat.finetune.network import (
    classifier,
    full_network,
    resolve_cut,
    split_network,
    training_loss,
)
from coinfeat.finetune.records import (
    DEFAULT_FINETUNED_DIR,
    FinetuneConfig,
    FinetuneResult,
    make_record,
)
from coinfeat.finetune.training import (
    cached_batches,
    ema_momentum,
    photo_batches,
    save_history,
    train_model,
    val_predictions,
    validation_figures,
)
from coinfeat.finetune.tuned_head import follow_store, memorise_from_cache, save_head, set_unknown_rule

MEASURED_ROWS = 64
"""Cache rows computed in this run from which their seconds per row estimate the final embedding."""

EMBED_SECONDS_PER_PHOTO = 0.04
"""Estimated seconds per photo of the final embedding when the cache was reused: about twice the
slowest seen on 2 cores (51 s for the 2,830 euro-coins photos)."""


def default_finetune_dir(store: Store) -> Path:
    return DEFAULT_FINETUNED_DIR / store.manifest.dataset.name


def finetune(
    features: str | Path, out: str | Path | None = None, config: FinetuneConfig | None = None, **options: Any
) -> FinetuneResult:
    """Fine-tune the store's own backbone on its train split (val drives early stopping) and write
    ``backbone.keras``, ``finetune.json``, ``head/``, ``history.json``, ``curves.png`` into ``out``,
    then (unless ``embed`` is off) embed the dataset again with the tuned backbone."""
    cfg = config or FinetuneConfig(**options)
    cfg.validate()
    started = time.perf_counter()
    store = open_store(features)
    train, val = _photo_sets(store)
    notes = _leak_notes(store)
    spec = Embedder(ExtractorRecord.of_manifest(store.manifest)).spec
    out = Path(out) if out else default_finetune_dir(store)
    make_writable_dir(out)
    keras = import_keras()
    keras.utils.set_random_seed(cfg.seed)
    base = base_network(spec)
    classes = np.unique(train["label"].to_numpy(dtype=str))
    seconds: dict[str, float] = {}
    plan, cache_rows, cache_reused, measured = None, 0, 0, None
    if cfg.full:
        model = classifier(keras, full_network(keras, spec, base), len(classes), cfg.dropout, cfg.objective)
        data = photo_batches(store, spec, train, val, classes, cfg)
    else:
        t0 = time.perf_counter()
        plan, model, data, cache_rows, cache_reused, measured = _cached_setup(
            keras, store, spec, base, train, classes, cfg, started
        )
        seconds["cache"] = round(time.perf_counter() - t0, 2)
    cut = plan.cut if plan else None
    notes += plan.reasons if plan else []
    cfg = _averaging_for(cfg, steps_per_epoch=len(data[0]))
    t0 = time.perf_counter()
    deadline = _training_deadline(store, cfg, started, measured)
    history, stopped_by = train_model(keras, model, *data, cfg, deadline)
    seconds["training"] = round(time.perf_counter() - t0, 2)
    if stopped_by == "time budget":
        notes.append(_budget_note(history, cfg))
    seconds["per_epoch"] = round(seconds["training"] / max(1, len(history["loss"])), 2)
    val_proba, val_truth = val_predictions(model, data[1], cfg.objective)
    val_metrics = validation_figures(val_proba, val_truth, history)
    record = make_record(store, spec, cut, cfg, train, val, history, val_metrics, stopped_by, plan)
    record.seconds = seconds
    record.write(out)
    assemble(spec, base).save(out / "backbone.keras")
    tuned = resolve_backbone(str(out / "backbone.keras"), image_size=spec.image_size)
    save_history(history, out, record.summary)
    head_dir = save_head(model, classes, store, tuned, record, history, out / "head")
    calibrated = calibrate_beside(head_dir, val_proba, classes[val_truth], classes)
    set_unknown_rule(head_dir, rule_from_scores(val_proba.max(axis=1), "max_probability"))
    new_store = None
    if cfg.embed:
        t0 = time.perf_counter()
        new_store = _embed_dataset(store, tuned, out, cfg)
        seconds["embed"] = round(time.perf_counter() - t0, 2)
        notes += _split_notes(store, new_store)
        follow_store(head_dir, new_store)
    elif cut is not None:
        memorise_from_cache(keras, model, store, cut, head_dir, cfg.batch_size)
    seconds["total"] = round(time.perf_counter() - started, 2)
    record.seconds = seconds
    record.write(out)
    return FinetuneResult(
        out=str(out),
        backbone=str(out / "backbone.keras"),
        head_dir=str(head_dir),
        store=str(new_store) if new_store else None,
        cut=cut,
        mode="full" if cfg.full else "cached",
        views=plan.views if plan else 0,
        ema=cfg.ema,
        objective=cfg.objective,
        epochs_run=len(history["loss"]),
        best_epoch=record.best_epoch,
        stopped_by=stopped_by,
        val_loss=val_metrics["loss"],
        val_accuracy=val_metrics["accuracy"],
        val_balanced_accuracy=val_metrics["balanced_accuracy"],
        train_photos=len(train),
        val_photos=len(val),
        cache_rows=cache_rows,
        cache_reused=cache_reused,
        pretrained=spec.pretrained,
        seconds=seconds,
        notes=notes,
        answer_sets=calibrated,
    )


def _cached_setup(keras, store: Store, spec: BackboneSpec, base: Any, train, classes, cfg, started: float):
    """Cut, cache and batches of a cached fine-tune, within the time budget: on a large collection
    the plan measures this machine, moves the cut up if even a few epochs cannot train it, caches
    the photos first (their speed decides how many views fit) and sizes the epochs
    (:mod:`coinfeat.finetune.budget`). Returns (plan, model, (train, val) batches, cache rows,
    rows reused, seconds per computed cache row or None)."""
    requested = DEFAULT_VIEWS if cfg.views is None else cfg.views
    plan = FinetunePlan(cut=resolve_cut(spec, base, cfg.cut, store.manifest.crop), views=requested)
    adapt = cfg.max_minutes is not None and is_large(len(train), requested)
    lower, model = _split(keras, spec, base, plan.cut, len(classes), cfg)
    computed, spent = 0, 0.0
    if adapt:
        lower, model = _choose_cut(
            keras, spec, base, store, len(train), classes, cfg, started, plan, lower, model
        )
        t0 = time.perf_counter()
        _, first = build_cache(store, spec, lower=lower, cut=plan.cut, views=0, cfg=cfg)
        computed, spent = first.stats.embedded, time.perf_counter() - t0
        plan.seconds_per_cache_row = spent / computed if computed >= MEASURED_ROWS else None
        if cfg.views is None:
            left = seconds_left(_training_deadline(store, cfg, started, plan.seconds_per_cache_row))
            plan.views, why = affordable_views(
                len(train),
                seconds=left,
                seconds_per_row=plan.seconds_per_cache_row or EMBED_SECONDS_PER_PHOTO,
                requested=requested,
                cached=cached_views(store, plan.cut),
            )
            _adopt(plan, why)
    t0 = time.perf_counter()
    cache, filled = build_cache(store, spec, lower=lower, cut=plan.cut, views=plan.views, cfg=cfg)
    computed, spent = computed + filled.stats.embedded, spent + time.perf_counter() - t0
    measured = spent / computed if computed >= MEASURED_ROWS else None
    if adapt:
        plan.train_rows = int((cache.items["split"].eq("train") & cache.items["view"].le(plan.views)).sum())
        plan.rows_per_epoch, why = rows_per_epoch(
            plan.train_rows,
            seconds=seconds_left(_training_deadline(store, cfg, started, measured)),
            seconds_per_row=plan.seconds_per_train_row,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
        )
        _adopt(plan, why)
    data = cached_batches(cache, classes, cfg, views=plan.views, rows_per_epoch=plan.rows_per_epoch)
    return plan, model, data, len(filled.final), len(filled.final) - filled.stats.embedded, measured


def _split(keras, spec: BackboneSpec, base: Any, cut: str, n_classes: int, cfg: FinetuneConfig):
    """(lower part, trainable model above ``cut``)."""
    lower, upper = split_network(keras, spec, base, cut)
    return lower, classifier(keras, upper, n_classes, cfg.dropout, cfg.objective)


def _choose_cut(keras, spec, base, store, train_photos: int, classes, cfg, started, plan, lower, model):
    """Measure a training row at the plan's cut; while a few epochs of one row per train photo do
    not fit the training share of the budget (and ``--cut`` was not given), move one stage up."""
    while True:
        shape = tuple(
            int(n) for n in lower.compute_output_shape((1, spec.image_size, spec.image_size, 3))[1:]
        )
        plan.seconds_per_train_row = train_seconds_per_row(
            keras,
            model,
            shape,
            len(classes),
            cfg.batch_size,
            training_loss(keras, cfg.objective, len(classes)),
        )
        share = (1 - CACHE_SHARE) * seconds_left(_training_deadline(store, cfg, started, None))
        higher = higher_cut(plan.cut, [layer.name for layer in base.layers]) if cfg.cut is None else None
        if higher is None or training_fits(train_photos, share, plan.seconds_per_train_row, cfg.epochs):
            return lower, model
        _adopt(
            plan,
            f"cut moved up from {plan.cut} to {higher}: {min(cfg.epochs, MIN_EPOCHS)} epochs over the "
            f"{train_photos} train photos would not fit the time budget at "
            f"{plan.seconds_per_train_row * 1000:.1f} ms a row",
        )
        plan.cut = higher
        lower, model = _split(keras, spec, base, higher, len(classes), cfg)


def _adopt(plan: FinetunePlan, why: str | None) -> None:
    if why:
        plan.reasons.append(why)
        log.info("fine-tune plan: %s", why)


def _training_deadline(
    store: Store, cfg: FinetuneConfig, started: float, measured: float | None
) -> float | None:
    """When the last epoch must end (a ``time.perf_counter()`` value) for the whole command to stay
    within ``max_minutes``: the budget less the final embedding's estimated time (this run's
    seconds per cached row, or :data:`EMBED_SECONDS_PER_PHOTO` when nothing was cached now) and
    :data:`~coinfeat.finetune.budget.FINISH_SECONDS`."""
    if cfg.max_minutes is None:
        return None
    photos = int(store.items["view"].eq(0).sum()) if cfg.embed else 0
    return started + cfg.max_minutes * 60 - photos * (measured or EMBED_SECONDS_PER_PHOTO) - FINISH_SECONDS


def _averaging_for(cfg: FinetuneConfig, steps_per_epoch: int) -> FinetuneConfig:
    """``cfg`` with the ``--ema`` momentum this collection allows (recorded in finetune.json and
    shown with the result)."""
    momentum = ema_momentum(cfg.ema, steps_per_epoch)
    if momentum == cfg.ema:
        return cfg
    log.info(
        "--ema %g lowered to %.3f: with %d steps an epoch, the average would otherwise keep mostly the "
        "weights the epoch started from",
        cfg.ema,
        momentum,
        steps_per_epoch,
    )
    return replace(cfg, ema=round(momentum, 4))


def _budget_note(history: dict[str, list[float]], cfg: FinetuneConfig) -> str:
    message = (
        f"stopped after {len(history['loss'])} of {cfg.epochs} epochs: another would end past the "
        f"{cfg.max_minutes:g}-minute budget (--max-minutes); the best epoch so far is kept"
    )
    log.warning(message)
    return message


def _photo_sets(store: Store) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The usable train and val photos; fine-tuning needs both and at least two classes."""
    train = store.items.iloc[store.rows("train")]
    val = store.items.iloc[store.rows("val")]
    if train["label"].nunique() < 2:
        raise CoinfeatError(
            f"store {store.path} has {train['label'].nunique()} class(es) in train; "
            "fine-tuning needs at least 2"
        )
    if len(val) == 0:
        raise CoinfeatError(
            f"store {store.path} has no val photos to stop training on; re-extract with a val share "
            "(--split 70/15/15, or a val/ folder)"
        )
    return train, val


def _leak_notes(store: Store) -> list[str]:
    """A warning when test photos have identical copies (sha256) among the photos trained on."""
    twins = identical_copies(store.items, "test", ("train", "val"))
    if not twins:
        return []
    message = (
        f"leakage: {twins} test photo(s) have an identical copy in train/val; test accuracy of the "
        "fine-tuned network will be inflated"
    )
    log.warning(message)
    return [message]


def _embed_dataset(store: Store, tuned: BackboneSpec, out: Path, cfg: FinetuneConfig) -> Path:
    """A new store of the same dataset, same splits, embedded with the tuned backbone."""
    dataset = store.manifest.dataset
    names = out / "label_names.json"
    atomic_write(names, json.dumps(dataset.label_names))
    split = store.manifest.split
    config = ExtractConfig(
        backbone=str(out / "backbone.keras"),
        image_size=tuned.image_size,
        resize=store.manifest.resize,
        crop=store.manifest.crop,
        engine=cfg.engine,
        threads=cfg.threads,
        group_regex=store.manifest.group_regex,
        label_names=str(names) if dataset.label_names else None,
        split=tuple(split.get("fractions", (0.7, 0.15, 0.15))),
        seed=split.get("seed", 0),
        progress=cfg.progress,
        precision=store.manifest.precision,
    )
    target = Path(cfg.embed_out) if cfg.embed_out else default_store_dir(f"{dataset.name}-finetuned")
    summary = extract_features(dataset.source or dataset.root, target, config)
    return Path(summary.store)


def _split_notes(base: Store, new_store: Path) -> list[str]:
    """Fine-tuning is honest only if the new store keeps the base store's splits."""
    old = base.items.loc[base.items["view"].eq(0)].set_index("path")["split"]
    new = open_store(new_store).items.loc[lambda t: t["view"].eq(0)].set_index("path")["split"]
    both = old.index.intersection(new.index)
    moved = int((old[both] != new[both]).sum())
    if not moved:
        return []
    message = (
        f"{moved} photo(s) are in another split in {new_store} than in {base.path}: "
        "its test figures are not honest"
    )
    log.warning(message)
    return [message]
