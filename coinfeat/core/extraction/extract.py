"""``coinfeat extract-features``: embed a coin collection once into an incremental store.

Planning is cheap and TensorFlow-free: files whose size and mtime match the store reuse their
sha256 and vector, so a re-run with nothing new finishes in about a second. Only new or changed
content is decoded and embedded: this module plans (discovery, hashes, groups, splits, views) and
builds the runner; :func:`coinfeat.core.extraction.pipeline.fill_store` does the rest, in this process
or, with ``runner="ray"``, on Ray actors (``coinfeat.core.extraction.distributed``) into a sharded store.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from coinfeat import __version__
from coinfeat.core.data.datasets import Dataset, discover
from coinfeat.core.data.leakage import CONFLICTS_FILE, conflict_pairs, conflict_summary
from coinfeat.core.data.splits import DEFAULT_FRACTIONS
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.extraction.backbones import BackboneSpec, fingerprint, resolve_backbone
from coinfeat.core.extraction.engines import ENGINES, Network, int8_record, open_engine
from coinfeat.core.extraction.pipeline import (
    Distributor,
    Filled,
    ImageReader,
    Runner,
    SequentialDistributor,
    fill_store,
)
from coinfeat.core.extraction.planning import plan
from coinfeat.core.extraction.quantize import DEFAULT_CALIBRATION, calibration_loader, calibration_sample
from coinfeat.core.images.annotations import ANNOTATION_FORMATS, cut_coins, read_annotations
from coinfeat.core.images.crop import CROPS, DEFAULT_CROP, KEPT_WHOLE
from coinfeat.core.images.decode import DEFAULT_IMAGE_SIZE, DEFAULT_MAX_PIXELS, RESIZE_POLICIES
from coinfeat.core.runtime import log
from coinfeat.core.store import (
    OK,
    SKIPPED,
    DatasetInfo,
    Layout,
    Manifest,
    Store,
    atomic_write,
    augment_record,
    item_keys,
    manifest_counts,
    open_committed,
    open_layout,
    recover_all,
    store_lock,
)

DEFAULT_FEATURES_DIR = Path("artifacts") / "features"
DEFAULT_CROPS_DIR = Path("artifacts") / "crops"
RUNNERS = ("local", "ray")


@dataclass
class ExtractConfig:
    """Every option of ``extract-features``; the defaults are the CLI's."""

    backbone: str = "efficientnetb0"
    weights: str = "imagenet"
    image_size: int = DEFAULT_IMAGE_SIZE
    resize: str = "pad"
    crop: str | None = None
    """How each photo is framed (:data:`coinfeat.core.images.crop.CROPS`); None: the store's own crop when
    it exists (so a re-run never changes it), ``DEFAULT_CROP`` for a new store."""
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
    precision: str = "fp32"
    """``int8``: a full-integer TFLite model calibrated on ``calibration`` of the dataset's train photos."""
    calibration: int = DEFAULT_CALIBRATION
    partitions: int = 1
    progress: bool = True
    runner: str = "local"
    """Where the work runs: ``local`` (this process) or ``ray`` (Ray actors, a sharded store)."""
    workers: int = 2
    shards: int | None = None
    """Shards of a new store; None: single for ``local``, 4 for ``ray``."""
    ray_address: str | None = None
    annotations: str | None = None
    """A format of :mod:`coinfeat.core.images.annotations` (or ``auto``): ``data`` holds whole photos with
    marked coins, cut into single-coin photos under ``cut_dir`` before embedding."""
    cut_dir: str | None = None
    """Where marked coins are cut to (default ``artifacts/crops/<data folder name>``)."""

    def validate(self) -> None:
        if self.resize not in RESIZE_POLICIES:
            raise CoinfeatError(f"--resize {self.resize!r}: choose from {', '.join(RESIZE_POLICIES)}")
        if self.crop is not None and self.crop not in CROPS:
            raise CoinfeatError(f"--crop {self.crop!r}: choose from {', '.join(CROPS)}")
        if self.engine not in ENGINES:
            raise CoinfeatError(f"--engine {self.engine!r}: choose from {', '.join(ENGINES)}")
        if self.runner not in RUNNERS:
            raise CoinfeatError(f"--runner {self.runner!r}: choose from {', '.join(RUNNERS)}")
        for name in ("batch_size", "partitions", "workers"):
            if getattr(self, name) < 1:
                raise CoinfeatError(f"--{name.replace('_', '-')} must be at least 1")
        if self.shards is not None and self.shards < 1:
            raise CoinfeatError("--shards must be at least 1")
        if self.limit is not None and self.limit < 0:
            raise CoinfeatError("--limit must be 0 or more")
        if self.augment < 0:
            raise CoinfeatError("--augment must be 0 or more")
        if self.annotations is not None and self.annotations not in ANNOTATION_FORMATS:
            raise CoinfeatError(
                f"--annotations {self.annotations!r}: choose from {', '.join(ANNOTATION_FORMATS)}"
            )


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
    crop: str | None = None
    """How the store's photos are framed (``--crop``; a re-run keeps its store's)."""
    kept_whole: dict[str, int] = field(default_factory=dict)
    """Coin crops: photos of the store embedded whole, by reason (``no coin`` found, too ``small``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_store_dir(dataset_name: str) -> Path:
    return DEFAULT_FEATURES_DIR / dataset_name


def extract_features(
    data: str | Path, out: str | Path | None = None, config: ExtractConfig | None = None, **options: Any
) -> ExtractSummary:
    """Embed every image of ``data`` into the store at ``out`` (only what is not there yet), in this
    process or, with ``runner="ray"``, on Ray actors into a sharded store."""
    cfg = config or ExtractConfig(**options)
    started = time.perf_counter()
    cfg.validate()
    distributor = make_distributor(cfg)
    notes: list[str] = []
    if cfg.annotations:
        data, notes = cut_annotated(data, cfg.annotations, cfg.cut_dir)
    dataset = discover(data, cfg.label_names)
    spec = resolve_backbone(cfg.backbone, cfg.weights, image_size=cfg.image_size, precision=cfg.precision)
    out = Path(out) if out else default_store_dir(dataset.name)
    make_writable_dir(out)
    shards = cfg.shards if cfg.shards is not None else distributor.default_shards
    with store_lock(out), write_errors_explained(out):
        recover_all(out, cfg.force)
        store = open_committed(out)
        if cfg.crop is None:
            cfg = replace(cfg, crop=store.manifest.crop if store is not None else DEFAULT_CROP)
        items, planned = plan(dataset, store, cfg)
        notes = [*notes, *planned]
        spec, int8 = _calibrated(spec, items, dataset, cfg)
        fp = fingerprint(spec, cfg.resize, cfg.crop)
        layout = open_layout(
            out, fp, description=f"{spec.label}, resize {cfg.resize}, crop {cfg.crop}", shards=shards
        )
        filled = fill_store(
            layout,
            items,
            fingerprint=fp,
            root=dataset.root,
            runner=_runner(spec, cfg, layout, fp, cfg.threads or distributor.threads_per_worker, int8),
            distributor=distributor,
            manifest_for=lambda final, engine, previous: build_manifest(
                dataset, spec, cfg=cfg, fp=fp, final=final, engine=engine, previous=previous, int8=int8
            ),
            limit=cfg.limit,
            partitions=cfg.partitions,
        )
        notes = [*notes, *write_conflicts(out)]
    if layout.sharded:
        notes = [*notes, f"sharded store: {len(layout.dirs)} shards, runner {cfg.runner}"]
    check = int8_record(spec) if int8 else None
    if check:
        notes = [
            *notes,
            f"int8: cosine to fp32 on {check['held_out_images']} held-out train photos: median "
            f"{check['median_cosine']:.4f}, min {check['min_cosine']:.4f} (calibrated on "
            f"{check['calibration_images']})",
        ]
    return summarise(
        out,
        filled,
        items=items,
        store=store,
        spec=spec,
        fp=fp,
        notes=notes,
        seconds=time.perf_counter() - started,
        crop=cfg.crop,
    )


def write_conflicts(out: Path) -> list[str]:
    """List label conflicts and cross-split twins of the committed store in ``out`` in
    :data:`~coinfeat.core.data.leakage.CONFLICTS_FILE` (removed when there are none); a note says where."""
    store = open_committed(out)
    target = out / CONFLICTS_FILE
    pairs = conflict_pairs(store.items, store.embeddings) if store is not None else None
    if pairs is None or pairs.empty:
        target.unlink(missing_ok=True)
        return []
    atomic_write(target, pairs.to_csv(index=False))
    return [f"{conflict_summary(pairs)} listed in {target}: fix the labels or the splits"]


def cut_annotated(data: str | Path, fmt: str, cut_dir: str | Path | None) -> tuple[Path, list[str]]:
    """Cut the coins marked on the photos of ``data`` into a class-folder dataset (see
    :mod:`coinfeat.core.images.annotations`); returns its folder and a note per photo left out."""
    photos = read_annotations(data, fmt)
    out = Path(cut_dir) if cut_dir else DEFAULT_CROPS_DIR / Path(data).expanduser().resolve().name
    folder, problems = cut_coins(photos, out)
    coins = sum(len(p.marks) for p in photos)
    notes = [f"cut {coins} marked coins from {len(photos)} annotated photos into {folder}", *problems]
    return folder, notes


def make_distributor(cfg: ExtractConfig) -> Distributor:
    """Where the work runs: this process (``local``) or Ray actors (``ray``)."""
    if cfg.runner == "local":
        return SequentialDistributor()
    from coinfeat.core.extraction.distributed import RayDistributor

    return RayDistributor(cfg.ray_address, cfg.workers)


def _calibrated(spec: BackboneSpec, items: pd.DataFrame, dataset: Dataset, cfg: ExtractConfig):
    """For int8: the spec naming its calibration sample, and the sample (paths relative to the
    dataset root) that the manifest keeps so the same model can be rebuilt; fp32: (spec, None)."""
    if spec.precision == "fp32":
        return spec, None
    sample = calibration_sample(items, cfg.calibration, cfg.seed)
    return replace(spec, calibration=sample["hash"]), {**sample, "root": str(dataset.root)}


def _runner(
    spec: BackboneSpec, cfg: ExtractConfig, layout: Layout, fp: str, threads: int, int8: dict | None = None
) -> Runner:
    """Decode and resize photos, embed them with the backbone, write parts of the store."""
    engine = cfg.engine
    calibration = (
        calibration_loader(int8["root"], int8, spec.image_size, cfg.resize, cfg.crop) if int8 else None
    )

    def open_mapper(probe):
        log.info("loading backbone %s (engine %s)", spec.label, engine)
        return open_engine(Network.backbone(spec, calibration), engine, threads, probe)

    size, resize, max_pixels, batch = spec.image_size, cfg.resize, cfg.max_pixels, cfg.batch_size
    return Runner(
        make_reader=lambda mine: ImageReader(mine, batch, threads, size, resize, max_pixels, crop=cfg.crop),
        open_mapper=open_mapper,
        make_writer=lambda index: layout.writer(fp, index),
        progress=cfg.progress,
    )


def make_writable_dir(out: Path) -> None:
    """Create ``out`` and prove it is writable, or say in one line why not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CoinfeatError(f"cannot write to {out}: {exc.strerror or exc}; choose another --out") from None


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
    *,
    cfg: ExtractConfig,
    fp: str,
    final: pd.DataFrame,
    engine: str | None,
    previous: Manifest | None,
    int8: dict | None = None,
) -> Manifest:
    """The manifest of a store (or one shard) whose committed rows are ``final``."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if int8 is not None:
        verified = int8_record(spec) or ((previous.int8 or {}).get("verification") if previous else None)
        int8 = {**int8, "verification": verified}
    return Manifest(
        precision=spec.precision,
        int8=int8,
        fingerprint=fp,
        pretrained=spec.pretrained,
        weights_note=None if spec.pretrained else "NOT PRETRAINED: random weights, for testing only",
        backbone=spec.describe(),
        image_size=spec.image_size,
        resize=cfg.resize,
        crop=cfg.crop,
        engine=engine or (previous.engine if previous else None),
        versions=_versions(),
        dataset=DatasetInfo(
            root=str(dataset.root),
            source=str(dataset.source or dataset.root),
            name=dataset.name,
            layout=dataset.layout,
            label_names=dataset.label_names,
        ),
        group_regex=cfg.group_regex,
        augment=augment_record(cfg.augment),
        split={"fractions": list(cfg.split), "seed": cfg.seed},
        counts=manifest_counts(final),
        created=(previous.created if previous and previous.created else now),
        updated=now,
    )


def summarise(
    out: Path,
    filled: Filled,
    *,
    items: pd.DataFrame,
    store: Store | None,
    spec: BackboneSpec,
    fp: str,
    notes: list[str],
    seconds: float,
    crop: str | None = None,
) -> ExtractSummary:
    """What a run did, from its committed rows, the keys known before it and its stats."""
    final = filled.final
    skipped = final[final["status"] == SKIPPED]
    ok = final[final["status"] == OK]
    reused = int(pd.Series(item_keys(ok)).isin(filled.before).sum())
    photos = ok[ok["view"] == 0]
    old_photos = store.items.loc[store.items["view"] == 0, "path"] if store is not None else pd.Series([])
    return ExtractSummary(
        store=str(out),
        embedded=len(ok) - reused,
        reused=reused,
        skipped=len(skipped),
        total=len(final),
        pending=len(items) - len(final),
        removed=int((~old_photos.isin(items["path"])).sum()),
        views=int((ok["view"] > 0).sum()),
        seconds=round(seconds, 3),
        fingerprint=fp,
        backbone=spec.label,
        pretrained=spec.pretrained,
        engine=filled.stats.engine,
        skipped_reasons={str(k): int(v) for k, v in skipped["error"].value_counts().items()},
        splits={str(k): int(v) for k, v in photos["split"].value_counts().items()},
        stage_seconds=filled.stats.stage_seconds(),
        notes=notes,
        crop=crop,
        kept_whole={str(k): int(v) for k, v in photos["framing"].value_counts().items() if k in KEPT_WHOLE},
    )
