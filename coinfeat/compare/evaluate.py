"""``coinfeat compare``: fit (or load) several heads on the same cached split and evaluate them alike.

Every head sees the same train vectors, early-stops on the same val vectors and is scored on the
same test vectors; the result feeds :mod:`coinfeat.compare.report`. ``--cv K`` adds stratified,
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

from coinfeat.compare.enrolment import enrolment
from coinfeat.compare.open_set import open_set
from coinfeat.core.answer_sets import DEFAULT_CONFIDENCE, MIN_CALIBRATION, AnswerSets
from coinfeat.core.data.leakage import (
    TWIN_THRESHOLD,
    conflicting_hashes,
    find_twins,
    subset_masks,
    twin_counts,
    without_conflicts,
)
from coinfeat.core.errors import CoinfeatError, FingerprintMismatch
from coinfeat.core.heads import Head, head_types, load_head, make_head
from coinfeat.core.metrics import (
    group_accuracy,
    label_parts,
    parse_groups,
    part_accuracies,
    part_set_figures,
    per_class_metrics,
    predicted_labels,
    summary_metrics,
)
from coinfeat.core.provenance import check_compatible, provenance
from coinfeat.core.store import Store, describe_extractor, open_store

DEFAULT_REPORTS_DIR = Path("artifacts") / "reports"
DEFAULT_HEADS = ("dense", "logreg", "knn", "centroid")
OWN_TEST = "own_test"
"""With ``--test-features`` the other store's photos are the test split; the store's own test photos
are still scored under this name, so in-domain and external figures sit side by side."""


@dataclass
class CompareConfig:
    heads: list[str] = field(default_factory=lambda: list(DEFAULT_HEADS))
    top_k: list[int] = field(default_factory=lambda: [1, 3, 5])
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    load: dict[str, str] = field(default_factory=dict)
    use_augmented: bool = False
    cv: int = 0
    label_parts: str | None = None
    class_groups: str | None = None
    """Report accuracy over groups of classes too: ``a,b;c,d`` or ``euro`` (its design families)."""
    confusion_top: int | None = None
    test_features: str | None = None
    """Another dataset's store (same extractor) whose every photo is the test set."""
    versus: str | None = None
    """Another store of the same photos (int8 vs fp32, frozen vs fine-tuned): the same heads are
    fitted and scored on it too, and the report shows both side by side."""
    twin_threshold: float = TWIN_THRESHOLD
    """Cosine at or above which an evaluated photo counts as a near-identical twin of a training one."""
    drop_conflicts: bool = False
    """Leave out of training the photos whose identical copies carry another label."""
    open_set: int = 0
    """Hold this many classes out as unknown coins and measure the unknown-coin scores (0: off)."""
    enrol: int = 0
    """Hold this many classes out, then enrol them from ``shots`` photos each (0: off)."""
    shots: int = 5

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
        if self.class_groups:
            try:
                parse_groups(self.class_groups)
            except ValueError as exc:
                raise CoinfeatError(f"--class-groups: {exc}") from None
        if self.open_set < 0 or self.enrol < 0 or self.shots < 1:
            raise CoinfeatError("--open-set and --enrol take a number of classes, --shots at least 1")
        if not 0 < self.twin_threshold <= 1:
            raise CoinfeatError("--twin-threshold is a cosine similarity in (0, 1], e.g. 0.97")


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
    subsets: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """Metrics (with ``label_parts``) on all, clean and twin photos of the evaluated split."""
    cv: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Comparison:
    store: Store
    config: CompareConfig
    splits: dict[str, pd.DataFrame]
    results: list[HeadResult]
    eval_split: str
    twins: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Per evaluated split, each photo's training twin (see :mod:`coinfeat.core.data.leakage`)."""
    versus: Comparison | None = None
    notes: list[str] = field(default_factory=list)
    open_set: dict[str, Any] | None = None
    """``--open-set``'s figures (:func:`coinfeat.compare.open_set.open_set`)."""
    enrolment: dict[str, Any] | None = None
    """``--enrol``'s figures (:func:`coinfeat.compare.enrolment.enrolment`)."""

    @property
    def names(self) -> dict[str, str]:
        """Display names of the classes, by class id."""
        return self.store.manifest.label_names

    @property
    def headline(self) -> str:
        """The subset the advice rests on: clean photos when some evaluated photos have twins."""
        counts = twin_counts(self.twins[self.eval_split])
        return "clean" if counts["twins"] and counts["clean"] else "all"

    @property
    def best(self) -> HeadResult:
        """Highest balanced accuracy on the headline subset; ties go to the faster head."""
        return max(
            self.results,
            key=lambda r: (round(r.subsets[self.headline]["balanced_accuracy"], 4), -r.predict_ms_per_image),
        )


