"""``coinfeat count --truth``: how well counting did on photos whose coins are known.

Truth comes from what the path holds: marked coins (YOLO boxes with ``classes.txt``, LabelMe or
COCO JSON, read by :mod:`coinfeat.core.images.annotations`) and/or a per-photo counts CSV such as
``euro-coins-photos/truth.csv`` (``photo`` and one column per class, optionally ``value_cents``).
A folder holding both (``euro-coins-phone``) gives both. Photos are matched by file name.

Per photo and in all: coins found against true ones (a found coin matches a marked one when their
boxes overlap with IoU >= ``MATCH_IOU``, each used once, best overlaps first), detection precision
and recall, class accuracy of the matched coins, count error, and the error of the total value.
With counts only, the class check compares the number of coins of each class instead.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import ImageDraw

from coinfeat.core.errors import CoinfeatError, DecodeError
from coinfeat.core.heads.record import read_head_record
from coinfeat.core.images.annotations import Mark, detect_format, read_annotations
from coinfeat.core.images.decode import data_url, decode, read_bytes
from coinfeat.counting.count import count_coins
from coinfeat.counting.money import face_value
from coinfeat.counting.results import PhotoCount

MATCH_IOU = 0.5
TRUTH_CSV = "truth.csv"
WORST_SHOWN = 8


@dataclass
class PhotoTruth:
    """What one photo holds: marked coins and/or counts per class and the total value."""

    marks: list[Mark] | None = None
    counts: dict[str, int] | None = None
    value: float | None = None
    """Face value of all its coins, in the currency's main unit (euros)."""


@dataclass(kw_only=True)
class PhotoScore:
    """One photo's figures; None where its truth cannot tell."""

    photo: str
    found: int
    true: int
    matched: int | None = None
    right_class: int | None = None
    count_error: int = 0
    value_found: float = 0.0
    value_true: float | None = None
    value_range: list[float] = field(default_factory=list)
    """[lowest, highest] total the doubtful coins allow (empty when no coin was in doubt)."""
    doubtful: int = 0
    missed: list[list[float]] = field(default_factory=list)
    false_coins: list[int] = field(default_factory=list)
    wrong_class: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def value_error(self) -> float | None:
        if self.value_true is None:
            return None
        return abs(self.value_found - self.value_true) / self.value_true if self.value_true else 0.0

    @property
    def in_range(self) -> bool | None:
        """The true total lies within the counted total's range (or equals the total)."""
        if self.value_true is None:
            return None
        low, high = self.value_range or [self.value_found, self.value_found]
        return low - 0.005 <= self.value_true <= high + 0.005

    @property
    def badness(self) -> float:
        """How wrong the photo went, to show the worst first."""
        wrong = len(self.missed) + len(self.false_coins) + len(self.wrong_class)
        return wrong + abs(self.count_error) + (self.value_error or 0.0) + (10 if self.error else 0)


@dataclass
class Scorecard:
    photos: list[PhotoScore]
    notes: list[str] = field(default_factory=list)
    """Problems with the truth itself (a class the head never learned), one line each."""

    def summary(self) -> dict[str, Any]:
        """Figures over all scored photos (photos that could not be read count as missing everything)."""
        marked = [p for p in self.photos if p.matched is not None]
        found = sum(p.found for p in marked)
        true = sum(p.true for p in marked)
        matched = sum(p.matched or 0 for p in marked)
        right = sum(p.right_class or 0 for p in marked)
        counted = [p for p in self.photos if p.matched is None and p.right_class is not None]
        counted_true = sum(p.true for p in counted)
        errors = [p.value_error for p in self.photos if p.value_error is not None]
        in_range = [p.in_range for p in self.photos if p.in_range is not None]
        return {
            "photos": len(self.photos),
            "unreadable": sum(p.error is not None for p in self.photos),
            "coins_true": sum(p.true for p in self.photos),
            "coins_found": sum(p.found for p in self.photos),
            "detection_precision": matched / found if marked and found else None,
            "detection_recall": matched / true if marked and true else None,
            "class_accuracy": right / matched
            if matched
            else (sum(p.right_class for p in counted) / counted_true if counted_true else None),
            "count_exact": float(np.mean([p.count_error == 0 for p in self.photos])) if self.photos else None,
            "count_within_one": float(np.mean([abs(p.count_error) <= 1 for p in self.photos]))
            if self.photos
            else None,
            "median_total_error": float(np.median(errors)) if errors else None,
            "total_in_range": float(np.mean(in_range)) if in_range else None,
            "doubtful_coins": sum(p.doubtful for p in self.photos),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "notes": self.notes,
            "photos": [
                {**asdict(p), "value_error": p.value_error, "in_range": p.in_range} for p in self.photos
            ],
        }


