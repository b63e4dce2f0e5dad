"""Finding coins in a whole photo: circles on a downscaled grey image (OpenCV's Hough transform).

Nothing here is a pixel constant tuned to one camera: the photo is brought to ``work_size``
pixels on its long side, and every radius limit is a share of that image or of the coins found
in it. Two passes: a wide search (radii from ``MIN_RADIUS`` to ``MAX_RADIUS`` of the short side)
gives the typical coin radius, from the circles whose rims stand out (a speckled or grained table
gives many small circles with faint rims, which must not decide what size a coin is); the second
keeps circles whose radius lies within ``radius_range`` times it. Candidates are then cleaned
up, each drop recorded with its reason: a circle whose centre lies inside a larger kept circle
is the same coin (a bimetallic coin's inner ring, a second rim), one cut by the image border
cannot be identified, and one whose inside looks like the background is not a coin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coinfeat.core.images.rims import (
    ROUND,
    fit_ellipse,
    fit_rim,
    outer_rim,
    refine,
    rim_strength,
    typical_radius,
)

MIN_RADIUS, MAX_RADIUS = 0.015, 0.25
"""Radius limits of the first, wide pass, as shares of the photo's short side."""
WORK_SIZE = 1000
"""Long side, in pixels, of the image the circles are searched in."""
RADIUS_RANGE = (0.55, 1.6)
"""Kept radii as multiples of the median radius of the first pass: euro coins span 16.25 to
25.75 mm (x0.77 to x1.23 of a typical 21 mm coin); the range leaves room for other currencies."""
BORDER_CUT = 0.12
"""A circle reaching past the border by more than this share of its radius is dropped."""
BACKGROUND_CONTRAST = 12.0
"""Minimum mean colour distance (0..255) between a circle's inside and the background."""


@dataclass
class Circle:
    """A coin found in the photo, in full-resolution pixels. A coin seen at an angle is an ellipse:
    ``radius`` is then its semi-major axis (the coin's true radius, for its size), ``minor`` its
    semi-minor axis and ``angle`` the major axis's direction in degrees."""

    x: float
    y: float
    radius: float
    minor: float | None = None
    angle: float = 0.0

    @property
    def diameter(self) -> float:
        return 2 * self.radius

    @property
    def axis_ratio(self) -> float:
        """Minor over major axis: 1 for a coin seen from straight above."""
        return self.minor / self.radius if self.minor else 1.0

    @property
    def tilted(self) -> bool:
        """Foreshortened enough that its crop must be un-squashed."""
        return self.axis_ratio < ROUND

    def outline(self, points: int = 72) -> np.ndarray:
        """(points, 2) pixels along the coin's outline: its circle, or its ellipse."""
        b = self.minor or self.radius
        theta = np.radians(self.angle)
        t = np.linspace(0, 2 * np.pi, points, endpoint=False)
        u, v = self.radius * np.cos(t), b * np.sin(t)
        return np.column_stack(
            [self.x + u * np.cos(theta) - v * np.sin(theta), self.y + u * np.sin(theta) + v * np.cos(theta)]
        )


@dataclass
class Detection:
    """The circles kept and those dropped, each with its reason (full-resolution pixels)."""

    coins: list[Circle] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)


def find_coins(
    work: np.ndarray,
    work_scale: float = 1.0,
    radius_range: tuple[float, float] = RADIUS_RANGE,
    *,
    rectify: bool = True,
) -> Detection:
    """Coins in an RGB ``work`` image (uint8, long side about ``WORK_SIZE``); coordinates in the
    result are multiplied by ``work_scale`` to give full-resolution pixels. When the clearest
    coins are ellipses of one tilt (a photo taken at an angle), the image is rectified (stretched
    along their minor axis until they are round), searched again, and the coins mapped back."""
    import cv2

    grey = cv2.medianBlur(cv2.cvtColor(work, cv2.COLOR_RGB2GRAY), 5)
    short = min(grey.shape)
    first = _hough(grey, short * MIN_RADIUS, short * MAX_RADIUS)
    detection = Detection()
    if len(first) == 0:
        return detection
    strength = rim_strength(grey, first)
    background = _background_colour(work)
    tilt = photo_tilt(grey, work, first[strength >= 0.5 * strength.max()], background) if rectify else None
    if tilt is not None:
        return _found_rectified(work, work_scale, radius_range, tilt)
    typical = typical_radius(first, strength)
    low, high = typical * radius_range[0], typical * radius_range[1]
    candidates = _hough(grey, low, high)
    kept: list[np.ndarray] = []
    for x, y, r in sorted(candidates, key=lambda c: -c[2]):
        reason = _drop_reason(work, (x, y, r), kept, background)
        if reason:
            detection.dropped.append(_dropped((x, y, r), work_scale, reason))
        else:
            kept.append(np.array([x, y, r]))
    for x, y, r in first:
        if (r < low or r > high) and not _inside(x, y, kept):
            size = "smaller" if r < low else "larger"
            detection.dropped.append(_dropped((x, y, r), work_scale, f"much {size} than the other coins"))
    rims = [
        outer_rim(
            grey, fit_rim(grey, work, circle, background, ROUND_SPAN, round_only=True), background, work
        )
        for circle in kept
    ]
    rims.sort(key=lambda c: (round(c[1] / typical), c[0]))
    detection.coins = [_scaled(rim, work_scale) for rim in rims]
    return detection


