"""``coinfeat fit-head``: train a head on a store's cached vectors and save it with its provenance.

The head directory holds the head's own files and ``head.json``: type, params, classes, counts,
fit seconds, and the extractor record (fingerprint, backbone, resize) of the vectors it learned
from, so ``predict`` embeds new photos the same way and mismatched features are refused;
``answer_sets.npz`` holds its conformal calibration on val (:mod:`coinfeat.core.answer_sets`), or
on a store of the user's own photos after :func:`calibrate_head`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from coinfeat.core.answer_sets import ANSWER_SETS_FILE, AnswerSets, calibrate_beside
from coinfeat.core.data.datasets import collect_photos, safe_name
from coinfeat.core.data.leakage import conflicting_hashes, without_conflicts
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.extraction.embedder import Embedder
from coinfeat.core.extraction.extract import ExtractConfig, extract_features
from coinfeat.core.heads import Head, IncrementalHead, load_head, make_head
from coinfeat.core.heads.unknown import calibrate_rule
from coinfeat.core.options import resolve
from coinfeat.core.provenance import absolute_paths, check_compatible, provenance
from coinfeat.core.store import MANIFEST, Store, open_store

DEFAULT_HEADS_DIR = Path("artifacts") / "heads"


@dataclass(kw_only=True)
class FitResult:
    head_dir: str
    type: str
    params: dict[str, Any]
    classes: list[str]
    train: int
    val: int
    fit_seconds: float
    val_accuracy: float | None
    pretrained: bool
    dropped_conflicts: int = 0
    answer_sets: int | None = None
    """Val photos the answer sets were calibrated on (None: too few val photos for any)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["k=5", "weights=distance"]`` -> ``{"k": 5, "weights": "distance"}`` (numbers parsed)."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CoinfeatError(f"--param {pair!r}: expected key=value, e.g. --param k=5")
        params[key.strip()] = _parse_value(value.strip())
    return params


