"""Reports of a head comparison: files a person opens, and data anyone can recompute from.

``write_report`` writes into one folder: ``report.md``, ``report.html`` (self-contained: images
inlined, opens offline), ``metrics.json``, ``per_class.csv``, ``predictions.parquet`` (every
test/val photo with each head's top-k labels and probabilities), ``confusion_<head>.png``,
``topk.png`` and ``thumbs/`` (one photo per class for the most-confused-pairs table).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import leaves_list, linkage

from coinfeat.compare.evaluate import Comparison, HeadResult
from coinfeat.core.curves import plot_history
from coinfeat.core.datasets import display_label
from coinfeat.core.errors import DecodeError
from coinfeat.core.images import decode, read_bytes
from coinfeat.core.leakage import SUBSETS, TWIN_COLUMNS, twin_counts
from coinfeat.core.metrics import confusion, most_confused_pairs, predicted_labels
from coinfeat.core.store import describe_extractor

THUMB = 72
LABELLED_TICKS_MAX = 60


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


def metrics_document(c: Comparison) -> dict[str, Any]:
    m = c.store.manifest
    return {
        "dataset": m.dataset.name,
        "store": str(c.store.path),
        "fingerprint": c.store.fingerprint,
        "extractor": describe_extractor(m),
        "pretrained": c.store.pretrained,
        "evaluated_on": c.eval_split,
        "headline": c.headline,
        "twins": {
            "threshold": c.config.twin_threshold,
            "against": "train and val photos (val photos: against train)",
            "counts": {split: twin_counts(frame) for split, frame in c.twins.items()},
        },
        "split_sizes": {name: int((items["view"] == 0).sum()) for name, items in c.splits.items()},
        "train_vectors": len(c.splits["train"]),
        "top_k": c.config.top_k,
        "recommended_head": c.best.name,
        "heads": {
            r.name: {
                "params": r.head.params,
                "fit_seconds": r.fit_seconds,
                "predict_ms_per_image": r.predict_ms_per_image,
                "size_bytes": r.size_bytes,
                **r.metrics,
                "label_parts": r.parts,
                "subsets": r.subsets,
                "cv": r.cv,
            }
            for r in c.results
        },
        "versus": metrics_document(c.versus) if c.versus is not None else None,
        "notes": c.notes,
    }


def per_class_table(c: Comparison) -> pd.DataFrame:
    frames = [r.per_class.assign(head=r.name) for r in c.results]
    table = pd.concat(frames, ignore_index=True)
    table["name"] = [display_label(label, c.names, with_id=False) for label in table["class"]]
    return table[["head", "class", "name", "precision", "recall", "f1", "support"]]


def predictions_table(c: Comparison) -> pd.DataFrame:
    """One row per evaluated photo; per head the top-k labels and probabilities."""
    k = max(c.config.top_k)
    frames = []
    for split in ("val", "test"):
        items = c.splits.get(split)
        if items is None or len(items) == 0:
            continue
        frame = (
            items[["path", "label", "split"]].rename(columns={"label": "true_label"}).reset_index(drop=True)
        )
        frame["true_name"] = [display_label(label, c.names, with_id=False) for label in frame["true_label"]]
        frame[TWIN_COLUMNS] = c.twins[split][TWIN_COLUMNS].to_numpy()
        for r in c.results:
            proba = r.proba[split]
            order = np.argsort(-proba, axis=1)[:, :k]
            for rank in range(order.shape[1]):
                frame[f"{r.name}_top{rank + 1}_label"] = r.head.classes_[order[:, rank]]
                frame[f"{r.name}_top{rank + 1}_prob"] = proba[np.arange(len(proba)), order[:, rank]]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def confused_pairs(c: Comparison, out: Path, top: int = 10) -> pd.DataFrame:
    """The best head's most confused pairs, with a thumbnail of one photo of each class."""
    items = c.splits[c.eval_split]
    y_pred = predicted_labels(c.best.proba[c.eval_split], c.best.head.classes_)
    pairs = most_confused_pairs(items["label"].to_numpy(), y_pred, top)
    root = Path(c.store.manifest.dataset.root)
    pairs["true_name"] = [display_label(label, c.names) for label in pairs["true"]]
    pairs["predicted_name"] = [display_label(label, c.names) for label in pairs["predicted"]]
    examples = items.drop_duplicates("label").set_index("label")["path"]
    for label in set(pairs["true"]) | set(pairs["predicted"]):
        if label in examples.index:
            _thumbnail(root / examples[label], out / "thumbs" / f"{_safe(label)}.png")
    return pairs


def _thumbnail(source: Path, target: Path) -> None:
    try:
        img = decode(read_bytes(source), draft_size=THUMB)
    except DecodeError:
        return
    img.thumbnail((THUMB, THUMB))
    img.save(target)


def _safe(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)


# --------------------------------------------------------------------------- plots


