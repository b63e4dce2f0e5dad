"""``coinfeat predict``: recognise coins in new photos with a saved head.

Inputs are photo files, folders (recursive; class folders, split folders) and CSV manifests, the
layouts ``extract-features`` reads. Photos are embedded in batches with the head's own extractor;
an unreadable photo becomes a row with its error. When the photos carry labels (class folders, a
CSV label column), :func:`accuracy` scores the predictions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coinfeat.core.answer_sets import DEFAULT_CONFIDENCE, AnswerSets, check_confidence
from coinfeat.core.data.datasets import collect_photos
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.extraction.embedder import DEFAULT_TTA, Embedder
from coinfeat.core.heads import load_head
from coinfeat.core.heads.builtin import resolve_head
from coinfeat.core.heads.unknown import unknown_scores
from coinfeat.core.metrics import label_parts, part_answers, set_answer
from coinfeat.core.options import resolve
from coinfeat.core.progress import progress_bar

BATCH = 64


@dataclass(kw_only=True)
class Prediction:
    path: str
    labels: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None
    truth: str | None = None
    """The photo's label when its folder or manifest gives one."""
    answer_set: list[str] = field(default_factory=list)
    """The classes that the photo may be at ``confidence`` (conformal; empty for a head saved
    without a calibration): one class when one is enough, "10c or 20c" when it is not."""
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """For hierarchical display names ("1 Cent,Euro,spain"): each part's most likely value and its
    summed probability, e.g. {"country": {"value": "spain", "probability": 0.97}}."""
    answer: str = ""
    """The answer set in words, at the level its classes agree on ("denmark, Danish krone: 1 Krone
    or 2 Kroner"; :func:`~coinfeat.core.metrics.set_answer`); the top class's name without sets."""
    unknown: bool = False
    """The head's unknown-coin rule (calibrated on val) says this is no coin type it learned."""
    unknown_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PredictConfig:
    """How ``predict`` answers: how many classes per photo, test-time rotations, the engine."""

    top_k: int = 5
    tta: str = DEFAULT_TTA
    engine: str = "auto"
    progress: bool = False
    confidence: float = DEFAULT_CONFIDENCE
    """Level of the answer sets (conformal, calibrated on val when the head was fitted)."""

    def validate(self) -> None:
        check_confidence(self.confidence)
        if self.top_k < 1:
            raise CoinfeatError(f"--top-k must be at least 1 (got {self.top_k})")


def predict_images(
    inputs: list[str | Path],
    head_dir: str | Path | None = None,
    config: PredictConfig | None = None,
    **options: Any,
) -> list[Prediction]:
    """Top-k labels and probabilities per photo of ``inputs`` (files, folders, CSV manifests) with
    the head at ``head_dir`` (a folder, or a built-in model's name; None: the built-in euro model);
    photos that cannot be read carry an error. Options are :class:`PredictConfig`'s."""
    cfg = resolve(PredictConfig, config, options)
    head_dir = resolve_head(head_dir)
    top_k, tta, engine, progress = cfg.top_k, cfg.tta, cfg.engine, cfg.progress
    head = load_head(head_dir)
    calibration = AnswerSets.load(head_dir)
    photos = collect_photos(inputs)
    embedder = Embedder(head.meta.extractor(head_dir), engine)
    names = head.meta.label_names
    parts = label_parts(head.classes_, names, None)
    rule = head.meta.unknown_rule()
    results = []
    with progress_bar(
        total=len(photos), unit="img", desc="predicting", enabled=progress and len(photos) > BATCH
    ) as bar:
        for start in range(0, len(photos), BATCH):
            chunk = photos[start : start + BATCH]
            embedded = embedder.embed([p for p, _ in chunk], tta=tta)
            proba = (
                head.predict_proba(embedded.vectors) if embedded.paths else np.zeros((0, len(head.classes_)))
            )
            by_path = dict(zip(embedded.paths, proba))
            sets = dict(zip(embedded.paths, calibration.sets(proba, cfg.confidence))) if calibration else {}
            unknown = (
                dict(zip(embedded.paths, unknown_scores(head, embedded.vectors, rule.score, proba)))
                if rule
                else {}
            )
            for path, truth in chunk:
                if path not in by_path:
                    results.append(
                        Prediction(path=path, error=embedded.errors.get(path, "not embedded"), truth=truth)
                    )
                    continue
                order = np.argsort(-by_path[path])[:top_k]
                labels = head.classes_[order].tolist()
                scores = [round(float(by_path[path][i]), 4) for i in order]
                named = [names.get(x, x) for x in labels]
                answers = part_answers(by_path[path], parts)
                answer_set = sets.get(path, [])
                results.append(
                    Prediction(
                        path=path,
                        labels=labels,
                        names=named,
                        probabilities=scores,
                        truth=truth,
                        parts=answers,
                        answer_set=answer_set,
                        answer=set_answer(answer_set or labels[:1], names, parts, head.classes_),
                        unknown=bool(rule.is_unknown(unknown[path])) if rule else False,
                        unknown_score=round(float(unknown[path]), 4) if rule else None,
                    )
                )
            bar.update(len(chunk))
    return results


def accuracy(results: list[Prediction]) -> dict[str, Any] | None:
    """Top-1, top-k and balanced accuracy over the photos that have a label and a prediction
    (None when no photo has a label). A label the head never learned counts as wrong."""
    from sklearn.metrics import balanced_accuracy_score

    scored = [r for r in results if r.truth is not None and r.error is None]
    if not scored:
        return None
    truth = [r.truth for r in scored]
    top1 = [r.labels[0] for r in scored]
    k = len(scored[0].labels)
    return {
        "photos": len(scored),
        "top1": float(np.mean([t == p for t, p in zip(truth, top1)])),
        f"top{k}": float(np.mean([t in r.labels for t, r in zip(truth, scored)])),
        "balanced_accuracy": float(balanced_accuracy_score(truth, top1)),
        "unreadable": sum(1 for r in results if r.truth is not None and r.error is not None),
        **_set_figures(scored),
    }


def _set_figures(scored: list[Prediction]) -> dict[str, float]:
    """Answer-set coverage (true class in the set) and mean set size, when the head has sets."""
    with_sets = [r for r in scored if r.answer_set]
    if not with_sets:
        return {}
    return {
        "set_coverage": float(np.mean([r.truth in r.answer_set for r in with_sets])),
        "set_size": float(np.mean([len(r.answer_set) for r in with_sets])),
    }


def write_predictions(results: list[Prediction], path: str | Path) -> Path:
    """One CSV row per photo: path, truth, top-k labels, names and probabilities, the answer set
    (labels joined by " or "), error."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"path": r.path, "truth": r.truth}
        for rank, (label, name, prob) in enumerate(zip(r.labels, r.names, r.probabilities), 1):
            row.update({f"top{rank}_label": label, f"top{rank}_name": name, f"top{rank}_probability": prob})
        row["answer_set"] = " or ".join(r.answer_set)
        row["answer"] = r.answer
        row["unknown"] = r.unknown
        row["error"] = r.error
        rows.append(row)
    k = max((len(r.labels) for r in results), default=0)
    ranked = [f"top{n}_{part}" for n in range(1, k + 1) for part in ("label", "name", "probability")]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["path", "truth", *ranked, "answer_set", "answer", "unknown", "error"]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path
