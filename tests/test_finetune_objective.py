"""The fine-tune objectives' pieces: the cosine layer, the margin loss and probabilities from logits."""

from __future__ import annotations

import numpy as np
import pytest

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads.centroid import CentroidHead
from coinfeat.core.runtime import import_keras
from coinfeat.finetune import FinetuneConfig
from coinfeat.finetune.network import (
    COSINE_MARGIN,
    COSINE_SCALE,
    cosine_layer,
    probabilities,
    training_loss,
)


def _unit(x: np.ndarray, axis: int) -> np.ndarray:
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def test_the_cosine_layer_gives_scaled_cosines_to_its_class_vectors_whatever_their_lengths():
    keras = import_keras()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 8)).astype(np.float32) * rng.uniform(0.1, 10, (5, 1)).astype(np.float32)
    layer = cosine_layer(keras)(3, COSINE_SCALE)
    layer.build((None, 8))
    kernel = rng.normal(size=(8, 3)).astype(np.float32) * np.float32([[0.5, 2, 7]])
    layer.set_weights([kernel])
    expected = COSINE_SCALE * _unit(x, 1) @ _unit(kernel, 0)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-4, atol=1e-4)
    clone = type(layer).from_config(layer.get_config())
    assert (clone.units, clone.scale) == (3, COSINE_SCALE), "the budget probe clones the model"


def test_the_margin_is_taken_off_the_true_class_only_while_training():
    keras = import_keras()
    logits = np.float32([[10.0, 9.0, -5.0], [0.0, 12.0, 3.0]])
    truth = np.int64([0, 1])
    loss = np.asarray(training_loss(keras, "cosine", 3)(truth, logits))
    shifted = logits - COSINE_SCALE * COSINE_MARGIN * np.eye(3, dtype=np.float32)[truth]
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(loss, -log_p[np.arange(2), truth], rtol=1e-4)
    plain = -np.log(probabilities("cosine", logits)[np.arange(2), truth])
    assert (loss > plain).all(), "with the margin a right answer still costs something"
    np.testing.assert_allclose(probabilities("cosine", logits).sum(axis=1), 1, rtol=1e-6)
    assert training_loss(keras, "softmax", 3) == "sparse_categorical_crossentropy"
    assert probabilities("softmax", logits) is logits


def test_a_centroid_head_from_class_vectors_answers_like_the_cosine_layer():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(4, 16)).astype(np.float32) * 3
    head = CentroidHead.from_prototypes(vectors, np.array(["a", "b", "c", "d"]), temperature=1 / COSINE_SCALE)
    X = rng.normal(size=(6, 16)).astype(np.float32)
    logits = COSINE_SCALE * _unit(X, 1) @ _unit(vectors, 1).T
    np.testing.assert_allclose(head.predict_proba(X), probabilities("cosine", logits), rtol=1e-4, atol=1e-6)
    with pytest.raises(CoinfeatError, match="3 prototypes for 4 classes"):
        CentroidHead.from_prototypes(vectors[:3], np.array(["a", "b", "c", "d"]))


def test_an_unknown_objective_is_a_one_line_error():
    with pytest.raises(CoinfeatError, match="--objective must be one of softmax, cosine"):
        FinetuneConfig(objective="triplet").validate()
