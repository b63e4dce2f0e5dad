"""``coinfeat demo``: every stage that exists, on the sample of real coin photos shipped inside
the package. Offline it says loudly that the ImageNet weights are unavailable and carries on
with random weights, so the whole pipeline still runs end to end."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from coinfeat.errors import WeightsUnavailable
from coinfeat.extract import ExtractConfig, ExtractSummary, extract_features
from coinfeat.runtime import log

SAMPLE_NAME = "euro-coins-sample"
SAMPLE_GROUP_REGEX = r"^(.*)_[^_]+$"
DEFAULT_DEMO_DIR = Path("artifacts") / "demo"

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


def sample_dir() -> Path:
    """The bundled sample of the euro-coins set (MIT licence, LICENSE beside it)."""
    return Path(str(resources.files("coinfeat") / "sample" / SAMPLE_NAME))


def run_demo(
    out: str | Path = DEFAULT_DEMO_DIR, weights: str = "imagenet", progress: bool = True, announce=print
) -> DemoResult:
    """Extract features for the bundled sample (later stages are added here as they land)."""
    out = Path(out)
    config = ExtractConfig(weights=weights, group_regex=SAMPLE_GROUP_REGEX, progress=progress)
    try:
        summary = extract_features(sample_dir(), out / "features" / _store_name(config), config)
    except WeightsUnavailable as exc:
        announce(OFFLINE_BANNER.format(detail=str(exc)[:200]))
        config.weights = "none"
        summary = extract_features(sample_dir(), out / "features" / _store_name(config), config)
    log.info("demo features: %s", summary.store)
    return DemoResult(extract=summary, pretrained=summary.pretrained, out=out)


def _store_name(config: ExtractConfig) -> str:
    return SAMPLE_NAME if config.weights != "none" else f"{SAMPLE_NAME}-random-weights"
