"""Classification metrics for comparing heads, on plain arrays.

Every function takes true labels, the head's class list and its probability matrix, so that
classes missing from the evaluated split, or test labels the head never saw, are handled in one
place: an unseen true label always counts as a miss.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)


def top_k_accuracy(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, k: int) -> float:
    """Share of rows whose true label is among the k most probable classes."""
    y_true = np.asarray(y_true).astype(str)
    if len(y_true) == 0:
        return float("nan")
    known = np.isin(y_true, classes)
    if not known.any():
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = top_k_accuracy_score(y_true[known], proba[known], k=min(k, len(classes)), labels=classes)
    return float(score * known.sum() / len(y_true))


def predicted_labels(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.asarray(classes)[np.argmax(proba, axis=1)]


def summary_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, ks: list[int]
) -> dict[str, Any]:
    """Top-k accuracies, balanced accuracy, macro-F1, log loss and confidence for one split."""
    y_true = np.asarray(y_true).astype(str)
    classes = np.asarray(classes).astype(str)
    y_pred = predicted_labels(proba, classes)
    present = np.unique(y_true)
    known = np.isin(y_true, classes)
    confidence = proba.max(axis=1)
    correct = y_pred == y_true
    result: dict[str, Any] = {f"top{k}": top_k_accuracy(y_true, proba, classes, k) for k in ks}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result["balanced_accuracy"] = float(balanced_accuracy_score(y_true, y_pred))
        result["macro_f1"] = float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
        result["log_loss"] = (
            float(log_loss(y_true[known], np.clip(proba[known], 1e-15, 1), labels=classes))
            if known.any()
            else float("nan")
        )
    result["n"] = len(y_true)
    result["unseen_label_rows"] = int((~known).sum())
    result["confidence_when_right"] = float(confidence[correct].mean()) if correct.any() else float("nan")
    result["confidence_when_wrong"] = float(confidence[~correct].mean()) if (~correct).any() else float("nan")
    return result


def per_class_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> pd.DataFrame:
    """Precision, recall, F1 and support for every class seen in truth or predictions."""
    labels = np.unique(np.concatenate([np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)]))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return pd.DataFrame({"class": labels, "precision": p, "recall": r, "f1": f, "support": s})


def confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> np.ndarray:
    """Counts: rows are true classes, columns predicted classes, in ``labels`` order."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)):
        if t in index and p in index:
            matrix[index[t], index[p]] += 1
    return matrix


def most_confused_pairs(y_true: np.ndarray, y_pred: np.ndarray, top: int = 10) -> pd.DataFrame:
    """The (true, predicted) pairs that are wrong most often, with their share of the true class."""
    frame = pd.DataFrame(
        {"true": np.asarray(y_true).astype(str), "predicted": np.asarray(y_pred).astype(str)}
    )
    support = frame["true"].value_counts()
    wrong = frame[frame["true"] != frame["predicted"]]
    if wrong.empty:
        return pd.DataFrame(columns=["true", "predicted", "count", "share_of_true_class"])
    pairs = wrong.value_counts().rename("count").reset_index()
    pairs["share_of_true_class"] = pairs["count"] / pairs["true"].map(support)
    return pairs.head(top)


def label_parts(labels: np.ndarray, names: dict[str, str], pattern: str | None) -> pd.DataFrame | None:
    """Split hierarchical labels ("1 Cent,Australian dollar,australia") into named parts.

    With ``pattern`` (a regex with named groups) the parts are its groups; otherwise display names
    or labels are split on commas when every one of them has the same number (2 or more) of parts.
    Returns one column per part, or None when labels are not hierarchical.
    """
    text = pd.Series([names.get(str(label), str(label)) for label in labels])
    if pattern:
        regex = re.compile(pattern)
        if not regex.groupindex:
            raise ValueError("--label-parts needs named groups, e.g. (?P<country>[^,]+)$")
        parts = text.str.extract(regex)
        return parts if not parts.isna().all().all() else None
    split = text.str.split(",")
    counts = split.map(len)
    if counts.nunique() != 1 or counts.iloc[0] < 2:
        return None
    columns = ["denomination", "currency", "country"] if counts.iloc[0] == 3 else None
    frame = pd.DataFrame(split.tolist()).apply(lambda col: col.str.strip())
    frame.columns = columns or [f"part{i + 1}" for i in range(counts.iloc[0])]
    return frame


