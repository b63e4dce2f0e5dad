"""Extraction on Ray: the same reader and engine, run by a pool of Ray actors, into a sharded store.

Planning (discovery, hashing, splits) happens once in the driver, exactly as for a local run.
Stage seconds differ from a local run's: ``read`` and ``infer`` are summed over actors (busy
actor-seconds decoding and embedding), ``write`` is the driver writing parts, ``startup`` is
the wait for the first batch (Ray start, actors loading the model).
The work then becomes a Ray Dataset; ``map_batches`` hands batches to ``workers`` actors, each
of which loads the frozen model once and decodes and embeds its batches. The driver writes every
finished batch as a part of the shard its photo belongs to (by sha256), then commits each shard
as an ordinary store and lists them in ``shards.json``. Without an address Ray starts locally, so
the same code runs on a laptop and, with ``--ray-address auto``, on a cluster.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from coinfeat.backbones import BackboneSpec
from coinfeat.errors import CoinfeatError, DecodeError, FingerprintMismatch
from coinfeat.extract import (
    ExtractConfig,
    ExtractSummary,
    build_manifest,
    final_rows,
    plan,
    prepare,
    summarise,
    work_list,
    write_errors_explained,
)
from coinfeat.pipeline import ImageReader, RunStats, WorkItem
from coinfeat.shards import is_sharded, read_shards, shard_name, shard_of, write_shards
from coinfeat.store import (
    ITEM_COLUMNS,
    PartWriter,
    commit,
    load_known,
    open_committed,
    open_store,
    read_manifest,
    recover,
    store_lock,
    wipe,
)

DEFAULT_SHARDS = 4


class EmbedActor:
    """A Ray actor: loads the frozen model once, then decodes and embeds whole batches."""

    def __init__(self, spec: BackboneSpec, resize: str, max_pixels: int, threads: int) -> None:
        from coinfeat.engines import open_engine

        self.reader = ImageReader([], 1, 1, spec.image_size, resize, max_pixels)
        self.engine = open_engine(spec, "auto", threads)
        self.size = spec.image_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        images, errors = [], []
        for key, path, view in zip(batch["key"], batch["path"], batch["view"]):
            try:
                images.append(self.reader.load(WorkItem(str(key), Path(str(path)), int(view))))
                errors.append("")
            except DecodeError as exc:
                images.append(np.zeros((self.size, self.size, 3), np.uint8))
                errors.append(str(exc))
        decoded = time.perf_counter()
        vectors = self.engine.embed(np.stack(images).astype(np.float32))
        rows = len(images)
        return {
            "key": batch["key"],
            "shard": batch["shard"],
            "vector": vectors,
            "error": np.array(errors),
            "read_s": np.full(rows, (decoded - started) / rows),
            "infer_s": np.full(rows, (time.perf_counter() - decoded) / rows),
        }


def extract_features_ray(
    data: str | Path,
    out: str | Path | None = None,
    config: ExtractConfig | None = None,
    address: str | None = None,
    workers: int = 2,
    shards: int | None = None,
) -> ExtractSummary:
    """Like :func:`~coinfeat.extract.extract_features`, distributed on Ray, into a sharded store."""
    try:
        import ray
    except ImportError:
        raise CoinfeatError("Ray is not installed: pip install 'coinfeat[ray]'") from None
    if workers < 1 or (shards is not None and shards < 1):
        raise CoinfeatError("--workers and --shards must be at least 1")
    cfg = config or ExtractConfig()
    started = time.perf_counter()
    dataset, spec, fp, out = prepare(data, out, cfg)
    with store_lock(out), write_errors_explained(out):
        if cfg.force:
            _wipe_sharded(out)
        if read_manifest(out) is not None:
            raise CoinfeatError(f"{out} is a single (unsharded) store; use another --out for a Ray run")
        existing = read_shards(out) if is_sharded(out) else None
        names = existing["shards"] if existing else [shard_name(i) for i in range(shards or DEFAULT_SHARDS)]
        if existing and existing["fingerprint"] != fp:
            raise FingerprintMismatch(
                f"sharded store {out} holds vectors from another extractor "
                f"({existing['fingerprint']}); this run is {fp} ({spec.label}). "
                "Use --force to rebuild it or --out for a new store"
            )
        store = open_store(out) if existing else None
        items, notes = plan(dataset, store, cfg)
        items["shard"] = [shard_of(sha, len(names)) for sha in items["sha256"]]
        known, work = {}, []
        for index, name in enumerate(names):
            (out / name).mkdir(exist_ok=True)
            recover(out / name)
            known[index] = load_known(out / name, open_committed(out / name), fp)
            mine = items[items["shard"] == index]
            work += [(index, w) for w in work_list(mine, known[index], dataset, None)]
        if cfg.limit is not None:
            work = work[: cfg.limit]
        before = set().union(*(set(k.vectors) | set(k.skipped) for k in known.values()))
        stats = _run_on_ray(ray, work, spec, cfg, out, names, fp, address, workers)
        finals = []
        for index, name in enumerate(names):
            shard_known = load_known(out / name, open_committed(out / name), fp)
            final = final_rows(items[items["shard"] == index], shard_known)
            commit(
                out / name,
                final,
                shard_known,
                build_manifest(dataset, spec, cfg, fp, final, stats.engine, read_manifest(out / name)),
            )
            finals.append(final)
        write_shards(out, names, fp)
    final = pd.concat(finals, ignore_index=True)
    notes = [*notes, f"sharded store: {len(names)} shards, {workers} Ray worker(s)"]
    return summarise(
        out,
        final,
        items[ITEM_COLUMNS],
        before,
        store,
        spec,
        fp,
        stats,
        notes,
        dataset,
        time.perf_counter() - started,
    )


def _run_on_ray(
    ray,
    work: list[tuple[int, WorkItem]],
    spec: BackboneSpec,
    cfg: ExtractConfig,
    out: Path,
    names: list[str],
    fp: str,
    address: str | None,
    workers: int,
) -> RunStats:
    stats = RunStats(engine="tflite/keras on Ray" if work else None)
    if not work:
        return stats
    started = time.perf_counter()
    _start_ray(ray, address)
    rows = [{"key": w.key, "path": str(w.path), "view": w.view, "shard": shard} for shard, w in work]
    dataset = ray.data.from_items(rows).map_batches(
        EmbedActor,
        fn_constructor_kwargs={
            "spec": spec,
            "resize": cfg.resize,
            "max_pixels": cfg.max_pixels,
            "threads": max(1, (cfg.threads or 1)),
        },
        batch_size=cfg.batch_size,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
        batch_format="numpy",
    )
    writers = {i: PartWriter(out / name, fp, i) for i, name in enumerate(names)}
    bar = tqdm(
        total=len(work), unit="img", desc=f"embedding on Ray ({workers} workers)", disable=not cfg.progress
    )
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        bar.update(len(batch["key"]))
        received = time.perf_counter()
        if not stats.batches:
            stats.startup_seconds = received - started
        _write_batch(batch, writers)
        stats.embedded += int((batch["error"] == "").sum())
        stats.batches += 1
        stats.read_seconds += float(batch["read_s"].sum())
        stats.infer_seconds += float(batch["infer_s"].sum())
        stats.write_seconds += time.perf_counter() - received
    bar.close()
    return stats


def _start_ray(ray, address: str | None) -> None:
    """Join the cluster at ``address`` or start a local Ray. Ray's own progress output is off
    (coinfeat shows one bar); its logs and warnings stay quiet unless --debug; errors still raise."""
    quiet = not logging.getLogger("coinfeat").isEnabledFor(logging.DEBUG)
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
            logging_level=logging.ERROR if quiet else logging.INFO,
        )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.ERROR)


def _write_batch(batch: dict[str, np.ndarray], writers: dict[int, PartWriter]) -> None:
    """One part per shard the batch touches: its vectors, and its failures as recorded skips."""
    for shard in np.unique(batch["shard"]):
        mine = batch["shard"] == shard
        ok = mine & (batch["error"] == "")
        failed = mine & (batch["error"] != "")
        writers[int(shard)].write(
            [str(k) for k in batch["key"][ok]],
            batch["vector"][ok],
            [(str(k), str(e)) for k, e in zip(batch["key"][failed], batch["error"][failed])],
        )


def _wipe_sharded(out: Path) -> None:
    wipe(out)
    if is_sharded(out):
        for name in read_shards(out)["shards"]:
            if (out / name).is_dir():
                wipe(out / name)
        (out / "shards.json").unlink()
