"""The inference pipeline: reader (files -> decoded batches), mapper (batch -> vectors), writer
(vectors -> store parts), composed by a :class:`Runner`; a distributor decides where the work runs.

:class:`SequentialDistributor` runs it in this process;
``coinfeat.core.extraction.distributed.RayDistributor`` hands batches to Ray actors that run the
same runner's reader and mapper while this process writes. :func:`fill_store` is the one write path
every stage that runs a network over many photos goes through (feature extraction, fine-tuning's
activation cache): find what is already stored, run what is missing, commit each store folder, and
never lose a finished batch.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from coinfeat.core.errors import DecodeError
from coinfeat.core.images.augment import augment
from coinfeat.core.images.decode import DEFAULT_MAX_PIXELS, read_bytes
from coinfeat.core.images.model_input import model_square
from coinfeat.core.progress import progress_bar
from coinfeat.core.runtime import default_threads, log
from coinfeat.core.store import (
    ITEM_COLUMNS,
    OK,
    SKIPPED,
    Layout,
    Manifest,
    commit,
    item_keys,
    load_known,
    open_committed,
)


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
    framing: list[str | None] = field(default_factory=list)
    """Per key, how the photo was framed (:func:`coinfeat.core.images.crop.framed`); empty when unknown."""


class Mapper(Protocol):
    def embed(self, images: np.ndarray) -> np.ndarray: ...


class Writer(Protocol):
    def write(
        self,
        keys: list[str],
        vectors: np.ndarray,
        failures: list[tuple[str, str]],
        framing: Sequence[str | None] = (),
    ) -> None: ...


class Augmenter(Protocol):
    """Makes a view in two stages (:class:`coinfeat.core.images.augment.CameraViews`): ``scene`` on the
    decoded photo before it is framed, the call on the framed square; both seeded by the view's key."""

    def scene(self, img: Image.Image, key: str) -> Image.Image: ...

    def __call__(self, img: Image.Image, key: str) -> Image.Image: ...


class ImageReader:
    """Decodes and resizes images on a thread pool, a few batches ahead of the consumer; views
    other than 0 go through ``augmenter`` (seeded by their key)."""

    def __init__(
        self,
        work: Sequence[WorkItem],
        batch_size: int,
        threads: int,
        image_size: int,
        resize: str,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        prefetch_batches: int = 2,
        augmenter: Augmenter = augment,
        crop: str = "none",
    ) -> None:
        self.work = work
        self.batch_size = batch_size
        self.threads = threads
        self.image_size = image_size
        self.resize = resize
        self.max_pixels = max_pixels
        self.window = batch_size * (prefetch_batches + 1)
        self.augmenter = augmenter
        self.crop = crop

    def load(self, item: WorkItem) -> tuple[np.ndarray, str | None]:
        scene = partial(self.augmenter.scene, key=item.key) if item.view else None
        img, how = model_square(
            read_bytes(item.path), self.image_size, self.resize, self.max_pixels, self.crop, scene
        )
        if item.view:
            img = self.augmenter(img, item.key)
        return np.asarray(img, dtype=np.uint8), how

    def __iter__(self) -> Iterator[Batch]:
        with ThreadPoolExecutor(self.threads, thread_name_prefix="coinfeat-decode") as pool:
            loaded = run_ahead(pool, self.load, self.work, self.window)
            while taken := list(islice(loaded, self.batch_size)):
                yield self._assemble(taken)

    def _assemble(self, taken: list[tuple[WorkItem, Future]]) -> Batch:
        keys, arrays, failures, framing = [], [], [], []
        for item, future in taken:
            try:
                array, how = future.result()
            except DecodeError as exc:
                failures.append((item.key, str(exc)))
                continue
            arrays.append(array)
            keys.append(item.key)
            framing.append(how)
        size = self.image_size
        images = np.stack(arrays).astype(np.float32) if arrays else np.zeros((0, size, size, 3), np.float32)
        return Batch(keys, images, failures, framing)


T = TypeVar("T")
R = TypeVar("R")


