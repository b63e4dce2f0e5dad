"""int8 extraction: which photos calibrate the quantized model, and loading them.

A full-integer TFLite model needs the range of every activation, measured on real inputs. coinfeat
calibrates on a seeded sample of the dataset's own train photos (``--calibration N``, default 200)
and verifies the result on a further held-out sample: cosine of int8 to fp32 vectors (median,
min), stored with the cached conversion. The sample's hash is part of the extractor fingerprint,
so int8 vectors never mix with fp32 ones or with another calibration's; its paths are kept in the
store manifest, so predict, similar and serve can rebuild the same model on another machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coinfeat.core.errors import CoinfeatError, DecodeError
from coinfeat.core.images.model_input import load_image
from coinfeat.core.store import usable

DEFAULT_CALIBRATION = 200
HELD_OUT = 32


def calibration_sample(items: pd.DataFrame, size: int = DEFAULT_CALIBRATION, seed: int = 0) -> dict[str, Any]:
    """A seeded sample of readable train photos (``size`` to calibrate, up to 32 more to verify),
    identified by the hash of their content hashes."""
    if size < 1:
        raise CoinfeatError("--calibration must be at least 1")
    train = items[usable(items, "train")]
    train = train.drop_duplicates("sha256").sort_values("sha256")
    if len(train) < 2:
        raise CoinfeatError("int8 needs train photos to calibrate on; this dataset has fewer than 2")
    order = np.random.default_rng(seed).permutation(len(train))
    calibrate = train.iloc[np.sort(order[: min(size, len(train) - 1)])]
    held = train.iloc[np.sort(order[len(calibrate) : len(calibrate) + HELD_OUT])]
    digest = hashlib.sha256("\n".join(calibrate["sha256"]).encode()).hexdigest()[:16]
    return {"hash": digest, "calibration": calibrate["path"].tolist(), "held_out": held["path"].tolist()}


def calibration_loader(
    root: str | Path, sample: dict[str, Any], image_size: int, resize: str, crop: str = "none"
) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """A function loading (calibration images, held-out images) as the extractor decodes them."""

    def load() -> tuple[np.ndarray, np.ndarray]:
        try:
            return tuple(
                np.stack(
                    [load_image(Path(root) / p, image_size, resize, crop=crop) for p in sample[part]]
                ).astype(np.float32)
                for part in ("calibration", "held_out")
            )
        except (DecodeError, ValueError) as exc:
            raise CoinfeatError(
                f"cannot rebuild the int8 model: its calibration photos in {root} are not all readable "
                f"({exc})"
            ) from None

    return load
