"""Augmented views of training photos that model other cameras (albumentations).

``extract-features --augment N`` caches N views of each train photo beside its clean vector
(``view`` 1..N in items.parquet); ``fine-tune --views N`` caches the activations of N views.
Each view is a seeded function of the photo's key, so it is reproducible and cached like any other
vector. Evaluation never uses views.

What a view changes is what differs between one camera and another: the coin's angle (full
circle) and size in the frame, white balance and colour cast, saturation (down to grey), exposure and gamma,
blur and defocus, sensor noise, JPEG quality, low resolution (down to 40-80 px and back) and
glare. Never a mirror: no camera produces one, and a mirrored "2" is not a coin.
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
    """Colour temperature (Planckian jitter) and an RGB cast."""
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

    def __call__(self, img: Image.Image, key: str) -> Image.Image:
        """The view of ``img`` that ``key`` names (same key, same view)."""
        pipeline = self._pipeline(img.size[0])
        pipeline.set_random_seed(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
        return Image.fromarray(pipeline(image=np.asarray(img.convert("RGB")))["image"])

    def _pipeline(self, side: int) -> Any:
        """One pipeline per thread and image side (albumentations' random state is per pipeline)."""
        cache = _local.__dict__.setdefault("pipelines", {})
        if (self, side) not in cache:
            cache[(self, side)] = _compose(self, side)
        return cache[(self, side)]


_local = threading.local()


def _compose(policy: CameraViews, side: int) -> Any:
    import albumentations as A
    import cv2

    low = tuple(min(1.0, px / max(side, 1)) for px in policy.low_res_px)
    return A.Compose(
        [
            A.Affine(rotate=(-180, 180), scale=policy.zoom, border_mode=cv2.BORDER_REFLECT_101, p=1),
            A.Sequential(
                [
                    A.PlanckianJitter(mode="blackbody", p=0.8),
                    A.RGBShift(r_shift_limit=12, g_shift_limit=12, b_shift_limit=12, p=0.5),
                ],
                p=policy.p_colour,
            ),
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
