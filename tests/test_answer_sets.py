"""Conformal answer sets: coverage on a generated problem, saved as data with the head, shown by predict."""

from __future__ import annotations

import numpy as np
import pytest

from coinfeat.core.answer_sets import ANSWER_SETS_FILE, SCORES, AnswerSets
from coinfeat.core.errors import CoinfeatError

CLASSES = np.array(["1c", "2c", "5c", "10c"])


def _problem(n: int, seed: int, skill: float = 1.5):
    """Softmax outputs of a noisy classifier: the true class gets ``skill`` extra logit."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    logits = rng.normal(0, 1, (n, len(CLASSES)))
    logits[np.arange(n), y] += skill
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return proba, CLASSES[y]


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("class_conditional", [False, True])
def test_coverage_is_about_the_level_asked_for(class_conditional, score):
    calibration = AnswerSets.calibrate(
        *_problem(3000, 0), CLASSES, class_conditional=class_conditional, score=score
    )
    proba, y = _problem(6000, 1)
    for level in (0.8, 0.9, 0.95):
        result = calibration.evaluate(proba, y, level)
        assert level - 0.02 <= result["coverage"] <= level + 0.03, (level, result)
    assert (
        calibration.evaluate(proba, y, 0.95)["mean_size"] > calibration.evaluate(proba, y, 0.8)["mean_size"]
    )
    top1 = np.mean(CLASSES[proba.argmax(axis=1)] == y)
    assert top1 < 0.8, "the problem is hard enough that single answers could not reach 0.9"


def test_a_head_surer_on_val_than_elsewhere_still_gets_sets_where_it_is_unsure():
    """A head right on 96% of its calibration photos: hinge sets are all single classes, so on
    harder photos they cover only as often as the head is right; RAPS sets grow on the unsure
    photos, and the same probabilities always give the same set."""
    calibration = {s: AnswerSets.calibrate(*_problem(400, 0, skill=3.0), CLASSES, score=s) for s in SCORES}
    proba, y = _problem(3000, 1, skill=2.0)
    top1 = np.mean(CLASSES[proba.argmax(axis=1)] == y)
    hinge = calibration["hinge"].evaluate(proba, y, 0.9)
    raps = calibration["raps"].evaluate(proba, y, 0.9)
    assert hinge["mean_size"] == 1.0 and hinge["coverage"] == pytest.approx(top1)
    assert raps["coverage"] >= 0.9 > top1 and raps["mean_size"] < 1.6
    sizes = np.array([len(s) for s in calibration["raps"].sets(proba, 0.9)])
    sure = proba.max(axis=1) > 0.9
    assert sizes[sure].mean() < 1.05 and sizes[proba.max(axis=1) < 0.5].mean() > 1.8
    assert calibration["raps"].sets(proba[:50].copy(), 0.9) == calibration["raps"].sets(proba[:50], 0.9)


def test_sets_lead_with_the_most_probable_class_and_are_never_empty():
    calibration = AnswerSets.calibrate(*_problem(500, 2), CLASSES)
    sure = np.array([[0.97, 0.01, 0.01, 0.01]])
    torn = np.array([[0.45, 0.44, 0.06, 0.05]])
    assert calibration.sets(sure, 0.9) == [["1c"]]
    assert calibration.sets(torn, 0.9)[0][:2] == ["1c", "2c"]
    assert calibration.sets(sure, 0.01) == [["1c"]]
    with pytest.raises(CoinfeatError, match="between 0 and 1"):
        calibration.sets(sure, 1.5)


def test_saved_as_plain_arrays_and_refused_when_tampered(tmp_path):
    calibration = AnswerSets.calibrate(*_problem(200, 3), CLASSES, class_conditional=True)
    calibration.save(tmp_path)
    again = AnswerSets.load(tmp_path)
    assert again.class_conditional and np.array_equal(again.scores, calibration.scores)
    assert again.score == "raps"
    with np.load(tmp_path / ANSWER_SETS_FILE) as data:
        older = {k: data[k] for k in data.files if k != "score"}
    np.savez(tmp_path / ANSWER_SETS_FILE, **older)
    assert AnswerSets.load(tmp_path).score == "hinge", "files from before the choice keep their score"
    assert AnswerSets.load(tmp_path / "elsewhere") is None
    np.savez(tmp_path / ANSWER_SETS_FILE, classes=np.array([{"evil": 1}], dtype=object), scores=np.zeros(3))
    with pytest.raises(CoinfeatError, match="not a valid answer-set calibration"):
        AnswerSets.load(tmp_path)
    with pytest.raises(CoinfeatError, match="at least 20 calibration photos"):
        AnswerSets.calibrate(*_problem(10, 4), CLASSES)


def test_fit_head_calibrates_and_predict_shows_the_set(tmp_path):
    from helpers import small_config, write_class_folders

    from coinfeat import extract_features, fit_head, predict_images

    data = write_class_folders(tmp_path / "coins", per_class=40)
    store = extract_features(data, tmp_path / "store", small_config(split=(0.5, 0.3, 0.2))).store
    result = fit_head(store, "centroid", tmp_path / "head")
    assert result.val >= 20 and result.answer_sets == result.val
    assert (tmp_path / "head" / ANSWER_SETS_FILE).exists()
    photos = sorted(data.rglob("*.jpg"))[:3]
    predictions = predict_images(photos, tmp_path / "head", top_k=2, tta="none", confidence=0.9)
    assert all(p.answer_set and p.answer_set[0] == p.labels[0] for p in predictions)
    wide = predict_images(photos, tmp_path / "head", top_k=2, tta="none", confidence=0.999)
    assert all(len(w.answer_set) >= len(p.answer_set) for w, p in zip(wide, predictions))
    import pandas as pd

    from coinfeat.predict import write_predictions

    table = pd.read_csv(write_predictions(wide, tmp_path / "p.csv"))
    assert table["answer_set"].tolist() == [" or ".join(w.answer_set) for w in wide]


def test_recalibrated_on_other_photos_the_sets_cover_those(tmp_path, capsys):
    """Photos unlike val (other colours: another camera) get too small sets from val's
    calibration; ``fit-head --calibrate`` on them makes the sets hold there, and says so."""
    from helpers import CLASS_COLOURS, tiny_config, write_class_folders

    from coinfeat import extract_features, fit_head, predict_images
    from coinfeat.cli import main
    from coinfeat.core.errors import FingerprintMismatch
    from coinfeat.fit import calibrate_head
    from coinfeat.predict import accuracy

    own = write_class_folders(tmp_path / "own", per_class=30)
    store = extract_features(own, tmp_path / "store", tiny_config(split=(0.5, 0.5, 0.0))).store
    fit_head(store, "logreg", tmp_path / "head")
    shifted = {label: tuple(min(255, c + 70) for c in rgb[::-1]) for label, rgb in CLASS_COLOURS.items()}
    mine = write_class_folders(tmp_path / "mine", per_class=30, colours=shifted)

    before = accuracy(predict_images([mine], tmp_path / "head", tta="none", confidence=0.9))
    assert main(["fit-head", "--head", str(tmp_path / "head"), "--calibrate", str(mine), "-q"]) == 0
    assert "recalibrated on 90 photos" in capsys.readouterr().out
    sets = AnswerSets.load(tmp_path / "head")
    assert len(sets.scores) == 90 and sets.source == str(
        (tmp_path / "head" / "calibration" / "mine").resolve()
    )
    after = accuracy(predict_images([mine], tmp_path / "head", tta="none", confidence=0.9))
    assert after["set_coverage"] >= 0.9 > before["set_coverage"], (before, after)
    again = calibrate_head(tmp_path / "head", tmp_path / "head" / "calibration" / "mine", progress=False)
    assert again.photos == 90 and np.array_equal(AnswerSets.load(tmp_path / "head").scores, sets.scores)

    few = write_class_folders(tmp_path / "few", per_class=4, colours=shifted)
    with pytest.raises(CoinfeatError, match="at least 20 calibration photos"):
        calibrate_head(tmp_path / "head", few, progress=False)
    assert np.array_equal(AnswerSets.load(tmp_path / "head").scores, sets.scores), "the old sets are kept"

    other = extract_features(own, tmp_path / "other", tiny_config(image_size=48)).store
    with pytest.raises(FingerprintMismatch):
        calibrate_head(tmp_path / "head", other)
