"""Near-duplicate photo pairs of a collection: label conflicts and pairs across splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from coinfeat.core.data.datasets import display_label
from coinfeat.core.store import open_store
from coinfeat.similar.search import Collection
from coinfeat.similar.sheets import duplicates_sheet


def find_duplicates(features: str | Path, *, threshold: float = 0.97, neighbours: int = 16) -> pd.DataFrame:
    """Pairs of photos more similar than ``threshold``, flagging label conflicts and split leaks.

    Each photo is compared with its ``neighbours`` nearest photos, so a group of more than that
    many near-identical photos lists only part of its pairs.
    """
    collection = Collection(open_store(features), "all")
    items = collection.items
    rows = []
    for start in range(0, len(items), 10_000):
        chunk = np.arange(start, min(start + 10_000, len(items)))
        sims, ids = collection.neighbours(collection.vectors(chunk), neighbours + 1)
        for a, row_sims, row_ids in zip(chunk, sims, ids):
            rows += [
                (int(a), int(b), float(s)) for s, b in zip(row_sims, row_ids) if b > a and s >= threshold
            ]
    columns = [
        "path_a",
        "path_b",
        "similarity",
        "label_a",
        "label_b",
        "name_a",
        "name_b",
        "split_a",
        "split_b",
        "label_conflict",
        "cross_split",
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    a, b, s = map(np.asarray, zip(*rows))
    frame = pd.DataFrame(
        {
            "path_a": [collection.absolute(i) for i in a],
            "path_b": [collection.absolute(i) for i in b],
            "similarity": s.round(4),
            "label_a": items["label"].to_numpy()[a],
            "label_b": items["label"].to_numpy()[b],
            "name_a": [display_label(label, collection.names) for label in items["label"].to_numpy()[a]],
            "name_b": [display_label(label, collection.names) for label in items["label"].to_numpy()[b]],
            "split_a": items["split"].to_numpy()[a],
            "split_b": items["split"].to_numpy()[b],
        }
    )
    frame["label_conflict"] = frame["label_a"] != frame["label_b"]
    frame["cross_split"] = frame["split_a"] != frame["split_b"]
    return frame.sort_values(["label_conflict", "similarity"], ascending=False).reset_index(drop=True)


def write_duplicates(
    pairs: pd.DataFrame,
    features: str | Path,
    out: str | Path | None = None,
    sheet: str | Path | None = None,
) -> tuple[Path, Path]:
    """Save ``pairs`` as ``duplicates.csv`` and a contact sheet PNG, by default in the store's
    ``duplicates/`` folder; returns both paths."""
    folder = Path(out) if out else Path(features) / "duplicates"
    folder.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(folder / "duplicates.csv", index=False)
    return folder / "duplicates.csv", duplicates_sheet(pairs, sheet or folder / "duplicates.png")
