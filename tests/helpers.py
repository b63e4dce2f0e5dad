"""Test helpers: shared data paths, small generated coin photos, a small extraction config, and
running an exported model where coinfeat cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EURO = SHARED / "data" / "euro-coins"
LITE0 = SHARED / "weights" / "efficientnet_lite0_imagenet_notop.keras"
EURO_GROUPS = r"^(.*)_[^_]+$"
SMALL = 64  # image size for unit tests: every code path, a fraction of the compute

PILES = SHARED / "data" / "euro-coins-photos"
BACKGROUND = (236, 234, 228)
needs_piles = pytest.mark.skipif(not PILES.is_dir(), reason="../shared/data/euro-coins-photos not present")
needs_euro = pytest.mark.skipif(not EURO.is_dir(), reason="../shared/data/euro-coins not present")
needs_lite0 = pytest.mark.skipif(not LITE0.is_file(), reason="../shared/weights Lite0 model not present")


def coin_image(
    colour: tuple[int, int, int],
    size: int = 96,
    seed: int = 0,
    background: tuple[int, int, int] = (245, 245, 240),
) -> Image.Image:
    """A disc of ``colour`` with a little seeded texture on a light background."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    margin = int(size * rng.uniform(0.08, 0.18))
    draw.ellipse([margin, margin, size - margin, size - margin], fill=colour)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 12, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


CLASS_COLOURS = {"copper": (184, 115, 51), "gold": (212, 175, 55), "silver": (170, 170, 180)}


def write_class_folders(root: Path, per_class: int = 6, colours=CLASS_COLOURS) -> Path:
    """root/<class>/<photo>_<n>.jpg, two coins per photo."""
    for k, (label, colour) in enumerate(colours.items()):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            coin_image(colour, seed=100 * k + i).save(root / label / f"{label}{i // 2}_{i % 2}.jpg")
    return root


def surface(kind: str, size=(1200, 900), seed: int = 0) -> Image.Image:
    """A table to lay coins on: white ``paper``, ``dark`` cloth, painted ``wood`` with grain, or
    ``gravel`` (a speckle of small round stones that circle finders love)."""
    rng = np.random.default_rng(seed)
    width, height = size
    if kind == "paper":
        return Image.new("RGB", size, BACKGROUND)
    if kind == "dark":
        return Image.new("RGB", size, (38, 34, 40))
    if kind == "wood":
        y = np.arange(height)[:, None] + 6 * np.sin(np.arange(width)[None, :] / 40)
        grain = 0.5 + 0.5 * np.sin(y / 9 + 3 * np.sin(y / 57))
        paint, bare = np.array([60, 170, 160]), np.array([200, 170, 150])
        rgb = paint + (bare - paint) * (grain[..., None] > 0.8)
        return Image.fromarray(rgb.astype(np.uint8))
    if kind == "gravel":
        img = Image.new("RGB", size, (150, 145, 140))
        draw = ImageDraw.Draw(img)
        for _ in range(width * height // 400):
            x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, 16)
            shade = int(rng.uniform(90, 230))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(shade, shade - 5, shade - 10))
        return img
    raise ValueError(kind)


def pile(
    discs: list[tuple[float, float, float]], size=(1200, 900), seed: int = 0, background: str = "paper"
) -> Image.Image:
    """A photo of coins on a ``surface``: textured discs (x, y, radius) with a darker rim."""
    rng = np.random.default_rng(seed)
    img = surface(background, size, seed)
    draw = ImageDraw.Draw(img)
    for i, (x, y, r) in enumerate(discs):
        colour = [(184, 115, 51), (212, 175, 55), (170, 170, 180)][i % 3]
        rim = (
            tuple(min(255, c + 40) for c in colour) if background == "dark" else tuple(c - 60 for c in colour)
        )
        draw.ellipse([x - r, y - r, x + r, y + r], fill=rim)  # a coin's edge: darker on paper, lit on cloth
        draw.ellipse([x - r * 0.93, y - r * 0.93, x + r * 0.93, y + r * 0.93], fill=colour)
        draw.text((x - r / 3, y - r / 3), str(i), fill=(40, 40, 40))
    noise = rng.integers(-6, 6, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(img).astype(int) + noise, 0, 255).astype(np.uint8))


def small_config(**overrides):
    from coinfeat.core.extraction.extract import ExtractConfig

    options = {
        "weights": "none",
        "image_size": SMALL,
        "batch_size": 4,
        "progress": False,
        "group_regex": EURO_GROUPS,
        "crop": "none",
    }
    options.update(overrides)
    return ExtractConfig(**options)


