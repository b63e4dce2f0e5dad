"""Report tables: one DataFrame written as Markdown (``report.md``) and as an HTML table
(``report.html``), so both files of a report show the same cells and no page shows raw Markdown."""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd


def cell_text(value: Any) -> str:
    """A cell as text: floats to three decimals (``n/a`` for NaN, none for large numbers)."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return "n/a" if value is None else str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell_text(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def html_table(frame: pd.DataFrame, css_class: str = "t") -> str:
    cells = frame.map(lambda v: html.escape(cell_text(v)))
    cells.columns = [html.escape(str(c)) for c in frame.columns]
    return cells.to_html(index=False, escape=False, border=0, classes=css_class)


def inline_markup(text: str) -> str:
    """A line of Markdown-flavoured report text as HTML: ``**bold**`` and ```code``` become tags."""
    escaped = html.escape(text)
    bold = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(escaped.split("**")))
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(bold.split("`")))
