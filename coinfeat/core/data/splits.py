"""Deterministic, stratified, group-aware train/val/test assignment.

Groups (e.g. all coins cut from one photo) never straddle splits. Groups are ordered by a
seeded hash of their name, not by list position, so adding photos later never moves an
existing group; groups already assigned in a store keep their split ("sticky").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from coinfeat.core.errors import CoinfeatError

DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
SPLITS = ("train", "val", "test")


@dataclass
class SplitResult:
    splits: pd.Series
    notes: list[str]


def parse_fractions(text: str) -> tuple[float, float, float]:
    """Parse ``"70/15/15"`` or ``"0.7,0.15,0.15"`` into fractions that sum to 1."""
    parts = [p for p in text.replace(",", "/").split("/") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise CoinfeatError(f"--split {text!r}: expected three numbers like 70/15/15") from None
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0 or values[0] == 0:
        raise CoinfeatError(f"--split {text!r}: expected three non-negative numbers, train > 0")
    total = sum(values)
    return tuple(v / total for v in values)  # type: ignore[return-value]


def _rank(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}\x00{group}".encode()).hexdigest()


def assign_splits(
    items: pd.DataFrame,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    sticky: Mapping[str, str] | None = None,
) -> SplitResult:
    """Split ``items`` (columns ``label``, ``group``) into train/val/test per class.

    Each group is stratified by its most common label. Within a class, groups are taken in
    seeded-hash order and each goes to the split furthest below its target share of photos.
    ``sticky`` maps groups to a split they already have.
    """
    sticky = dict(sticky or {})
    group_label = items.groupby("group")["label"].agg(lambda s: s.value_counts().index[0])
    group_size = items.groupby("group").size()
    assignment: dict[str, str] = {}
    for label in sorted(group_label.unique()):
        groups = sorted(group_label.index[group_label == label], key=lambda g: _rank(seed, g))
        filled = dict.fromkeys(SPLITS, 0)
        for g in groups:
            if g in sticky:
                filled[sticky[g]] += int(group_size[g])
        fresh = [g for g in groups if g not in sticky]
        allowed = _allowed_splits(len(groups), fractions)
        for g in fresh:
            total = sum(filled.values()) + int(group_size[g])
            split = max(allowed, key=lambda s: fractions[SPLITS.index(s)] * total - filled[s])
            if filled["train"] == 0:
                split = "train"
            assignment[g] = split
            filled[split] += int(group_size[g])
    assignment.update(sticky)
    splits = items["group"].map(assignment).rename("split")
    wanted = [s for s, f in zip(SPLITS, fractions) if f > 0]
    return SplitResult(splits, _coverage_notes(items["label"], splits, wanted))


def _coverage_notes(labels: pd.Series, splits: pd.Series, wanted: list[str]) -> list[str]:
    """Name the classes that ended up with no photos in a wanted split (too few groups)."""
    notes = []
    table = pd.crosstab(labels, splits).reindex(columns=wanted, fill_value=0)
    for label, row in table.iterrows():
        empty = [s for s in wanted if row[s] == 0]
        if empty:
            notes.append(f"class {label!r} has no photos in {', '.join(empty)} (too few photo groups)")
    return notes


def _allowed_splits(n_groups: int, fractions: tuple[float, float, float]) -> list[str]:
    """With 1 group a class only trains; with 2 it trains and tests; with 3+ all splits."""
    wanted = [s for s, f in zip(SPLITS, fractions) if f > 0]
    if n_groups <= 1:
        return ["train"]
    if n_groups == 2:
        return [s for s in wanted if s != "val"] or ["train"]
    return wanted


def carve_validation(
    items: pd.DataFrame, fraction: float = 0.15, seed: int = 0, sticky: Mapping[str, str] | None = None
) -> SplitResult:
    """For datasets with train/test folders but no val: take a group-aware val share of train."""
    train = items[items["split"] == "train"]
    inner = assign_splits(train, (1 - fraction, fraction, 0.0), seed, sticky)
    splits = items["split"].copy()
    splits.loc[train.index] = inner.splits
    return SplitResult(splits, inner.notes)


def resolve_splits(
    items: pd.DataFrame,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    sticky: Mapping[str, str] | None = None,
) -> SplitResult:
    """Final split per item: predefined splits win, missing ones are assigned, and a dataset
    with train and test but no val gets a val share carved from train."""
    given = items["split"]
    if given.isna().all():
        return assign_splits(items, fractions, seed, sticky)
    notes: list[str] = []
    splits = given.copy()
    if given.isna().any():
        predefined = items.loc[given.notna()].groupby("group")["split"].first().to_dict()
        filled = assign_splits(items, fractions, seed, {**(sticky or {}), **predefined})
        splits = splits.fillna(filled.splits)
        notes += filled.notes
    if not (splits == "val").any():
        carved = carve_validation(items.assign(split=splits), fractions[1], seed, sticky)
        splits = carved.splits
        notes.append(
            f"no val split given: {int((splits == 'val').sum())} train images "
            f"({fractions[1]:.0%}, whole groups) were set aside as val"
        )
        notes += carved.notes
    return SplitResult(splits.rename("split"), notes)
