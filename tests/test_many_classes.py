"""Heads for many classes with few photos each: prototypes per class, class-balanced votes,
regularisation chosen on val, new classes enrolled without refitting, and a score for coins of a
type the head never saw. Generated clusters with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads import load_head, make_head
from coinfeat.core.heads.logreg import AUTO_C

DIM = 32


def clusters(n_classes: int, per_class: int, seed: int = 0, spread: float = 0.6, looks: int = 1):
    """Non-negative vectors (like pooled CNN features) around ``looks`` centres per class."""
    rng = np.random.default_rng(seed)
    centres = rng.gamma(2.0, 1.0, size=(n_classes, looks, DIM))
    labels = np.repeat(np.arange(n_classes), per_class)
    look = rng.integers(looks, size=len(labels))
    X = np.abs(centres[labels, look] + rng.normal(scale=spread, size=(len(labels), DIM)))
    return X.astype(np.float32), np.asarray([f"c{k:02d}" for k in labels])


ENROLLING = ["logreg", "dense", "knn", "centroid"]


@pytest.mark.parametrize("name", ENROLLING)
def test_a_new_class_is_enrolled_from_five_photos_without_refitting(name, tmp_path):
    X, y = clusters(10, 40, seed=1)
    new = np.isin(y, ["c03", "c07"])
    test = np.arange(len(y)) % 4 == 0
    head = make_head(name, **({"epochs": 40} if name == "dense" else {}))
    head.fit(X[~new & ~test], y[~new & ~test], X[~new & test], y[~new & test])
    before = head.predict(X[~new & test])
    shots = np.flatnonzero(new & ~test)
    shots = np.concatenate([shots[y[shots] == c][:5] for c in ("c03", "c07")])
    head.enrol(X[shots], y[shots])
    assert list(head.classes_) == sorted(set(y)), "new classes join in sorted order"
    assert np.mean(head.predict(X[new & test]) == y[new & test]) >= 0.9
    old_after = head.predict(X[~new & test])
    assert np.mean(old_after == y[~new & test]) >= np.mean(before == y[~new & test]) - 0.05
    head.save(tmp_path / "h")
    again = load_head(tmp_path / "h")
    np.testing.assert_allclose(again.predict_proba(X[test]), head.predict_proba(X[test]), atol=2e-3)


def test_heads_fitted_before_memory_cannot_enrol_and_say_why():
    X, y = clusters(4, 10)
    head = make_head("logreg").fit(X, y)
    del head.memory_
    with pytest.raises(CoinfeatError, match="fit it again to enrol"):
        head.enrol(X[:3], ["new"] * 3)


@pytest.mark.parametrize("name", ENROLLING)
def test_coins_of_an_unseen_type_are_less_similar_to_what_the_head_knows(name):
    X, y = clusters(12, 30, seed=2, spread=0.4)
    unseen = np.isin(y, ["c00", "c05", "c09"])
    head = make_head(name, **({"epochs": 20} if name == "dense" else {})).fit(
        X[~unseen][::2], y[~unseen][::2]
    )
    known_scores = head.similarity_to_known(X[~unseen][1::2])
    unseen_scores = head.similarity_to_known(X[unseen])
    labels = np.r_[np.ones(len(known_scores)), np.zeros(len(unseen_scores))]
    assert roc_auc_score(labels, np.r_[known_scores, unseen_scores]) > 0.95


def test_several_prototypes_keep_the_two_sides_of_a_coin_apart():
    rng = np.random.default_rng(3)
    u, v = np.eye(DIM)[0] * 5 + 1, np.eye(DIM)[1] * 5 + 1
    sides = np.vstack([u, v])[rng.integers(2, size=120)]  # class "coin": two looks
    between = np.tile((u + v) / 2, (120, 1))  # class "other": where the coin's mean lies
    X = np.vstack([sides, between]) + rng.normal(scale=0.4, size=(240, DIM))
    y = np.array(["coin"] * 120 + ["other"] * 120)
    train = np.arange(240) % 2 == 0
    one = make_head("centroid").fit(X[train], y[train])
    two = make_head("centroid", prototypes=2).fit(X[train], y[train])
    right = {h: np.mean(h.predict(X[~train]) == y[~train]) for h in (one, two)}
    assert right[two] >= 0.97 and right[two] > right[one] + 0.1


def test_class_balanced_votes_let_a_small_class_win_its_own_neighbourhood():
    rng = np.random.default_rng(4)
    big = rng.normal(0, 1.0, size=(300, DIM)) + 5
    small = rng.normal(0, 0.3, size=(6, DIM)) + 5 + 0.8  # a few photos beside a crowded class
    X = np.vstack([big, small]).astype(np.float32)
    y = np.array(["big"] * 300 + ["small"] * 6)
    query = (rng.normal(0, 0.3, size=(50, DIM)) + 5.8).astype(np.float32)
    plain = make_head("knn", k=30, weights="uniform", balance="none").fit(X, y)
    balanced = make_head("knn", k=30, weights="uniform", balance="class").fit(X, y)
    assert np.mean(plain.predict(query) == "small") < 0.5
    assert np.mean(balanced.predict(query) == "small") > 0.9


def test_logreg_chooses_its_regularisation_on_val():
    X, y = clusters(8, 12, seed=5, spread=2.0)
    Xv, yv = clusters(8, 12, seed=5, spread=2.0)
    Xv = Xv + np.random.default_rng(6).normal(scale=0.5, size=Xv.shape).astype(np.float32)
    head = make_head("logreg", C="auto").fit(X, y, Xv, yv)
    assert head.C_ in AUTO_C and head.meta.training == {"C": head.C_}
    losses = {
        C: log_loss(yv, make_head("logreg", C=C).fit(X, y).predict_proba(Xv), labels=head.classes_)
        for C in AUTO_C
    }
    assert losses[head.C_] == pytest.approx(min(losses.values()), rel=0.02)
    with pytest.raises(CoinfeatError, match="positive number or 'auto'"):
        make_head("logreg", C=-1).fit(X, y)


def test_a_centroid_head_with_prototypes_exports_as_the_same_layers():
    import keras

    X, y = clusters(5, 20, seed=7, looks=2)
    head = make_head("centroid", prototypes=3).fit(X, y)
    inputs = keras.Input((DIM,))
    model = keras.Model(inputs, head.to_keras(keras)(inputs))
    np.testing.assert_allclose(np.asarray(model(X)), head.predict_proba(X), atol=1e-4)