def part_accuracies(
    y_true: np.ndarray, y_pred: np.ndarray, names: dict[str, str], pattern: str | None
) -> dict[str, float]:
    """Accuracy per label part: right country? right denomination?"""
    true_parts = label_parts(np.asarray(y_true), names, pattern)
    pred_parts = label_parts(np.asarray(y_pred), names, pattern)
    if true_parts is None or pred_parts is None:
        return {}
    return {
        col: float((true_parts[col].to_numpy() == pred_parts[col].to_numpy()).mean())
        for col in true_parts.columns
        if col in pred_parts.columns
    }


def part_answers(proba: np.ndarray, parts: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """The most likely value of each label part, with the probability summed over the classes
    that share it (the country can be sure while two denominations compete)."""
    if parts is None:
        return {}
    answers = {}
    for column in parts.columns:
        summed = pd.Series(proba, index=parts[column].to_numpy()).groupby(level=0).sum()
        answers[column] = {"value": str(summed.idxmax()), "probability": round(float(summed.max()), 4)}
    return answers


def set_answer(
    answer_set: list[str], names: dict[str, str], parts: pd.DataFrame | None, classes: np.ndarray
) -> str:
    """An answer set in words, at the level the classes agree on: one class by its name; classes
    that share label parts as those parts then what differs ("denmark, Danish krone: 1 Krone or 2
    Kroner", most general part first); else the names joined by "or"."""
    if not answer_set:
        return ""
    shown = [names.get(label, label) for label in answer_set]
    if len(answer_set) == 1 or parts is None:
        return " or ".join(shown)
    rows = parts.iloc[[int(np.flatnonzero(classes == label)[0]) for label in answer_set]]
    shared = [column for column in reversed(parts.columns) if rows[column].nunique() == 1]
    varying = [column for column in parts.columns if column not in shared]
    if not shared or not varying:
        return " or ".join(shown)
    differing = [", ".join(values) for values in rows[varying].astype(str).itertuples(index=False)]
    return f"{', '.join(str(rows[column].iloc[0]) for column in shared)}: {' or '.join(differing)}"


def part_set_figures(
    sets: list[list[str]], y_true: np.ndarray, parts: pd.DataFrame | None, classes: np.ndarray
) -> dict[str, dict[str, float]]:
    """Per label part: how often the answer set holds the true value of that part (coverage) and
    how many values of it a set holds on average (size): a set "1 or 2 Kroner" is sure of the country."""
    if parts is None or not len(sets):
        return {}
    index = {label: i for i, label in enumerate(classes)}
    known = [i for i, label in enumerate(y_true) if label in index]
    figures = {}
    for column in parts.columns:
        values = parts[column].astype(str).to_numpy()
        held = [{values[index[label]] for label in sets[i]} for i in known]
        truth = [values[index[y_true[i]]] for i in known]
        figures[column] = {
            "coverage": round(float(np.mean([t in h for t, h in zip(truth, held)])), 4),
            "size": round(float(np.mean([len(h) for h in held])), 3),
        }
    return figures


EURO_FAMILIES = "1c,2c,5c;10c,20c,50c;1e,2e"
"""The euro's design families: within one, the common sides differ only by the numeral."""
CLASS_GROUPS = {"euro": EURO_FAMILIES}


def parse_groups(spec: str) -> list[set[str]]:
    """Groups of classes from ``a,b;c,d`` or a built-in name (``euro``)."""
    text = CLASS_GROUPS.get(spec.strip().lower(), spec)
    groups = [{c.strip() for c in part.split(",") if c.strip()} for part in text.split(";")]
    groups = [g for g in groups if g]
    seen: set[str] = set()
    for group in groups:
        if group & seen:
            raise ValueError(f"class(es) {', '.join(sorted(group & seen))} appear in two groups of {spec!r}")
        seen |= group
    if not groups:
        raise ValueError(
            f"no class groups in {spec!r}; write them as 'a,b;c,d' or name one of {list(CLASS_GROUPS)}"
        )
    return groups


def group_accuracy(y_true: np.ndarray, y_pred: np.ndarray, groups: list[set[str]]) -> float:
    """Share of photos whose answer lies in the true class's group (a class in no group is its own)."""
    of = {c: i for i, group in enumerate(groups) for c in group}
    same = [
        of.get(str(t), ("own", str(t))) == of.get(str(p), ("own", str(p))) for t, p in zip(y_true, y_pred)
    ]
    return float(np.mean(same)) if same else float("nan")