TILT_SPREAD = 15.0
"""Degrees within which the major axes of the clearest coins must agree to be one tilt."""
ROUND_SPAN = (0.8, 1.2)
"""Radii searched for the rim of a coin of a photo taken from above (Hough is good to a few pixels)."""
TILT_SPAN = (0.7, 1.7)
"""Radii searched for the rim of a coin that may be seen at an angle (Hough finds its minor axis)."""
MOST_CLEAR = 12
"""Clearest circles whose rims decide whether a photo was taken at an angle."""


def photo_tilt(
    grey: np.ndarray, work: np.ndarray, clear: np.ndarray, background: np.ndarray
) -> tuple[float, float] | None:
    """(minor/major axis ratio, major axis angle in degrees) shared by the clearest coins when the
    photo was taken at an angle, else None."""
    rims = np.array([fit_rim(grey, work, c, background, TILT_SPAN) for c in clear[:MOST_CLEAR]])
    if not len(rims):
        return None
    ratios = rims[:, 3] / rims[:, 2]
    if np.median(ratios) >= ROUND:
        return None
    tilted = ratios < ROUND
    angles, weights = rims[tilted, 4], 1 - ratios[tilted]  # the more foreshortened, the surer its axis
    mean, spread = _axis_mean(angles, weights)
    agree = _axis_gap(angles, mean) <= 2 * TILT_SPREAD  # a coin lying on another, a bad fit: left out
    if agree.sum() < max(2, len(angles) / 2):
        return None
    mean, spread = _axis_mean(angles[agree], weights[agree])
    return (float(np.median(ratios)), float(mean % 180)) if spread <= TILT_SPREAD else None


