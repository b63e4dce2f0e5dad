"""Reports of a head comparison: files a person opens, and data anyone can recompute from.

``write_report`` writes into one folder: ``report.md``, ``report.html`` (self-contained: images
inlined, opens offline), ``metrics.json``, ``per_class.csv``, ``predictions.parquet`` (every
test/val photo with each head's top-k labels and probabilities), ``confusion_<head>.png``,
``topk.png`` and ``thumbs/`` (one photo per class for the most-confused-pairs table).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coinfeat.compare.evaluate import OWN_TEST, Comparison
from coinfeat.compare.plots import plot_confusion, plot_topk, subset_words
from coinfeat.compare.tables import (
    WORST_SHOWN,
    confused_pairs,
    enrolment_frame,
    metrics_document,
    open_set_frame,
    per_class_table,
    predictions_table,
    safe_name,
    worst_classes_frame,
)
from coinfeat.core.curves import plot_history
from coinfeat.core.data.leakage import SUBSETS, twin_counts
from coinfeat.core.images.decode import data_url
from coinfeat.core.store import describe_extractor
from coinfeat.core.tables import html_table, inline_markup, markdown_table


def write_report(comparison: Comparison, out: str | Path) -> Path:
    """Write every report file into ``out`` and return the path of ``report.html``."""
    out = Path(out)
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    metrics = metrics_document(comparison)
    (out / "metrics.json").write_text(json_text(metrics))
    per_class_table(comparison).to_csv(out / "per_class.csv", index=False)
    predictions_table(comparison).to_parquet(out / "predictions.parquet", index=False)
    images = {
        f"confusion_{r.name}.png": plot_confusion(comparison, r, out / f"confusion_{r.name}.png")
        for r in comparison.results
    }
    images["topk.png"] = plot_topk(comparison, out / "topk.png")
    for r in comparison.results:
        if getattr(r.head, "history_", None):
            plot_history(r.head.history_, out / f"curves_{r.name}.png", f"{r.name}: learning curves")
    pairs = confused_pairs(comparison, out)
    (out / "report.md").write_text(render_markdown(comparison, metrics, pairs))
    (out / "report.html").write_text(render_html(comparison, metrics, pairs, out))
    return out / "report.html"


# --------------------------------------------------------------------------- data


# --------------------------------------------------------------------------- rendering


def summary_frame(c: Comparison) -> pd.DataFrame:
    rows = []
    for r in c.results:
        m = r.subsets[c.headline]
        row = {
            "head": r.name,
            **{f"top-{k}": m[f"top{k}"] for k in c.config.top_k},
            "balanced acc.": m["balanced_accuracy"],
            "macro-F1": m["macro_f1"],
            "log loss": m["log_loss"],
            "conf. right": m["confidence_when_right"],
            "conf. wrong": m["confidence_when_wrong"],
            "fit s": r.fit_seconds,
            "predict ms/img": r.predict_ms_per_image,
            "size KB": round(r.size_bytes / 1024),
        }
        if "val" in r.metrics and c.eval_split != "val":
            row["val balanced acc."] = r.metrics["val"]["balanced_accuracy"]
        row.update(_set_columns(r.metrics[c.eval_split]))
        if OWN_TEST in r.metrics:
            own = r.metrics[OWN_TEST]
            row["own test top-1"], row["own test balanced acc."] = own["top1"], own["balanced_accuracy"]
            row.update(_set_columns(own, "own test "))
        rows.append(row)
    return pd.DataFrame(rows)


def _evaluated_on(c: Comparison) -> str:
    if not c.config.test_features:
        return c.eval_split
    own = (
        " (the store's own test photos are scored beside: 'own test' columns)" if OWN_TEST in c.splits else ""
    )
    return f"test = the photos of {c.config.test_features}{own}"


def _set_columns(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    sets = metrics.get("answer_sets")
    if not sets:
        return {}
    level = f"{sets['confidence']:.0%}"
    return {f"{prefix}{level} set coverage": sets["coverage"], f"{prefix}{level} set size": sets["mean_size"]}


def _header_lines(c: Comparison, metrics: dict[str, Any]) -> list[str]:
    sizes = ", ".join(f"{k} {v}" for k, v in metrics["split_sizes"].items())
    if metrics["train_vectors"] > metrics["split_sizes"]["train"]:
        sizes += f" photos; heads trained on {metrics['train_vectors']} vectors incl. augmented views"
    lines = [
        f"Dataset **{metrics['dataset']}** ({sizes}); evaluated on **{_evaluated_on(c)}**.",
        f"Extractor `{metrics['fingerprint']}`: {metrics['extractor']}.",
        *[f"Note: {note}." for note in c.notes],
        leakage_line(c),
    ]
    if not c.store.pretrained:
        lines.append(
            "**WARNING: NOT PRETRAINED weights: these features are random and every figure below is "
            "meaningless; use them only to test the pipeline.**"
        )
    best = c.best
    m = best.subsets[c.headline]
    lines.append(
        f"**Use `{best.name}`**: balanced accuracy {m['balanced_accuracy']:.3f}, top-1 "
        f"{m['top1']:.3f} on {subset_words(c.headline)}; it is {_percent(m['confidence_when_right'])} "
        f"sure on average when right and {_percent(m['confidence_when_wrong'])} when wrong."
    )
    return lines


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"


def leakage_line(c: Comparison) -> str:
    """One sentence: how many evaluated photos have a twin among the training photos."""
    counts = twin_counts(c.twins[c.eval_split])
    against = "train and val" if c.eval_split == "test" else "train"
    threshold = c.config.twin_threshold
    if not counts["twins"]:
        return (
            f"Leakage: none of the {counts['all']} {c.eval_split} photos has an identical or near-identical "
            f"(cosine >= {threshold}) twin among the {against} photos."
        )
    return (
        f"Leakage: {counts['twins']} of {counts['all']} {c.eval_split} photos have a twin among the "
        f"{against} photos ({counts['identical']} identical, {counts['near']} near-identical at cosine >= "
        f"{threshold}); the figures and advice below use the {counts['clean']} clean photos"
        + (" (there are none: all photos are used)" if not counts["clean"] else "")
        + "."
    )


def leakage_frame(c: Comparison) -> pd.DataFrame:
    """Every head on all, clean and twin photos: the gap between clean and twins is memory."""
    rows = []
    for r in c.results:
        for subset in SUBSETS:
            m = r.subsets.get(subset)
            if m is None:
                continue
            rows.append(
                {
                    "head": r.name,
                    "photos": subset,
                    "n": m["n"],
                    **{f"top-{k}": m[f"top{k}"] for k in c.config.top_k},
                    "balanced acc.": m["balanced_accuracy"],
                    "macro-F1": m["macro_f1"],
                    **{f"{part} acc.": value for part, value in m["label_parts"].items()},
                }
            )
    return pd.DataFrame(rows)


def _extra_tables(c: Comparison) -> list[tuple[str, pd.DataFrame]]:
    tables = []
    if len(c.best.head.classes_) > WORST_SHOWN:
        tables.append((f"Worst classes ({c.best.name}; every class: per_class.csv)", worst_classes_frame(c)))
    if twin_counts(c.twins[c.eval_split])["twins"]:
        tables.append((f"All, clean and twin {c.eval_split} photos", leakage_frame(c)))
    parts = {r.name: r.subsets[c.headline]["label_parts"] for r in c.results if r.parts}
    if parts:
        title = f"Accuracy per label part ({subset_words(c.headline)})"
        tables.append((title, pd.DataFrame(parts).T.reset_index(names="head")))
    cv = [
        {"head": r.name, **{k: f"{v['mean']:.3f} ± {v['std']:.3f}" for k, v in r.cv.items()}}
        for r in c.results
        if r.cv
    ]
    if cv:
        tables.append(
            (f"{c.config.cv}-fold cross-validation (stratified, group-aware; mean ± std)", pd.DataFrame(cv))
        )
    if c.open_set:
        found = c.open_set
        title = (
            f"Unknown coins (--open-set): {', '.join(found['unknown_classes'])} held out of training; "
            f"{found['known_test']} known and {found['unknown_test']} unknown test photos"
        )
        tables.append((title, open_set_frame(found)))
    if c.enrolment:
        found = c.enrolment
        title = (
            f"Enrolment (--enrol): {', '.join(found['new_classes'])} added from {found['shots']} photo(s) "
            f"each without refitting; {found['new_test']} new and {found['old_test']} old test photos"
        )
        tables.append((title, enrolment_frame(found)))
    if c.versus is not None:
        title = (
            f"Side by side on the same {c.eval_split} photos: this store "
            f"({describe_extractor(c.store.manifest)}) vs {c.versus.store.path} "
            f"({describe_extractor(c.versus.store.manifest)})"
        )
        tables.append((title, versus_frame(c)))
    return tables


def versus_frame(c: Comparison) -> pd.DataFrame:
    """Each head's figures on this store and on the ``--versus`` store (same photos, same heads)."""
    split, other = c.eval_split, {r.name: r for r in c.versus.results}
    rows = []
    for r in c.results:
        if r.name not in other:
            continue
        a, b = r.metrics[split], other[r.name].metrics[split]
        rows.append(
            {
                "head": r.name,
                "top1": a["top1"],
                "top1_versus": b["top1"],
                "balanced": a["balanced_accuracy"],
                "balanced_versus": b["balanced_accuracy"],
                "difference": b["balanced_accuracy"] - a["balanced_accuracy"],
            }
        )
    return pd.DataFrame(rows)


