"""Benchmark (an experiment, not a default): white balance before the coin crop, for other cameras.

Heads are fitted on a store of the shared euro-coins train folder (coin crop, frozen backbone) and
scored on its val photos (same camera) and on a store of euro-coins-phone's coins (another phone,
table and light; a test set only, never tuned on). Each variant re-embeds the stores' own photos
with the stores' backbone, side by side in one run:

* ``none``: the coin crop as extraction makes it (reproduces the stores' vectors);
* ``grey-world``: every channel scaled so the decoded photo's mean is grey, then the coin crop
  (``--crop coin-balanced``, :func:`coinfeat.core.images.crop.grey_world`);
* ``surround``: the same gains measured on the pixels outside the central coin only (the table),
  when they are at least 15% of the photo; otherwise unchanged.

    python scripts/bench_white_balance.py --train-store DIR --test-store DIR [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from benchlib import write_section
from PIL import Image

from coinfeat import open_store
from coinfeat.core.extraction.backbones import build_model, resolve_backbone
from coinfeat.core.heads import make_head
from coinfeat.core.images.crop import SEARCH_SIDE, balanced, coin_centred, grey_world
from coinfeat.core.images.decode import decode, fit_square, read_bytes
from coinfeat.core.images.detect import central_coin


def surround(img: Image.Image) -> Image.Image:
    scale = min(1.0, SEARCH_SIDE / min(img.size))
    small = np.asarray(img.resize((round(img.width * scale), round(img.height * scale))))
    coin = central_coin(small, min_share=0.12)
    if coin is None:
        return img
    yy, xx = np.mgrid[: small.shape[0], : small.shape[1]]
    outside = np.hypot(xx - coin.x, yy - coin.y) > 1.1 * coin.radius
    return balanced(img, small[outside].astype(np.float32).mean(0)) if outside.mean() >= 0.15 else img


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "none": lambda img: img,
    "grey-world": grey_world,
    "surround": surround,
}


def embed(model, paths: list[Path], size: int, balance) -> np.ndarray:
    def square(path: Path) -> np.ndarray:
        img = balance(decode(read_bytes(path), draft_size=4 * size))
        return np.asarray(fit_square(coin_centred(img)[0], size, "pad"), np.float32)

    with ThreadPoolExecutor(2) as pool:
        return np.concatenate(
            [model.predict(np.stack(list(pool.map(square, paths[i : i + 64]))), verbose=0)
             for i in range(0, len(paths), 64)]
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-store", required=True, help="euro-coins, --crop coin, frozen backbone")
    parser.add_argument("--test-store", required=True, help="euro-coins-phone coins, same backbone")
    parser.add_argument("--write", help="update this BENCHMARKS.md")
    args = parser.parse_args()
    train, test = open_store(args.train_store), open_store(args.test_store)
    spec = resolve_backbone(train.manifest.backbone["model_file"] or train.manifest.backbone["name"],
                            image_size=train.manifest.backbone["image_size"])  # fmt: skip
    model = build_model(spec)
    parts = {"train": (train, "train"), "val": (train, "val"), "phone": (test, None)}
    rows = []
    for name, balance in VARIANTS.items():
        X, y = {}, {}
        for part, (store, split) in parts.items():
            _, items = store.select(split)
            paths = [store.manifest.dataset.absolute(p) for p in items["path"]]
            X[part], y[part] = embed(model, paths, spec.image_size, balance), items["label"].to_numpy()
        for head_type in ("logreg", "dense"):
            head = make_head(head_type)
            head = (
                head.fit(X["train"], y["train"], X["val"], y["val"])
                if head_type == "dense"
                else head.fit(X["train"], y["train"])
            )
            scores = [float(np.mean(head.predict(X[p]) == y[p])) for p in ("val", "phone")]
            rows.append((name, head_type, *scores))
            print(rows[-1], flush=True)
    lines = [
        "<!-- white-balance:start -->",
        "## White balance before the coin crop (`scripts/bench_white_balance.py`, an experiment)",
        "",
        f"Frozen {spec.label}; heads fitted on the euro-coins train folder's coin crops only; top-1 on "
        "its val photos and on the coins of euro-coins-phone (never tuned on). One run.",
        "",
        "| balance | head | val (same camera) | euro-coins-phone |",
        "|---|---|---|---|",
        *[f"| {n} | {h} | {v:.3f} | {p:.3f} |" for n, h, v, p in rows],
        "<!-- white-balance:end -->",
    ]
    print("\n".join(lines))
    if args.write:
        write_section(Path(args.write), "\n".join(lines), "white-balance")


if __name__ == "__main__":
    main()