def run_ahead(
    pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[tuple[T, Future[R]]]:
    """``(item, future of fn(item))`` in order, keeping ``window`` calls running ahead on ``pool``:
    how decoding (and, for ``count``, detection) overlaps with the network's work on earlier items."""
    todo = iter(items)
    pending: deque[tuple[T, Future[R]]] = deque(
        (item, pool.submit(fn, item)) for item in islice(todo, max(1, window))
    )
    while pending:
        yield pending.popleft()
        item = next(todo, None)
        if item is not None:
            pending.append((item, pool.submit(fn, item)))


@dataclass
class RunStats:
    """Rows done and seconds per stage. Distributed runs sum ``read``/``infer`` over workers."""

    embedded: int = 0
    batches: int = 0
    read_seconds: float = 0.0
    infer_seconds: float = 0.0
    write_seconds: float = 0.0
    startup_seconds: float = 0.0
    """Distributed runs only: until the first batch came back (cluster start, workers loading the model)."""
    engine: str | None = None

    def record(self, embedded: int, read: float, infer: float, write: float) -> None:
        self.batches += 1
        self.embedded += embedded
        self.read_seconds += read
        self.infer_seconds += infer
        self.write_seconds += write

    def merge(self, other: RunStats) -> None:
        for name in ("embedded", "batches", "read_seconds", "infer_seconds", "write_seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.engine = self.engine or other.engine

    def stage_seconds(self) -> dict[str, float]:
        return {
            "read": round(self.read_seconds, 3),
            "infer": round(self.infer_seconds, 3),
            "write": round(self.write_seconds, 3),
            **({"startup": round(self.startup_seconds, 3)} if self.startup_seconds else {}),
        }


def partition(work: Sequence[WorkItem], index: int, count: int) -> list[WorkItem]:
    """Contiguous slice ``index`` of ``count`` (so each partition's files stay together)."""
    size = -(-len(work) // count) if work else 0
    return list(work[index * size : (index + 1) * size])


@dataclass
class Runner:
    """Runs work: read -> map -> write, logging seconds per stage and batch.

    ``open_mapper`` receives the first decoded batch, so a new engine can be verified on real
    images, and is not called at all when nothing decodes (no model load for nothing). A runner
    is sent to every distributed worker as it is: its factories must pickle (cloudpickle).
    """

    make_reader: Callable[[Sequence[WorkItem]], Iterable[Batch]]
    open_mapper: Callable[[np.ndarray], Mapper]
    make_writer: Callable[[int], Writer]
    progress: bool = True
    desc: str = "embedding"
    _mapper: Mapper | None = field(default=None, init=False, repr=False)

    def map(self, batch: Batch) -> np.ndarray:
        """The vectors of a decoded batch (opens the mapper on the first call)."""
        if self._mapper is None:
            self._mapper = self.open_mapper(batch.images)
        return self._mapper.embed(batch.images)

    @property
    def engine(self) -> str | None:
        return None if self._mapper is None else getattr(self._mapper, "name", type(self._mapper).__name__)

    def bar(self, total: int, desc: str | None = None) -> tqdm:
        return progress_bar(
            total=total, unit="img", desc=desc or self.desc, enabled=self.progress, smoothing=0.1
        )

    def run(self, work: Sequence[WorkItem], index: int = 0, count: int = 1) -> RunStats:
        """Partition ``index`` of ``count``, start to end, in this process."""
        mine = partition(work, index, count)
        stats = RunStats()
        if not mine:
            return stats
        writer = self.make_writer(index)
        desc = self.desc if count == 1 else f"{self.desc} {index + 1}/{count}"
        with logging_redirect_tqdm(loggers=[log]), self.bar(len(mine), desc) as bar:
            waited = time.perf_counter()
            for batch in self.make_reader(mine):
                t_read = time.perf_counter() - waited
                t0 = time.perf_counter()
                vectors = self.map(batch) if batch.keys else np.zeros((0, 0), np.float32)
                t1 = time.perf_counter()
                writer.write(batch.keys, vectors, batch.failures, batch.framing)
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
                stats.record(len(batch.keys), t_read, t1 - t0, t2 - t1)
                bar.update(len(batch.keys) + len(batch.failures))
                waited = time.perf_counter()
        stats.engine = self.engine
        return stats


class Distributor(Protocol):
    """Decides where a runner's work runs; ``default_shards`` is the layout of a new store."""

    default_shards: int | None
    threads_per_worker: int

    def run(self, runner: Runner, work: Sequence[WorkItem], partitions: int = 1) -> RunStats: ...


class SequentialDistributor:
    """Runs partitions 0..n-1 one after another in this process, on every core."""

    default_shards: int | None = None

    @property
    def threads_per_worker(self) -> int:
        return default_threads()

    def run(self, runner: Runner, work: Sequence[WorkItem], partitions: int = 1) -> RunStats:
        total = RunStats()
        for index in range(partitions):
            total.merge(runner.run(work, index, partitions))
        return total


# --------------------------------------------------------------------------- the write path


@dataclass
class Filled:
    """What :func:`fill_store` committed: every folder's rows, the keys stored before, the stats."""

    final: pd.DataFrame
    before: set[str]
    stats: RunStats


def fill_store(
    layout: Layout,
    items: pd.DataFrame,
    *,
    fingerprint: str,
    root: Path,
    runner: Runner,
    distributor: Distributor,
    manifest_for: Callable[[pd.DataFrame, str | None, Manifest | None], Manifest],
    limit: int | None = None,
    partitions: int = 1,
) -> Filled:
    """Compute the rows of ``items`` (paths relative to ``root``) not stored yet and commit every
    folder of ``layout`` (the caller holds its lock). ``manifest_for(final, engine, previous)``
    gives a folder's manifest. Clean photos run before augmented views; ``limit`` caps the work."""
    knowns = [load_known(folder, open_committed(folder), fingerprint) for folder in layout.dirs]
    before = set().union(*(set(k.vectors) | set(k.skipped) for k in knowns))
    failed = set().union(*(set(k.skipped) for k in knowns))
    stats = distributor.run(
        runner, work_list(items, before, failed=failed, root=root, limit=limit), partitions
    )
    owners = layout.owners(items["sha256"])
    finals = []
    for index, folder in enumerate(layout.dirs):
        committed = open_committed(folder)
        known = load_known(folder, committed, fingerprint)
        final = final_rows(items[owners == index], known)
        if committed is None or known.part_files or not final.equals(committed.items[ITEM_COLUMNS]):
            previous = committed.manifest if committed else None
            commit(folder, final, known, manifest_for(final, stats.engine, previous))
        finals.append(final)
    layout.finish(fingerprint)
    return Filled(pd.concat(finals, ignore_index=True), before, stats)


def work_list(
    items: pd.DataFrame, done: set[str], *, failed: set[str], root: Path, limit: int | None
) -> list[WorkItem]:
    """Rows still to compute, clean photos first; views of photos known to fail are left out."""
    todo = items.assign(key=item_keys(items))
    todo = todo[(todo["status"] == OK) & ~todo["key"].isin(done) & ~todo["sha256"].isin(failed)]
    todo = todo.drop_duplicates("key").sort_values("view", kind="stable")
    if limit is not None:
        todo = todo.head(limit)
    columns = zip(todo["key"], todo["path"], todo["view"])
    return [WorkItem(key, root / path, int(view)) for key, path, view in columns]


def final_rows(items: pd.DataFrame, known) -> pd.DataFrame:
    """Rows that have a vector or a recorded skip; files not reached yet (--limit) wait."""
    items = items.copy()
    keys = pd.Series(item_keys(items), index=items.index)
    has_vector = keys.isin(known.vectors.keys())
    failed = keys.isin(known.skipped.keys()) & ~has_vector
    items.loc[failed, "status"] = SKIPPED
    items.loc[failed, "error"] = keys[failed].map(known.skipped)
    items["framing"] = [known.framing.get(k) if v else None for k, v in zip(keys, has_vector)]
    keep = has_vector | ((failed | (items["status"] == SKIPPED)) & (items["view"] == 0))
    return items[keep].reset_index(drop=True)[ITEM_COLUMNS]