def render_markdown(c: Comparison, metrics: dict[str, Any], pairs: pd.DataFrame) -> str:
    parts = [
        "# Head comparison",
        "",
        *[f"{line}  " for line in _header_lines(c, metrics)],
        "",
        markdown_table(summary_frame(c)),
        "",
        "![top-k accuracy](topk.png)",
        "",
    ]
    for title, table in _extra_tables(c):
        parts += [f"## {title}", "", markdown_table(table), ""]
    parts += [f"## Most confused pairs ({c.best.name})", ""]
    if pairs.empty:
        parts.append("No confusions.")
    else:
        rows = pairs.assign(
            true=[f"![](thumbs/{safe_name(t)}.png) {n}" for t, n in zip(pairs["true"], pairs["true_name"])],
            predicted=[
                f"![](thumbs/{safe_name(p)}.png) {n}"
                for p, n in zip(pairs["predicted"], pairs["predicted_name"])
            ],
        )
        parts.append(markdown_table(rows[["true", "predicted", "count", "share_of_true_class"]]))
    curves = _curves(c)
    if curves:
        parts += ["", "## Learning curves (Keras heads: loss and accuracy per epoch, train and val)", ""]
        parts += [f"![{name}]({png})" for name, png in curves]
    parts += ["", "## Confusion matrices", ""]
    parts += [f"![{r.name}](confusion_{r.name}.png)" for r in c.results]
    parts += [
        "",
        "Per-class precision/recall/F1: `per_class.csv`. Every prediction: `predictions.parquet`. "
        "All figures: `metrics.json`.",
        "",
    ]
    return "\n".join(parts)