def _parse_value(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(value.lower(), value)


def default_head_dir(store: Store, head_type: str) -> Path:
    return DEFAULT_HEADS_DIR / store.manifest.dataset.name / head_type


@dataclass
class FitConfig:
    """How ``fit-head`` trains: the head's parameters, whether cached augmented views join the
    train photos, and whether photos filed under two labels are left out."""

    params: dict[str, Any] = field(default_factory=dict)
    use_augmented: bool = False
    drop_conflicts: bool = False
    class_conditional: bool = False
    """Calibrate the answer sets per class (see :mod:`coinfeat.core.answer_sets`)."""


def fit_head(
    features: str | Path,
    head_type: str,
    out: str | Path | None = None,
    config: FitConfig | None = None,
    **options: Any,
) -> FitResult:
    """Fit ``head_type`` on the train split (val for early stopping / selection) and save it in
    ``out``; options are :class:`FitConfig`'s."""
    cfg = resolve(FitConfig, config, options)
    use_augmented, drop_conflicts = cfg.use_augmented, cfg.drop_conflicts
    store = open_store(features)
    head = make_head(head_type, **cfg.params)
    rows = store.rows("train", include_views=use_augmented)
    X_val, val_items = store.select("val")
    dropped = 0
    if drop_conflicts:
        conflicts = conflicting_hashes(store.items)
        keep = ~store.items["sha256"].iloc[rows].isin(conflicts).to_numpy()
        X_val, val_items, dropped = without_conflicts(X_val, val_items, conflicts)
        dropped += int((~keep).sum())
        rows = rows[keep]
    if len(rows) == 0:
        raise CoinfeatError(f"store {store.path} has no usable train vectors")
    items = store.items.iloc[rows].reset_index(drop=True)
    head.fit_from_store(store, rows, items["label"], X_val=X_val, y_val=val_items["label"])
    if isinstance(head, IncrementalHead):
        head.remember(absolute_paths(store, items["path"]))
    val_accuracy = (
        float(np.mean(head.predict(X_val) == val_items["label"].to_numpy())) if len(X_val) else None
    )
    head.meta = provenance(store, use_augmented=use_augmented, training=head.meta.training)
    head.meta.counts = {
        "train": len(rows),
        "val": len(X_val),
        "per_class": {str(k): int(v) for k, v in items["label"].value_counts().sort_index().items()},
    }
    head.meta.val_accuracy = val_accuracy
    head.meta.dropped_conflicts = dropped
    rule = calibrate_rule(head, X_val, val_items["label"])
    head.meta.unknown = rule.to_dict() if rule else None
    head_dir = Path(out) if out else default_head_dir(store, head_type)
    head.save(head_dir)
    proba_val = head.predict_proba(X_val) if len(X_val) else np.zeros((0, len(head.classes_)))
    calibrated = calibrate_beside(
        head_dir,
        proba_val,
        val_items["label"].to_numpy(),
        head.classes_,
        class_conditional=cfg.class_conditional,
    )
    return FitResult(
        head_dir=str(head_dir),
        type=head_type,
        params=head.get_params(),
        classes=head.classes_.tolist(),
        train=len(rows),
        val=len(X_val),
        fit_seconds=round(head.fit_seconds_, 3),
        val_accuracy=val_accuracy,
        pretrained=store.pretrained,
        dropped_conflicts=dropped,
        answer_sets=calibrated,
    )


@dataclass(kw_only=True)
class Calibration:
    """Where a head's answer sets were recalibrated, on how many photos."""

    head_dir: str
    store: str
    photos: int
    left_out: int
    """Photos of classes the head does not know (they cannot calibrate it)."""
    class_conditional: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate_head(
    head_dir: str | Path, data: str | Path, *, class_conditional: bool = False, progress: bool = True
) -> Calibration:
    """Recalibrate a fitted head's answer sets on every labelled photo of ``data``, e.g. some of
    your own photos: from then on the sets hold their confidence on photos like those. ``data`` is
    a store made with the head's extractor, or labelled photos (any dataset layout), which are
    embedded with it into ``head_dir/calibration/<name>``. Keep other photos aside to test on."""
    head = load_head(head_dir)
    if not (Path(data) / MANIFEST).is_file():
        target = Path(head_dir) / "calibration" / Path(data).name
        data = extract_features(data, target, head_extract_config(head, head_dir, progress=progress)).store
    store = open_store(data)
    check_compatible(head, store)
    X, items = store.select(None)
    sets = AnswerSets.calibrate(
        head.predict_proba(X),
        items["label"].to_numpy(),
        head.classes_,
        class_conditional=class_conditional,
        source=str(Path(store.path).resolve()),
    )
    sets.save(head_dir)
    return Calibration(
        head_dir=str(head_dir),
        store=str(store.path),
        photos=len(sets.scores),
        left_out=len(X) - len(sets.scores),
        class_conditional=class_conditional,
    )


def head_extract_config(head: Head, head_dir: str | Path, *, progress: bool = True) -> ExtractConfig:
    """How to embed new photos into a store of their own, as the head's own vectors were (all train)."""
    record = head.meta.extractor(head_dir)
    spec = Embedder(record).spec
    return ExtractConfig(
        backbone=spec.model_file or spec.name,
        weights=spec.weights,
        image_size=spec.image_size,
        resize=record.resize,
        crop=record.crop,
        split=(1.0, 0.0, 0.0),
        progress=progress,
    )


@dataclass(kw_only=True)
class EnrolResult:
    """What ``enrol`` added to a head."""

    head_dir: str
    photos: int
    new_classes: list[str]
    classes: int
    seconds: float
    skipped: int
    store: str
    answer_sets: str
    """What became of the head's answer sets: "kept" (their score does not depend on the classes),
    "removed" (calibrated per class: the new classes have none; recalibrate), or "none"."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def enrol_photos(
    head_dir: str | Path,
    data: str | Path,
    *,
    label: str | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> EnrolResult:
    """Add the coins of ``data`` to a fitted head without refitting it: class folders (or, with
    ``label``, a folder or files of one coin type) embedded with the head's own extractor into
    ``<head>/enrolled/<name>/`` (a store: incremental, crash-safe), then :meth:`Head.enrol`. The
    head is saved in place, or into ``out``."""
    started = time.perf_counter()
    head = load_head(head_dir)
    source = _one_class_folder(data, label, Path(out or head_dir)) if label else Path(data)
    store_dir = Path(out or head_dir) / "enrolled" / safe_name(label or source.name)
    summary = extract_features(source, store_dir, head_extract_config(head, head_dir, progress=progress))
    enrolled = open_store(store_dir)
    X, items = enrolled.select(None)
    if len(X) == 0:
        raise CoinfeatError(f"no readable photo in {data} to enrol ({summary.skipped} skipped)")
    paths = absolute_paths(enrolled, items["path"])
    fresh = ~np.isin(paths, list(getattr(head, "row_paths_", [])))
    labels = items["label"].to_numpy()[fresh]
    before = set(head.classes_)
    if isinstance(head, IncrementalHead):
        head.add(X[fresh], labels, paths[fresh])
    else:
        head.enrol(X[fresh], labels)
    head.meta.label_names = {**enrolled.manifest.label_names, **head.meta.label_names}
    target = Path(out) if out else Path(head_dir)
    if out:
        shutil.copytree(head_dir, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("enrolled"))
    head.save(target)
    return EnrolResult(
        head_dir=str(target),
        photos=int(fresh.sum()),
        new_classes=sorted(str(c) for c in set(head.classes_) - before),
        classes=len(head.classes_),
        seconds=round(time.perf_counter() - started, 2),
        skipped=summary.skipped,
        store=str(store_dir),
        answer_sets=_sets_after_enrolment(target, head.classes_),
    )


def _one_class_folder(data: str | Path, label: str, head_dir: Path) -> Path:
    """A class-folder dataset holding ``data``'s photos (links) under the class ``label``."""
    photos = [Path(p) for p, _ in collect_photos([data])]
    if not photos:
        raise CoinfeatError(f"no photos found in {data}")
    folder = head_dir / "enrolled" / "_incoming" / safe_name(label)
    target = folder / safe_name(label)
    target.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        link = target / photo.name
        if not link.exists():
            link.symlink_to(photo.resolve())
    label_file = folder / "cat_to_name.json"
    label_file.write_text(json.dumps({safe_name(label): label}))
    return folder


def _sets_after_enrolment(head_dir: Path, classes: np.ndarray) -> str:
    sets = AnswerSets.load(head_dir)
    if sets is None:
        return "none"
    if sets.class_conditional:
        (head_dir / ANSWER_SETS_FILE).unlink()
        return "removed"
    replace(sets, classes=np.asarray(classes).astype(str)).save(head_dir)
    return "kept"


def convert_head(head_dir: str | Path) -> Path:
    """Rewrite a head saved by coinfeat 0.1 as a pickle (logreg's ``model.joblib``) as plain arrays.
    Loading a pickle can run code: convert only heads you made yourself."""
    from coinfeat.core.heads import head_types
    from coinfeat.core.heads.record import HeadMeta, read_head_record

    record = read_head_record(head_dir)
    head = head_types()[record["type"]](**record["params"])
    if not hasattr(head, "convert_pickle"):
        raise CoinfeatError(f"{head_dir} is a {record['type']} head: it holds no pickle to convert")
    head.classes_ = np.asarray(record["classes"], dtype=str)
    head.n_features_in_ = int(record["n_features_in"])
    head.fit_seconds_ = record.get("fit_seconds")
    head.meta = HeadMeta.from_dict(record)
    head.convert_pickle(Path(head_dir))
    return head.save(head_dir)
