"""Contact sheets: a query and its neighbours, or duplicate pairs, as one captioned PNG."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from coinfeat.core.errors import DecodeError
from coinfeat.core.images.decode import decode, read_bytes
from coinfeat.similar.search import SimilarResult

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