class ChunkOnlyVectors:
    """A store's vectors that refuse to be read whole and remember the largest read."""

    def __init__(self, X):
        self.X, self.shape, self.largest = X, X.shape, 0

    def __getitem__(self, rows):
        self.largest = max(self.largest, len(np.atleast_1d(rows)))
        return self.X[rows]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole matrix was loaded")


# A child process with no coinfeat on its path: the exported files must stand alone.
LOAD = """
import json, sys
import numpy as np
sys.path = [p for p in sys.path if "coinfeat" not in p and p not in ("", ".")]
*models, images = sys.argv[1:]
images = np.load(images)

def run(model):
    if model.endswith(".keras"):
        import keras
        return np.asarray(keras.models.load_model(model, compile=False).predict(images, verbose=0))
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=model)
    inp = it.get_input_details()[0]["index"]
    it.resize_tensor_input(inp, images.shape)
    it.allocate_tensors()
    it.set_tensor(inp, images)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])

answers = []
for model in models:
    proba = run(model)
    answers.append({"argmax": proba.argmax(1).tolist(), "sums": proba.sum(1).tolist(),
                    "coinfeat_loaded": any(m.startswith("coinfeat") for m in sys.modules)})
print(json.dumps(answers))
"""


def run_exported(model, images) -> dict:
    """Run an exported model on saved images in a process that cannot import coinfeat."""
    return run_exported_models([model], images)[0]


def run_exported_models(models, images) -> list[dict]:
    """Several exported models in one such process (one TensorFlow start-up)."""
    out = subprocess.run(
        [sys.executable, "-c", LOAD, *map(str, models), str(images)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def tiny_backbone() -> str:
    """A seeded random 11-layer network saved as a ``.keras`` backbone file (``--backbone PATH``),
    for tests of machinery that any backbone goes through (stores, int8, export, fine-tuning,
    crashes): it converts and traces in a second where EfficientNetB0 takes ~20 s. It has B0's
    layer names and no squeeze-excite, so fine-tune cuts it like Lite0. Files say pretrained:
    tests of the NOT PRETRAINED wording use ``small_config()``'s B0."""
    import os

    folder = Path(os.environ.get("COINFEAT_CACHE_DIR") or Path.home() / ".cache" / "coinfeat")
    path = folder / "tiny-backbone-2.keras"
    if path.is_file():
        return str(path)
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((None, None, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("swish", name="stem_activation")(x)
    x = layers.Conv2D(24, 3, strides=2, padding="same", activation="swish", name="block4a_conv")(x)
    y = layers.DepthwiseConv2D(3, padding="same", activation="swish", name="block4c_dwconv")(x)
    x = layers.Add(name="block4c_add")([x, y])
    x = layers.Conv2D(24, 3, padding="same", activation="swish", name="block5a_conv")(x)
    y = layers.DepthwiseConv2D(3, padding="same", activation="swish", name="block5c_dwconv")(x)
    x = layers.Add(name="block5c_add")([x, y])
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="block6a_conv")(x)
    x = layers.BatchNormalization(name="block6a_bn")(x)
    x = layers.Activation("swish", name="top_activation")(x)
    model = keras.Model(inputs, x, name="tiny")
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"tiny-backbone-2.{os.getpid()}.keras"
    model.save(partial)
    partial.replace(path)
    return str(path)


def tiny_config(**overrides):
    """:func:`small_config` on :func:`tiny_backbone`."""
    return small_config(**{"backbone": tiny_backbone(), **overrides})


def raw_markdown(page: str) -> list[str]:
    """The pieces of an HTML page's visible text that are Markdown left unrendered: table rows
    (``| a | b |``), rules (``|---|``), ``**bold**``, backticks and ``#`` headings."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.chunks: list[str] = []
            self.hidden = 0

        def handle_starttag(self, tag, attrs):
            self.hidden += tag in ("style", "script")

        def handle_endtag(self, tag):
            self.hidden -= tag in ("style", "script")

        def handle_data(self, data):
            if not self.hidden:
                self.chunks.append(data)

    parser = Text()
    parser.feed(page)
    found = []
    for line in "\n".join(parser.chunks).splitlines():
        text = line.strip()
        if (
            (text.startswith("|") and text.endswith("|") and text.count("|") >= 3)
            or "|---" in text
            or "**" in text
            or "`" in text
            or text.startswith("# ")
        ):
            found.append(text)
    return found
