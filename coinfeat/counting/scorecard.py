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
from coinfeat.core.heads.builtin import resolve_head
from coinfeat.core.heads.record import read_head_record
from coinfeat.core.images.annotations import Mark, detect_format, read_annotations
from coinfeat.core.images.decode import data_url, decode, read_bytes
from coinfeat.core.tables import cell_text, html_table, markdown_table
from coinfeat.counting.annotate import label, label_font
from coinfeat.counting.count import count_coins
from coinfeat.counting.money import face_value
from coinfeat.counting.results import PhotoCount

MATCH_IOU = 0.5
TRUTH_CSV = "truth.csv"
WORST_SHOWN = 8
SHOWN_WIDTH = 1000
"""Pixels across a drawn photo of the report (its page is at most 1,100 px wide)."""
_GREEN, _ORANGE, _RED, _BLUE = (0, 150, 50), (235, 120, 0), (220, 0, 0), (0, 90, 255)


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
    card = score(results, expected, classes=read_head_record(resolve_head(head))["classes"])
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
        ((iou(c.box(), m.box), i, j) for i, c in enumerate(coins) for j, m in enumerate(marks)),
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
    rows = sorted(card.photos, key=lambda p: -p.badness)
    figures, photos = _summary_frame(card.summary()), _photos_frame(rows)
    lines = [
        "# Counting scorecard",
        "",
        *[f"Note: {n}" for n in card.notes],
        "",
        markdown_table(figures),
        "",
        "## Photos, worst first",
        "",
        markdown_table(photos),
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    by_path = {r.path: r for r in results}
    drawn = []
    for photo in rows[:WORST_SHOWN]:
        picture = _drawn(photo, by_path.get(photo.photo))
        if picture is not None:
            drawn.append(
                f"<figure><img src='{picture}'><figcaption>{html.escape(photo.photo)}</figcaption></figure>"
            )
    page = (
        "<!doctype html><meta charset='utf-8'><title>Counting scorecard</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:0 1em}"
        "img{max-width:100%}table{border-collapse:collapse;margin:1em 0;font-size:14px}"
        "td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}</style>"
        f"<h1>Counting scorecard</h1>{''.join(f'<p><b>Note:</b> {html.escape(n)}</p>' for n in card.notes)}"
        f"{html_table(figures)}"
        "<p>Drawn: green, a found coin of the right class; orange, right place but wrong class "
        "(found / true); red, a coin found where there is none; blue, a true coin not found.</p>"
        f"<h2>The worst photos</h2>{''.join(drawn)}<h2>All photos, worst first</h2>{html_table(photos)}"
    )
    (out / "report.html").write_text(page)
    return out / "report.md", out / "report.html"


def _summary_frame(summary: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({"figure": list(summary), "value": [cell_text(v) for v in summary.values()]})


def _photos_frame(rows: list[PhotoScore]) -> pd.DataFrame:
    def note(p: PhotoScore) -> str:
        wrong = ", ".join(f"#{w['coin']} {w['found']} (is {w['true']})" for w in p.wrong_class)
        return "; ".join(filter(None, [p.error, wrong, *p.notes]))

    return pd.DataFrame(
        {
            "photo": [Path(p.photo).name for p in rows],
            "true": [p.true for p in rows],
            "found": [p.found for p in rows],
            "matched": [cell_text(p.matched) for p in rows],
            "right class": [cell_text(p.right_class) for p in rows],
            "count error": [f"{p.count_error:+d}" for p in rows],
            "value true": ["n/a" if p.value_true is None else f"{p.value_true:.2f}" for p in rows],
            "value found": [f"{p.value_found:.2f}" for p in rows],
            "note": [note(p) for p in rows],
        },
        columns=[
            "photo",
            "true",
            "found",
            "matched",
            "right class",
            "count error",
            "value true",
            "value found",
            "note",
        ],
    )


def _drawn(photo: PhotoScore, result: PhotoCount | None) -> str | None:
    """The photo with its scored coins drawn, as a JPEG data URL (None if it cannot be read),
    at the width the report shows it, so the labels are readable there."""
    try:
        img = decode(read_bytes(photo.photo))
    except DecodeError:
        return None
    scale = min(1.0, SHOWN_WIDTH / max(img.size))
    img = img.resize((round(img.width * scale), round(img.height * scale))) if scale < 1 else img
    draw = ImageDraw.Draw(img)
    font = label_font(img.width)
    wrong = {w["coin"]: w["true"] for w in photo.wrong_class}
    for coin in result.counted if result else []:
        colour = _RED if coin.number in photo.false_coins else _ORANGE if coin.number in wrong else _GREEN
        outline = [(x * scale, y * scale) for x, y in coin.outline()]
        draw.polygon(outline, outline=colour, width=3)
        x0, _, x1, y1 = (v * scale for v in coin.box())
        text = f"{coin.label} / {wrong[coin.number]}" if coin.number in wrong else coin.label
        label(draw, ((x0 + x1) / 2, y1 + 2), text, font, colour)
    for box in photo.missed:
        draw.rectangle([v * scale for v in box], outline=_BLUE, width=3)
    return data_url(img, "JPEG", quality=85)
