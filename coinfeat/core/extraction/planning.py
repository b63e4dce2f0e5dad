"""Planning a store: one row per discovered photo with its content hash (reused when size and
mtime are unchanged), group, sticky split and status, plus the augmented views to compute."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import pandas as pd

from coinfeat.core.data.datasets import Dataset, group_of
from coinfeat.core.data.leakage import content_warnings
from coinfeat.core.data.splits import resolve_splits
from coinfeat.core.runtime import default_threads
from coinfeat.core.store import (
    ITEM_COLUMNS,
    OK,
    SKIPPED,
    Store,
)


class PlanSettings(Protocol):
    """What planning reads of an extraction's settings
    (:class:`~coinfeat.core.extraction.extract.ExtractConfig` has them
    all), so planning never imports the command that uses it."""

    group_regex: str | None
    threads: int | None
    split: tuple[float, float, float]
    seed: int
    augment: int


def plan(dataset: Dataset, store: Store | None, cfg: PlanSettings) -> tuple[pd.DataFrame, list[str]]:
    """One row per discovered file with its sha256 (reused when size and mtime are unchanged),
    group and split; unreadable files get status ``skipped`` and the reason."""
    items = dataset.items.copy()
    items["group"] = group_of(items["path"], cfg.group_regex)
    previous = _previous_hashes(store)
    paths = [dataset.absolute(p) for p in items["path"]]
    with ThreadPoolExecutor(cfg.threads or default_threads()) as pool:
        facts = list(pool.map(lambda pair: _file_facts(*pair), zip(paths, items["path"].map(previous.get))))
    facts = [
        (None, 0, 0, error) if isinstance(error, str) else fact for fact, error in zip(facts, items["error"])
    ]
    items["sha256"] = [f[0] for f in facts]
    items["size"] = [f[1] for f in facts]
    items["mtime_ns"] = [f[2] for f in facts]
    items["status"] = [OK if f[0] else SKIPPED for f in facts]
    items["error"] = [f[3] for f in facts]
    items["view"] = 0
    items["framing"] = None
    sticky = _sticky_splits(store, items)
    result = resolve_splits(items, cfg.split, cfg.seed, sticky)
    items["split"] = result.splits
    notes = dataset.notes + result.notes + content_warnings(items)
    return with_views(items[ITEM_COLUMNS], cfg.augment), notes


def with_views(items: pd.DataFrame, views: int) -> pd.DataFrame:
    """Append ``views`` augmented rows (view 1..N) for every readable train photo."""
    base = items[(items["split"] == "train") & (items["status"] == OK)]
    copies = [base.assign(view=v) for v in range(1, views + 1)]
    return pd.concat([items, *copies], ignore_index=True) if copies else items


def _previous_hashes(store: Store | None) -> dict[str, tuple[int, int, str]]:
    if store is None:
        return {}
    cols = store.items[["path", "size", "mtime_ns", "sha256"]].dropna()
    return {p: (int(s), int(m), h) for p, s, m, h in cols.itertuples(index=False)}


def _file_facts(path: Path, previous: tuple[int, int, str] | None) -> tuple[str | None, int, int, str | None]:
    """(sha256, size, mtime_ns, error) for a file, hashing only when it changed."""
    try:
        stat = path.stat()
        if previous and previous[:2] == (stat.st_size, stat.st_mtime_ns):
            return previous[2], stat.st_size, stat.st_mtime_ns, None
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest(), stat.st_size, stat.st_mtime_ns, None
    except FileNotFoundError:
        return None, 0, 0, "file not found (or a broken link)"
    except PermissionError:
        return None, 0, 0, "permission denied"
    except OSError as exc:
        return None, 0, 0, f"cannot read file: {exc.strerror or exc}"


def _sticky_splits(store: Store | None, items: pd.DataFrame) -> dict[str, str]:
    """Groups already in the store keep their split, so old heads stay comparable."""
    if store is None:
        return {}
    old = store.items[["group", "split"]].dropna().drop_duplicates("group")
    present = set(items["group"])
    return {g: s for g, s in old.itertuples(index=False) if g in present}
