"""Coin sizes: the cue a single crop throws away and a whole photo keeps.

Every coin in one photo lies at (about) the same distance from the camera, so one scale, pixels
per millimetre, maps each class's nominal diameter to the diameter it would have in the photo.
:func:`estimate_scale` finds the scale that best explains what the classifier believes about
all coins together (a robust likelihood: a few wrongly classified coins cannot pull it away),
and :func:`reweigh` multiplies each coin's class probabilities by how well its measured diameter
fits each class at that scale. Euro 10c/20c/50c share one design and differ in size by 12%; this
is where the size cue pays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.runtime import read_json_object

EURO_DIAMETERS_MM = {
    "1c": 16.25,
    "2c": 18.75,
    "5c": 21.25,
    "10c": 19.75,
    "20c": 22.25,
    "50c": 24.25,
    "1e": 23.25,
    "2e": 25.75,
}
"""Nominal diameters of the euro coins (European Central Bank), keyed by value in short form."""

RELATIVE_ERROR = 0.04
"""Starting spread of a measured diameter around the nominal one, as a share of it (circle
fitting on a 1,000-pixel image, lens distortion, coins not lying quite flat); each photo's own
spread is then measured from its coins (:func:`photo_spread`) within ``SPREAD_LIMITS``."""
SPREAD_LIMITS = (0.015, 0.06)
OUTLIER_FLOOR = 1e-3
"""Likelihood floor per coin, so that a coin no class explains costs a fixed amount rather than
dragging the scale towards itself."""
MIN_SIZED_COINS = 2


def load_sizes(path: str | Path) -> dict[str, float]:
    """A ``{"label or display name": diameter_mm}`` JSON file."""
    raw = read_json_object(path, "sizes")
    if not all(isinstance(v, (int, float)) and v > 0 for v in raw.values()):
        raise CoinfeatError(f"sizes file {path} must hold one JSON object of label -> diameter in mm (> 0)")
    return {str(k): float(v) for k, v in raw.items()}


def class_diameters(
    classes: list[str], names: dict[str, str], sizes: dict[str, float] | None = None
) -> np.ndarray:
    """Nominal diameter (mm) per class, NaN where unknown: ``sizes`` by label or display name
    first, then the built-in euro table through the class's parsed face value."""
    from coinfeat.counting.money import face_value

    table = sizes or {}
    diameters = []
    for label in classes:
        name = names.get(label, label)
        found = table.get(label, table.get(name))
        if found is None:
            value = face_value(label, name)
            if value is not None and value.currency == "EUR":
                found = EURO_DIAMETERS_MM.get(value.short)
        diameters.append(np.nan if found is None else float(found))
    return np.asarray(diameters, dtype=float)


def _kernel(
    measured: np.ndarray, diameters: np.ndarray, scale: float, spread: float = RELATIVE_ERROR
) -> np.ndarray:
    """Per coin (rows) and class (columns), how well the measured diameter fits the class at
    ``scale``: 1 for a perfect fit, falling as a Gaussian of the relative error."""
    expected = scale * diameters[None, :]
    z = (measured[:, None] - expected) / (spread * expected)
    return np.exp(-0.5 * z**2)


def _score(measured: np.ndarray, proba: np.ndarray, diameters: np.ndarray, scale: float) -> float:
    """Robust log-likelihood of all coins at ``scale``: each coin's fit averaged over the classes
    the classifier believes in, with a floor for coins that fit nothing."""
    known = ~np.isnan(diameters)
    fit = _kernel(measured, diameters[known], scale)
    per_coin = (proba[:, known] * fit).sum(axis=1) / np.maximum(proba[:, known].sum(axis=1), 1e-12)
    return float(np.log(OUTLIER_FLOOR + per_coin).sum())


def estimate_scale(measured: np.ndarray, proba: np.ndarray, diameters: np.ndarray) -> float | None:
    """Pixels per millimetre that best explain the coins' measured diameters and the classifier's
    probabilities; None with fewer than ``MIN_SIZED_COINS`` coins or no class of known size.

    Candidates are every coin's diameter divided by every class's nominal one (the true scale is
    among them, up to measurement error); the best is refined on a fine grid around it.
    """
    known = ~np.isnan(diameters)
    measured = np.asarray(measured, dtype=float)
    if len(measured) < MIN_SIZED_COINS or not known.any():
        return None
    candidates = np.unique((measured[:, None] / diameters[None, known]).ravel())
    coarse = max(candidates, key=lambda s: _score(measured, proba, diameters, s))
    fine = coarse * np.linspace(0.95, 1.05, 101)
    return float(max(fine, key=lambda s: _score(measured, proba, diameters, s)))


def photo_spread(measured: np.ndarray, proba: np.ndarray, diameters: np.ndarray, scale: float) -> float:
    """How far this photo's measured diameters stray from the nominal ones of the classes they
    most likely are (robust: 1.48 x the median absolute relative error), within ``SPREAD_LIMITS``."""
    known = ~np.isnan(diameters)
    likely = _reweigh(measured, proba, diameters, scale, RELATIVE_ERROR)[:, known].argmax(axis=1)
    errors = np.asarray(measured, float) / (scale * diameters[known][likely]) - 1
    return float(np.clip(1.4826 * np.median(np.abs(errors)), *SPREAD_LIMITS))


def size_fits(
    measured: np.ndarray, proba: np.ndarray, *, diameters: np.ndarray, scale: float, sigmas: float = 3.0
) -> np.ndarray:
    """(coins, classes) True where a coin's measured diameter is within ``sigmas`` of the photo's
    spread of the class's size at ``scale`` (classes of unknown size always fit): the classes a
    coin's size leaves possible."""
    spread = photo_spread(measured, proba, diameters, scale)
    known = ~np.isnan(diameters)
    fits = np.ones(np.shape(proba), dtype=bool)
    fit = _kernel(np.asarray(measured, float), diameters[known], scale, spread)
    fits[:, known] = fit >= np.exp(-0.5 * sigmas**2)
    return fits


def reweigh(
    measured: np.ndarray,
    proba: np.ndarray,
    *,
    diameters: np.ndarray,
    scale: float,
    spread: float | None = None,
) -> np.ndarray:
    """Class probabilities times the size likelihood at ``scale``, renormalised per coin; the
    spread is the photo's own (:func:`photo_spread`) unless given.

    Classes of unknown size get the mean likelihood of the known ones (no opinion); a coin whose
    size fits no class keeps the classifier's probabilities."""
    if spread is None:
        spread = photo_spread(measured, proba, diameters, scale)
    return _reweigh(measured, proba, diameters, scale, spread)


def _reweigh(
    measured: np.ndarray, proba: np.ndarray, diameters: np.ndarray, scale: float, spread: float
) -> np.ndarray:
    known = ~np.isnan(diameters)
    fit = np.empty_like(proba, dtype=float)
    fit[:, known] = _kernel(np.asarray(measured, float), diameters[known], scale, spread) / diameters[known]
    fit[:, ~known] = fit[:, known].mean(axis=1, keepdims=True) if known.any() else 1.0
    weighted = proba * fit
    total = weighted.sum(axis=1, keepdims=True)
    return np.where(total > 1e-300, weighted / np.maximum(total, 1e-300), proba)
