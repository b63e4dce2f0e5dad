"""The report's data files: metrics.json's document, per_class.csv, predictions.parquet, and the most
confused pairs with thumbnails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coinfeat.compare.evaluate import Comparison
from coinfeat.core.data.datasets import display_label, safe_name
from coinfeat.core.data.leakage import TWIN_COLUMNS, twin_counts
from coinfeat.core.errors import DecodeError
from coinfeat.core.images.decode import decode, read_bytes
from coinfeat.core.metrics import most_confused_pairs, predicted_labels
from coinfeat.core.store import describe_extractor

THUMB = 72


def metrics_document(c: Comparison) -> dict[str, Any]:
    m = c.store.manifest
    return {
        "dataset": m.dataset.name,
        "store": str(c.store.path),
        "fingerprint": c.store.fingerprint,
        "extractor": describe_extractor(m),
        "pretrained": c.store.pretrained,
        "evaluated_on": c.eval_split,
        "headline": c.headline,
        "twins": {
            "threshold": c.config.twin_threshold,
            "against": "train and val photos (val photos: against train)",
            "counts": {split: twin_counts(frame) for split, frame in c.twins.items()},
        },
        "split_sizes": {name: int((items["view"] == 0).sum()) for name, items in c.splits.items()},
        "train_vectors": len(c.splits["train"]),
        "top_k": c.config.top_k,
        "recommended_head": c.best.name,
        "heads": {
            r.name: {
                "params": r.head.params,
                "fit_seconds": r.fit_seconds,
                "predict_ms_per_image": r.predict_ms_per_image,
                "size_bytes": r.size_bytes,
                **r.metrics,
                "label_parts": r.parts,
                "subsets": r.subsets,
                "cv": r.cv,
            }
            for r in c.results
        },
        "versus": metrics_document(c.versus) if c.versus is not None else None,
        "open_set": c.open_set,
        "enrolment": c.enrolment,
        "notes": c.notes,
    }


def per_class_table(c: Comparison) -> pd.DataFrame:
    frames = [r.per_class.assign(head=r.name) for r in c.results]
    table = pd.concat(frames, ignore_index=True)
    table["name"] = [display_label(label, c.names, with_id=False) for label in table["class"]]
    return table[["head", "class", "name", "precision", "recall", "f1", "support"]]


def predictions_table(c: Comparison) -> pd.DataFrame:
    """One row per evaluated photo; per head the top-k labels and probabilities."""
    k = max(c.config.top_k)
    frames = []
    for split in ("val", "test"):
        items = c.splits.get(split)
        if items is None or len(items) == 0:
            continue
        frame = (
            items[["path", "label", "split"]].rename(columns={"label": "true_label"}).reset_index(drop=True)
        )
        frame["true_name"] = [display_label(label, c.names, with_id=False) for label in frame["true_label"]]
        frame[TWIN_COLUMNS] = c.twins[split][TWIN_COLUMNS].to_numpy()
        for r in c.results:
            proba = r.proba[split]
            order = np.argsort(-proba, axis=1)[:, :k]
            for rank in range(order.shape[1]):
                frame[f"{r.name}_top{rank + 1}_label"] = r.head.classes_[order[:, rank]]
                frame[f"{r.name}_top{rank + 1}_prob"] = proba[np.arange(len(proba)), order[:, rank]]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def confused_pairs(c: Comparison, out: Path, top: int = 10) -> pd.DataFrame:
    """The best head's most confused pairs, with a thumbnail of one photo of each class."""
    items = c.splits[c.eval_split]
    y_pred = predicted_labels(c.best.proba[c.eval_split], c.best.head.classes_)
    pairs = most_confused_pairs(items["label"].to_numpy(), y_pred, top)
    root = Path(c.store.manifest.dataset.root)
    pairs["true_name"] = [display_label(label, c.names) for label in pairs["true"]]
    pairs["predicted_name"] = [display_label(label, c.names) for label in pairs["predicted"]]
    examples = items.drop_duplicates("label").set_index("label")["path"]
    for label in set(pairs["true"]) | set(pairs["predicted"]):
        if label in examples.index:
            _thumbnail(root / examples[label], out / "thumbs" / f"{safe_name(label)}.png")
    return pairs


def _thumbnail(source: Path, target: Path) -> None:
    try:
        img = decode(read_bytes(source), draft_size=THUMB)
    except DecodeError:
        return
    img.thumbnail((THUMB, THUMB))
    img.save(target)


def open_set_frame(found: dict[str, Any]) -> pd.DataFrame:
    """One row per head and unknown-coin score: AUROC, unknowns rejected at 95% of known accepted,
    and the val-calibrated rule on test."""
    return pd.DataFrame(
        [
            {"head": head, "score": score, **figures}
            for head, scores in found["heads"].items()
            for score, figures in scores.items()
        ]
    )


def enrolment_frame(found: dict[str, Any]) -> pd.DataFrame:
    """One row per head: top-1 on the new and the old classes after enrolment, before, and refitted."""
    return pd.DataFrame([{"head": head, **figures} for head, figures in found["heads"].items()])


WORST_SHOWN = 10
"""Classes listed in a report's "worst classes" table (the rest are in ``per_class.csv``)."""


def worst_classes_frame(c: Comparison, n: int = WORST_SHOWN) -> pd.DataFrame:
    """The best head's ``n`` classes with the lowest recall on the evaluated photos, each with the
    class its photos are most often taken for: a 300-class report stays a page long."""
    items = c.splits[c.eval_split]
    y_true = items["label"].to_numpy().astype(str)
    y_pred = predicted_labels(c.best.proba[c.eval_split], c.best.head.classes_)
    table = c.best.per_class[c.best.per_class["support"] > 0].nsmallest(n, ["recall", "support"])
    taken_for = []
    for label in table["class"]:
        wrong = pd.Series(y_pred[(y_true == label) & (y_pred != label)])
        taken_for.append(display_label(wrong.mode().iloc[0], c.names) if len(wrong) else "")
    return pd.DataFrame(
        {
            "class": [display_label(label, c.names) for label in table["class"]],
            "recall": table["recall"].round(3).to_numpy(),
            "photos": table["support"].to_numpy(),
            "most often taken for": taken_for,
        }
    )
