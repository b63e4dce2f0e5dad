"""Augmented views of training photos that model other cameras (albumentations).

``extract-features --augment N`` caches N views of each train photo beside its clean vector
(``view`` 1..N in items.parquet); ``fine-tune --views N`` caches the activations of N views.
Each view is a seeded function of the photo's key, so it is reproducible and cached like any other
vector. Evaluation never uses views.

What a view changes is what differs between one camera and another, in two stages. The scene
(:meth:`CameraViews.scene`, on the decoded photo before the crop policy balances and frames it):
the colour of the light (temperature and cast) and of the table the coin lies on, so the views
show what the balance leaves of them, as real photos do. The camera (:meth:`CameraViews.__call__`,
on the framed square): the coin's angle (full circle) and size in the frame, saturation (down to
grey), exposure and gamma, blur and defocus, sensor noise, JPEG quality, low resolution (down to
40-80 px and back) and glare. Never a mirror: no camera produces one, and a mirrored "2" is not a
coin.
When a policy changes, bump ``coinfeat.core.store.keys.AUGMENT_VERSION`` (it is part of a view's key).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class CameraViews:
    """The augmentation policy; each ``p_*`` is how often that part is applied (0 turns it off)."""

    zoom: tuple[float, float] = (0.85, 1.1)
    light: float = 0.25
    """Brightness and contrast each change by up to this share."""
    p_colour: float = 0.6
    """Colour temperature (Planckian jitter) and an RGB cast of the scene."""
    p_table: float = 0.5
    """The paper around the coin becomes a table of a random colour and texture (the scene): a
    coloured table shifts what the balance does to the coin, and the table beside it shows how."""
    p_saturation: float = 0.5
    p_gray: float = 0.2
    """Grey views: the design and the numeral must carry the class when the light's colour cannot
    be trusted (a warm-lit brass 10c looks like a copper coin)."""
    p_gamma: float = 0.4
    p_blur: float = 0.3
    p_low_res: float = 0.25
    low_res_px: tuple[int, int] = (40, 80)
    p_noise: float = 0.3
    p_jpeg: float = 0.4
    p_glare: float = 0.1

    def scene(self, img: Image.Image, key: str) -> Image.Image:
        """The scene of the view ``key`` names: ``img`` (the decoded photo, before framing) on
        another table under another light."""
        rng = np.random.default_rng(_seed(key, "table"))
        if rng.uniform() < self.p_table:
            img = on_table(img, rng)
        return _apply(self._pipeline(0, _light), img, _seed(key, "light"))

    def __call__(self, img: Image.Image, key: str) -> Image.Image:
        """The camera of the view ``key`` names, applied to the framed square ``img`` (same key,
        same view)."""
        return _apply(self._pipeline(img.size[0], _camera), img, _seed(key))

    def _pipeline(self, side: int, compose: Any) -> Any:
        """One pipeline per thread, stage and image side (albumentations' random state is per
        pipeline)."""
        cache = _local.__dict__.setdefault("pipelines", {})
        if (self, side, compose) not in cache:
            cache[(self, side, compose)] = compose(self, side)
        return cache[(self, side, compose)]


def _seed(key: str, stage: str = "") -> int:
    return int(hashlib.sha256((stage + key).encode()).hexdigest()[:8], 16)


def _apply(pipeline: Any, img: Image.Image, seed: int) -> Image.Image:
    pipeline.set_random_seed(seed)
    return Image.fromarray(pipeline(image=np.asarray(img.convert("RGB")))["image"])


TABLE_TEXTURE = 0.08
"""Relative spread of the painted table's grain."""


def on_table(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """``img`` with the pale, grey pixels outside its central coin (the paper the shared photos were
    taken on) painted a random colour, keeping their shading and adding grain; unchanged when no
    coin or no paper is found. Neighbouring coins keep their colour: they are neither pale grey
    nor, mostly, paper-bright."""
    from coinfeat.core.images.crop import find_central

    img = img.convert("RGB")
    coin = find_central(img)
    if coin is None:
        return img
    arr = np.asarray(img, dtype=np.float32)
    rows, cols = np.ogrid[: arr.shape[0], : arr.shape[1]]
    outside = (cols - coin.x) ** 2 + (rows - coin.y) ** 2 > (0.99 * coin.radius) ** 2
    brightest, darkest = arr.max(axis=2), arr.min(axis=2)
    paper = outside & (brightest > 110) & (brightest - darkest < 0.25 * brightest)
    if paper.sum() < 50:
        return img
    hsv = (rng.uniform(0, 255), rng.uniform(64, 217), rng.uniform(64, 217))
    colour = np.asarray(Image.new("HSV", (1, 1), tuple(int(v) for v in hsv)).convert("RGB"), np.float32)
    shading = arr.mean(axis=2, keepdims=True) / float(arr[paper].mean())
    grain = rng.normal(1, TABLE_TEXTURE, (*arr.shape[:2], 1))
    painted = np.clip(colour.reshape(3) * shading * grain, 0, 255)
    return Image.fromarray(np.where(paper[..., None], painted, arr).astype(np.uint8))


_local = threading.local()


def _light(policy: CameraViews, side: int) -> Any:
    import albumentations as A

    colour = [
        A.PlanckianJitter(mode="blackbody", p=0.8),
        A.RGBShift(r_shift_limit=12, g_shift_limit=12, b_shift_limit=12, p=0.5),
    ]
    return A.Compose([A.Sequential(colour, p=policy.p_colour)], strict=True)


def _camera(policy: CameraViews, side: int) -> Any:
    import albumentations as A
    import cv2

    low = tuple(min(1.0, px / max(side, 1)) for px in policy.low_res_px)
    return A.Compose(
        [
            A.Affine(rotate=(-180, 180), scale=policy.zoom, border_mode=cv2.BORDER_REFLECT_101, p=1),
            A.HueSaturationValue(
                hue_shift_limit=4, sat_shift_limit=25, val_shift_limit=0, p=policy.p_saturation
            ),
            A.ToGray(p=policy.p_gray),
            A.RandomBrightnessContrast(brightness_limit=policy.light, contrast_limit=policy.light, p=0.8),
            A.RandomGamma(gamma_limit=(70, 150), p=policy.p_gamma),
            A.OneOf(
                [
                    A.GaussianBlur(blur_limit=(3, 7)),
                    A.Defocus(radius=(2, 4)),
                    A.MotionBlur(blur_limit=(3, 7)),
                ],
                p=policy.p_blur,
            ),
            A.Downscale(scale_range=(min(low), max(low)), p=policy.p_low_res if low[0] < 1 else 0),
            A.GaussNoise(std_range=(0.02, 0.06), p=policy.p_noise),
            A.ImageCompression(quality_range=(30, 90), p=policy.p_jpeg),
            A.RandomSunFlare(
                flare_roi=(0, 0, 1, 1),
                src_radius=max(8, side // 6),
                num_flare_circles_range=(1, 3),
                p=policy.p_glare,
            ),
        ],
        strict=True,
    )


augment = CameraViews()
"""The views ``extract-features --augment`` caches."""

FINETUNE_VIEWS = augment
"""The views fine-tuning trains on: the same policy (one place to change it)."""
