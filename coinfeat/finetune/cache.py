"""The activation cache: the frozen lower part run once over train and val photos and their
augmented views, stored (float16) as an ordinary store in ``activations/<cut>/`` through the
same pipeline as the features."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.extraction.backbones import (
    BackboneSpec,
)
from coinfeat.core.extraction.engines import Network, open_engine
from coinfeat.core.extraction.extract import (
    make_writable_dir,
    write_errors_explained,
)
from coinfeat.core.extraction.pipeline import ImageReader, Runner, SequentialDistributor, fill_store
from coinfeat.core.extraction.planning import with_views
from coinfeat.core.extraction.quantize import calibration_loader
from coinfeat.core.images.augment import FINETUNE_VIEWS
from coinfeat.core.images.decode import DEFAULT_MAX_PIXELS
from coinfeat.core.runtime import default_threads, log
from coinfeat.core.store import (
    ITEM_COLUMNS,
    PARTS,
    Manifest,
    Store,
    augment_record,
    manifest_counts,
    open_layout,
    open_store,
    read_manifest,
    store_lock,
    usable,
)
from coinfeat.finetune.records import FinetuneConfig

ACTIVATIONS = "activations"


def activation_fingerprint(base_fingerprint: str, cut: str) -> str:
    """Which store and cut made the cache; the views' policy version is checked row by row, as in
    any store, so a new policy remakes the views and keeps the photos' rows."""
    text = json.dumps({"base": base_fingerprint, "cut": cut, "dtype": "float16"})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class HalfPrecision:
    """A mapper that stores an engine's activations as float16 (half the disk, same training)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.name = engine, engine.name

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self.engine.embed(images).astype(np.float16)


def cache_items(store: Store, views: int) -> pd.DataFrame:
    """Every usable train and val photo, plus ``views`` augmented views of each train photo."""
    items = store.items
    photos = items[usable(items) & items["split"].isin(["train", "val"])]
    return with_views(photos[ITEM_COLUMNS].reset_index(drop=True), views)


def build_cache(store: Store, spec: BackboneSpec, *, lower: Any, cut: str, views: int, cfg: FinetuneConfig):
    """Fill ``<store>/activations/<cut>/`` with the lower part's output for :func:`cache_items`
    with ``views`` views (computing only rows not cached yet) and return it opened, with what the
    run did."""
    folder = store.path / ACTIVATIONS / cut
    make_writable_dir(folder)
    fp = activation_fingerprint(store.fingerprint, cut)
    items = cache_items(store, max(views, cached_views(store, cut)))  # fewer views drop nothing
    row_shape = tuple(int(n) for n in lower.output.shape[1:])
    _check_space(folder, len(items) * int(np.prod(row_shape)) * 2)
    threads = cfg.threads or default_threads()
    resize, crop, size, batch = store.manifest.resize, store.manifest.crop, spec.image_size, cfg.batch_size
    int8 = store.manifest.int8  # an int8 store runs its lower part in int8 too
    network = Network(
        f"{spec.name} up to {cut}",
        hashlib.sha256(f"{spec.model_id}:{cut}".encode()).hexdigest()[:16],
        size,
        lambda: lower,
        spec.precision,
        calibration_loader(int8["root"], int8, size, resize, crop) if int8 else None,
    )

    def manifest_for(final: pd.DataFrame, engine: str | None, previous: Manifest | None) -> Manifest:
        return Manifest(
            fingerprint=fp,
            pretrained=spec.pretrained,
            backbone=spec.describe(),
            resize=resize,
            crop=crop,
            engine=engine or (previous.engine if previous else None),
            dataset=store.manifest.dataset,
            augment=augment_record(
                int(final["view"].max()) if len(final) else 0, policy=asdict(FINETUNE_VIEWS)
            ),
            counts=manifest_counts(final),
            extra={"kind": "activations", "base_fingerprint": store.fingerprint, "cut": cut},
        )

    with store_lock(folder), write_errors_explained(folder):
        stale = _stale(folder, fp)
        if stale:
            log.warning("discarding the activation cache in %s: %s", folder, stale)
        layout = open_layout(folder, fp, description=f"{spec.label}, cut {cut}", force=bool(stale))
        runner = Runner(
            make_reader=lambda mine: ImageReader(
                mine, batch, threads, size, resize, DEFAULT_MAX_PIXELS, augmenter=FINETUNE_VIEWS, crop=crop
            ),
            open_mapper=lambda probe: HalfPrecision(open_engine(network, cfg.engine, threads, probe)),
            make_writer=lambda index: layout.writer(fp, index),
            progress=cfg.progress,
            desc="caching activations",
        )
        root = Path(store.manifest.dataset.root)
        filled = fill_store(
            layout,
            items,
            fingerprint=fp,
            root=root,
            runner=runner,
            distributor=SequentialDistributor(),
            manifest_for=manifest_for,
        )
    return open_store(folder), filled


def cached_views(store: Store, cut: str) -> int:
    """Views per train photo already in the store's activation cache at ``cut`` (0: none)."""
    folder, fp = store.path / ACTIVATIONS / cut, activation_fingerprint(store.fingerprint, cut)
    manifest = read_manifest(folder)
    if not manifest or manifest.fingerprint != fp:
        return 0
    return int(manifest.augment.get("views_per_train_photo", 0))


def _stale(folder: Path, fp: str) -> str | None:
    """Why a cache left in ``folder`` cannot be reused (the store was rebuilt with another
    extractor or cut), or None. It is rebuilt, never mixed."""
    manifest = read_manifest(folder)
    theirs = manifest.fingerprint if manifest else None
    foreign = [p for p in (folder / PARTS).glob("*.parquet") if not p.name.startswith(f"{fp}-")]
    if theirs not in (None, fp) or foreign:
        return f"it was made by another extractor ({theirs or 'an unfinished run'})"
    return None


def _check_space(folder: Path, needed: int) -> None:
    """Refuse before starting when the disk cannot hold the cache (parts, then the committed copy)."""
    free = shutil.disk_usage(folder).free
    if free < 2 * needed:
        raise CoinfeatError(
            f"the activation cache needs about {2 * needed / 1e9:.1f} GB free in {folder} while it is "
            f"built ({needed / 1e9:.1f} GB once committed), but only {free / 1e9:.1f} GB is free: free "
            "space, or use fewer --views or a higher --cut"
        )