def read_truth(path: str | Path) -> dict[str, PhotoTruth]:
    """Truth per photo file name from a folder or file (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CoinfeatError(f"--truth {path}: not found")
    truth: dict[str, PhotoTruth] = {}
    csv = path if path.suffix.lower() == ".csv" else path / TRUTH_CSV
    if csv.is_file():
        truth = _read_counts(csv)
    if path.suffix.lower() != ".csv" and _has_marks(path):
        for photo in read_annotations(path):
            entry = truth.setdefault(photo.path.name, PhotoTruth())
            entry.marks = photo.marks
    if not truth:
        raise CoinfeatError(f"--truth {path}: no marked coins and no {TRUTH_CSV} found there")
    return truth


def _has_marks(path: Path) -> bool:
    try:
        detect_format(path)
    except CoinfeatError:
        return False
    return True


COUNT_COLUMNS = ("coins", "labelled_coins")
VALUE_COLUMNS = ("value_cents", "labelled_value_cents")
"""Columns of a counts CSV that are not classes (euro-coins-phone's and euro-coins-photos' names)."""


def _read_counts(csv: Path) -> dict[str, PhotoTruth]:
    try:
        frame = pd.read_csv(csv)
    except (OSError, ValueError) as exc:
        raise CoinfeatError(f"{csv}: cannot read the counts ({exc})") from None
    if "photo" not in frame.columns:
        raise CoinfeatError(f"{csv}: a counts CSV needs a 'photo' column and one column per class")
    classes = [c for c in frame.columns if c not in ("photo", *COUNT_COLUMNS, *VALUE_COLUMNS)]
    value_column = next((c for c in VALUE_COLUMNS if c in frame.columns), None)
    truth = {}
    for record in frame.to_dict("records"):
        value = record.get(value_column) if value_column else None
        truth[Path(str(record["photo"])).name] = PhotoTruth(
            counts={c: int(record[c]) for c in classes if int(record[c])},
            value=float(value) / 100 if value is not None and not pd.isna(value) else None,
        )
    return truth


@dataclass
class ScoredCount:
    results: list[PhotoCount]
    scorecard: Scorecard
    report_md: Path
    report_html: Path


def count_and_score(
    photos: list[str | Path],
    head: str | Path,
    truth: str | Path,
    config: Any = None,
    *,
    report_dir: str | Path,
) -> ScoredCount:
    """Count ``photos`` with ``head`` (a :class:`~coinfeat.counting.count.CountConfig`), score
    them against ``truth`` and write the report into ``report_dir``."""
    expected = read_truth(truth)
    results = count_coins(photos, head, config)
    card = score(results, expected, classes=read_head_record(head)["classes"])
    md, html = write_report(card, results, report_dir)
    return ScoredCount(results, card, md, html)


def score(
    results: list[PhotoCount], truth: dict[str, PhotoTruth], *, classes: list[str] | None = None
) -> Scorecard:
    """Compare each counted photo with its truth; photos without truth are left out. With the
    head's ``classes``, truth naming a class the head never learned gets a note (those coins can
    only count as wrong classes)."""
    scored, unknown = [], set()
    for result in results:
        expected = truth.get(Path(result.path).name)
        if expected is not None:
            scored.append(score_photo(result, expected))
            if classes is not None:
                unknown |= set(_labels(expected) or []) - {str(c) for c in classes}
    if not scored:
        raise CoinfeatError("--truth names none of the photos counted (photos are matched by file name)")
    notes = [
        f"the truth names classes the head never learned: {', '.join(sorted(unknown))} "
        "(their coins count as wrong classes)"
    ]
    return Scorecard(scored, notes if unknown else [])


def score_photo(result: PhotoCount, truth: PhotoTruth) -> PhotoScore:
    counted = result.counted
    true = len(truth.marks) if truth.marks is not None else sum((truth.counts or {}).values())
    value_true = truth.value if truth.value is not None else _value(truth)
    card = PhotoScore(
        photo=result.path,
        found=len(counted),
        true=true,
        count_error=len(counted) - true,
        value_found=round(sum(c.value or 0.0 for c in counted), 4),
        value_true=value_true,
        value_range=[
            sum(r[0] for r in result.total_range.values()),
            sum(r[1] for r in result.total_range.values()),
        ]
        if result.total_range
        else [],
        doubtful=sum(c.doubtful for c in counted),
        error=result.error,
        notes=list(result.notes),
    )
    if truth.marks is not None:
        _match(card, counted, truth.marks)
    elif truth.counts is not None:
        found = pd.Series([c.label for c in counted], dtype=object).value_counts()
        card.right_class = sum(min(int(found.get(label, 0)), n) for label, n in truth.counts.items())
    return card


def _match(card: PhotoScore, coins: list, marks: list[Mark]) -> None:
    pairs = sorted(
        ((iou(_box(c), m.box), i, j) for i, c in enumerate(coins) for j, m in enumerate(marks)),
        reverse=True,
    )
    used_coins, used_marks = set(), set()
    for overlap, i, j in pairs:
        if overlap < MATCH_IOU:
            break
        if i in used_coins or j in used_marks:
            continue
        used_coins.add(i)
        used_marks.add(j)
        if coins[i].label != marks[j].label:
            card.wrong_class.append(
                {"coin": coins[i].number, "found": coins[i].label, "true": marks[j].label}
            )
    card.matched = len(used_coins)
    card.right_class = card.matched - len(card.wrong_class)
    card.missed = [list(m.box) for j, m in enumerate(marks) if j not in used_marks]
    card.false_coins = [c.number for i, c in enumerate(coins) if i not in used_coins]


def _box(coin) -> tuple[float, float, float, float]:
    r = coin.diameter_px / 2
    return (coin.x - r, coin.y - r, coin.x + r, coin.y + r)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _labels(truth: PhotoTruth) -> list[str] | None:
    """Every true coin's class (None when the truth has neither marks nor counts)."""
    if truth.marks is not None:
        return [m.label for m in truth.marks]
    if truth.counts is not None:
        return [label for label, n in truth.counts.items() for _ in range(n)]
    return None


