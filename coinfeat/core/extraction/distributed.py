"""A Ray distributor: the same runner's reader and mapper run in a pool of Ray actors.

Planning, locking, fingerprint checks and commits stay in the driver
(:func:`coinfeat.core.extraction.pipeline.fill_store`); this module only decides where batches are decoded and
embedded. The work becomes a Ray Dataset; ``map_batches`` hands batches to ``workers`` actors,
each of which receives the runner, opens its mapper (loads the frozen model) once, and decodes
and embeds whole batches. The driver writes every finished batch with the runner's writer (for a
sharded store, into the shard its photo belongs to). Without an address Ray starts locally, so
the same code runs on a laptop and, with ``ray_address="auto"``, on a cluster.

Stage seconds differ from a local run's: ``read`` and ``infer`` are summed over actors (busy
actor-seconds), ``write`` is the driver writing parts, ``startup`` is the wait for the first
batch (Ray start, actors loading the model).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coinfeat.core import errors
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.extraction.pipeline import Batch, Runner, RunStats, WorkItem

DEFAULT_SHARDS = 4


class RunnerActor:
    """A Ray actor: decodes and embeds whole batches with its own copy of the runner."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self._embed(batch)
        except CoinfeatError as exc:  # sent back as data: Ray keeps only the text of a user error
            n = len(batch["key"])
            return {
                "key": batch["key"],
                "vector": np.zeros((n, 1), np.float32),
                "error": np.full(n, ""),
                "framing": np.full(n, ""),
                "read_s": np.zeros(n),
                "infer_s": np.zeros(n),
                "engine": np.full(n, ""),
                "fatal": np.full(n, f"{type(exc).__name__}:{exc}"),
            }

    def _embed(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        columns = zip(batch["key"], batch["path"], batch["view"])
        work = [WorkItem(str(k), Path(str(p)), int(v)) for k, p, v in columns]
        decoded = list(self.runner.make_reader(work))
        read = time.perf_counter()
        vectors: dict[str, np.ndarray] = {}
        errors: dict[str, str] = {}
        framing: dict[str, str | None] = {}
        for part in decoded:
            errors.update(part.failures)
            framing.update(zip(part.keys, part.framing))
            if part.keys:
                vectors.update(zip(part.keys, self.runner.map(part)))
        sample = self._sample_row(vectors, decoded)
        full = np.zeros((len(work), *sample.shape), sample.dtype)
        for n, item in enumerate(work):
            if item.key in vectors:
                full[n] = vectors[item.key]
        share = 1.0 / len(work)
        return {
            "key": batch["key"],
            "vector": full,
            "error": np.array([errors.get(item.key, "") for item in work]),
            "framing": np.array([framing.get(item.key) or "" for item in work]),
            "read_s": np.full(len(work), (read - started) * share),
            "infer_s": np.full(len(work), (time.perf_counter() - read) * share),
            "engine": np.array([self.runner.engine or ""] * len(work)),
            "fatal": np.full(len(work), ""),
        }

    def _sample_row(self, vectors: dict[str, np.ndarray], decoded: list[Batch]) -> np.ndarray:
        """One output row: every returned block needs full rows, and when no photo of a batch
        decodes, embedding one blank image tells their shape and type."""
        if vectors:
            return next(iter(vectors.values()))
        blank = np.zeros((1, *decoded[0].images.shape[1:]), np.float32)
        return self.runner.map(Batch(["blank"], blank, []))[0]


class RayDistributor:
    """Runs a runner's reading and mapping on ``workers`` Ray actors; the driver writes."""

    default_shards: int | None = DEFAULT_SHARDS
    threads_per_worker = 1

    def __init__(self, address: str | None = None, workers: int = 2) -> None:
        try:
            import ray
        except ImportError:
            raise CoinfeatError("Ray is not installed: pip install 'coinfeat[ray]'") from None
        if workers < 1:
            raise CoinfeatError("--workers must be at least 1")
        self.ray, self.address, self.workers = ray, address, workers

    def run(self, runner: Runner, work: Sequence[WorkItem], partitions: int = 1) -> RunStats:
        stats = RunStats()
        if not work:
            return stats
        started = time.perf_counter()
        ray = self.ray
        _start_ray(ray, self.address)
        rows = [{"key": w.key, "path": str(w.path), "view": w.view} for w in work]
        dataset = ray.data.from_items(rows).map_batches(
            RunnerActor,
            fn_constructor_kwargs={"runner": runner},
            batch_size=_reader_batch(runner, work),
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=1,
            batch_format="numpy",
        )
        writer = runner.make_writer(0)
        with runner.bar(len(work), f"{runner.desc} on Ray ({self.workers} workers)") as bar:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                _raise_fatal(batch)
                received = time.perf_counter()
                if not stats.batches:
                    stats.startup_seconds = received - started
                ok = batch["error"] == ""
                failures = [(str(k), str(e)) for k, e in zip(batch["key"][~ok], batch["error"][~ok])]
                framing = [str(f) or None for f in batch["framing"][ok]]
                writer.write([str(k) for k in batch["key"][ok]], batch["vector"][ok], failures, framing)
                stats.record(
                    int(ok.sum()),
                    float(batch["read_s"].sum()),
                    float(batch["infer_s"].sum()),
                    time.perf_counter() - received,
                )
                stats.engine = stats.engine or _engine_name(batch["engine"])
                bar.update(len(batch["key"]))
        return stats


def _raise_fatal(batch: dict[str, np.ndarray]) -> None:
    """Re-raise, in the driver, a coinfeat error an actor met (weights that cannot be downloaded,
    a damaged model file): Ray would deliver it as a string inside its own task error, and callers
    handle it as they do without Ray (the demo falls back to random weights offline)."""
    fatal = str(batch["fatal"][0]) if len(batch["fatal"]) else ""
    if fatal:
        name, _, message = fatal.partition(":")
        raise getattr(errors, name, CoinfeatError)(message)


def _reader_batch(runner: Runner, work: Sequence[WorkItem]) -> int:
    """The batch size the runner's reader uses, so that one Ray batch is one reader batch."""
    return getattr(runner.make_reader(work[:0]), "batch_size", 32)


def _engine_name(names: np.ndarray) -> str | None:
    found = [str(n) for n in names if str(n)]
    return f"{found[0]} on Ray" if found else None


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
