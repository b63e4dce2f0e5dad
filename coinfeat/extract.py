"""``coinfeat extract-features``: embed a coin collection once into an incremental store.

Planning is cheap and TensorFlow-free: files whose size and mtime match the store reuse their
sha256 and vector, so a re-run with nothing new finishes in about a second. Only new or changed
content is decoded and embedded, through the reader -> mapper -> writer pipeline.

The steps are public so another distributor (``coinfeat.distributed`` for Ray) reuses them:
``prepare`` -> ``plan`` -> ``work_list`` -> embed and write parts -> ``final_rows`` ->
``store.commit`` with ``build_manifest`` -> ``summarise``.
"""

from __future__ import annotations

import errno
import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from coinfeat import __version__
from coinfeat.augment import AUGMENT_VERSION
from coinfeat.backbones import BackboneSpec, fingerprint, resolve_backbone
from coinfeat.datasets import Dataset, discover, group_of
from coinfeat.engines import open_engine
from coinfeat.errors import CoinfeatError
from coinfeat.images import DEFAULT_IMAGE_SIZE, DEFAULT_MAX_PIXELS, RESIZE_POLICIES
from coinfeat.pipeline import ImageReader, Runner, SequentialDistributor, WorkItem
from coinfeat.runtime import default_threads, log
from coinfeat.splits import DEFAULT_FRACTIONS, resolve_splits
from coinfeat.store import (
    ITEM_COLUMNS,
    OK,
    SKIPPED,
    Known,
    PartWriter,
    Store,
    check_fingerprint,
    commit,
    item_keys,
    load_known,
    open_store,
    read_manifest,
    recover,
    store_lock,
    wipe,
)

DEFAULT_FEATURES_DIR = Path("artifacts") / "features"


@dataclass
class ExtractConfig:
    """Every option of ``extract-features``; the defaults are the CLI's."""

    backbone: str = "efficientnetb0"
    weights: str = "imagenet"
    image_size: int = DEFAULT_IMAGE_SIZE
    resize: str = "pad"
    engine: str = "auto"
    batch_size: int = 32
    threads: int | None = None
    limit: int | None = None
    force: bool = False
    group_regex: str | None = None
    label_names: str | None = None
    split: tuple[float, float, float] = DEFAULT_FRACTIONS
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    augment: int = 0
    partitions: int = 1
    progress: bool = True

    def validate(self) -> None:
        if self.resize not in RESIZE_POLICIES:
            raise CoinfeatError(f"--resize {self.resize!r}: choose from {', '.join(RESIZE_POLICIES)}")
        for name in ("batch_size", "partitions"):
            if getattr(self, name) < 1:
                raise CoinfeatError(f"--{name.replace('_', '-')} must be at least 1")
        if self.limit is not None and self.limit < 0:
            raise CoinfeatError("--limit must be 0 or more")
        if self.augment < 0:
            raise CoinfeatError("--augment must be 0 or more")


@dataclass
class ExtractSummary:
    """What a run did; ``embedded + reused + skipped == total`` rows of the store."""

    store: str
    embedded: int
    reused: int
    skipped: int
    total: int
    pending: int
    removed: int
    views: int
    seconds: float
    fingerprint: str
    backbone: str
    pretrained: bool
    engine: str | None
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_store_dir(dataset_name: str) -> Path:
    return DEFAULT_FEATURES_DIR / dataset_name


def extract_features(
    data: str | Path, out: str | Path | None = None, config: ExtractConfig | None = None, **options: Any
) -> ExtractSummary:
    """Embed every image of ``data`` into the store at ``out`` (only what is not there yet)."""
    cfg = config or ExtractConfig(**options)
    started = time.perf_counter()
    dataset, spec, fp, out = prepare(data, out, cfg)
    with store_lock(out), write_errors_explained(out):
        recover(out)
        if cfg.force:
            wipe(out)
        manifest = read_manifest(out)
        check_fingerprint(out, manifest, fp, f"{spec.label}, resize {cfg.resize}")
        store = open_store(out) if manifest else None
        known = load_known(out, store, fp)
        items, notes = plan(dataset, store, cfg)
        before = set(known.vectors) | set(known.skipped)
        work = work_list(items, known, dataset, cfg.limit)
        stats = _embed(work, spec, cfg, out, fp)
        known = load_known(out, store, fp)
        final = final_rows(items, known)
        if store is None or known.part_files or not final.equals(store.items[ITEM_COLUMNS]):
            commit(out, final, known, build_manifest(dataset, spec, cfg, fp, final, stats.engine, manifest))
    summary = summarise(
        out, final, items, before, store, spec, fp, stats, notes, dataset, time.perf_counter() - started
    )
    return summary


