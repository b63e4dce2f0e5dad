"""What a head records about the vectors it learned from, and the check that it is given the same.

A head's ``head.json`` keeps the extractor record of its store (fingerprint, backbone, resize),
the dataset, label names and how its training photos frame their coins; ``predict``, ``compare``,
``serve`` and ``count`` refuse vectors from another extractor with :func:`check_compatible`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from coinfeat import __version__
from coinfeat.core.errors import FingerprintMismatch
from coinfeat.core.heads import ExtractorRecord, Head, HeadMeta
from coinfeat.core.images.crop import measure_crops
from coinfeat.core.store import Store, describe_extractor, usable


def absolute_paths(store: Store, relative) -> np.ndarray:
    root = Path(store.manifest.dataset.root)
    return np.asarray([str(root / p) for p in relative], dtype=object)


def provenance(
    store: Store, *, use_augmented: bool = False, training: dict[str, Any] | None = None
) -> HeadMeta:
    """What a head records about the vectors it was trained on (``training``: what its own fit
    recorded, kept)."""
    return HeadMeta(
        features=ExtractorRecord.of_manifest(
            store.manifest,
            store=str(store.path.resolve()),
            dataset=store.manifest.dataset.name,
            use_augmented=use_augmented,
        ),
        label_names=store.manifest.label_names,
        crops=crop_record(store),
        training=dict(training or {}),
        coinfeat_version=__version__,
        created=now(),
    )


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def crop_record(store: Store, per_class: int = 12, most: int = 400) -> dict[str, Any]:
    """How the store's train photos frame their coins, from a sample (headers and a circle fit):
    ``photo_side_px``, the median short side, and ``ratio``, per class the median crop side
    over coin diameter. ``count`` cuts its crops from whole photos the same way."""
    items = store.items[usable(store.items)]
    items = items[items["split"].eq("train")] if items["split"].eq("train").any() else items
    take = max(2, min(per_class, most // max(1, items["label"].nunique())))
    sample = items.groupby("label").head(take)
    root = Path(store.manifest.dataset.root)
    return measure_crops([root / p for p in sample["path"]], sample["label"].tolist())


def check_compatible(head: Head, store: Store) -> None:
    """Refuse vectors from another extractor than the head's."""
    theirs = head.meta.features.fingerprint if head.meta.features else None
    if theirs != store.fingerprint:
        raise FingerprintMismatch(
            f"head was trained on features {theirs} but store {store.path} holds {store.fingerprint} "
            f"({describe_extractor(store.manifest)}); use a store made with the head's extractor"
        )
