"""Where the network is cut, and the trainable model above the cut (or the whole network), with
the objective it is trained for."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.extraction.backbones import (
    BackboneSpec,
    image_input,
    preprocess,
)
from coinfeat.core.heads.base import softmax
from coinfeat.core.images.crop import DEFAULT_CROP

DEFAULT_CUTS = {
    "efficientnetb0": "block5c_add",
    "efficientnet-lite": "block4c_add",
    "mobilenetv2": "block_12_add",
    "resnet50": "conv4_block6_out",
}
"""Where the trained part starts, per backbone: as low as the whole command stays within 15 minutes
on 2 cores and the photos need (BENCHMARKS.md). A ``.keras`` file with B0's layer names is cut like
B0, or, without squeeze-excite layers (EfficientNet-Lite0) and on coin crops, one stage lower:
block5 to the top, which reads the coins of another camera better (euro-coins-phone top-1 0.878
against 0.830 one stage higher; val loss 0.200 against 0.259; same-camera test top-1 0.866 against
0.839). On photos as they are (``--crop none``, a fixed rig) the lower cut measured far worse on the
same camera's test folder (balanced accuracy with TTA 0.850 against 0.944), so Lite0 is cut like
B0 there. B0's squeeze-excite makes the lower cut 1.9x slower per epoch, past the budget."""

B0_CUT = DEFAULT_CUTS["efficientnetb0"]

OBJECTIVES = ("softmax", "cosine")
"""What the trained part learns: ``softmax``, a dense softmax layer (its head is a dense head);
``cosine``, class vectors compared by cosine and trained with an additive margin (CosFace), so that
the embedding itself groups coins of a type and a new type is only new vectors (its head is a
centroid head whose prototypes are the learned class vectors). BENCHMARKS.md "Fine-tune objective"."""

COSINE_SCALE = 20.0
"""Logits are ``COSINE_SCALE`` x cosine: the centroid head's default temperature (0.05) inverted."""

COSINE_MARGIN = 0.2
"""Subtracted from the true class's cosine while training (none at prediction): a coin must be
nearer its own class vector than the others by this much before the loss lets go. Set before
measuring, not tuned (CosFace uses 0.35 over thousands of classes)."""


def resolve_cut(spec: BackboneSpec, base: Any, cut: str | None, crop: str = DEFAULT_CROP) -> str:
    """The layer where the trained part starts: ``cut``, or the default for the backbone and the
    store's ``crop``."""
    names = [layer.name for layer in base.layers]
    if cut is None:
        cut = DEFAULT_CUTS.get(spec.name) or _file_default(names, crop)
        if cut is None:
            raise CoinfeatError(
                f"no default cut for {spec.name}; pass --cut LAYER, e.g. one of: {_candidates(base)}"
            )
    if cut not in names:
        raise CoinfeatError(f"{spec.name} has no layer {cut!r}; block outputs to cut at: {_candidates(base)}")
    return cut


def _file_default(names: list[str], crop: str) -> str | None:
    """The default cut of a ``.keras`` file with B0's layer names (lower for Lite0 on coin crops),
    None for any other file."""
    if B0_CUT not in names:
        return None
    lite = not any("_se_" in name for name in names)
    return DEFAULT_CUTS["efficientnet-lite"] if lite and crop != "none" else B0_CUT


def _candidates(base: Any) -> str:
    adds = [layer.name for layer in base.layers if type(layer).__name__ == "Add"]
    return ", ".join(adds[-8:]) or ", ".join(layer.name for layer in base.layers[-8:])


def split_network(keras, spec: BackboneSpec, base: Any, cut: str):
    """(lower, upper): ``lower`` maps 0..255 images to the cut's activations (frozen); ``upper``
    maps those activations to the backbone's output, trainable except its batch norms, which
    stay in inference mode (small batches would re-estimate their statistics badly). Both share
    their layers with ``base``, so training ``upper`` tunes ``base``."""
    tensor = base.get_layer(cut).output
    if tensor is base.output:
        raise CoinfeatError(f"cutting {spec.name} at {cut!r} leaves nothing to train; cut lower")
    try:
        upper = keras.Model(tensor, base.output, name="upper")
    except ValueError:
        raise CoinfeatError(
            f"cannot cut {spec.name} at {cut!r}: another connection bypasses it (inside a residual "
            f"block); cut at a block output, e.g. {_candidates(base)}"
        ) from None
    lower_part = keras.Model(base.input, tensor, name="lower")
    lower_part.trainable = False
    for layer in upper.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    if not upper.trainable_weights:
        raise CoinfeatError(f"cutting {spec.name} at {cut!r} leaves nothing to train; cut lower")
    images = image_input(spec)
    return keras.Model(images, lower_part(preprocess(spec, images)), name="lower_0_255"), upper


def full_network(keras, spec: BackboneSpec, base: Any):
    """The whole backbone trainable (``--full``), batch norms in inference mode, 0..255 images in."""
    base.trainable = True
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    images = image_input(spec)
    return keras.Model(images, base(preprocess(spec, images)), name="full")


def classifier(keras, body: Any, n_classes: int, dropout: float, objective: str = "softmax"):
    """``body`` -> global average pooling -> dropout -> the objective's output layer: what is
    trained. ``softmax`` outputs probabilities (layer ``coin_softmax``), ``cosine`` scaled cosines
    to the class vectors (layer ``coin_cosine``; :func:`probabilities` turns them into probabilities)."""
    inputs = keras.Input(body.input.shape[1:])
    x = body(inputs)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    if objective == "cosine":
        outputs = cosine_layer(keras)(n_classes, COSINE_SCALE, name="coin_cosine")(x)
    else:
        outputs = keras.layers.Dense(n_classes, activation="softmax", name="coin_softmax")(x)
    return keras.Model(inputs, outputs, name="finetune")


def training_loss(keras, objective: str, n_classes: int) -> Any:
    """The loss of ``objective``: cross-entropy on the softmax's probabilities, or on the cosine
    logits with :data:`COSINE_MARGIN` taken off the true class (per photo, so class weights apply)."""
    if objective != "cosine":
        return "sparse_categorical_crossentropy"
    ops = keras.ops

    def cosine_margin_loss(y_true, logits):
        truth = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), n_classes)
        return keras.losses.categorical_crossentropy(
            truth, logits - COSINE_SCALE * COSINE_MARGIN * truth, from_logits=True
        )

    return cosine_margin_loss


def probabilities(objective: str, outputs: np.ndarray) -> np.ndarray:
    """Class probabilities from what the trained model outputs (no margin at prediction)."""
    return softmax(outputs) if objective == "cosine" else outputs


@functools.cache
def cosine_layer(keras) -> type:
    """The Keras layer of the ``cosine`` objective: unit-length input times unit-length class
    vectors (``kernel``, features x classes), times ``scale``."""

    class CosineLogits(keras.layers.Layer):
        def __init__(self, units: int, scale: float, **kwargs) -> None:
            super().__init__(**kwargs)
            self.units, self.scale = int(units), float(scale)

        def build(self, input_shape) -> None:
            self.kernel = self.add_weight(
                shape=(int(input_shape[-1]), self.units), initializer="glorot_uniform", name="kernel"
            )

        def call(self, x):
            ops = keras.ops
            x = x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + 1e-12)
            w = self.kernel / ops.sqrt(ops.sum(ops.square(self.kernel), axis=0, keepdims=True) + 1e-12)
            return self.scale * ops.matmul(x, w)

        def compute_output_shape(self, input_shape):
            return (*input_shape[:-1], self.units)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units, "scale": self.scale}

    return CosineLogits
