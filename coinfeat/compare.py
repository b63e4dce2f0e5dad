"""``coinfeat compare``: fit (or load) several heads on the same cached split and evaluate them alike.

Every head sees the same train vectors, early-stops on the same val vectors and is scored on the
same test vectors; the result feeds :mod:`coinfeat.reports`. ``--cv K`` adds stratified,
group-aware K-fold cross-validation over all photos, because one split of a small set is noisy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold

from coinfeat.errors import CoinfeatError, FingerprintMismatch
from coinfeat.heads import Head, head_types, load_head, make_head
from coinfeat.metrics import part_accuracies, per_class_metrics, predicted_labels, summary_metrics
from coinfeat.store import Store, describe_extractor, open_store
from coinfeat.training import check_compatible, provenance

DEFAULT_REPORTS_DIR = Path("artifacts") / "reports"
DEFAULT_HEADS = ("dense", "logreg", "knn", "centroid")


@dataclass
class CompareConfig:
    heads: list[str] = field(default_factory=lambda: list(DEFAULT_HEADS))
    top_k: list[int] = field(default_factory=lambda: [1, 3, 5])
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    load: dict[str, str] = field(default_factory=dict)
    use_augmented: bool = False
    cv: int = 0
    label_parts: str | None = None
    confusion_top: int | None = None
    test_features: str | None = None
    """Another dataset's store (same extractor) whose every photo is the test set."""
    versus: str | None = None
    """Another store of the same photos (int8 vs fp32, frozen vs fine-tuned): the same heads are
    fitted and scored on it too, and the report shows both side by side."""

    def validate(self) -> None:
        known = set(head_types())
        unknown = [h for h in self.heads if h not in known]
        if unknown:
            raise CoinfeatError(
                f"unknown head type(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
            )
        if not self.heads and not self.load:
            raise CoinfeatError("no heads to compare: give --heads and/or --load")
        if not self.top_k or min(self.top_k) < 1:
            raise CoinfeatError("--top-k takes positive whole numbers, e.g. 1,3,5")
        if self.cv == 1 or self.cv < 0:
            raise CoinfeatError("--cv needs at least 2 folds")


@dataclass
class HeadResult:
    """One head's scores on the evaluated splits, with what a report needs to draw them."""

    name: str
    head: Head
    fit_seconds: float
    predict_ms_per_image: float
    size_bytes: int
    metrics: dict[str, dict[str, Any]]
    proba: dict[str, np.ndarray]
    per_class: pd.DataFrame
    parts: dict[str, float]
    cv: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Comparison:
    store: Store
    config: CompareConfig
    splits: dict[str, pd.DataFrame]
    results: list[HeadResult]
    eval_split: str
    versus: Comparison | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> HeadResult:
        """Highest balanced accuracy on the evaluated split; ties go to the faster head."""
        return max(
            self.results,
            key=lambda r: (
                round(r.metrics[self.eval_split]["balanced_accuracy"], 4),
                -r.predict_ms_per_image,
            ),
        )


def default_report_dir(features: str | Path) -> Path:
    """``artifacts/reports/<dataset>`` for the store at ``features``."""
    return DEFAULT_REPORTS_DIR / open_store(features).manifest["dataset"]["name"]


def compare_heads(
    features: str | Path, config: CompareConfig | None = None, heads_dir: Path | None = None
) -> Comparison:
    """Fit every configured head (and load every ``config.load`` head) and score them alike."""
    config = config or CompareConfig()
    config.validate()
    store = open_store(features)
    X_train, train = store.select("train", include_views=config.use_augmented)
    data = {split: store.select(split) for split in ("val", "test")}
    if len(X_train) == 0:
        raise CoinfeatError(f"store {store.path} has no train vectors")
    notes = []
    if config.test_features:
        data["test"], notes = other_test_set(store, config.test_features, set(train["label"]))
    eval_split = "test" if len(data["test"][0]) else "val"
    if len(data[eval_split][0]) == 0:
        raise CoinfeatError(f"store {store.path} has neither test nor val vectors to evaluate on")
    results = []
    names = store.manifest["dataset"].get("label_names", {})
    X_val, val = data["val"]
    for name in config.heads:
        head = make_head(name, **config.params.get(name, {}))
        head.fit(X_train, train["label"], X_val, val["label"])
        head.meta.update(provenance(store, config.use_augmented))
        saved = head.save(heads_dir / name) if heads_dir else None
        results.append(_evaluate(name, head, data, eval_split, config, names, saved))
    for name, directory in config.load.items():
        head = load_head(directory)
        check_compatible(head, store)
        results.append(_evaluate(name, head, data, eval_split, config, names, Path(directory)))
    if config.cv:
        cross_validate(store, results, config)
    splits = {"train": train, **{s: data[s][1] for s in data}}
    comparison = Comparison(store, config, splits, results, eval_split, notes=notes)
    if config.versus:
        comparison.versus = _versus(comparison, heads_dir)
    return comparison