def _curves(c: Comparison) -> list[tuple[str, str]]:
    return [(r.name, f"curves_{r.name}.png") for r in c.results if getattr(r.head, "history_", None)]


def _inline_png(path: Path) -> str:
    return data_url(path.read_bytes()) if path.exists() else ""


def render_html(c: Comparison, metrics: dict[str, Any], pairs: pd.DataFrame, out: Path) -> str:
    header = "".join(f"<p>{inline_markup(line)}</p>" for line in _header_lines(c, metrics))
    body = [
        f"<h1>Head comparison</h1>{header}",
        html_table(summary_frame(c)),
        f'<img alt="top-k" src="{_inline_png(out / "topk.png")}">',
    ]
    for title, table in _extra_tables(c):
        body += [f"<h2>{html.escape(title)}</h2>", html_table(table)]
    body.append(f"<h2>Most confused pairs ({html.escape(c.best.name)})</h2>")
    if pairs.empty:
        body.append("<p>No confusions.</p>")
    else:

        def cell(label: str, name: str) -> str:
            src = _inline_png(out / "thumbs" / f"{safe_name(label)}.png")
            image = f'<img class="thumb" alt="" src="{src}">' if src else ""
            return f"{image} {html.escape(name)}"

        columns = ["true", "true_name", "predicted", "predicted_name", "count", "share_of_true_class"]
        rows = "".join(
            f"<tr><td>{cell(t, tn)}</td><td>{cell(p, pn)}</td><td>{n}</td><td>{s:.1%}</td></tr>"
            for t, tn, p, pn, n, s in pairs[columns].itertuples(index=False)
        )
        body.append(
            '<table class="t"><tr><th>true</th><th>predicted</th><th>count</th>'
            f"<th>share of true class</th></tr>{rows}</table>"
        )
    if _curves(c):
        body.append("<h2>Learning curves (Keras heads)</h2>")
        body += [f'<img alt="{html.escape(n)}" src="{_inline_png(out / png)}">' for n, png in _curves(c)]
    body.append("<h2>Confusion matrices</h2>")
    body += [
        f'<img alt="{html.escape(r.name)}" src="{_inline_png(out / f"confusion_{r.name}.png")}">'
        for r in c.results
    ]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table.t{border-collapse:collapse;margin:1em 0;font-size:14px}"
        "table.t td,table.t th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right}"
        "img{max-width:100%}img.thumb{width:48px;vertical-align:middle}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>coinfeat: head comparison</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )


def json_text(document: Any) -> str:
    """Strict JSON: NaN and infinities (a head that makes no mistake has no mean confidence when
    wrong) become null; ``json.dumps`` would write a bare ``NaN``, which JSON parsers reject."""
    return json.dumps(_json_safe(document), indent=2, allow_nan=False)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