def _value(truth: PhotoTruth) -> float | None:
    labels = _labels(truth)
    values = [face_value(label) for label in labels or []]
    if labels is None or any(v is None for v in values):
        return None
    return round(sum(v.value for v in values), 4)


# --------------------------------------------------------------------------- report


def write_report(card: Scorecard, results: list[PhotoCount], out: str | Path) -> tuple[Path, Path]:
    """``report.md`` and a self-contained ``report.html`` (the worst photos drawn inline) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = card.summary()
    rows = sorted(card.photos, key=lambda p: -p.badness)
    table = _table(rows)
    notes = [f"Note: {n}" for n in card.notes]
    lines = [
        "# Counting scorecard",
        "",
        *notes,
        "",
        _summary_table(summary),
        "",
        "## Photos, worst first",
        "",
        table,
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    by_path = {r.path: r for r in results}
    figures = []
    for photo in rows[:WORST_SHOWN]:
        picture = _drawn(photo, by_path.get(photo.photo))
        if picture is not None:
            figures.append(
                f"<figure><img src='{picture}'><figcaption>{html.escape(photo.photo)}</figcaption></figure>"
            )
    page = (
        "<!doctype html><meta charset='utf-8'><title>Counting scorecard</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
        f"<h1>Counting scorecard</h1>{''.join(f'<p><b>Note:</b> {html.escape(n)}</p>' for n in card.notes)}"
        f"<pre>{html.escape(_summary_table(summary))}</pre>"
        "<p>Drawn: green, a found coin of the right class; orange, right place but wrong class "
        "(found / true); red, a coin found where there is none; blue, a true coin not found.</p>"
        f"<h2>The worst photos</h2>{''.join(figures)}<h2>All photos</h2><pre>{html.escape(table)}</pre>"
    )
    (out / "report.html").write_text(page)
    return out / "report.md", out / "report.html"


def _summary_table(summary: dict[str, Any]) -> str:
    fmt = lambda v: "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    return "\n".join(
        ["| figure | value |", "|---|---|", *[f"| {k} | {fmt(v)} |" for k, v in summary.items()]]
    )


def _table(rows: list[PhotoScore]) -> str:
    lines = [
        "| photo | true | found | matched | right class | count error | value true | value found | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in rows:
        value_true = "n/a" if p.value_true is None else f"{p.value_true:.2f}"
        wrong = ", ".join(f"#{w['coin']} {w['found']} (is {w['true']})" for w in p.wrong_class)
        note = "; ".join(filter(None, [p.error, wrong, *p.notes]))
        matched = "n/a" if p.matched is None else p.matched
        right = "n/a" if p.right_class is None else p.right_class
        lines.append(
            f"| {Path(p.photo).name} | {p.true} | {p.found} | {matched} | {right} | {p.count_error:+d} | "
            f"{value_true} | {p.value_found:.2f} | {note} |"
        )
    return "\n".join(lines)


def _drawn(photo: PhotoScore, result: PhotoCount | None) -> str | None:
    """The photo with its scored coins drawn, as a JPEG data URL (None if it cannot be read)."""
    try:
        img = decode(read_bytes(photo.photo))
    except DecodeError:
        return None
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 300))
    wrong = {w["coin"] for w in photo.wrong_class}
    for coin in result.counted if result else []:
        colour = (
            (230, 0, 0)
            if coin.number in photo.false_coins
            else (255, 140, 0)
            if coin.number in wrong
            else (0, 170, 60)
        )
        draw.ellipse(_box(coin), outline=colour, width=width)
        draw.text((coin.x, coin.y), coin.label, fill=colour)
    for box in photo.missed:
        draw.rectangle(box, outline=(0, 90, 255), width=width)
    img.thumbnail((800, 800))
    return data_url(img, "JPEG", quality=82)
