"""``compare --open-set K``: how well each head tells coins of a type it never learned.

K classes (seeded) are held out of training as unknowns; each head is fitted on the others and
scores every test photo with each unknown-coin score (:mod:`coinfeat.core.heads.unknown`). Reported
per head and score: AUROC of known against unknown test photos, the share of unknowns rejected
when 95% of known test photos are accepted, and what the rule calibrated on val (the known val
photos) does on test: known accepted, unknown rejected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads import make_head
from coinfeat.core.heads.unknown import ACCEPT, UNKNOWN_SCORES, calibrate_rule, unknown_scores
from coinfeat.core.store import Store


def held_out_classes(train_labels: np.ndarray, test_labels: np.ndarray, k: int, seed: int = 0) -> list[str]:
    """``k`` classes (seeded) with photos in train and test, to play new coins; at least two stay known."""
    candidates = sorted(set(train_labels) & set(test_labels))
    if k < 1 or len(set(train_labels)) - k < 2 or k > len(candidates):
        raise CoinfeatError(
            f"cannot hold {k} class(es) out: {len(set(train_labels))} classes in train, {len(candidates)} "
            "with test photos, and at least 2 must stay known"
        )
    return sorted(np.random.default_rng(seed).choice(candidates, size=k, replace=False).tolist())


def open_set(
    store: Store, heads: list[str], *, k: int, params: dict[str, dict[str, Any]] | None = None, seed: int = 0
) -> dict[str, Any]:
    """The ``open_set`` entry of ``metrics.json``: unknown classes, and per head and score the figures."""
    X_train, train = store.select("train")
    X_val, val = store.select("val")
    X_test, test = store.select("test")
    if len(X_test) == 0:
        raise CoinfeatError(f"store {store.path} has no test photos to hold classes out of")
    unknown = held_out_classes(train["label"].to_numpy(), test["label"].to_numpy(), k, seed)
    known_train = ~train["label"].isin(unknown).to_numpy()
    known_val = ~val["label"].isin(unknown).to_numpy()
    is_known = ~test["label"].isin(unknown).to_numpy()
    results: dict[str, Any] = {}
    for name in heads:
        head = make_head(name, **(params or {}).get(name, {}))
        head.fit(X_train[known_train], train["label"][known_train], X_val[known_val], val["label"][known_val])
        proba = head.predict_proba(X_test)
        results[name] = {
            score: _figures(head, score, X_val[known_val], val["label"][known_val], X_test, proba, is_known)
            for score in UNKNOWN_SCORES
        }
    return {
        "unknown_classes": unknown,
        "known_test": int(is_known.sum()),
        "unknown_test": int((~is_known).sum()),
        "heads": results,
    }


def _figures(head, score: str, X_val, y_val, X_test, proba, is_known: np.ndarray) -> dict[str, float | None]:
    values = unknown_scores(head, X_test, score, proba)
    accept_known = np.quantile(values[is_known], 1 - ACCEPT, method="lower")
    rule = calibrate_rule(head, X_val, y_val, score)
    figures = {
        "auroc": round(float(roc_auc_score(is_known, values)), 4),
        "rejected_at_95": round(float(np.mean(values[~is_known] < accept_known)), 4),
        "val_threshold": None,
        "known_accepted": None,
        "unknown_rejected": None,
    }
    if rule is not None and rule.score == score:
        rejected = rule.is_unknown(values)
        figures.update(
            val_threshold=rule.threshold(),
            known_accepted=round(float(np.mean(~rejected[is_known])), 4),
            unknown_rejected=round(float(np.mean(rejected[~is_known])), 4),
        )
    return figures
