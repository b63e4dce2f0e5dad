"""Leakage: evaluated photos that the heads have, in effect, already seen.

A photo in the test split whose identical copy (same sha256) or near-identical copy (cosine of
the cached vectors >= ``TWIN_THRESHOLD``) sits among the training photos is a *twin*: scoring it
measures memory, not recognition. Public coin sets are full of them. Every comparison therefore
splits the evaluated photos into **clean** (no twin) and **twins**, and reports both.

The same module finds *label conflicts*: identical photos filed under two labels, which teach a
head to contradict itself (``--drop-conflicts`` leaves them out of training).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coinfeat.core.index import VectorIndex
from coinfeat.core.store.keys import usable

TWIN_THRESHOLD = 0.97
"""Cosine at or above which two photos count as near-identical (also the duplicate finder's)."""

SUBSETS = ("all", "clean", "twins")
TWIN_COLUMNS = ["twin", "twin_kind", "twin_similarity"]
IDENTICAL, NEAR = "identical", "near"
CHUNK = 10_000


def find_twins(
    reference_X: np.ndarray,
    reference: pd.DataFrame,
    *,
    X: np.ndarray,
    items: pd.DataFrame,
    threshold: float = TWIN_THRESHOLD,
) -> pd.DataFrame:
    """For each row of ``items``: the training photo it duplicates, if any.

    Returns ``twin`` (path of the matched reference photo, "" when clean), ``twin_kind``
    ("identical", "near" or "") and ``twin_similarity`` (cosine to the nearest reference photo).
    Identical copies are found by content hash, so they count even when their vectors differ
    (another extractor run, another store).
    """
    twin = np.full(len(items), "", dtype=object)
    kind = np.full(len(items), "", dtype=object)
    similarity = np.full(len(items), np.nan)
    if len(items) and len(reference):
        index = VectorIndex(reference_X.shape[1])
        for start in range(0, len(reference), CHUNK):
            index.add(np.asarray(reference_X[start : start + CHUNK]))
        paths = reference["path"].to_numpy()
        for start in range(0, len(items), CHUNK):
            sims, ids = index.search(np.asarray(X[start : start + CHUNK]), 1)
            stop = start + len(sims)
            similarity[start:stop] = sims[:, 0]
            near = sims[:, 0] >= threshold
            twin[start:stop][near] = paths[ids[near, 0]]
            kind[start:stop][near] = NEAR
        first_copy = dict(zip(reference["sha256"][::-1], paths[::-1]))
        copies = [first_copy.get(sha) for sha in items["sha256"]]
        same = np.asarray([c is not None for c in copies])
        twin[same] = [c for c in copies if c is not None]
        kind[same] = IDENTICAL
    return pd.DataFrame({"twin": twin, "twin_kind": kind, "twin_similarity": similarity})


def subset_masks(twins: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row masks of the evaluated photos: all of them, the clean ones and the twins."""
    has_twin = twins["twin_kind"].ne("").to_numpy()
    return {"all": np.ones(len(twins), dtype=bool), "clean": ~has_twin, "twins": has_twin}


def twin_counts(twins: pd.DataFrame) -> dict[str, int]:
    kinds = twins["twin_kind"]
    return {
        "all": len(twins),
        "clean": int(kinds.eq("").sum()),
        "twins": int(kinds.ne("").sum()),
        IDENTICAL: int(kinds.eq(IDENTICAL).sum()),
        NEAR: int(kinds.eq(NEAR).sum()),
    }


def conflicting_hashes(items: pd.DataFrame) -> set[str]:
    """Content hashes that appear under more than one label among a store's usable photos (the
    same photo filed twice)."""
    photos = items[usable(items, include_views=True) & items["sha256"].notna()]
    labels_per_hash = photos.groupby("sha256")["label"].nunique()
    return set(labels_per_hash.index[labels_per_hash > 1])


def without_conflicts(
    X: np.ndarray, items: pd.DataFrame, conflicts: set[str]
) -> tuple[np.ndarray, pd.DataFrame, int]:
    """``X`` and ``items`` less the rows whose photo carries another label elsewhere; and how many."""
    keep = ~items["sha256"].isin(conflicts).to_numpy()
    return X[keep], items[keep].reset_index(drop=True), int((~keep).sum())


def content_warnings(items: pd.DataFrame) -> list[str]:
    """Same photo under two labels (label conflict) or in two splits (train/test leakage)."""
    hashed = items.dropna(subset=["sha256"])
    dup = hashed[hashed.duplicated("sha256", keep=False)]
    notes = []
    for column, problem in (
        ("label", "label conflict: {n} identical photo(s) carry different labels"),
        ("split", "leakage: {n} identical photo(s) appear in more than one split"),
    ):
        counts = dup.groupby("sha256")[column].nunique()
        clashes = counts[counts > 1]
        if len(clashes):
            example = dup[dup["sha256"] == clashes.index[0]]["path"].tolist()[:2]
            notes.append(f"{problem.format(n=len(clashes))}, e.g. {' vs '.join(example)}")
    return notes


def identical_copies(
    items: pd.DataFrame, evaluated: str = "test", against: tuple[str, ...] = ("train", "val")
) -> int:
    """How many usable photos of split ``evaluated`` have an identical copy (sha256) in ``against``."""
    photos = items[usable(items)]
    seen = set(photos.loc[photos["split"].isin(against), "sha256"])
    return int(photos.loc[photos["split"].eq(evaluated), "sha256"].isin(seen).sum())


CONFLICTS_FILE = "label-conflicts.csv"
"""Written into a store's folder by ``extract-features``: the pairs a person should look at."""
CONFLICT_COLUMNS = ["kind", "path_a", "label_a", "split_a", "path_b", "label_b", "split_b", "similarity"]
LABEL_CONFLICT, CROSS_SPLIT = "label conflict", "cross-split twin"


def conflict_pairs(
    items: pd.DataFrame, X: np.ndarray | None = None, threshold: float = TWIN_THRESHOLD
) -> pd.DataFrame:
    """Pairs of photos to act on, one row each (:data:`CONFLICT_COLUMNS`): identical photos (same
    sha256) filed under two labels (``label conflict``), and val or test photos with an identical
    or, given the vectors ``X`` (rows of ``items``), near-identical copy among the train photos
    (``cross-split twin``: it inflates accuracy). A pair that is both is listed as a label conflict."""
    photos = items[usable(items)]
    rows = []
    for _, group in photos[photos.duplicated("sha256", keep=False)].groupby("sha256", sort=False):
        group = group.sort_values("split", key=lambda split: split.ne("train"), kind="stable")
        first = group.iloc[0]
        for _, other in group.iloc[1:].iterrows():
            if other["label"] != first["label"]:
                rows.append(_pair(LABEL_CONFLICT, first, other, 1.0))
            elif other["split"] != first["split"]:
                rows.append(_pair(CROSS_SPLIT, first, other, 1.0))
    if X is not None:
        rows += _near_cross_split(photos, X, threshold)
    return pd.DataFrame(rows, columns=CONFLICT_COLUMNS)


def _pair(kind: str, a: pd.Series, b: pd.Series, similarity: float) -> dict:
    return {
        "kind": kind,
        "path_a": a["path"],
        "label_a": a["label"],
        "split_a": a["split"],
        "path_b": b["path"],
        "label_b": b["label"],
        "split_b": b["split"],
        "similarity": round(float(similarity), 4),
    }


def _near_cross_split(photos: pd.DataFrame, X: np.ndarray, threshold: float) -> list[dict]:
    """Val and test photos whose nearest train photo is near-identical (not the same file)."""
    train = photos[photos["split"].eq("train")]
    evaluated = photos[photos["split"].isin(["val", "test"])]
    if train.empty or evaluated.empty:
        return []
    twins = find_twins(
        X[train.index.to_numpy()],
        train,
        X=X[evaluated.index.to_numpy()],
        items=evaluated,
        threshold=threshold,
    )
    where = {path: position for position, path in enumerate(train["path"])}
    near = twins["twin_kind"].eq(NEAR).to_numpy()
    pairs = []
    for (_, photo), twin, similarity in zip(
        evaluated[near].iterrows(), twins["twin"][near], twins["twin_similarity"][near]
    ):
        original = train.iloc[where[twin]]
        kind = LABEL_CONFLICT if original["label"] != photo["label"] else CROSS_SPLIT
        pairs.append(_pair(kind, original, photo, similarity))
    return pairs


def conflict_summary(pairs: pd.DataFrame) -> str | None:
    """One line for the extraction summary, or None when there is nothing to act on."""
    if pairs.empty:
        return None
    counts = pairs["kind"].value_counts()
    return (
        f"{counts.get(LABEL_CONFLICT, 0)} label conflict(s) and {counts.get(CROSS_SPLIT, 0)} cross-split "
        "twin(s)"
    )
