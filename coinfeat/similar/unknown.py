"""Unknown coins: the similarity below which a query has no similar coin in the collection,
calibrated on val photos with each class left out in turn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.index import (
    VectorIndex,
    fill_index,
)
from coinfeat.core.store import Store, atomic_write, open_store

CALIBRATION_FILE = "unknown-threshold.json"


def calibrate_unknown(
    features: str | Path, *, target_false_match: float = 0.05, chunk: int = 50_000
) -> dict[str, Any]:
    """Choose the similarity below which a query is answered "unknown", and save it with the store.

    Each class is left out of the train collection in turn; its val photos then play unknown
    coins, and their best similarities give the false-match rate of any threshold. The threshold
    is the lowest one whose false-match rate is at most ``target_false_match``. Train vectors
    are streamed into each index ``chunk`` rows at a time, never loaded whole.
    """
    if not 0 <= target_false_match < 1:
        raise CoinfeatError("--target-fmr must be at least 0 and below 1")
    store = open_store(features)
    train_rows, val_rows = store.rows("train"), store.rows("val")
    if len(val_rows) == 0:
        raise CoinfeatError(f"store {store.path} has no val photos to calibrate on")
    if len(train_rows) == 0:
        raise CoinfeatError(f"store {store.path} has no train photos to calibrate against")
    labels = store.items["label"].to_numpy()
    dim = store.embeddings.shape[1]
    impostor = []
    for label in np.unique(labels[val_rows]):
        others = train_rows[labels[train_rows] != label]
        if len(others) == 0:
            continue
        index = fill_index(VectorIndex(dim), store.embeddings, others, chunk=chunk)
        queries = val_rows[labels[val_rows] == label]
        impostor.extend(_best_similarity(index, store.embeddings, queries, chunk)[0])
    full = fill_index(VectorIndex(dim), store.embeddings, train_rows, chunk=chunk)
    genuine, nearest = _best_similarity(full, store.embeddings, val_rows, chunk)
    correct = labels[train_rows[nearest]] == labels[val_rows]
    impostor = np.asarray(impostor)
    threshold = _threshold_for(impostor, target_false_match)
    accepted = genuine >= threshold
    record = {
        "threshold": threshold,
        "target_false_match_rate": target_false_match,
        "false_match_rate_val": float(np.mean(impostor >= threshold)) if len(impostor) else None,
        "known_accepted_rate_val": float(accepted.mean()),
        "known_accepted_correct_rate_val": float(correct[accepted].mean()) if accepted.any() else None,
        "val_queries": len(val_rows),
        "impostor_queries": len(impostor),
        "fingerprint": store.fingerprint,
    }
    atomic_write(store.path / CALIBRATION_FILE, json.dumps(record, indent=2))
    return record


def _best_similarity(
    index: VectorIndex, vectors: np.ndarray, rows: np.ndarray, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """(cosine, index position) of the nearest indexed vector for ``vectors[rows]``, chunk by chunk."""
    found = [index.search(np.asarray(vectors[rows[i : i + chunk]]), 1) for i in range(0, len(rows), chunk)]
    return np.concatenate([s[:, 0] for s, _ in found]), np.concatenate([r[:, 0] for _, r in found])


def _threshold_for(impostor: np.ndarray, target: float) -> float:
    """The lowest threshold that accepts at most ``target`` of the impostor queries (exactly, also
    for a small val split, where a quantile would overshoot by up to one query)."""
    if len(impostor) == 0:
        return 1.0
    ranked = np.sort(impostor)[::-1]
    allowed = int(np.floor(target * len(ranked)))
    return float(np.nextafter(ranked[allowed], np.float32(2))) if allowed < len(ranked) else float(ranked[-1])


def calibrated_threshold(store: Store) -> float | None:
    path = store.path / CALIBRATION_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record["threshold"] if record.get("fingerprint") == store.fingerprint else None
