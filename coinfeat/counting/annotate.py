"""The annotated photo of a count: a numbered circle and label per coin, and the total."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from coinfeat.counting.money import format_range
from coinfeat.counting.results import Coin, PhotoCount

ANNOTATED_SIZE = 1600
KNOWN_COLOUR, UNKNOWN_COLOUR, DOUBTFUL_COLOUR = (0, 170, 60), (230, 60, 0), (30, 90, 220)


def annotated(full: Image.Image, result: PhotoCount) -> Image.Image:
    """The photo at ``ANNOTATED_SIZE`` px with a numbered circle and label per coin (unknown coins
    in orange with "?", coins with more than one class in their answer set in blue with all of
    them) and the total, or its range, in the top-left corner."""
    scale = min(1.0, ANNOTATED_SIZE / max(full.size))
    image = full.resize((round(full.width * scale), round(full.height * scale))) if scale < 1 else full.copy()
    draw = ImageDraw.Draw(image)
    font = label_font(image.width)
    for coin in result.coins:
        colour = UNKNOWN_COLOUR if coin.unknown else DOUBTFUL_COLOUR if coin.doubtful else KNOWN_COLOUR
        outline = [(x * scale, y * scale) for x, y in coin.outline()]
        draw.polygon(outline, outline=colour, width=max(3, image.width // 400))
        bottom = coin.box()[3] * scale
        label(draw, (coin.x * scale, bottom + 2), _coin_text(coin), font, colour)
    headline = f"{len(result.coins)} coins, total {format_range(result.total, result.doubts)}"
    if not result.pretrained:
        headline += " (NOT PRETRAINED weights: meaningless)"
    label(draw, (8, 8), headline, font, (0, 0, 0), anchor="la")
    return image


def _coin_text(coin: Coin) -> str:
    if coin.unknown:
        return f"{coin.number}: ?"
    if coin.doubtful:
        return f"{coin.number}: {' or '.join(coin.answer_set_names)}"
    return f"{coin.number}: {coin.name} {coin.probability:.0%}"


def label_font(width: int) -> ImageFont.FreeTypeFont:
    """A font for labels on a picture ``width`` px wide, readable when a page shows the picture at
    800 px or more (about 16 px there)."""
    return ImageFont.load_default(size=max(16, round(width / 50)))


def label(
    draw: ImageDraw.ImageDraw,
    at: tuple[float, float],
    text: str,
    font: ImageFont.FreeTypeFont,
    colour: tuple[int, int, int],
    anchor: str = "ma",
) -> None:
    """``text`` on a white box at ``at`` (``anchor`` as Pillow's), so it reads on any photo."""
    box = draw.textbbox(at, text, font=font, anchor=anchor)
    draw.rectangle([box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2], fill=(255, 255, 255))
    draw.text(at, text, fill=colour, font=font, anchor=anchor)
