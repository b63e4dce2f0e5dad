"""``coinfeat count``: find every coin in a whole photo, identify each, and total the money.

Per photo: decode at reduced scale and find circles (:mod:`coinfeat.core.images.detect`); decode at full
resolution and crop each coin square with ``margin`` around it, as the training crops were cut;
embed all crops in one batch through the head's own extractor (TTA as ``predict``); classify;
estimate the photo's scale from all coins and re-weigh each coin's classes by its size
(:mod:`coinfeat.counting.sizes`); read face values (:mod:`coinfeat.counting.money`) and total
them per currency.
A coin whose best probability is below the threshold is *unknown* and not counted in the total.

Crops are cut the way the head's training photos frame their coins, which ``fit-head`` measures
on a sample of them (:class:`CropConvention`): their typical pixel size, and per class the crop
side over the coin's diameter. Two conventions are told apart:

* **coin**: every coin fills its crop alike (a crop is the diameter times ``1 + 2 * margin``);
* **fixed**: every crop shows the same physical area, so small coins look small. The shared
  euro-coins crops are cut so (about 26 mm square: a 1c fills 62% of its crop, a 2e 93%), and a
  head trained on them reads the fill as a size cue. Counting then runs in two passes: coin
  crops (no TTA) give a first identification and the photo's scale, then crops of the head's
  physical size are identified (with TTA). Measured on the shared pile photos: +0.10 class match
  for the classifier alone.

A head whose store was made with ``extract-features --crop coin`` (the default) needs none of
this: every coin goes through the same coin crop (:func:`coinfeat.core.images.crop.frame_found`) as
its training photos, in one pass, and the photo's scale comes from the coins' sizes alone.

A crop larger than the head's training photos is brought down to their size, so a 300-pixel coin
from a 12 Mpx photo looks like the 150-pixel crops the head learned from.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from coinfeat.core.answer_sets import DEFAULT_CONFIDENCE, AnswerSets, check_confidence
from coinfeat.core.data.datasets import collect_photos
from coinfeat.core.errors import CoinfeatError, DecodeError
from coinfeat.core.extraction.embedder import DEFAULT_TTA, Embedder
from coinfeat.core.extraction.pipeline import run_ahead
from coinfeat.core.heads import load_head
from coinfeat.core.heads.builtin import resolve_head
from coinfeat.core.heads.unknown import COUNT_ACCEPT
from coinfeat.core.images.crop import CropConvention, crop_coin, frame_found
from coinfeat.core.images.decode import DEFAULT_MAX_PIXELS, decode, fit_square, read_bytes, to_model_input
from coinfeat.core.images.detect import MIN_RADIUS, WORK_SIZE, Circle, Detection, find_coins
from coinfeat.core.options import resolve
from coinfeat.core.progress import progress_bar
from coinfeat.core.runtime import default_threads
from coinfeat.counting.annotate import annotated
from coinfeat.counting.money import (
    Doubt,
    FaceValue,
    class_values,
    load_values,
    totals,
)
from coinfeat.counting.results import Coin, PhotoCount, mark_overlaps
from coinfeat.counting.sizes import class_diameters, estimate_scale, load_sizes, reweigh, size_fits

CROP_MODES = ("auto", "coin", "fixed")
DEFAULT_THRESHOLD = 0.3
"""Below this best probability a coin is "unknown", for a head without its own rule (``unknown_threshold``
set by hand, or the unknown-coin rule ``fit-head`` calibrates on val)."""


@dataclass
class CountConfig:
    """How ``count`` reads a photo: sizes (a JSON file or dict of diameters in mm by label, None for
    the built-in euro table, False for the classifier's answer only), face values, the probability
    below which a coin is unknown, test-time rotations, how coins are cropped, the engine; with
    ``out``, an annotated PNG per photo is written there."""

    sizes: str | Path | dict[str, float] | bool | None = None
    values: str | Path | dict[str, FaceValue] | None = None
    threshold: float | None = None
    tta: str = DEFAULT_TTA
    out: str | Path | None = None
    margin: float | None = None
    engine: str = "auto"
    progress: bool = False
    crop: str = "auto"
    confidence: float = DEFAULT_CONFIDENCE
    """Answer sets at this level flag coins one class is not enough for (heads with a calibration)."""

    def validate(self) -> None:
        check_confidence(self.confidence)
        if self.margin is not None and not 0 <= self.margin <= 1:
            raise CoinfeatError(
                f"--margin {self.margin}: a share of the coin's diameter between 0 and 1, e.g. 0.1"
            )
        if self.crop not in CROP_MODES:
            raise CoinfeatError(f"--crop {self.crop!r}: choose from {', '.join(CROP_MODES)}")


@dataclass
class Looked:
    """A photo decoded and searched for coins, waiting for the network (:meth:`CoinCounter.look`)."""

    result: PhotoCount
    full: Image.Image | None
    detection: Detection | None
    seconds: float


class CoinCounter:
    """A loaded head and its extractor, with each class's diameter and face value, ready to
    count the coins of many photos."""

    def __init__(
        self,
        head_dir: str | Path | None = None,
        config: CountConfig | None = None,
        *,
        embedder: Embedder | None = None,
        **options: Any,
    ) -> None:
        cfg = resolve(CountConfig, config, options)
        sizes, values, threshold, tta, margin, engine, crop = (
            cfg.sizes,
            cfg.values,
            cfg.threshold,
            cfg.tta,
            cfg.margin,
            cfg.engine,
            cfg.crop,
        )
        head_dir = resolve_head(head_dir)
        self.head = load_head(head_dir)
        self.embedder = embedder or Embedder(self.head.meta.extractor(head_dir), engine)
        self.names = self.head.meta.label_names
        classes = [str(c) for c in self.head.classes_]
        size_table = load_sizes(sizes) if isinstance(sizes, (str, Path)) else sizes or None
        value_table = load_values(values) if isinstance(values, (str, Path)) else values
        self.diameters = class_diameters(classes, self.names, size_table)
        if sizes is False:  # the classifier's answer only
            self.diameters[:] = np.nan
        self.values = class_values(classes, self.names, value_table)
        self.threshold = threshold if threshold is not None else self._head_threshold()
        if not 0 <= self.threshold < 1:
            raise CoinfeatError(f"--threshold {self.threshold}: a probability in [0, 1), e.g. 0.3")
        convention = CropConvention.of(self.head.meta)
        self.tta, self.margin = tta, margin if margin is not None else convention.margin()
        self.crop_side = convention.photo_side_px
        self.side_mm = self._fixed_side(crop, convention, classes)
        self.pretrained = bool(self.head.meta.features and self.head.meta.features.pretrained)
        self.calibration, self.confidence = AnswerSets.load(head_dir), cfg.confidence

    def _head_threshold(self) -> float:
        """The head's own: a threshold set by hand, else its unknown-coin rule on the best
        probability at :data:`~coinfeat.core.heads.unknown.COUNT_ACCEPT`, else :data:`DEFAULT_THRESHOLD`."""
        meta = self.head.meta
        if meta.unknown_threshold is not None:
            return meta.unknown_threshold
        rule = meta.unknown_rule()
        if rule is not None and rule.score == "max_probability":
            return rule.threshold(COUNT_ACCEPT)
        return DEFAULT_THRESHOLD

    def _fixed_side(self, crop: str, convention: CropConvention, classes: list[str]) -> float | None:
        """The physical crop side (mm) for the second pass, or None for coin crops only."""
        if crop == "fixed" and self.embedder.crop != "none":
            raise CoinfeatError(
                f"--crop fixed: this head learned from coin crops (extract-features --crop "
                f"{self.embedder.crop}); each coin is cut to its rim, so there is no fixed size to use"
            )
        if crop == "coin" or self.embedder.crop != "none" or np.isnan(self.diameters).all():
            return None
        measured = convention.fixed_side_mm(classes, self.diameters)
        if crop == "fixed" and measured is None:
            return float(np.nanmax(self.diameters)) * (1 + 2 * self.margin)
        return measured

    def count(
        self, source: str | Path | bytes, name: str | None = None, out: Path | None = None, draw: bool = False
    ) -> PhotoCount:
        """Count the coins of one photo (a path or the bytes of an upload); a photo that cannot be
        read gives a result with ``error``, never an exception. ``out`` saves the annotated photo
        there; ``draw`` keeps it in ``picture``."""
        return self.finish(self.look(source, name), out, draw)

    def look(self, source: str | Path | bytes, name: str | None = None) -> Looked:
        """The first half of :meth:`count`, without the network: decode the photo and find its
        coins (``count_coins`` runs it a photo or two ahead, on another thread)."""
        started = time.perf_counter()
        label = name or (str(source) if not isinstance(source, bytes) else "upload")
        result = PhotoCount(label, pretrained=self.pretrained)
        try:
            data = source if isinstance(source, bytes) else read_bytes(source)
            work_image = decode(data, draft_size=WORK_SIZE, max_pixels=DEFAULT_MAX_PIXELS)
            full = decode(data, max_pixels=DEFAULT_MAX_PIXELS)
        except DecodeError as exc:
            result.error = str(exc)
            return Looked(result, None, None, time.perf_counter() - started)
        result.image_size = full.size
        scale = WORK_SIZE / max(work_image.size)
        work = work_image.resize(
            (max(1, round(work_image.width * scale)), max(1, round(work_image.height * scale)))
        )
        detection = find_coins(np.asarray(work), max(full.size) / max(work.size))
        result.notes = photo_notes(full.size, np.asarray(work), found=len(detection.coins))
        result.dropped = detection.dropped
        return Looked(result, full, detection, time.perf_counter() - started)

    def finish(self, looked: Looked, out: Path | None = None, draw: bool = False) -> PhotoCount:
        """The second half of :meth:`count`: identify the coins found, total them, draw."""
        started = time.perf_counter()
        result, full, detection = looked.result, looked.full, looked.detection
        if full is None or detection is None:
            return result
        if detection.coins:
            self._identify(full, detection, result)
        picture = annotated(full, result) if out is not None or draw else None
        if out is not None:
            result.annotated = str(out / f"{Path(result.path).stem}_count.png")
            picture.save(result.annotated)
        result.picture = picture if draw else None
        result.seconds = round(looked.seconds + time.perf_counter() - started, 3)
        return result

    def _identify(self, full: Image.Image, detection: Detection, result: PhotoCount) -> None:
        measured = np.asarray([c.diameter for c in detection.coins])
        proba = self._classify(full, detection.coins, self.margin, "none" if self.side_mm else self.tta)
        px_per_mm = estimate_scale(measured, proba, self.diameters)
        if self.side_mm and px_per_mm:
            side = self.side_mm * px_per_mm
            circles = [Circle(c.x, c.y, side / 2) for c in detection.coins]
            proba = self._classify(full, circles, 0.0, self.tta)
            px_per_mm = estimate_scale(measured, proba, self.diameters)
            result.crops = f"fixed {self.side_mm:.1f} mm"
        sized = reweigh(measured, proba, diameters=self.diameters, scale=px_per_mm) if px_per_mm else None
        result.scale_px_per_mm = round(px_per_mm, 4) if px_per_mm else None
        result.answer = "sizes" if sized is not None else "classifier"
        final = sized if sized is not None else proba
        sets = self._answer_sets(proba, final, measured, px_per_mm)
        for number, circle in enumerate(detection.coins, 1):
            row = number - 1
            sized_row = sized[row] if sized is not None else None
            coin = self._coin(number, circle, final[row], proba[row], sized_row, px_per_mm)
            coin.answer_set, coin.answer_set_names = sets[row], [self.names.get(c, c) for c in sets[row]]
            result.coins.append(coin)
        mark_overlaps(result.coins)
        result.totals = {"classifier": self._total(proba)[0]}
        if sized is not None:
            result.totals["with_sizes"] = self._total(sized)[0]
        result.total, result.unpriced = self._total(final)
        result.doubts = self._doubts(result.counted)

    def _answer_sets(
        self, proba: np.ndarray, final: np.ndarray, measured: np.ndarray, px_per_mm: float | None
    ) -> list[list[str]]:
        """Each coin's answer set: the head's conformal set on the classifier's probabilities (its
        guarantee holds for photos like the head's val photos, not for crops of other cameras' piles),
        less the classes the coin's size rules out at the photo's scale, the final answer first."""
        if self.calibration is None:
            return [[] for _ in final]
        classes = [str(c) for c in self.head.classes_]
        fits = (
            size_fits(measured, proba, diameters=self.diameters, scale=px_per_mm)
            if px_per_mm
            else np.ones(final.shape, dtype=bool)
        )
        column = {c: j for j, c in enumerate(classes)}
        answers = []
        for row, labels in enumerate(self.calibration.sets(proba, self.confidence)):
            best = classes[int(final[row].argmax())]
            possible = [c for c in labels if c != best and c in column and fits[row, column[c]]]
            answers.append([best, *possible])
        return answers

    def _doubts(self, coins: list[Coin]) -> list[Doubt]:
        """The counted coins whose answer set holds other priced classes."""
        doubts = []
        for coin in coins:
            counted = self.values.get(coin.label)
            instead = [
                (self.names.get(c, c), self.values[c]) for c in coin.answer_set[1:] if self.values.get(c)
            ]
            if counted and instead:
                doubts.append(Doubt(coin.number, counted, instead))
        return doubts

    def _classify(self, full: Image.Image, circles: list[Circle], margin: float, tta: str) -> np.ndarray:
        """Class probabilities of the coins in ``circles``, cropped with ``margin``, in one batch."""
        size, resize = self.embedder.spec.image_size, self.embedder.resize
        if self.embedder.crop == "none":
            crops = [crop_coin(full, circle, margin, self.crop_side) for circle in circles]
        else:
            crops = [frame_found(full, circle, self.embedder.crop) for circle in circles]
        batch = np.stack([to_model_input(fit_square(c, size, resize)) for c in crops])
        return self.head.predict_proba(self.embedder.embed_images(batch, tta))

    def _coin(
        self,
        number: int,
        circle: Circle,
        final: np.ndarray,
        classifier: np.ndarray,
        sized: np.ndarray | None,
        px_per_mm: float | None,
    ) -> Coin:
        """One coin from its answer (``final``: sizes when used) and both answers' probabilities."""
        answer = self._answer(final)
        value = self.values.get(answer["label"])
        return Coin(
            number,
            round(circle.x, 1),
            round(circle.y, 1),
            round(circle.diameter, 1),
            answer["label"],
            answer["name"],
            answer["probability"],
            bool(final.max() < self.threshold),
            round(circle.diameter / px_per_mm, 2) if px_per_mm else None,
            value.value if value else None,
            value.currency if value else None,
            self._answer(classifier),
            self._answer(sized) if sized is not None else None,
            minor_px=round(2 * circle.minor, 1) if circle.minor else None,
            angle=round(circle.angle, 1) if circle.minor else None,
        )

    def _answer(self, proba: np.ndarray) -> dict[str, Any]:
        best = int(np.argmax(proba))
        label = str(self.head.classes_[best])
        return {
            "label": label,
            "name": self.names.get(label, label),
            "probability": round(float(proba[best]), 4),
        }

    def _total(self, proba: np.ndarray) -> tuple[dict[str, float], list[str]]:
        """Total per currency of the coins that are not unknown, and the labels without a value."""
        labels = [str(self.head.classes_[i]) for i in np.argmax(proba, axis=1)]
        known = proba.max(axis=1) >= self.threshold
        priced = [self.values[lbl] for lbl, ok in zip(labels, known) if ok and self.values.get(lbl)]
        unpriced = sorted({lbl for lbl, ok in zip(labels, known) if ok and not self.values.get(lbl)})
        return totals(priced), unpriced