def default_report_dir(features: str | Path) -> Path:
    """``artifacts/reports/<dataset>`` for the store at ``features``."""
    return DEFAULT_REPORTS_DIR / open_store(features).manifest.dataset.name


def compare_heads(
    features: str | Path, config: CompareConfig | None = None, heads_dir: Path | None = None
) -> Comparison:
    """Fit every configured head (and load every ``config.load`` head) and score them alike."""
    config = config or CompareConfig()
    config.validate()
    store = open_store(features)
    X_train, train = store.select("train", include_views=config.use_augmented)
    data = {split: store.select(split) for split in ("val", "test")}
    notes = []
    if config.drop_conflicts:
        X_train, train, data["val"], notes = _drop_conflicts(store, X_train, train, data["val"])
    if len(X_train) == 0:
        raise CoinfeatError(f"store {store.path} has no train vectors")
    if config.test_features:
        if len(data["test"][0]):
            data[OWN_TEST] = data["test"]
        data["test"], test_notes = other_test_set(store, config.test_features, set(train["label"]))
        notes += test_notes
    eval_split = "test" if len(data["test"][0]) else "val"
    if len(data[eval_split][0]) == 0:
        raise CoinfeatError(f"store {store.path} has neither test nor val vectors to evaluate on")
    twins = training_twins(store, data, config.twin_threshold)
    results = []
    names = store.manifest.label_names
    X_val, val = data["val"]
    record = provenance(store, use_augmented=config.use_augmented) if config.heads else None
    for name in config.heads:
        head = make_head(name, **config.params.get(name, {}))
        head.fit(X_train, train["label"], X_val, val["label"])
        head.meta = replace(record, training=head.meta.training)
        saved = head.save(heads_dir / name) if heads_dir else None
        results.append(_evaluate(name, head, data, (eval_split, twins[eval_split]), config, names, saved))
    for name, directory in config.load.items():
        head = load_head(directory)
        check_compatible(head, store)
        evaluated = (eval_split, twins[eval_split])
        results.append(_evaluate(name, head, data, evaluated, config, names, Path(directory)))
    if config.cv:
        cross_validate(store, results, config)
    splits = {"train": train, **{s: data[s][1] for s in data}}
    comparison = Comparison(store, config, splits, results, eval_split, twins, notes=notes)
    if config.versus:
        comparison.versus = _versus(comparison, heads_dir)
    if config.open_set:
        comparison.open_set = open_set(store, config.heads, k=config.open_set, params=config.params)
    if config.enrol:
        comparison.enrolment = enrolment(
            store, config.heads, k=config.enrol, shots=config.shots, params=config.params
        )
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
    by_name = {name: label for label, name in store.manifest.label_names.items()}
    their_names = other.manifest.label_names
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