def _axis_mean(angles: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted mean direction of axes in degrees (0 and 180 are one axis) and their spread."""
    doubled = np.radians(2 * angles)
    sin, cos = np.average(np.sin(doubled), weights=weights), np.average(np.cos(doubled), weights=weights)
    spread = np.degrees(np.arccos(min(1.0, np.hypot(sin, cos)))) / 2
    return float(np.degrees(np.arctan2(sin, cos)) / 2), float(spread)


def _axis_gap(angles: np.ndarray, mean: float) -> np.ndarray:
    gap = np.abs((angles - mean) % 180)
    return np.minimum(gap, 180 - gap)


def _found_rectified(
    work: np.ndarray, work_scale: float, radius_range: tuple[float, float], tilt: tuple[float, float]
) -> Detection:
    """Coins found in ``work`` stretched by 1 / ratio along the minor axis, mapped back as ellipses."""
    import cv2

    ratio, angle = tilt
    theta = np.radians(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    stretch = rotation @ np.diag([1.0, 1.0 / ratio]) @ rotation.T
    height, width = work.shape[:2]
    corners = stretch @ np.array([[0, width, 0, width], [0, 0, height, height]], dtype=float)
    shift = -corners.min(axis=1)
    size = np.ceil(corners.max(axis=1) + shift).astype(int)
    matrix = np.column_stack([stretch, shift])
    rectified = cv2.warpAffine(work, matrix, (int(size[0]), int(size[1])), borderMode=cv2.BORDER_REPLICATE)
    found = find_coins(rectified, 1.0, radius_range, rectify=False)
    back = np.linalg.inv(stretch)

    def home(x: float, y: float) -> tuple[float, float]:
        px, py = back @ (np.array([x, y]) - shift)
        return float(px * work_scale), float(py * work_scale)

    grey = cv2.medianBlur(cv2.cvtColor(work, cv2.COLOR_RGB2GRAY), 5)
    background = _background_colour(work)
    coins = []
    for c in found.coins:
        mapped = fit_ellipse((back @ (c.outline().T - shift[:, None])).T)
        shape = (mapped[3] / mapped[2], mapped[4])
        direct = fit_rim(grey, work, mapped[:3], background, (0.85, 1.2), shape)
        near = (
            np.hypot(*(direct[:2] - mapped[:2])) < 0.15 * mapped[3] and abs(direct[2] / mapped[2] - 1) < 0.15
        )
        coins.append(_scaled(direct if near else mapped, work_scale))
    dropped = [
        {**d, **dict(zip(("x", "y"), (round(v, 1) for v in home(d["x"], d["y"]))))} for d in found.dropped
    ]
    return Detection(coins=coins, dropped=dropped)


def _scaled(rim: np.ndarray, scale: float) -> Circle:
    x, y, a, b, angle = (float(v) for v in rim)
    return Circle(
        x * scale, y * scale, a * scale, b * scale if b < ROUND * a else None, angle if b < ROUND * a else 0.0
    )


def central_coin(image: np.ndarray, min_share: float = 0.2) -> Circle | None:
    """The coin a crop is centred on (RGB uint8 array): of the circles whose radius is
    ``min_share`` to 55% of the short side, the one nearest the middle, or the largest circle
    around the same centre (a bimetallic coin's inner ring is not the coin); None when there is none."""
    import cv2

    grey = cv2.medianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 3)
    side = min(grey.shape)
    found = _hough(grey, side * min_share, side * 0.55)
    if len(found) == 0:
        return None
    middle = np.array(grey.shape[::-1]) / 2
    nearest = min(found, key=lambda c: np.hypot(*(c[:2] - middle)))
    same = [c for c in found if np.hypot(*(c[:2] - nearest[:2])) < 0.3 * max(c[2], nearest[2])]
    x, y, r = refine(grey, max(same, key=lambda c: c[2]))
    return Circle(float(x), float(y), float(r))


def _hough(grey: np.ndarray, min_radius: float, max_radius: float) -> np.ndarray:
    """(x, y, r) rows from OpenCV's gradient Hough transform (the accurate "ALT" variant)."""
    import cv2

    found = cv2.HoughCircles(
        grey,
        cv2.HOUGH_GRADIENT_ALT,
        dp=1.5,
        minDist=max(2.0, min_radius),
        param1=300,
        param2=0.6,
        minRadius=max(1, int(min_radius)),
        maxRadius=max(2, int(np.ceil(max_radius))),
    )
    return np.zeros((0, 3)) if found is None else found[0].astype(float)


def _dropped(circle: tuple[float, float, float], work_scale: float, reason: str) -> dict[str, Any]:
    x, y, r = (float(v) * work_scale for v in circle)
    return {"x": round(x, 1), "y": round(y, 1), "radius": round(r, 1), "reason": reason}


def _inside(x: float, y: float, kept: list[np.ndarray]) -> bool:
    return any(np.hypot(x - other[0], y - other[1]) < other[2] for other in kept)


def _drop_reason(
    work: np.ndarray, circle: tuple[float, float, float], kept: list[np.ndarray], background: np.ndarray
) -> str | None:
    x, y, r = circle
    if _inside(x, y, kept):
        return "inside another coin (same coin, or a bimetallic coin's inner ring)"
    height, width = work.shape[:2]
    outside = max(r - x, r - y, x + r - width, y + r - height)
    if outside > BORDER_CUT * r:
        return "cut by the image border"
    if _contrast(work, circle, background) < BACKGROUND_CONTRAST:
        return "looks like the background, not a coin"
    return None


def _background_colour(work: np.ndarray) -> np.ndarray:
    """The photo's most common colour: coins cover far less than half of a typical pile photo."""
    return np.median(work.reshape(-1, 3), axis=0)


def _contrast(work: np.ndarray, circle: tuple[float, float, float], background: np.ndarray) -> float:
    """Mean colour distance between the inner half of the circle and the background."""
    x, y, r = circle
    inner = r / 2
    y0, y1 = int(max(0, y - inner)), int(min(work.shape[0], y + inner + 1))
    x0, x1 = int(max(0, x - inner)), int(min(work.shape[1], x + inner + 1))
    patch = work[y0:y1, x0:x1].reshape(-1, 3).astype(float)
    if len(patch) == 0:
        return 0.0
    return float(np.linalg.norm(patch.mean(axis=0) - background))