def other_test_set(
    store: Store, test_features: str | Path, trained: set[str]
) -> tuple[tuple[np.ndarray, pd.DataFrame], list[str]]:
    """Every photo of another store made with the same extractor, labels matched to the train
    store's by id or by display name; photos of classes the heads never saw are left out and
    counted in the notes (they could only be wrong)."""
    other = open_store(test_features)
    if other.fingerprint != store.fingerprint:
        raise FingerprintMismatch(
            f"--test-features {other.path} holds {other.fingerprint} ({describe_extractor(other.manifest)}) "
            f"but {store.path} holds {store.fingerprint} ({describe_extractor(store.manifest)}); embed both "
            "datasets with the same extractor"
        )
    X, items = other.select(None)
    by_name = {name: label for label, name in store.manifest["dataset"].get("label_names", {}).items()}
    their_names = other.manifest["dataset"].get("label_names", {})
    labels = [lbl if lbl in trained else by_name.get(their_names.get(lbl), lbl) for lbl in items["label"]]
    items = items.assign(label=labels)
    seen = items["label"].isin(trained).to_numpy()
    notes = [f"test set: all {int(seen.sum())} photos of {other.path} in classes the heads learned"]
    unseen = sorted(set(items["label"][~seen]))
    if unseen:
        notes.append(
            f"{int((~seen).sum())} photo(s) of {len(unseen)} class(es) the heads never saw are left out "
            f"(they could only be wrong): {', '.join(unseen[:10])}"
        )
    missing = sorted(trained - set(items["label"]))
    if missing:
        notes.append(f"class(es) learned but absent from the test set: {', '.join(missing[:10])}")
    if not seen.any():
        raise CoinfeatError(f"--test-features {other.path} has no photo of a class the heads learned")
    return (X[seen], items[seen].reset_index(drop=True)), notes


def _versus(comparison: Comparison, heads_dir: Path | None) -> Comparison:
    """The same heads on the ``versus`` store, which must hold the same evaluated photos."""
    config = comparison.config
    other = compare_heads(
        config.versus,
        replace(config, versus=None, load={}, cv=0),
        heads_dir / "versus" if heads_dir else None,
    )
    mine = set(comparison.splits[comparison.eval_split]["path"])
    if other.eval_split != comparison.eval_split or set(other.splits[other.eval_split]["path"]) != mine:
        raise CoinfeatError(
            f"--versus {config.versus} does not hold the same {comparison.eval_split} photos as "
            f"{comparison.store.path}: side-by-side figures would compare different photos"
        )
    return other


def _evaluate(
    name: str,
    head: Head,
    data: dict[str, tuple[np.ndarray, pd.DataFrame]],
    eval_split: str,
    config: CompareConfig,
    names: dict[str, str],
    saved: Path | None,
) -> HeadResult:
    metrics, proba, seconds = {}, {}, {}
    for split, (X, items) in data.items():
        if len(X) == 0:
            continue
        started = time.perf_counter()
        proba[split] = head.predict_proba(X)
        seconds[split] = time.perf_counter() - started
        metrics[split] = summary_metrics(items["label"].to_numpy(), proba[split], head.classes_, config.top_k)
    y_true = data[eval_split][1]["label"].to_numpy()
    y_pred = predicted_labels(proba[eval_split], head.classes_)
    predict_ms = seconds[eval_split] * 1000 / len(y_true)
    size = sum(f.stat().st_size for f in saved.rglob("*") if f.is_file()) if saved else 0
    return HeadResult(
        name,
        head,
        float(getattr(head, "fit_seconds_", 0.0) or 0.0),
        predict_ms,
        size,
        metrics,
        proba,
        per_class_metrics(y_true, y_pred),
        part_accuracies(y_true, y_pred, names, config.label_parts),
    )


def cross_validate(store: Store, results: list[HeadResult], config: CompareConfig) -> None:
    """Stratified, group-aware K-fold over every photo; mean and std per metric per head."""
    X, items = store.select(None)
    labels, groups = items["label"].to_numpy(), items["group"].to_numpy()
    folds = StratifiedGroupKFold(n_splits=config.cv, shuffle=True, random_state=0)
    for result in results:
        scores: list[dict[str, Any]] = []
        for train_idx, test_idx in folds.split(X, labels, groups):
            head = clone(result.head).fit(X[train_idx], labels[train_idx])
            proba = head.predict_proba(X[test_idx])
            scores.append(summary_metrics(labels[test_idx], proba, head.classes_, config.top_k))
        keys = [k for k in scores[0] if k.startswith("top") or k in ("balanced_accuracy", "macro_f1")]
        result.cv = {
            k: {"mean": float(np.mean([s[k] for s in scores])), "std": float(np.std([s[k] for s in scores]))}
            for k in keys
        }
