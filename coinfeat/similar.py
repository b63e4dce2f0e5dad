"""``coinfeat similar``: the most similar coins in a collection, duplicates, and unknown coins.

A :class:`Collection` is a store's usable vectors in a :class:`~coinfeat.core.index.VectorIndex` (the
same FAISS code as the k-NN head). Queries are stored photos (their own vector) or new photos
(embedded with the store's own extractor). When even the best neighbour is less similar than a
threshold, the answer is "no similar coin in the collection"; the threshold is calibrated on the
val split for a target false-match rate by leaving each class out in turn (its photos then play
unknown coins).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from coinfeat.core.datasets import display_label
from coinfeat.core.embedder import Embedder
from coinfeat.core.errors import CoinfeatError, DecodeError
from coinfeat.core.heads import ExtractorRecord
from coinfeat.core.images import decode, read_bytes
from coinfeat.core.index import (
    RERANK_FACTOR,
    VectorIndex,
    build_index,
    default_nlist,
    default_nprobe,
    fill_index,
    rerank,
)
from coinfeat.core.metrics import label_parts, part_answers
from coinfeat.core.options import resolve
from coinfeat.core.runtime import log
from coinfeat.core.store import Store, atomic_write, open_store, usable

CALIBRATION_FILE = "unknown-threshold.json"
SPLITS = ("train", "all")


@dataclass(kw_only=True)
class Neighbour:
    rank: int
    label: str
    name: str
    similarity: float
    path: str


@dataclass(kw_only=True)
class SimilarResult:
    query: str
    source: str = ""
    neighbours: list[Neighbour] = field(default_factory=list)
    unknown: bool = False
    threshold: float | None = None
    error: str | None = None
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """For hierarchical display names: each part's most common value among the neighbours, with
    its similarity-weighted share, e.g. {"country": {"value": "turkey", "probability": 0.9}}."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Collection:
    """The searchable photos of a store: clean vectors of one split (or all), in a FAISS index."""

    def __init__(self, store: Store, split: str = "train", index: str = "flat") -> None:
        if split not in SPLITS:
            raise CoinfeatError(f"--split {split!r}: choose from {', '.join(SPLITS)}")
        self.store = store
        self.rows = store.rows(None if split == "all" else split)
        if len(self.rows) == 0:
            raise CoinfeatError(f"store {store.path} has no usable vectors in split {split!r}")
        self.items = store.items.iloc[self.rows].reset_index(drop=True)
        self.index = self._index(split, index)
        self.root = Path(store.manifest.dataset.root)
        self.names = store.manifest.label_names

    def _index(self, split: str, kind: str) -> VectorIndex:
        """Build the index; an ivf or hnsw index (minutes for a million vectors) is cached in the
        store's ``indexes/`` folder for the store's current commit and reused until it changes."""
        cached = self.store.path / "indexes" / f"{split}-{kind}-{self.store.manifest.commit}.faiss"
        if kind != "flat" and cached.exists():
            return VectorIndex.load(cached, kind, nprobe=default_nprobe(default_nlist(len(self.rows))))
        index = build_index(self.store, kind, split=None if split == "all" else split)
        if kind != "flat":
            try:
                cached.parent.mkdir(exist_ok=True)
                for stale in cached.parent.glob(f"{split}-{kind}-*.faiss"):
                    stale.unlink()
                atomic_write(cached, index.save)
            except OSError as exc:
                log.info("could not cache the %s index in %s: %s", kind, cached.parent, exc)
        return index

    def vectors(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """Stored vectors of collection rows, read from the (memory-mapped) store on demand."""
        return np.asarray(self.store.embeddings[self.rows[np.asarray(rows)]])

    def absolute(self, row: int) -> str:
        return str(self.root / self.items["path"].iloc[row])

    def row_of(self, query: str) -> int | None:
        """The collection row of a stored photo named by its relative or absolute path."""
        hits = np.flatnonzero(self.items["path"].eq(_relative(query, self.root)).to_numpy())
        return int(hits[0]) if len(hits) else None

    def neighbours(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (cosine, row) per query vector; compressed (ivfpq) candidates are re-scored exactly
        against the stored vectors, so reported similarities are true cosines."""
        if self.index.kind != "ivfpq":
            return self.index.search(vectors, k)
        _, candidates = self.index.search(vectors, k * RERANK_FACTOR)
        return rerank(vectors, candidates, self.vectors, min(k, self.index.ntotal))

    def nearest(
        self, vector: np.ndarray, k: int, skip: set[int] | frozenset[int] = frozenset()
    ) -> list[tuple[float, int]]:
        """The k rows most similar to one vector, as (cosine, row), leaving out the rows in ``skip``."""
        sims, ids = self.neighbours(np.reshape(vector, (1, -1)), k + len(skip))
        return [(float(s), int(i)) for s, i in zip(sims[0], ids[0]) if i >= 0 and i not in skip][:k]

    def same_photo(self, row: int) -> set[int]:
        """The row and every row holding the same file content (sha256)."""
        shas = self.items["sha256"]
        return {row, *np.flatnonzero((shas == shas.iloc[row]).to_numpy()).tolist()}


@dataclass
class SimilarConfig:
    """How ``similar`` searches: how many neighbours, in which photos, with which index; a query's
    own photo left out or not; the similarity below which the answer is "unknown"."""

    k: int = 8
    split: str = "train"
    exclude_self: bool = False
    threshold: float | None = None
    tta: str = "none"
    index: str = "flat"

    def validate(self) -> None:
        if self.k < 1:
            raise CoinfeatError(f"--k must be at least 1 (got {self.k})")


def find_similar(
    queries: list[str], features: str | Path, config: SimilarConfig | None = None, **options: Any
) -> list[SimilarResult]:
    """The k most similar stored photos for each query (a stored path or any image file); options
    are :class:`SimilarConfig`'s."""
    cfg = resolve(SimilarConfig, config, options)
    k, split, exclude_self, threshold, tta, index = (
        cfg.k,
        cfg.split,
        cfg.exclude_self,
        cfg.threshold,
        cfg.tta,
        cfg.index,
    )
    store = open_store(features)
    collection = Collection(store, split, index)
    threshold = threshold if threshold is not None else calibrated_threshold(store)
    vectors, results = _query_vectors(queries, collection, tta)
    for query, vector in zip(queries, vectors):
        if vector is None:
            continue
        result = results[query]
        own = collection.row_of(query) if exclude_self else None
        kept = collection.nearest(vector, k, collection.same_photo(own) if own is not None else frozenset())
        result.neighbours = [_neighbour(collection, rank, s, i) for rank, (s, i) in enumerate(kept, 1)]
        result.parts = neighbour_parts(result.neighbours, collection.names)
        result.threshold = threshold
        result.unknown = is_unknown(kept, threshold)
    return [results[q] for q in queries]


def neighbour_parts(neighbours: list[Neighbour], names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per label part, the value the neighbours vote for, weighted by similarity."""
    if not neighbours:
        return {}
    votes = pd.Series([max(n.similarity, 0.0) for n in neighbours], [n.label for n in neighbours])
    votes = votes.groupby(level=0).sum()
    share = votes.to_numpy() / votes.sum() if votes.sum() > 0 else np.full(len(votes), 1 / len(votes))
    return part_answers(share, label_parts(votes.index.to_numpy(), names, None))


def is_unknown(nearest: list[tuple[float, int]], threshold: float | None) -> bool:
    """No similar coin in the collection: even the best neighbour is below the threshold."""
    return threshold is not None and (not nearest or nearest[0][0] < threshold)


def _neighbour(collection: Collection, rank: int, similarity: float, row: int) -> Neighbour:
    label = str(collection.items["label"].iloc[row])
    return Neighbour(
        rank=rank,
        label=label,
        name=collection.names.get(label, label),
        similarity=round(float(similarity), 4),
        path=collection.absolute(row),
    )


def _query_vectors(queries: list[str], collection: Collection, tta: str):
    """Stored photos (any split) use their stored vector; other files are embedded with the
    store's extractor (a path relative to the dataset root also works)."""
    results = {q: SimilarResult(query=q) for q in queries}
    vectors: list[np.ndarray | None] = [None] * len(queries)
    stored = _stored_rows(collection.store)
    to_embed: dict[int, str] = {}
    for i, query in enumerate(queries):
        key = _relative(query, collection.root)
        if key in stored and tta == "none":
            vectors[i] = np.asarray(collection.store.embeddings[stored[key]])
            results[query].source = str(collection.root / key)
        else:
            on_disk = Path(query).exists() or not (collection.root / query).exists()
            to_embed[i] = results[query].source = query if on_disk else str(collection.root / query)
    if to_embed:
        embedder = Embedder(ExtractorRecord.of_manifest(collection.store.manifest))
        embedded = embedder.embed(list(to_embed.values()), tta=tta)
        by_path = dict(zip(embedded.paths, embedded.vectors))
        for i, path in to_embed.items():
            if path in by_path:
                vectors[i] = by_path[path]
            else:
                results[queries[i]].error = embedded.errors.get(path, "could not be embedded")
    return vectors, results


def _stored_rows(store: Store) -> dict[str, int]:
    ok = usable(store.items)
    return {path: int(row) for row, path in zip(np.flatnonzero(ok.to_numpy()), store.items["path"][ok])}


def _relative(query: str, root: Path) -> str:
    path = Path(query)
    if path.is_absolute():
        with contextlib.suppress(ValueError):
            return path.resolve().relative_to(root).as_posix()
    return path.as_posix()


# --------------------------------------------------------------------------- unknown coins


def calibrate_unknown(
    features: str | Path, *, target_false_match: float = 0.05, chunk: int = 50_000
) -> dict[str, Any]:
    """Choose the similarity below which a query is answered "unknown", and save it with the store.

    Each class is left out of the train collection in turn; its val photos then play unknown
    coins, and their best similarities give the false-match rate of any threshold. The threshold
    is the lowest one whose false-match rate is at most ``target_false_match``. Train vectors
    are streamed into each index ``chunk`` rows at a time, never loaded whole.
    """
    if not 0 <= target_false_match < 1:
        raise CoinfeatError("--target-fmr must be at least 0 and below 1")
    store = open_store(features)
    train_rows, val_rows = store.rows("train"), store.rows("val")
    if len(val_rows) == 0:
        raise CoinfeatError(f"store {store.path} has no val photos to calibrate on")
    if len(train_rows) == 0:
        raise CoinfeatError(f"store {store.path} has no train photos to calibrate against")
    labels = store.items["label"].to_numpy()
    dim = store.embeddings.shape[1]
    impostor = []
    for label in np.unique(labels[val_rows]):
        others = train_rows[labels[train_rows] != label]
        if len(others) == 0:
            continue
        index = fill_index(VectorIndex(dim), store.embeddings, others, chunk=chunk)
        queries = val_rows[labels[val_rows] == label]
        impostor.extend(_best_similarity(index, store.embeddings, queries, chunk)[0])
    full = fill_index(VectorIndex(dim), store.embeddings, train_rows, chunk=chunk)
    genuine, nearest = _best_similarity(full, store.embeddings, val_rows, chunk)
    correct = labels[train_rows[nearest]] == labels[val_rows]
    impostor = np.asarray(impostor)
    threshold = _threshold_for(impostor, target_false_match)
    accepted = genuine >= threshold
    record = {
        "threshold": threshold,
        "target_false_match_rate": target_false_match,
        "false_match_rate_val": float(np.mean(impostor >= threshold)) if len(impostor) else None,
        "known_accepted_rate_val": float(accepted.mean()),
        "known_accepted_correct_rate_val": float(correct[accepted].mean()) if accepted.any() else None,
        "val_queries": len(val_rows),
        "impostor_queries": len(impostor),
        "fingerprint": store.fingerprint,
    }
    atomic_write(store.path / CALIBRATION_FILE, json.dumps(record, indent=2))
    return record


def _best_similarity(
    index: VectorIndex, vectors: np.ndarray, rows: np.ndarray, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """(cosine, index position) of the nearest indexed vector for ``vectors[rows]``, chunk by chunk."""
    found = [index.search(np.asarray(vectors[rows[i : i + chunk]]), 1) for i in range(0, len(rows), chunk)]
    return np.concatenate([s[:, 0] for s, _ in found]), np.concatenate([r[:, 0] for _, r in found])


def _threshold_for(impostor: np.ndarray, target: float) -> float:
    """The lowest threshold that accepts at most ``target`` of the impostor queries (exactly, also
    for a small val split, where a quantile would overshoot by up to one query)."""
    if len(impostor) == 0:
        return 1.0
    ranked = np.sort(impostor)[::-1]
    allowed = int(np.floor(target * len(ranked)))
    return float(np.nextafter(ranked[allowed], np.float32(2))) if allowed < len(ranked) else float(ranked[-1])


def calibrated_threshold(store: Store) -> float | None:
    path = store.path / CALIBRATION_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record["threshold"] if record.get("fingerprint") == store.fingerprint else None


# --------------------------------------------------------------------------- duplicates


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


# --------------------------------------------------------------------------- contact sheets

TILE = 160
CAPTION = 34


def contact_sheet(tiles: list[tuple[str, str]], path: str | Path, columns: int = 5) -> Path:
    """A PNG grid of (image path, caption) tiles; unreadable images become grey tiles."""
    rows = max(1, -(-len(tiles) // columns))
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    for n, (image_path, caption) in enumerate(tiles):
        x, y = (n % columns) * TILE, (n // columns) * (TILE + CAPTION)
        sheet.paste(_tile(image_path), (x, y))
        for line_no, line in enumerate(caption.split("\n")[:2]):
            draw.text(
                (x + 4, y + TILE + 2 + 15 * line_no), _fit(line, font, TILE - 8), fill="black", font=font
            )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _fit(text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """``text`` shortened with an ellipsis until it is at most ``width`` pixels wide."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _tile(image_path: str) -> Image.Image:
    try:
        img = decode(read_bytes(image_path), draft_size=TILE)
    except DecodeError:
        return Image.new("RGB", (TILE, TILE), (200, 200, 200))
    img.thumbnail((TILE - 8, TILE - 8))
    tile = Image.new("RGB", (TILE, TILE), "white")
    tile.paste(img, ((TILE - img.width) // 2, (TILE - img.height) // 2))
    return tile


def similar_sheet(result: SimilarResult, path: str | Path) -> Path:
    verdict = "UNKNOWN coin" if result.unknown else "query"
    tiles = [(result.source or result.query, f"{verdict}\n{Path(result.query).name}")]
    tiles += [(n.path, f"{n.rank}. {n.name}\nsim {n.similarity:.3f}") for n in result.neighbours]
    return contact_sheet(tiles, path)


def duplicates_sheet(pairs: pd.DataFrame, path: str | Path, limit: int = 20) -> Path:
    tiles = []
    for row in pairs.head(limit).itertuples(index=False):
        flag = "LABEL CONFLICT" if row.label_conflict else "LEAK" if row.cross_split else "duplicate"
        tiles.append((row.path_a, f"{row.name_a}\n{row.split_a}: {flag} {row.similarity:.3f}"))
        tiles.append((row.path_b, f"{row.name_b}\n{row.split_b}: {flag} {row.similarity:.3f}"))
    return contact_sheet(tiles or [("", "no duplicates")], path, columns=4)