def prepare(data: str | Path, out: str | Path | None, cfg: ExtractConfig):
    """Checks and choices shared by every way of extracting: options, dataset, backbone,
    fingerprint and a writable output folder. Returns (dataset, spec, fingerprint, out)."""
    cfg.validate()
    dataset = discover(data, cfg.label_names)
    spec = resolve_backbone(cfg.backbone, cfg.weights, cfg.image_size)
    out = Path(out) if out else default_store_dir(dataset.name)
    _make_dir(out)
    return dataset, spec, fingerprint(spec, cfg.resize), out


@contextmanager
def write_errors_explained(out: Path) -> Iterator[None]:
    """A full disk or a read-only store stops the run with one line; finished batches stay on disk."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        raise CoinfeatError(
            f"cannot write to {out}: {exc.strerror}; every finished batch is kept, so free space "
            "(or fix permissions) and run the same command again to continue"
        ) from None


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CoinfeatError(f"cannot write to {out}: {exc.strerror or exc}; choose another --out") from None


# --------------------------------------------------------------------------- planning


def plan(dataset: Dataset, store: Store | None, cfg: ExtractConfig) -> tuple[pd.DataFrame, list[str]]:
    """One row per discovered file with its sha256 (reused when size and mtime are unchanged),
    group and split; unreadable files get status ``skipped`` and the reason."""
    items = dataset.items.copy()
    items["group"] = group_of(items["path"], cfg.group_regex)
    previous = _previous_hashes(store)
    paths = [dataset.absolute(p) for p in items["path"]]
    with ThreadPoolExecutor(cfg.threads or default_threads()) as pool:
        facts = list(pool.map(lambda pair: _file_facts(*pair), zip(paths, items["path"].map(previous.get))))
    facts = [
        (None, 0, 0, error) if isinstance(error, str) else fact for fact, error in zip(facts, items["error"])
    ]
    items["sha256"] = [f[0] for f in facts]
    items["size"] = [f[1] for f in facts]
    items["mtime_ns"] = [f[2] for f in facts]
    items["status"] = [OK if f[0] else SKIPPED for f in facts]
    items["error"] = [f[3] for f in facts]
    items["view"] = 0
    sticky = _sticky_splits(store, items)
    result = resolve_splits(items, cfg.split, cfg.seed, sticky)
    items["split"] = result.splits
    notes = dataset.notes + result.notes + _content_warnings(items)
    return with_views(items[ITEM_COLUMNS], cfg.augment), notes


def with_views(items: pd.DataFrame, views: int) -> pd.DataFrame:
    """Append ``views`` augmented rows (view 1..N) for every readable train photo."""
    base = items[(items["split"] == "train") & (items["status"] == OK)]
    copies = [base.assign(view=v) for v in range(1, views + 1)]
    return pd.concat([items, *copies], ignore_index=True) if copies else items


def _previous_hashes(store: Store | None) -> dict[str, tuple[int, int, str]]:
    if store is None:
        return {}
    cols = store.items[["path", "size", "mtime_ns", "sha256"]].dropna()
    return {p: (int(s), int(m), h) for p, s, m, h in cols.itertuples(index=False)}


def _file_facts(path: Path, previous: tuple[int, int, str] | None) -> tuple[str | None, int, int, str | None]:
    """(sha256, size, mtime_ns, error) for a file, hashing only when it changed."""
    try:
        stat = path.stat()
        if previous and previous[:2] == (stat.st_size, stat.st_mtime_ns):
            return previous[2], stat.st_size, stat.st_mtime_ns, None
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest(), stat.st_size, stat.st_mtime_ns, None
    except FileNotFoundError:
        return None, 0, 0, "file not found (or a broken link)"
    except PermissionError:
        return None, 0, 0, "permission denied"
    except OSError as exc:
        return None, 0, 0, f"cannot read file: {exc.strerror or exc}"


def _sticky_splits(store: Store | None, items: pd.DataFrame) -> dict[str, str]:
    """Groups already in the store keep their split, so old heads stay comparable."""
    if store is None:
        return {}
    old = store.items[["group", "split"]].dropna().drop_duplicates("group")
    present = set(items["group"])
    return {g: s for g, s in old.itertuples(index=False) if g in present}


def _content_warnings(items: pd.DataFrame) -> list[str]:
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


def work_list(items: pd.DataFrame, known: Known, dataset: Dataset, limit: int | None) -> list[WorkItem]:
    """Vectors still to compute, clean photos first; views of photos known to fail are left out."""
    todo = items.assign(key=item_keys(items))
    done = set(known.vectors) | set(known.skipped)
    todo = todo[(todo["status"] == OK) & ~todo["key"].isin(done) & ~todo["sha256"].isin(known.skipped)]
    todo = todo.drop_duplicates("key").sort_values("view", kind="stable")
    if limit is not None:
        todo = todo.head(limit)
    return [
        WorkItem(key, dataset.absolute(path), int(view))
        for key, path, view in zip(todo["key"], todo["path"], todo["view"])
    ]


# --------------------------------------------------------------------------- embedding


def _embed(work: list[WorkItem], spec: BackboneSpec, cfg: ExtractConfig, out: Path, fp: str):
    threads = cfg.threads or default_threads()

    def open_mapper(probe):
        log.info("loading backbone %s (engine %s)", spec.label, cfg.engine)
        return open_engine(spec, cfg.engine, threads, probe)

    runner = Runner(
        make_reader=lambda mine: ImageReader(
            mine, cfg.batch_size, threads, spec.image_size, cfg.resize, cfg.max_pixels
        ),
        open_mapper=open_mapper,
        make_writer=lambda index: PartWriter(out, fp, index),
        progress=cfg.progress,
    )
    return SequentialDistributor().run(runner, work, cfg.partitions)


def final_rows(items: pd.DataFrame, known) -> pd.DataFrame:
    """Rows that have a vector or a recorded skip; files not reached yet (--limit) wait."""
    items = items.copy()
    keys = pd.Series(item_keys(items), index=items.index)
    has_vector = keys.isin(known.vectors.keys())
    failed = keys.isin(known.skipped.keys()) & ~has_vector
    items.loc[failed, "status"] = SKIPPED
    items.loc[failed, "error"] = keys[failed].map(known.skipped)
    keep = has_vector | ((failed | (items["status"] == SKIPPED)) & (items["view"] == 0))
    return items[keep].reset_index(drop=True)[ITEM_COLUMNS]


def _versions() -> dict[str, str]:
    found = {"coinfeat": __version__}
    for package in ("tensorflow", "keras", "numpy", "pillow"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def build_manifest(
    dataset: Dataset,
    spec: BackboneSpec,
    cfg: ExtractConfig,
    fp: str,
    final: pd.DataFrame,
    engine: str | None,
    previous: dict | None,
) -> dict[str, Any]:
    """The ``manifest.json`` of a store (or one shard) whose committed rows are ``final``."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ok = final[(final["status"] == OK) & (final["view"] == 0)]
    return {
        "fingerprint": fp,
        "pretrained": spec.pretrained,
        "weights_note": None if spec.pretrained else "NOT PRETRAINED: random weights, for testing only",
        "backbone": spec.describe(),
        "image_size": spec.image_size,
        "resize": cfg.resize,
        "engine": engine or (previous or {}).get("engine"),
        "versions": _versions(),
        "dataset": {
            "root": str(dataset.root),
            "name": dataset.name,
            "layout": dataset.layout,
            "label_names": dataset.label_names,
        },
        "group_regex": cfg.group_regex,
        "augment": {"views_per_train_photo": cfg.augment, "version": AUGMENT_VERSION},
        "split": {"fractions": list(cfg.split), "seed": cfg.seed},
        "counts": {
            "items": len(final),
            "ok": len(ok),
            "skipped": int((final["status"] == SKIPPED).sum()),
            "views": int(((final["status"] == OK) & (final["view"] > 0)).sum()),
            "per_split": {str(k): int(v) for k, v in ok["split"].value_counts().items()},
            "per_class": {str(k): int(v) for k, v in ok["label"].value_counts().sort_index().items()},
        },
        "created": (previous or {}).get("created", now),
        "updated": now,
    }


