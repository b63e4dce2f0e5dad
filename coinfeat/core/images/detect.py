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
    """A coin found in the photo, in full-resolution pixels."""

    x: float
    y: float
    radius: float

    @property
    def diameter(self) -> float:
        return 2 * self.radius


@dataclass
class Detection:
    """The circles kept and those dropped, each with its reason (full-resolution pixels)."""

    coins: list[Circle] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)


def find_coins(
    work: np.ndarray,
    work_scale: float = 1.0,
    radius_range: tuple[float, float] = RADIUS_RANGE,
) -> Detection:
    """Circles in an RGB ``work`` image (uint8, long side about ``WORK_SIZE``); coordinates in the
    result are multiplied by ``work_scale`` to give full-resolution pixels."""
    import cv2

    grey = cv2.medianBlur(cv2.cvtColor(work, cv2.COLOR_RGB2GRAY), 5)
    short = min(grey.shape)
    first = _hough(grey, short * MIN_RADIUS, short * MAX_RADIUS)
    detection = Detection()
    if len(first) == 0:
        return detection
    typical = typical_radius(first, rim_strength(grey, first))
    low, high = typical * radius_range[0], typical * radius_range[1]
    candidates = _hough(grey, low, high)
    background = _background_colour(work)
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
    kept = [refine(grey, circle) for circle in kept]
    kept.sort(key=lambda c: (round(c[1] / typical), c[0]))
    detection.coins = [
        Circle(float(x * work_scale), float(y * work_scale), float(r * work_scale)) for x, y, r in kept
    ]
    return detection


RAYS = 90


def _ray_steps(grey: np.ndarray, circle: np.ndarray, span: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Brightness steps along ``RAYS`` rays from the centre, between (1 - span) and (1 + span)
    radii: (rays, samples - 1) step sizes and the radii they lie between."""
    from scipy.ndimage import map_coordinates

    x, y, r = circle
    angles = np.linspace(0, 2 * np.pi, RAYS, endpoint=False)
    steps = np.linspace((1 - span) * r, (1 + span) * r, max(16, int(4 * span * r)))
    xs = x + np.cos(angles)[:, None] * steps[None, :]
    ys = y + np.sin(angles)[:, None] * steps[None, :]
    profile = map_coordinates(grey, [ys.ravel(), xs.ravel()], order=1, mode="nearest")
    return np.abs(np.diff(profile.reshape(len(angles), len(steps)), axis=1)), steps


def rim_strength(grey: np.ndarray, circles: np.ndarray) -> np.ndarray:
    """How clearly each circle's rim stands out: the median over rays of the strongest brightness
    step within 10% of its radius. A coin's rim is a step almost all the way round; a blob of
    texture that Hough reads as a circle has a step here and there."""
    image = grey.astype(float)
    return np.array([float(np.median(_ray_steps(image, c, 0.1)[0].max(axis=1))) for c in circles])


def typical_radius(circles: np.ndarray, rims: np.ndarray) -> float:
    """The radius of the photo's coins: the median radius of the circles with clear rims (at least
    half the clearest), so that many small texture circles cannot pull it down."""
    clear = rims >= 0.5 * rims.max() if len(rims) and rims.max() > 0 else np.ones(len(circles), bool)
    return float(np.median(circles[clear, 2]))


def refine(grey: np.ndarray, circle: np.ndarray) -> np.ndarray:
    """The circle fitted to the coin's rim: along rays from the centre, the strongest brightness
    step between 0.8 and 1.2 radii is an edge point; a least-squares circle through those points,
    refitted without the worst third (rays that met a touching coin or a shadow). Hough's
    answer is good to a few pixels; sizes need better than 2% of a diameter."""
    x, y, r = circle
    angles = np.linspace(0, 2 * np.pi, RAYS, endpoint=False)
    step, steps = _ray_steps(grey.astype(float), circle)
    best = step.argmax(axis=1)
    at = (steps[best] + steps[best + 1]) / 2
    points = np.column_stack([x + np.cos(angles) * at, y + np.sin(angles) * at])
    fitted = _fit_circle(points)
    residual = np.abs(np.hypot(*(points - fitted[:2]).T) - fitted[2])
    fitted = _fit_circle(points[residual <= np.quantile(residual, 2 / 3)])
    moved = np.hypot(fitted[0] - x, fitted[1] - y)
    return fitted if moved < 0.2 * r and abs(fitted[2] - r) < 0.2 * r else np.asarray(circle, dtype=float)


def _fit_circle(points: np.ndarray) -> np.ndarray:
    """Least-squares (Kasa) circle through 2-D points: (x, y, r)."""
    a = np.column_stack([2 * points, np.ones(len(points))])
    b = (points**2).sum(axis=1)
    (cx, cy, c), *_ = np.linalg.lstsq(a, b, rcond=None)
    return np.array([cx, cy, np.sqrt(max(c + cx**2 + cy**2, 0.0))])


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
