"""How a store names its rows: item columns, statuses and vector keys (no image code here)."""

from __future__ import annotations

import pandas as pd

ITEM_COLUMNS = [
    "path", "sha256", "size", "mtime_ns", "label", "split", "group", "status", "error", "view", "framing"
]  # fmt: skip
"""``framing``: how an embedded photo was framed (``cropped``, ``small`` or ``no coin``: see
coinfeat.core.images.crop.framed); None for ``--crop none`` and for stores made before it was recorded."""
OK, SKIPPED = "ok", "skipped"

AUGMENT_VERSION = 4
"""Version of the augmented views (coinfeat.core.images.augment); views made by another version are
not reused."""


def augment_record(views_per_train_photo: int, **details: object) -> dict:
    """What a manifest records about its augmented views: how many per train photo and the policy
    version that made them (read here, at call time, so one constant governs keys and manifests)."""
    return {"views_per_train_photo": views_per_train_photo, **details, "version": AUGMENT_VERSION}


def vector_key(sha256: str, view: int) -> str:
    """How a vector is addressed: the photo's content hash, plus the view for augmented copies."""
    return sha256 if not view else f"{sha256}#aug{AUGMENT_VERSION}.{view}"


def item_keys(items: pd.DataFrame) -> list[str | None]:
    """The vector key of every item row (None where the file could not even be read)."""
    return [
        vector_key(sha, int(view)) if isinstance(sha, str) else None
        for sha, view in zip(items["sha256"], items["view"])
    ]


def usable(items: pd.DataFrame, split: str | None = None, include_views: bool = False) -> pd.Series:
    """The one definition of a usable photo: embedded (status ok), a clean photo rather than an
    augmented view unless ``include_views``, optionally of one split. A boolean mask over ``items``."""
    mask = items["status"].eq(OK)
    if not include_views:
        mask &= items["view"].eq(0)
    if split is not None:
        mask &= items["split"].eq(split)
    return mask


def manifest_counts(items: pd.DataFrame) -> dict:
    """The ``counts`` block of a manifest: usable photos per split and class, skips, views."""
    ok = items["status"].eq(OK)
    photos = items[usable(items)]
    return {
        "items": len(items),
        "ok": len(photos),
        "skipped": int((~ok).sum()),
        "views": int((ok & items["view"].gt(0)).sum()),
        "per_split": {str(k): int(v) for k, v in photos["split"].value_counts().items()},
        "per_class": {str(k): int(v) for k, v in photos["label"].value_counts().sort_index().items()},
    }
