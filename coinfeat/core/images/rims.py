"""A found coin's rim, measured along rays from its centre: a circle, or an ellipse where the coin
is seen at an angle.

Hough's circles are good to a few pixels; sizes need better than 2% of a diameter, and a coin seen
at an angle is an ellipse whose major axis is its diameter. Along each ray the rim is the innermost
strong brightness step beyond which lies the table or a shadow on it (darker than the table): not
a bimetallic coin's inner disc (beyond it lies the outer ring), not a shadow's far edge (inside it
lies the shadow). Rays that meet a touching coin are outliers of a robust fit.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

RAYS = 90
ROUND = 0.95
"""An ellipse whose minor axis is at least this share of its major axis is taken as a circle (the
circle fit is the more precise there)."""
TABLE_LIKE = 30.0
"""Colour distance (0..255) within which what lies beyond an edge counts as the table."""
SHADOW = 25.0
"""What lies beyond an edge and is this much darker than the table, in its colour, counts as a
shadow on it."""
SHADOW_HUE = 0.04
"""Chromaticity distance within which a darker patch has the table's colour (a shadow)."""
STRONG = 0.25
"""A step is a rim candidate when it is at least this share of its ray's strongest step."""


def ray_steps(grey: np.ndarray, circle: np.ndarray, span: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Brightness steps along ``RAYS`` rays from the centre, between (1 - span) and (1 + span)
    radii: (rays, samples - 1) step sizes and the radii they lie between."""
    x, y, r = circle[:3]
    angles = np.linspace(0, 2 * np.pi, RAYS, endpoint=False)
    steps = np.linspace((1 - span) * r, (1 + span) * r, max(16, int(4 * span * r)))
    profile = _sample(grey, x, y, angles, steps)
    return np.abs(np.diff(profile, axis=1)), steps


def _sample(image: np.ndarray, x: float, y: float, angles: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(rays, radii) bilinear samples of a 2-D image along rays from (x, y); ``radii`` are the same
    for every ray, or one row per ray."""
    radii = radii if radii.ndim == 2 else np.broadcast_to(radii, (len(angles), len(radii)))
    xs = x + np.cos(angles)[:, None] * radii
    ys = y + np.sin(angles)[:, None] * radii
    values = map_coordinates(image, [ys.ravel(), xs.ravel()], order=1, mode="nearest", output=np.float64)
    return values.reshape(radii.shape)


def rim_strength(grey: np.ndarray, circles: np.ndarray) -> np.ndarray:
    """How clearly each circle's rim stands out: the median over rays of the strongest brightness
    step within 10% of its radius. A coin's rim is a step almost all the way round; a blob of
    texture that Hough reads as a circle has a step here and there."""
    return np.array([float(np.median(ray_steps(grey, c, 0.1)[0].max(axis=1))) for c in circles])


def typical_radius(circles: np.ndarray, rims: np.ndarray) -> float:
    """The radius of the photo's coins: the median radius of the circles with clear rims (at least
    half the clearest), so that many small texture circles cannot pull it down."""
    clear = rims >= 0.5 * rims.max() if len(rims) and rims.max() > 0 else np.ones(len(circles), bool)
    return float(np.median(circles[clear, 2]))


def refine(grey: np.ndarray, circle: np.ndarray) -> np.ndarray:
    """The circle fitted to a single coin's rim (a crop centred on one coin): the strongest step
    along each ray between 0.8 and 1.2 radii, a least-squares circle, refitted without the worst third."""
    x, y, _ = circle
    angles = np.linspace(0, 2 * np.pi, RAYS, endpoint=False)
    step, steps = ray_steps(grey, circle)
    best = step.argmax(axis=1)
    at = (steps[best] + steps[best + 1]) / 2
    fitted = _robust_circle(np.column_stack([x + np.cos(angles) * at, y + np.sin(angles) * at]))
    return fitted if _near(fitted, circle) else np.asarray(circle, dtype=float)


def fit_rim(
    grey: np.ndarray,
    work: np.ndarray,
    circle: np.ndarray,
    background: np.ndarray,
    span: tuple[float, float] = (0.7, 1.5),
    shape: tuple[float, float] | None = None,
    *,
    round_only: bool = False,
) -> np.ndarray:
    """The rim of a coin of a whole photo as (x, y, semi-major, semi-minor, angle in degrees).
    Along each ray between ``span`` radii of the found circle (or of an ellipse of ``shape``, its
    axis ratio and angle, when the coin's tilt is known), the rim is the outermost edge that closes
    round the centre, else the innermost strong step beyond which lies the table or a shadow, else
    the strongest step; an ellipse when the points are clearly not round, else a circle (both
    refitted without the worst third of the rays). Hough's circle on a coin seen at an angle is
    near its minor axis: a wide span reaches the major one. ``round_only``: always a circle (a
    photo taken from above)."""
    if shape is None:  # rays from the centre of the strongest steps' circle: Hough's can be a few pixels off
        circle = np.array([*refine(grey, circle)[:2], circle[2]])
    x, y, r = circle
    angles = np.linspace(0, 2 * np.pi, RAYS, endpoint=False)
    along = _radius_along(angles, 1.0, shape[0], np.radians(shape[1])) if shape else np.ones(RAYS)
    radii = np.linspace(span[0] * r, span[1] * r, max(24, int(2 * (span[1] - span[0]) * r)))
    step = np.abs(np.diff(_sample(grey, x, y, angles, along[:, None] * radii), axis=1))
    colours = np.stack(
        [_sample(work[..., c], x, y, angles, along[:, None] * radii) for c in range(3)], axis=-1
    )
    beyond_table = _table_or_shadow(colours, background)
    middles = (radii[:-1] + radii[1:]) / 2
    chosen = _rim_steps(
        step, beyond_table, middles, lambda picked: _refit(x, y, angles, middles[picked], shape)
    )
    at = middles[chosen] * along
    points = np.column_stack([x + np.cos(angles) * at, y + np.sin(angles) * at])
    ellipse = None if round_only else _robust_ellipse(points)
    if ellipse is not None and ellipse[3] < ROUND * ellipse[2] and _plausible(ellipse, circle):
        return ellipse
    fitted = _robust_circle(points)
    inside_span = span[0] * r <= fitted[2] <= span[1] * r and np.hypot(fitted[0] - x, fitted[1] - y) < 0.4 * r
    fitted = fitted if inside_span else np.asarray(circle, dtype=float)
    return np.array([*fitted, fitted[2], 0.0])


def _rim_steps(step: np.ndarray, beyond_table: np.ndarray, middles: np.ndarray, expect) -> np.ndarray:
    """Each ray's rim step: on the outermost closed ring (seen again from the centre of a first
    fit, ``expect``), else by :func:`_rim_index`."""
    peaks = [_strongest_peaks(row) for row in step]
    ring = _closed_ring([middles[p] for p in peaks], [row[p] for row, p in zip(step, peaks)])
    if ring is None:
        return np.array([_rim_index(step[i], beyond_table[i]) for i in range(len(step))])
    expected = np.full(len(step), ring)
    for _ in range(2):
        chosen = np.array(
            [_nearest(p, middles, expected[i], step[i], beyond_table[i]) for i, p in enumerate(peaks)]
        )
        expected = expect(chosen)
    return chosen


def _strongest_peaks(step: np.ndarray, keep: int = 3) -> np.ndarray:
    """A ray's :data:`STRONG` local maxima, at most the ``keep`` strongest, in radius order."""
    peaks = np.flatnonzero(_peaks(step))
    return np.sort(peaks[np.argsort(-step[peaks])[:keep]])


def _refit(x: float, y: float, angles: np.ndarray, at: np.ndarray, shape) -> np.ndarray:
    """Where each ray meets a circle fitted through its chosen points (for a round coin, whose
    found centre may be a little off); an ellipse's points are kept."""
    if shape is not None:
        return at
    fitted = _robust_circle(np.column_stack([x + np.cos(angles) * at, y + np.sin(angles) * at]))
    return _along_rays(x, y, angles, fitted)


def _table_or_shadow(colours: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(rays, steps): whether what lies just beyond each step (the next few samples) looks like the
    table, or like a shadow on it (its colour, darker)."""
    ahead = 3
    padded = np.concatenate([colours, np.repeat(colours[:, -1:], ahead, axis=1)], axis=1)
    beyond = np.mean([padded[:, 1 + k : 1 + k + colours.shape[1] - 1] for k in range(ahead)], axis=0)
    distance = np.linalg.norm(beyond - background, axis=-1)
    darker = background.mean() - beyond.mean(axis=-1)
    hue = np.linalg.norm(_chromaticity(beyond) - _chromaticity(background), axis=-1)
    return (distance < TABLE_LIKE) | ((darker > SHADOW) & (hue < SHADOW_HUE))


def _chromaticity(rgb: np.ndarray) -> np.ndarray:
    """Colour without brightness: each channel's share of the sum."""
    return rgb / np.maximum(rgb.sum(axis=-1, keepdims=True), 1.0)


def _peaks(step: np.ndarray) -> np.ndarray:
    """Strong steps along a ray: local maxima of at least :data:`STRONG` of its strongest."""
    strong = step >= STRONG * step.max()
    return strong & (step >= np.r_[step[1:], -1]) & (step >= np.r_[-1, step[:-1]])


def _rim_index(step: np.ndarray, beyond_table: np.ndarray) -> int:
    """The innermost strong step beyond which lies the table or a shadow, else the strongest step."""
    for index in np.flatnonzero(_peaks(step)):
        if beyond_table[index]:
            return int(index)
    return int(step.argmax())


CLOSED = 0.75
"""Share of the rays on which an edge must be found for it to close round the coin."""
RING_STRENGTH = 0.6
"""A closed edge at least this share as strong as the strongest closed edge can be the rim."""
RING_TOLERANCE = 0.06
"""How far (a share of its radius) a ray's edge may lie from a ring and still belong to it."""


def _closed_ring(candidates: list[np.ndarray], strengths: list[np.ndarray]) -> float | None:
    """The radius of the outermost edge that closes round the centre (found on :data:`CLOSED` of
    the rays) and is about as strong as the strongest that does: a coin's rim, not a shadow (one
    side only), a neighbour or the table's texture; a bimetallic coin's inner disc closes too, but
    lies inside its rim. None when no edge closes."""
    if not candidates or not any(len(c) for c in candidates):
        return None
    radii = np.concatenate(candidates)
    power = np.concatenate(strengths)
    ray = np.repeat(np.arange(len(candidates)), [len(c) for c in candidates])
    near = np.abs(radii[None, :] - radii[:, None]) <= RING_TOLERANCE * radii[:, None]  # ring x candidate
    hits = np.zeros((len(radii), len(candidates)))
    np.maximum.at(hits.T, ray, (near * power[None, :]).T)  # each ring's strongest step on each ray
    closed = (hits > 0).sum(axis=1) >= CLOSED * len(candidates)
    if not closed.any():
        return None
    strength = np.array([np.median(row[row > 0]) if closed[i] else 0.0 for i, row in enumerate(hits)])
    order = np.argsort(-radii)
    for i in order:
        if closed[i] and strength[i] >= RING_STRENGTH * strength.max():
            return float(radii[i])
    return None


def _along_rays(x: float, y: float, angles: np.ndarray, circle: np.ndarray) -> np.ndarray:
    """How far from (x, y), along each ray, the ray meets ``circle``."""
    cx, cy, r = circle
    u = np.cos(angles) * (cx - x) + np.sin(angles) * (cy - y)
    return u + np.sqrt(np.maximum(u**2 - (cx - x) ** 2 - (cy - y) ** 2 + r**2, 0.0))


def _nearest(
    peaks: np.ndarray, middles: np.ndarray, ring: float, step: np.ndarray, beyond: np.ndarray
) -> int:
    """The ray's edge on the ring (at ``ring`` from the centre along it), or its usual choice where
    the ring has no edge on it."""
    close = [p for p in peaks if abs(middles[p] - ring) <= RING_TOLERANCE * ring]
    return min(close, key=lambda p: abs(middles[p] - ring)) if close else _rim_index(step, beyond)


def outer_rim(grey: np.ndarray, rim: np.ndarray, background: np.ndarray, work: np.ndarray) -> np.ndarray:
    """``rim``, or the coin's outer rim when ``rim`` is a bimetallic coin's inner disc: a second
    edge concentric with it, 1.2 to 1.7 times as large, found on most rays at one scale, with a
    ring between the two that does not look like the table."""
    x, y, a, b, angle = rim
    rays = np.linspace(0, 2 * np.pi, RAYS, endpoint=False)
    along = _radius_along(rays, a, b, np.radians(angle))
    scales = np.linspace(1.15, 1.75, 25)
    profile = _sample(grey, x, y, rays, along[:, None] * scales[None, :])
    jumps = np.abs(np.diff(profile, axis=1))
    where = scales[jumps.argmax(axis=1)]
    inner = np.median(ray_steps(grey, np.array([x, y, (a + b) / 2]), 0.1)[0].max(axis=1))
    strong = np.median(jumps.max(axis=1)) >= 0.5 * inner
    settled = np.subtract(*np.quantile(where, [0.75, 0.25])) <= 0.08
    s = float(np.median(where))
    middle = ((1 + s) / 2 * along)[:, None]
    ring = np.array([_sample(work[..., c], x, y, rays, middle).mean() for c in range(3)])
    differs = np.linalg.norm(ring - background) >= TABLE_LIKE / 2
    return np.array([x, y, a * s, b * s, angle]) if strong and settled and differs and s >= 1.2 else rim


def _radius_along(rays: np.ndarray, a: float, b: float, theta: float) -> np.ndarray:
    """The ellipse's radius in the direction of each ray."""
    c, s = np.cos(rays - theta), np.sin(rays - theta)
    return a * b / np.sqrt((b * c) ** 2 + (a * s) ** 2)


def _robust_ellipse(points: np.ndarray) -> np.ndarray | None:
    ellipse = fit_ellipse(points)
    if ellipse is None:
        return None
    residual = _ellipse_residual(points, ellipse)
    return fit_ellipse(points[residual <= np.quantile(residual, 2 / 3)])


def fit_ellipse(points: np.ndarray) -> np.ndarray | None:
    """OpenCV's least-squares ellipse through 2-D points: (x, y, semi-major, semi-minor, angle of
    the major axis in degrees), or None for too few points."""
    import cv2

    if len(points) < 6:
        return None
    (cx, cy), (w, h), angle = cv2.fitEllipse(points.astype(np.float32))
    if w < h:
        w, h, angle = h, w, angle + 90
    return np.array([cx, cy, w / 2, h / 2, angle % 180])


def _ellipse_residual(points: np.ndarray, ellipse: np.ndarray) -> np.ndarray:
    """Approximate distance of each point from the ellipse, in pixels."""
    x, y, a, b, angle = ellipse
    theta = np.radians(angle)
    dx, dy = points[:, 0] - x, points[:, 1] - y
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return np.abs(np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1) * (a + b) / 2


def _plausible(ellipse: np.ndarray, circle: np.ndarray) -> bool:
    """An ellipse near the found circle, of a tilt a photo of coins on a table can show."""
    x, y, a, b, _ = ellipse
    near = np.hypot(x - circle[0], y - circle[1]) < 0.6 * circle[2]  # Hough may sit off a tilted coin
    return bool(near and 0.5 * circle[2] < a < 1.8 * circle[2] and b > 0.4 * a)


def _robust_circle(points: np.ndarray) -> np.ndarray:
    """A least-squares circle, refitted without the worst third of the points."""
    fitted = _fit_circle(points)
    residual = np.abs(np.hypot(*(points - fitted[:2]).T) - fitted[2])
    return _fit_circle(points[residual <= np.quantile(residual, 2 / 3)])


def _near(fitted: np.ndarray, circle: np.ndarray) -> bool:
    x, y, r = circle
    return bool(np.hypot(fitted[0] - x, fitted[1] - y) < 0.2 * r and abs(fitted[2] - r) < 0.2 * r)


def _fit_circle(points: np.ndarray) -> np.ndarray:
    """Least-squares (Kasa) circle through 2-D points: (x, y, r)."""
    a = np.column_stack([2 * points, np.ones(len(points))])
    b = (points**2).sum(axis=1)
    (cx, cy, c), *_ = np.linalg.lstsq(a, b, rcond=None)
    return np.array([cx, cy, np.sqrt(max(c + cx**2 + cy**2, 0.0))])