def training_twins(
    store: Store, data: dict[str, tuple[np.ndarray, pd.DataFrame]], threshold: float
) -> dict[str, pd.DataFrame]:
    """Each evaluated photo's twin among the photos heads learn from: val photos against train,
    test photos against train and val (val steers early stopping and model selection)."""
    X_train, train = store.select("train")
    X_val, val = data["val"]
    references = {
        "val": (X_train, train),
        "test": (np.concatenate([X_train, X_val]), pd.concat([train, val], ignore_index=True)),
    }
    return {
        split: find_twins(*references.get(split, references["test"]), X=X, items=items, threshold=threshold)
        for split, (X, items) in data.items()
    }


def _drop_conflicts(
    store: Store,
    X_train: np.ndarray,
    train: pd.DataFrame,
    val_data: tuple[np.ndarray, pd.DataFrame],
) -> tuple[np.ndarray, pd.DataFrame, tuple[np.ndarray, pd.DataFrame], list[str]]:
    """Train and val less the photos whose identical copies carry another label, with a note."""
    conflicts = conflicting_hashes(store.items)
    X_train, train, dropped_train = without_conflicts(X_train, train, conflicts)
    X_val, val, dropped_val = without_conflicts(*val_data, conflicts)
    note = (
        f"--drop-conflicts: left out {dropped_train} train and {dropped_val} val vector(s) of "
        f"{len(conflicts)} photo(s) filed under more than one label"
    )
    return X_train, train, (X_val, val), [note]


def _versus(comparison: Comparison, heads_dir: Path | None) -> Comparison:
    """The same heads on the ``versus`` store, which must hold the same evaluated photos."""
    config = comparison.config
    other = compare_heads(
        config.versus,
        replace(config, versus=None, load={}, cv=0, open_set=0, enrol=0),
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
    evaluated: tuple[str, pd.DataFrame],
    config: CompareConfig,
    names: dict[str, str],
    saved: Path | None,
) -> HeadResult:
    eval_split, twins = evaluated
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
    if "val" in proba and eval_split != "val" and len(proba["val"]) >= MIN_CALIBRATION:
        calibration = AnswerSets.calibrate(proba["val"], data["val"][1]["label"].to_numpy(), head.classes_)
        for split in {eval_split, OWN_TEST} & set(proba):
            truth = data[split][1]["label"].to_numpy()
            metrics[split]["answer_sets"] = calibration.evaluate(proba[split], truth, DEFAULT_CONFIDENCE)
            sets = calibration.sets(proba[split], DEFAULT_CONFIDENCE)
            parts = label_parts(head.classes_, names, config.label_parts)
            metrics[split]["answer_sets"]["parts"] = part_set_figures(sets, truth, parts, head.classes_)
    predict_ms = seconds[eval_split] * 1000 / len(y_true)
    size = sum(f.stat().st_size for f in saved.rglob("*") if f.is_file()) if saved else 0
    parts = _part_accuracies(y_true, y_pred, names, config)
    subsets: dict[str, dict[str, Any] | None] = {"all": {**metrics[eval_split], "label_parts": parts}}
    for subset, mask in subset_masks(twins).items():
        if subset == "all":
            continue
        subsets[subset] = (
            {
                **summary_metrics(y_true[mask], proba[eval_split][mask], head.classes_, config.top_k),
                "label_parts": _part_accuracies(y_true[mask], y_pred[mask], names, config),
            }
            if mask.any()
            else None
        )
    return HeadResult(
        name,
        head,
        float(getattr(head, "fit_seconds_", 0.0) or 0.0),
        predict_ms,
        size,
        metrics,
        proba,
        per_class_metrics(y_true, y_pred),
        parts,
        subsets,
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


def _part_accuracies(
    y_true: np.ndarray, y_pred: np.ndarray, names: dict[str, str], config: CompareConfig
) -> dict[str, float]:
    """Accuracy per label part (``--label-parts``) and over groups of classes (``--class-groups``)."""
    parts = part_accuracies(y_true, y_pred, names, config.label_parts)
    if config.class_groups:
        parts["class group"] = group_accuracy(y_true, y_pred, parse_groups(config.class_groups))
    return parts