SMALLEST_RADIUS = 6
"""Circles smaller than this (pixels of the detection image) are rarely found reliably."""
PANORAMA_RATIO = 3.0
"""A photo this many times wider than high (or higher than wide) is searched at a short side too
small for most coins."""
FLAT_SHARE, FLAT_COLOURS = 0.2, 0.02
"""A picture whose commonest exact colour covers ``FLAT_SHARE`` of it, with fewer distinct colours
than ``FLAT_COLOURS`` per pixel, has the flat colours of a screenshot or drawing, not a photo's noise."""


def photo_notes(size: tuple[int, int], work: np.ndarray, *, found: int) -> list[str]:
    """One line per reason the photo may be counted badly: a panorama whose coins shrink below
    what detection finds, or flat colours where circles were ``found`` (a screenshot or drawing:
    round icons are not coins)."""
    notes = []
    width, height = size
    if max(width, height) >= PANORAMA_RATIO * min(width, height):
        radius = max(MIN_RADIUS * min(work.shape[:2]), SMALLEST_RADIUS)
        smallest = round(2 * radius * max(size) / max(work.shape[:2]))
        notes.append(
            f"a panorama ({width}x{height}): coins under about {smallest} px across may be missed; "
            "crop it to the coins"
        )
    if not found:
        return notes
    rgb = work[..., :3].astype(np.int32)
    packed = (rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]).ravel()
    _, counts = np.unique(packed, return_counts=True)
    if counts.max() >= FLAT_SHARE * len(packed) and len(counts) < FLAT_COLOURS * len(packed):
        notes.append(
            "flat colours, as in a screenshot or drawing: what was found may not be coins (count a photo)"
        )
    return notes


def count_coins(
    photos: list[str | Path],
    head: str | Path | None = None,
    config: CountConfig | None = None,
    **options: Any,
) -> list[PhotoCount]:
    """Count the coins and the money in each photo (files, or folders of them) with the head at
    ``head`` (a folder, or a built-in model's name; None: the built-in euro model); options are
    :class:`CountConfig`'s."""
    photos = [path for path, _ in collect_photos(photos)]
    if not photos:
        raise CoinfeatError("no photo given: coinfeat count PHOTO...")
    cfg = resolve(CountConfig, config, options)
    counter = CoinCounter(head, cfg)
    folder = Path(cfg.out) if cfg.out else None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    threads = max(1, default_threads() - 1)
    with (
        progress_bar(
            total=len(photos), unit="photo", desc="counting", enabled=cfg.progress and len(photos) > 1
        ) as bar,
        ThreadPoolExecutor(threads, thread_name_prefix="coinfeat-look") as pool,
    ):
        results = []
        for _, looked in run_ahead(pool, counter.look, photos, window=threads + 1):
            results.append(counter.finish(looked.result(), out=folder))
            bar.update(1)
    return results