def cluster_order(matrix: np.ndarray) -> np.ndarray:
    """Class order that puts classes confused with each other next to each other."""
    if len(matrix) < 3:
        return np.arange(len(matrix))
    symmetric = matrix + matrix.T
    np.fill_diagonal(symmetric, 0)
    distance = 1.0 - symmetric / max(symmetric.max(), 1e-9)
    condensed = distance[np.triu_indices(len(matrix), 1)]
    return leaves_list(linkage(condensed, method="average"))


def plot_confusion(c: Comparison, r: HeadResult, path: Path) -> Path:
    """Row-normalised confusion matrix, clustered; ``confusion_top`` keeps the most confused classes."""
    items = c.splits[c.eval_split]
    y_true = items["label"].to_numpy()
    y_pred = predicted_labels(r.proba[c.eval_split], r.head.classes_)
    labels = sorted(set(y_true) | set(y_pred))
    counts = confusion(y_true, y_pred, labels)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    keep = np.arange(len(labels))
    top = c.config.confusion_top
    if top and len(labels) > top:
        errors = normalised.sum(axis=1) - np.diag(normalised) + normalised.sum(axis=0) - np.diag(normalised)
        keep = np.sort(np.argsort(-errors)[:top])
    order = keep[cluster_order(normalised[np.ix_(keep, keep)])]
    shown = normalised[np.ix_(order, order)]
    n = len(order)
    side = min(max(5.0, 0.28 * n + 2), 40.0)
    fig = Figure(figsize=(side, side * 0.9))
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= LABELLED_TICKS_MAX:
        names = [_short(display_label(labels[i], c.names)) for i in order]
        ax.set_xticks(range(n), names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if shown[i, j] >= 0.01:
                    ax.text(
                        j,
                        i,
                        f"{shown[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if shown[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    subset = f", {n} most confused of {len(labels)} classes" if n < len(labels) else ""
    ax.set_title(f"{r.name}: confusion on {c.eval_split} (row-normalised{subset})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_topk(c: Comparison, path: Path) -> Path:
    ks = sorted(c.config.top_k)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for r in c.results:
        ax.plot(ks, [r.subsets[c.headline][f"top{k}"] for k in ks], marker="o", label=r.name)
    ax.set_xlabel("k")
    ax.set_ylabel(f"top-k accuracy ({c.eval_split}, {_subset_words(c.headline)})")
    ax.set_xticks(ks)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


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
        rows.append(row)
    return pd.DataFrame(rows)


def _header_lines(c: Comparison, metrics: dict[str, Any]) -> list[str]:
    sizes = ", ".join(f"{k} {v}" for k, v in metrics["split_sizes"].items())
    if metrics["train_vectors"] > metrics["split_sizes"]["train"]:
        sizes += f" photos; heads trained on {metrics['train_vectors']} vectors incl. augmented views"
    lines = [
        f"Dataset **{metrics['dataset']}** ({sizes}); evaluated on **{c.eval_split}**.",
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
        f"{m['top1']:.3f} on {_subset_words(c.headline)}; it is {_percent(m['confidence_when_right'])} "
        f"sure on average when right and {_percent(m['confidence_when_wrong'])} when wrong."
    )
    return lines


def _subset_words(subset: str) -> str:
    words = {"all": "all photos", "clean": "clean photos (no twin in training)", "twins": "twin photos"}
    return words[subset]


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


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _extra_tables(c: Comparison) -> list[tuple[str, pd.DataFrame]]:
    tables = []
    if twin_counts(c.twins[c.eval_split])["twins"]:
        tables.append((f"All, clean and twin {c.eval_split} photos", leakage_frame(c)))
    parts = {r.name: r.subsets[c.headline]["label_parts"] for r in c.results if r.parts}
    if parts:
        title = f"Accuracy per label part ({_subset_words(c.headline)})"
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
            true=[f"![](thumbs/{_safe(t)}.png) {n}" for t, n in zip(pairs["true"], pairs["true_name"])],
            predicted=[
                f"![](thumbs/{_safe(p)}.png) {n}" for p, n in zip(pairs["predicted"], pairs["predicted_name"])
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
    if not path.exists():
        return ""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _html_table(frame: pd.DataFrame) -> str:
    cells = frame.map(lambda v: html.escape(_fmt(v)))
    return cells.to_html(index=False, escape=False, border=0, classes="t")


def render_html(c: Comparison, metrics: dict[str, Any], pairs: pd.DataFrame, out: Path) -> str:
    header = "".join(f"<p>{_md_bold(html.escape(line))}</p>" for line in _header_lines(c, metrics))
    body = [
        f"<h1>Head comparison</h1>{header}",
        _html_table(summary_frame(c)),
        f'<img alt="top-k" src="{_inline_png(out / "topk.png")}">',
    ]
    for title, table in _extra_tables(c):
        body += [f"<h2>{html.escape(title)}</h2>", _html_table(table)]
    body.append(f"<h2>Most confused pairs ({html.escape(c.best.name)})</h2>")
    if pairs.empty:
        body.append("<p>No confusions.</p>")
    else:

        def cell(label: str, name: str) -> str:
            src = _inline_png(out / "thumbs" / f"{_safe(label)}.png")
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


def _md_bold(text: str) -> str:
    pieces = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(pieces)).replace("`", "")


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
