"""What ``count`` found in a photo: its coins and their total, as records that become the JSON
output, the report and the web page's answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image

from coinfeat.core.images.detect import Circle
from coinfeat.counting.money import Doubt, format_range, total_range


@dataclass
class Coin:
    """One coin of a photo: where it is, how big, what it is and what it is worth."""

    number: int
    x: float
    y: float
    diameter_px: float
    label: str
    name: str
    probability: float
    unknown: bool
    diameter_mm: float | None = None
    value: float | None = None
    currency: str | None = None
    classifier: dict[str, Any] = field(default_factory=dict)
    """The classifier's own answer, before sizes: label, name, probability."""
    with_sizes: dict[str, Any] | None = None
    """The answer after re-weighing by size (None when no scale could be estimated)."""
    answer_set: list[str] = field(default_factory=list)
    """The classes this coin may be at the chosen confidence, the answer first (empty for a head
    saved without a calibration); classes its size rules out are left out."""
    answer_set_names: list[str] = field(default_factory=list)
    overlaps: list[int] = field(default_factory=list)
    """Numbers of the coins this one lies partly over or under (its crop shows part of them)."""
    minor_px: float | None = None
    """A coin seen at an angle: its outline's minor axis in pixels (``diameter_px`` is the major
    axis, the coin's true diameter); None for a coin seen from straight above."""
    angle: float | None = None
    """Direction of the major axis, degrees (with ``minor_px``)."""

    def outline(self, points: int = 72) -> list[tuple[float, float]]:
        """The coin's outline in photo pixels: its circle, or its ellipse when seen at an angle."""
        minor = self.minor_px / 2 if self.minor_px else None
        circle = Circle(self.x, self.y, self.diameter_px / 2, minor, self.angle or 0.0)
        return [tuple(p) for p in circle.outline(points).tolist()]

    def box(self) -> tuple[float, float, float, float]:
        """The outline's bounding box (x0, y0, x1, y1)."""
        xs, ys = zip(*self.outline())
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def doubtful(self) -> bool:
        """Counted, but its answer set holds more than one class."""
        return not self.unknown and len(self.answer_set) > 1


@dataclass
class PhotoCount:
    """Everything counted in one photo; ``total`` holds the answer used (sizes when available)."""

    path: str
    coins: list[Coin] = field(default_factory=list)
    total: dict[str, float] = field(default_factory=dict)
    unpriced: list[str] = field(default_factory=list)
    """Labels of counted coins whose face value is not known (not in the total)."""
    scale_px_per_mm: float | None = None
    answer: str = "classifier"
    """"sizes" when the scale was estimated and the size-aware answer is used."""
    crops: str = "coin"
    """How the coins were cropped for the answer: "coin", or "fixed N mm" (see the module doc)."""
    totals: dict[str, dict[str, float]] = field(default_factory=dict)
    """Both answers' totals: {"classifier": {...}, "with_sizes": {...}}."""
    doubts: list[Doubt] = field(default_factory=list)
    """Counted coins whose answer set holds other priced classes: what they could be instead."""
    dropped: list[dict[str, Any]] = field(default_factory=list)
    image_size: tuple[int, int] = (0, 0)
    annotated: str | None = None
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    """Why this photo may be counted badly (a panorama, a screenshot), one line each."""
    pretrained: bool = True
    picture: Image.Image | None = field(default=None, repr=False)
    """The annotated photo, when asked for (not part of the JSON)."""

    @property
    def counted(self) -> list[Coin]:
        return [c for c in self.coins if not c.unknown]

    @property
    def total_range(self) -> dict[str, list[float]]:
        """Per currency [lowest, highest] total the doubtful coins allow (empty without doubts)."""
        if not self.doubts:
            return {}
        low, high = total_range(self.total, self.doubts)
        return {c: [low.get(c, 0.0), high.get(c, 0.0)] for c in sorted({*low, *high})}

    @property
    def message(self) -> str:
        if self.error:
            return f"skipped: {self.error}"
        if not self.coins:
            return "no coin found in this photo"
        unknown = len(self.coins) - len(self.counted)
        extra = f" ({unknown} unknown, not counted)" if unknown else ""
        return f"{len(self.coins)} coin(s){extra}: {format_range(self.total, self.doubts)}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, picture=None))
        data.pop("picture")
        return {**data, "total_range": self.total_range, "message": self.message}


OVERLAP = 0.95
"""Two coins overlap when their centres are closer than this share of the sum of their radii
(touching coins lie at about the sum)."""


def mark_overlaps(coins: list[Coin]) -> None:
    """Record, on each coin, the coins it overlaps."""
    for i, a in enumerate(coins):
        for b in coins[i + 1 :]:
            if np.hypot(a.x - b.x, a.y - b.y) < OVERLAP * (a.diameter_px + b.diameter_px) / 2:
                a.overlaps.append(b.number)
                b.overlaps.append(a.number)
