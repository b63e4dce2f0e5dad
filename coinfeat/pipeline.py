"""The inference pipeline: reader (files -> decoded batches), mapper (batch -> vectors),
writer (vectors -> store parts), composed by a runner that handles partition i of n.

A distributor decides where partitions run. :class:`SequentialDistributor` runs them one
after another in this process; scaling out means adding a distributor, not a rewrite.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from coinfeat.augment import augment
from coinfeat.errors import DecodeError
from coinfeat.images import DEFAULT_MAX_PIXELS, decode, fit_square, read_bytes
from coinfeat.runtime import log


@dataclass(frozen=True)
class WorkItem:
    """One vector to compute: its key (content hash, plus view), the file, and the view number."""

    key: str
    path: Path
    view: int = 0


@dataclass
class Batch:
    keys: list[str]
    images: np.ndarray  # (B, S, S, 3) float32, 0..255
    failures: list[tuple[str, str]]


class Mapper(Protocol):
    def embed(self, images: np.ndarray) -> np.ndarray: ...


class Writer(Protocol):
    def write(self, keys: list[str], vectors: np.ndarray, failures: list[tuple[str, str]]) -> None: ...


class ImageReader:
    """Decodes and resizes images on a thread pool, a few batches ahead of the consumer."""

    def __init__(
        self,
        work: Sequence[WorkItem],
        batch_size: int,
        threads: int,
        image_size: int,
        resize: str,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        prefetch_batches: int = 2,
    ) -> None:
        self.work = work
        self.batch_size = batch_size
        self.threads = threads
        self.image_size = image_size
        self.resize = resize
        self.max_pixels = max_pixels
        self.window = batch_size * (prefetch_batches + 1)

    def load(self, item: WorkItem) -> np.ndarray:
        img = decode(read_bytes(item.path), draft_size=self.image_size, max_pixels=self.max_pixels)
        img = fit_square(img, self.image_size, self.resize)
        if item.view:
            img = augment(img, item.key)
        return np.asarray(img, dtype=np.uint8)

    def __iter__(self) -> Iterator[Batch]:
        with ThreadPoolExecutor(self.threads, thread_name_prefix="coinfeat-decode") as pool:
            todo = iter(self.work)
            pending: deque[tuple[WorkItem, Future]] = deque()

            def refill() -> None:
                while len(pending) < self.window:
                    item = next(todo, None)
                    if item is None:
                        return
                    pending.append((item, pool.submit(self.load, item)))

            refill()
            while pending:
                taken = [pending.popleft() for _ in range(min(self.batch_size, len(pending)))]
                refill()
                yield self._assemble(taken)

    def _assemble(self, taken: list[tuple[WorkItem, Future]]) -> Batch:
        keys, arrays, failures = [], [], []
        for item, future in taken:
            try:
                arrays.append(future.result())
                keys.append(item.key)
            except DecodeError as exc:
                failures.append((item.key, str(exc)))
        size = self.image_size
        images = np.stack(arrays).astype(np.float32) if arrays else np.zeros((0, size, size, 3), np.float32)
        return Batch(keys, images, failures)


@dataclass
class RunStats:
    embedded: int = 0
    failed: int = 0
    batches: int = 0
    read_seconds: float = 0.0
    infer_seconds: float = 0.0
    write_seconds: float = 0.0
    startup_seconds: float = 0.0
    """Distributed runs only: until the first batch came back (cluster start, actors loading the model)."""
    engine: str | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)

    def merge(self, other: RunStats) -> None:
        for name in ("embedded", "failed", "batches", "read_seconds", "infer_seconds", "write_seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.engine = self.engine or other.engine
        self.failures += other.failures


def partition(work: Sequence[WorkItem], index: int, count: int) -> list[WorkItem]:
    """Contiguous slice ``index`` of ``count`` (so each partition's files stay together)."""
    size = -(-len(work) // count) if work else 0
    return list(work[index * size : (index + 1) * size])


@dataclass
class Runner:
    """Runs one partition: read -> map -> write, logging seconds per stage and batch.

    ``open_mapper`` receives the first decoded batch, so a new engine can be verified on real
    images, and is not called at all when nothing decodes (no model load for nothing).
    """

    make_reader: Callable[[Sequence[WorkItem]], ImageReader]
    open_mapper: Callable[[np.ndarray], Mapper]
    make_writer: Callable[[int], Writer]
    progress: bool = True

    def run(self, work: Sequence[WorkItem], index: int = 0, count: int = 1) -> RunStats:
        mine = partition(work, index, count)
        stats = RunStats()
        if not mine:
            return stats
        writer = self.make_writer(index)
        mapper: Mapper | None = None
        desc = "embedding" if count == 1 else f"embedding {index + 1}/{count}"
        with (
            logging_redirect_tqdm(loggers=[log]),
            tqdm(total=len(mine), unit="img", desc=desc, disable=not self.progress, smoothing=0.1) as bar,
        ):
            waited = time.perf_counter()
            for batch in self.make_reader(mine):
                t_read = time.perf_counter() - waited
                t0 = time.perf_counter()
                if batch.keys and mapper is None:
                    mapper = self.open_mapper(batch.images)
                    stats.engine = getattr(mapper, "name", type(mapper).__name__)
                vectors = mapper.embed(batch.images) if batch.keys else np.zeros((0, 0), np.float32)
                t1 = time.perf_counter()
                writer.write(batch.keys, vectors, batch.failures)
                t2 = time.perf_counter()
                log.debug(
                    "partition %d batch %d: %d images, read %.3fs infer %.3fs write %.3fs",
                    index,
                    stats.batches,
                    len(batch.keys) + len(batch.failures),
                    t_read,
                    t1 - t0,
                    t2 - t1,
                )
                stats.batches += 1
                stats.embedded += len(batch.keys)
                stats.failed += len(batch.failures)
                stats.failures += batch.failures
                stats.read_seconds += t_read
                stats.infer_seconds += t1 - t0
                stats.write_seconds += t2 - t1
                bar.update(len(batch.keys) + len(batch.failures))
                waited = time.perf_counter()
        return stats


class SequentialDistributor:
    """Runs partitions 0..n-1 one after another in this process."""

    def run(self, runner: Runner, work: Sequence[WorkItem], partitions: int = 1) -> RunStats:
        total = RunStats()
        for index in range(partitions):
            total.merge(runner.run(work, index, partitions))
        return total
