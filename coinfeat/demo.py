"""``coinfeat demo``: every stage (extract, fit-head, predict, compare, similar, a short fine-tune,
count, answer sets recalibrated on labelled photos) on the sample of real coin photos shipped inside
the package. Offline it says loudly that the ImageNet weights are unavailable and carries on with
random weights, so the whole pipeline still runs end to end."""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from coinfeat.compare import CompareConfig, compare_heads
from coinfeat.compare.enrolment import enrolment
from coinfeat.compare.report import write_report
from coinfeat.core.errors import WeightsUnavailable
from coinfeat.core.extraction.extract import ExtractConfig, ExtractSummary, extract_features
from coinfeat.core.heads import head_types
from coinfeat.core.runtime import log
from coinfeat.core.store import open_store
from coinfeat.counting.count import count_coins
from coinfeat.counting.results import PhotoCount
from coinfeat.finetune import FinetuneConfig, FinetuneResult, finetune
from coinfeat.fit import Calibration, FitResult, calibrate_head, fit_head
from coinfeat.predict import Prediction, predict_images
from coinfeat.similar import SimilarResult, find_similar, similar_sheet

SAMPLE_NAME = "euro-coins-sample"
PILE_NAME = "euro-coins-pile"
SAMPLE_GROUP_REGEX = r"^(.*)_[^_]+$"
DEFAULT_DEMO_DIR = Path("artifacts") / "demo"
TUNED_ENGINE = "keras"
"""The demo embeds its 144 photos once with the tuned backbone: on Keras in ~3 s, where converting
it to TFLite first would take ~25 s (predict converts it when it is used again)."""

OFFLINE_BANNER = """
==============================================================================
 WARNING: the ImageNet weights could not be downloaded (no internet?).
 The demo goes on with RANDOM, NOT PRETRAINED weights: every stage runs, but
 the vectors and any accuracy are meaningless. For real results, run it where
 Keras can download the weights, or pass --weights PATH to efficientnetb0_notop.h5.
 {detail}
==============================================================================
"""


@dataclass
class DemoResult:
    extract: ExtractSummary
    pretrained: bool
    out: Path
    heads: list[FitResult] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)
    report: Path | None = None
    similar: SimilarResult | None = None
    sheet: Path | None = None
    finetuned: FinetuneResult | None = None
    counted: PhotoCount | None = None
    calibration: Calibration | None = None
    builtin_count: PhotoCount | None = None
    """The same pile counted by the built-in euro model (no head of one's own)."""
    enrolment: dict | None = None
    """``compare --enrol 1 --shots 3`` on the sample: a class added from 3 photos without refitting."""


def sample_dir(name: str = SAMPLE_NAME) -> Path:
    """A bundled sample (MIT licence, LICENSE beside it): the euro-coins crops, or a pile photo."""
    return Path(str(resources.files("coinfeat") / "sample" / name))


def run_demo(
    out: str | Path = DEFAULT_DEMO_DIR,
    *,
    weights: str = "imagenet",
    progress: bool = True,
    announce=print,
    ray: bool = False,
) -> DemoResult:
    """Extract features for the bundled sample, fit every head, predict a few test photos, write
    the head-comparison report, show the coins most similar to one test photo, fine-tune the top
    blocks briefly (2 epochs, 2 views), count the coins of a bundled pile photo and recalibrate a
    copy of the best head's answer sets on the sample's test photos, as on your own. With ``ray``
    the extraction runs on a local Ray instance into a sharded store."""
    out = Path(out)
    config = ExtractConfig(weights=weights, group_regex=SAMPLE_GROUP_REGEX, progress=progress)
    try:
        summary = _extract(out, config, ray)
    except WeightsUnavailable as exc:
        announce(
            OFFLINE_BANNER.format(
                detail=textwrap.fill(
                    str(exc), 76, subsequent_indent=" ", break_on_hyphens=False, break_long_words=False
                )
            )
        )
        config.weights = "none"
        summary = _extract(out, config, ray)
    log.info("demo features: %s", summary.store)
    heads = [fit_head(summary.store, name, out=out / "heads" / name) for name in head_types()]
    best = max(heads, key=lambda h: h.val_accuracy or 0.0)
    store = open_store(summary.store)
    _, test = store.select("test")
    photos = [str(sample_dir() / p) for p in test.groupby("label").head(1)["path"]]
    predictions = predict_images(photos, best.head_dir, top_k=3)
    fitted = CompareConfig(heads=[], load={h.type: h.head_dir for h in heads})
    comparison = compare_heads(summary.store, fitted)
    report = write_report(comparison, out / "report")
    [similar] = find_similar(photos[:1], summary.store, k=5)
    sheet = similar_sheet(similar, out / "similar.png")
    tuned = finetune(
        summary.store,
        out / "finetuned",
        FinetuneConfig(
            views=2,
            epochs=2,
            progress=progress,
            embed_out=f"{summary.store}-finetuned",
            engine=TUNED_ENGINE,
        ),
    )
    [counted] = count_coins(sorted(sample_dir(PILE_NAME).glob("*.jpg")), best.head_dir, out=out / "count")
    [builtin] = count_coins(sorted(sample_dir(PILE_NAME).glob("*.jpg")), None, out=out / "count-builtin")
    calibration = _recalibrated_copy(best, out / "heads" / f"{best.type}-calibrated", progress)
    grown = enrolment(store, ["logreg", "centroid"], k=1, shots=3)
    return DemoResult(
        summary,
        summary.pretrained,
        out,
        heads,
        predictions,
        report,
        similar,
        sheet,
        tuned,
        counted,
        calibration,
        builtin,
        grown,
    )


def _recalibrated_copy(head: FitResult, copy: Path, progress: bool) -> Calibration:
    """``fit-head --head COPY --calibrate <sample>/test``: the best head's sets, recalibrated on
    labelled photos kept out of its training (what a user does with photos of their own camera)."""
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(head.head_dir, copy)
    return calibrate_head(copy, sample_dir() / "test", progress=progress)


def _extract(out: Path, config: ExtractConfig, ray: bool) -> ExtractSummary:
    name = SAMPLE_NAME if config.weights != "none" else f"{SAMPLE_NAME}-random-weights"
    if ray:
        config.runner, name = "ray", f"{name}-sharded"
    return extract_features(sample_dir(), out / "features" / name, config)