def summarise(out, final, items, before, store, spec, fp, stats, notes, dataset, seconds) -> ExtractSummary:
    """What a run did, from its committed rows, the keys known ``before`` it and its stats."""
    skipped = final[final["status"] == SKIPPED]
    ok = final[final["status"] == OK]
    reused = int(pd.Series(item_keys(ok)).isin(before).sum())
    photos = ok[ok["view"] == 0]
    old_photos = store.items.loc[store.items["view"] == 0, "path"] if store is not None else pd.Series([])
    removed = int((~old_photos.isin(items["path"])).sum())
    return ExtractSummary(
        store=str(out),
        embedded=len(ok) - reused,
        reused=reused,
        skipped=len(skipped),
        total=len(final),
        pending=len(items) - len(final),
        removed=removed,
        views=int((ok["view"] > 0).sum()),
        seconds=round(seconds, 3),
        fingerprint=fp,
        backbone=spec.label,
        pretrained=spec.pretrained,
        engine=stats.engine,
        skipped_reasons={str(k): int(v) for k, v in skipped["error"].value_counts().items()},
        splits={str(k): int(v) for k, v in photos["split"].value_counts().items()},
        stage_seconds={
            "read": round(stats.read_seconds, 3),
            "infer": round(stats.infer_seconds, 3),
            "write": round(stats.write_seconds, 3),
            **({"startup": round(stats.startup_seconds, 3)} if stats.startup_seconds else {}),
        },
        notes=notes,
    )
