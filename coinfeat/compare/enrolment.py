"""``compare --enrol K --shots N``: adding a coin type in seconds, measured.

K classes (seeded) are held out of training; each head is fitted on the others, then the K classes
are enrolled from N train photos each without refitting (:meth:`~coinfeat.core.heads.base.Head.enrol`)
and every test photo is scored over all classes. For reference the same head is refitted from
scratch on the same photos (the old classes' train photos and the N shots of each new class).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from coinfeat.compare.open_set import held_out_classes
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads import make_head
from coinfeat.core.store import Store


def enrolment(
    store: Store,
    heads: list[str],
    *,
    k: int,
    shots: int,
    params: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``enrolment`` entry of ``metrics.json``: the new classes, and per head top-1 on the new
    and the old classes' test photos after enrolment, before it (old), and after a full refit."""
    X_train, train = store.select("train")
    X_val, val = store.select("val")
    X_test, test = store.select("test")
    labels = train["label"].to_numpy()
    new, picked = enrolment_draw(labels, test["label"].to_numpy(), k=k, shots=shots, seed=seed)
    old_rows = ~np.isin(labels, new)
    old_val = ~val["label"].isin(new).to_numpy()
    is_new = test["label"].isin(new).to_numpy()
    y_test = test["label"].to_numpy()
    if not is_new.any() or is_new.all():
        raise CoinfeatError("enrolment needs test photos of both the new and the old classes")
    results: dict[str, Any] = {}
    for name in heads:
        head = make_head(name, **(params or {}).get(name, {}))
        head.fit(X_train[old_rows], labels[old_rows], X_val[old_val], val["label"][old_val])
        before = head.predict(X_test[~is_new])
        started = time.perf_counter()
        head.enrol(X_train[picked], labels[picked])
        enrol_seconds = time.perf_counter() - started
        after = head.predict(X_test)
        started = time.perf_counter()
        refit_rows = old_rows.copy()
        refit_rows[picked] = True
        refit = make_head(name, **(params or {}).get(name, {})).fit(
            X_train[refit_rows], labels[refit_rows], X_val, val["label"]
        )
        refit_seconds = time.perf_counter() - started
        again = refit.predict(X_test)
        results[name] = {
            "new_top1": _share(after[is_new] == y_test[is_new]),
            "old_top1": _share(after[~is_new] == y_test[~is_new]),
            "old_top1_before": _share(before == y_test[~is_new]),
            "refit_new_top1": _share(again[is_new] == y_test[is_new]),
            "refit_old_top1": _share(again[~is_new] == y_test[~is_new]),
            "enrol_seconds": round(enrol_seconds, 3),
            "refit_seconds": round(refit_seconds, 3),
        }
    return {
        "new_classes": new,
        "shots": shots,
        "new_test": int(is_new.sum()),
        "old_test": int((~is_new).sum()),
        "heads": results,
    }


def enrolment_draw(
    labels: np.ndarray, test_labels: np.ndarray, *, k: int, shots: int, seed: int = 0
) -> tuple[list[str], np.ndarray]:
    """The ``k`` classes held out (seeded, among those with ``shots`` train photos and some test
    photos) and the rows of ``labels`` (the train photos' labels) of the ``shots`` photos each
    enrols: the same draw for every store of the same photos, so a network trained without these
    classes can be measured on exactly them."""
    found, counts = np.unique(labels, return_counts=True)
    new = held_out_classes(found[counts >= shots], test_labels, k, seed)
    rng = np.random.default_rng(seed)
    picked = np.concatenate([rng.choice(np.flatnonzero(labels == c), shots, replace=False) for c in new])
    return new, picked


def _share(right: np.ndarray) -> float:
    return round(float(np.mean(right)), 4) if len(right) else float("nan")
