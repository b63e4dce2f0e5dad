"""coinfeat fine-tune: the activation cache, training, and outputs every other command accepts as they are."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from helpers import (
    EURO,
    EURO_GROUPS,
    LITE0,
    needs_euro,
    needs_lite0,
    pile,
    run_exported,
    small_config,
    tiny_config,
    write_class_folders,
)
from PIL import Image

from coinfeat import extract_features, open_store
from coinfeat.core.answer_sets import AnswerSets
from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads import load_head
from coinfeat.core.store import PARTS
from coinfeat.finetune import ACTIVATIONS, DEFAULT_CUTS, FinetuneConfig, finetune
from coinfeat.finetune.training import EMA_START_SHARE, ema_momentum
from coinfeat.predict import predict_images

pytestmark = pytest.mark.slow  # fine-tuning and int8 conversions take minutes

CUT = "block5c_add"


TUNED_ENGINE = "keras"
"""Each tuned network runs once or twice here: a TFLite conversion of it would cost more than running it."""


def quick(**overrides) -> FinetuneConfig:
    """A short fine-tune, on ``TUNED_ENGINE``."""
    return FinetuneConfig(
        **{
            "views": 2,
            "epochs": 2,
            "patience": 1,
            "batch_size": 8,
            "progress": False,
            "engine": TUNED_ENGINE,
            **overrides,
        }
    )


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    data = write_class_folders(root / "d", per_class=12)
    extract_features(data, root / "s", tiny_config())
    result = finetune(root / "s", root / "out", quick(embed_out=str(root / "tuned-store")))
    return root, data, result


def test_outputs_record_what_was_trained_on_which_photos(tuned):
    root, _, result = tuned
    base = open_store(root / "s")
    out = root / "out"
    record = json.loads((out / "finetune.json").read_text())
    assert record["base"]["fingerprint"] == base.fingerprint and record["cut"] == CUT
    assert record["photos"]["train"]["photos"] == len(base.rows("train")) == result.train_photos
    assert record["photos"]["test"] == "never used" and record["pretrained"] is base.pretrained
    assert f"on train ({result.train_photos} photos)" in record["summary"]
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == len(history["val_accuracy"]) == result.epochs_run
    assert 1 <= result.best_epoch <= result.epochs_run
    with Image.open(out / "curves.png") as img:
        assert img.size[0] > 500
    cache = open_store(root / "s" / ACTIVATIONS / CUT)
    assert cache.embeddings.dtype == np.float16 and cache.embeddings.ndim == 4
    assert result.cache_rows == len(cache.items) == result.train_photos * 3 + result.val_photos
    assert set(cache.items["split"]) == {"train", "val"}, "test photos never reach the cache"


def test_tuned_store_keeps_the_splits_and_says_it_is_fine_tuned(tuned):
    root, _, result = tuned
    base, new = open_store(root / "s"), open_store(result.store)
    splits = base.items.set_index("path")["split"].sort_index()
    assert splits.equals(new.items.set_index("path")["split"].sort_index())
    assert "fine-tuned" in new.manifest.backbone["finetuned"] and new.fingerprint != base.fingerprint
    assert new.manifest.pretrained is base.pretrained
    assert not result.notes


def test_head_and_backbone_work_with_predict_compare_and_extract(tuned, tmp_path):
    from coinfeat.compare import CompareConfig, compare_heads

    _, data, result = tuned
    head = load_head(result.head_dir)
    new = open_store(result.store)
    assert head.meta.features.fingerprint == new.fingerprint
    X, items = new.select("test")
    photos = [str(data / p) for p in items["path"]]
    answers = predict_images(photos, result.head_dir, top_k=1, tta="none", engine=TUNED_ENGINE)
    assert [a.labels[0] for a in answers] == head.predict(X).tolist()
    comparison = compare_heads(
        result.store, CompareConfig(heads=["centroid"], load={"tuned": result.head_dir})
    )
    assert {r.name for r in comparison.results} == {"centroid", "tuned"}
    again = extract_features(
        data, tmp_path / "again", small_config(backbone=result.backbone, engine=TUNED_ENGINE)
    )
    assert again.fingerprint == new.fingerprint
    np.testing.assert_allclose(open_store(tmp_path / "again").select("test")[0], X, rtol=1e-4, atol=1e-4)


def test_a_fine_tuned_head_exports_like_any_head(tuned):
    from coinfeat.core.images.model_input import load_image
    from coinfeat.export import export_head

    root, data, result = tuned
    photos = [str(p) for p in sorted(data.rglob("*.jpg"))[:12]]
    np.save(root / "images.npy", np.stack([load_image(p, 64, "pad") for p in photos]).astype(np.float32))
    exported = export_head(result.head_dir, root / "tuned.keras")
    answer = run_exported(exported.model, root / "images.npy")
    classes = json.loads((root / "tuned.keras.labels.json").read_text())["classes"]
    predicted = [p.labels[0] for p in predict_images(photos, result.head_dir, top_k=1, tta="none")]
    assert [classes[i] for i in answer["argmax"]] == predicted and not answer["coinfeat_loaded"]


def test_a_fine_tuned_head_counts_coins_like_any_head(tuned):
    from coinfeat.counting.count import count_coins

    root, _, result = tuned
    assert set(load_head(result.head_dir).meta.crops) == {"photo_side_px", "ratio"}
    pile([(150, 150, 60), (330, 160, 70), (240, 320, 65)], size=(480, 420)).save(root / "pile.jpg")
    [counted] = count_coins(
        [root / "pile.jpg"], result.head_dir, tta="none", out=root / "counted", engine=TUNED_ENGINE
    )
    assert len(counted.coins) == 3 and counted.error is None
    assert (root / "counted" / "pile_count.png").is_file()
    assert counted.pretrained is open_store(root / "s").pretrained


def test_second_run_reuses_the_whole_cache_and_more_views_add_only_views(tuned):
    root, _, first = tuned
    again = finetune(root / "s", root / "out2", quick(epochs=1, embed=False))
    assert again.cache_reused == again.cache_rows == first.cache_rows and again.store is None
    more = finetune(root / "s", root / "out3", quick(views=3, epochs=1, embed=False))
    assert more.cache_rows == first.cache_rows + first.train_photos
    assert more.cache_reused == first.cache_rows


def test_full_fine_tune_trains_end_to_end_from_photos(tuned):
    root, data, _ = tuned
    result = finetune(root / "s", root / "full", quick(full=True, epochs=1, embed=False))
    assert result.mode == "full" and result.cut is None and result.cache_rows == 0
    record = json.loads((root / "full" / "finetune.json").read_text())
    assert record["mode"] == "full" and "end to end" in record["summary"]
    [answer] = predict_images(
        [str(data / "gold" / "gold0_0.jpg")], result.head_dir, top_k=2, tta="none", engine=TUNED_ENGINE
    )
    assert answer.error is None and len(answer.labels) == 2


def test_training_is_seeded_and_reproducible_and_the_head_gets_answer_sets(tuned, monkeypatch):
    from coinfeat.core import answer_sets

    root, _, first = tuned
    assert first.answer_sets is None and AnswerSets.load(first.head_dir) is None, "too few val photos"
    monkeypatch.setattr(answer_sets, "MIN_CALIBRATION", 3)  # this tiny set's val is enough here
    a = finetune(root / "s", root / "rep-a", quick(epochs=2, patience=2, embed=False))
    b = finetune(root / "s", root / "rep-b", quick(epochs=2, patience=2, embed=False))
    other = finetune(root / "s", root / "rep-c", quick(epochs=2, patience=2, embed=False, seed=7))
    history = [json.loads((root / n / "history.json").read_text()) for n in ("rep-a", "rep-b", "rep-c")]
    np.testing.assert_allclose(history[0]["loss"], history[1]["loss"], rtol=1e-5)
    assert not np.allclose(history[0]["loss"], history[2]["loss"], rtol=1e-5), "another seed, another draw"
    assert json.loads((root / "rep-c" / "finetune.json").read_text())["seed"] == 7 and other.epochs_run == 2
    assert a.val_accuracy == b.val_accuracy and a.stopped_by == "epochs" and not a.notes
    sets = AnswerSets.load(a.head_dir)
    assert a.answer_sets == len(sets.scores) == a.val_photos, "calibrated on val like any head"
    assert list(sets.classes) == list(load_head(a.head_dir).classes_)


def test_a_moving_average_of_the_weights_is_what_val_judges_and_what_is_kept(tuned):
    root, _, _ = tuned
    plain = finetune(root / "s", root / "ema-off", quick(epochs=2, patience=2, embed=False, ema=0))
    averaged = finetune(root / "s", root / "ema-on", quick(epochs=2, patience=2, embed=False, ema=0.9))
    losses = [json.loads((root / n / "history.json").read_text()) for n in ("ema-off", "ema-on")]
    np.testing.assert_allclose(losses[0]["loss"][0], losses[1]["loss"][0], rtol=1e-5)  # same steps...
    assert not np.isclose(losses[0]["val_loss"][0], losses[1]["val_loss"][0], rtol=1e-5)  # ...other weights
    steps = -(-averaged.train_photos * 3 // 8)  # photos and 2 views each, in batches of 8
    used = json.loads((root / "ema-on" / "finetune.json").read_text())["ema"]
    assert used == averaged.ema == round(ema_momentum(0.9, steps), 4) < 0.9, "a small collection lowers it"
    assert plain.ema == 0
    assert plain.epochs_run == averaged.epochs_run == 2


def test_the_moving_average_forgets_the_start_of_an_epoch_however_few_its_steps():
    assert ema_momentum(0.99, 243) == 0.99, "the euro-coins train folder, 6 views: 243 steps an epoch"
    assert ema_momentum(0.0, 5) == 0.0
    for steps in (1, 9, 20, 100):
        momentum = ema_momentum(0.99, steps)
        assert momentum < 0.99 and momentum**steps == pytest.approx(EMA_START_SHARE)


def test_the_time_budget_starts_no_epoch_that_would_end_past_it(tuned):
    root, _, _ = tuned
    hurried = finetune(
        root / "s", root / "hurried", quick(epochs=3, patience=3, max_minutes=1e-4, embed=False)
    )
    assert hurried.epochs_run == 1 and hurried.stopped_by == "time budget"
    assert any("--max-minutes" in note for note in hurried.notes)
    record = json.loads((root / "hurried" / "finetune.json").read_text())
    assert record["stopped_by"] == "time budget" and record["max_minutes"] == 1e-4
    head = load_head(hurried.head_dir)
    assert head.classes_.size == 3, "the kept epoch is a usable head"
    vectors = np.random.default_rng(0).normal(size=(3, head.n_features_in_)).astype(np.float32)
    assert "newcoin" in head.enrol(vectors, ["newcoin"] * 3).classes_, "no new store, memory all the same"


def test_the_cosine_objective_leaves_a_centroid_head_of_its_class_vectors_that_enrols(tuned):
    from coinfeat.core.heads.centroid import CentroidHead
    from coinfeat.core.heads.unknown import rule_from_scores

    root, _, _ = tuned
    result = finetune(
        root / "s",
        root / "cos",
        quick(epochs=2, patience=2, objective="cosine", embed_out=str(root / "cos-store")),
    )
    record = json.loads((root / "cos" / "finetune.json").read_text())
    head = load_head(result.head_dir)
    assert isinstance(head, CentroidHead) and len(head.centroids_) == head.classes_.size == 3
    assert record["objective"] == head.meta.finetune["objective"] == result.objective == "cosine"
    assert "cosine objective" in record["summary"]
    X_val, val = open_store(result.store).select("val")
    proba = head.predict_proba(X_val)
    right = np.mean(head.classes_[proba.argmax(axis=1)] == val["label"])
    assert right == pytest.approx(result.val_accuracy, abs=1e-4), "val figures are rounded to 4 places"
    stored = head.meta.unknown["thresholds"]
    again = rule_from_scores(proba.max(axis=1), "max_probability").thresholds
    assert again == pytest.approx(stored, abs=1e-3), "the head's probabilities are the network's"
    X_train, train = open_store(result.store).select("train")
    first = train["label"].to_numpy() == head.classes_[0]
    head.enrol(X_train[first][:3], ["newcoin"] * 3)
    assert "newcoin" in head.classes_ and len(head.centroids_) == 4, "a new type is one more vector"
    assert (head.predict(X_train[first][:3]) == "newcoin").all()


def test_a_cache_from_another_extractor_is_rebuilt_never_mixed(tuned):
    root, _, first = tuned
    folder = root / "s" / ACTIVATIONS / CUT
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["fingerprint"] = "another0extractor"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rebuilt = finetune(root / "s", root / "out4", quick(epochs=1, embed=False))
    assert rebuilt.cache_reused == 0 and rebuilt.cache_rows == first.cache_rows
    assert open_store(folder).fingerprint != "another0extractor"


def test_a_new_view_policy_remakes_the_cached_views_and_keeps_the_photos(tuned, tmp_path, monkeypatch):
    from coinfeat.core.store import keys

    root, _, _ = tuned
    shutil.copytree(root / "s", tmp_path / "s")
    cached = open_store(tmp_path / "s" / ACTIVATIONS / CUT).items
    views = int(cached["view"].gt(0).sum())
    monkeypatch.setattr(keys, "AUGMENT_VERSION", keys.AUGMENT_VERSION + 1)
    again = finetune(tmp_path / "s", tmp_path / "out", quick(epochs=1, embed=False))
    assert views > 0 and again.cache_rows == len(cached)
    assert again.cache_reused == len(cached) - views, "photos kept, views of the old policy made again"
    assert open_store(tmp_path / "s" / ACTIVATIONS / CUT).manifest.augment["version"] == keys.AUGMENT_VERSION


def test_user_mistakes_are_one_line_errors(tuned, tmp_path, monkeypatch):
    root, data, _ = tuned
    with pytest.raises(CoinfeatError, match=r"no layer 'block9z_add'.*block"):
        finetune(root / "s", tmp_path / "a", quick(cut="block9z_add"))
    with pytest.raises(CoinfeatError, match="leaves nothing to train"):
        finetune(root / "s", tmp_path / "b", quick(cut="top_activation"))
    with pytest.raises(CoinfeatError, match="--max-minutes must be more than 0"):
        finetune(root / "s", tmp_path / "b", quick(max_minutes=0))
    with pytest.raises(CoinfeatError, match="bypasses it"):
        finetune(root / "s", tmp_path / "c", quick(cut="block5c_dwconv"))
    extract_features(data, tmp_path / "noval", tiny_config(split=(0.8, 0.0, 0.2)))
    with pytest.raises(CoinfeatError, match="no val photos"):
        finetune(tmp_path / "noval", tmp_path / "d", quick())
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("U", (), {"free": 1000})())
    with pytest.raises(CoinfeatError, match="activation cache needs about"):
        finetune(root / "s", tmp_path / "e", quick(cut="stem_activation"))


def test_default_cut_follows_the_layout_of_a_b0_named_file():
    from types import SimpleNamespace

    from coinfeat.finetune.network import resolve_cut

    def base(*names):
        return SimpleNamespace(layers=[SimpleNamespace(name=n) for n in names])

    lite = ("block4c_add", "block5c_add", "top_activation")
    spec = SimpleNamespace(name="some.keras")
    assert resolve_cut(spec, base(*lite), None) == "block4c_add"
    assert resolve_cut(spec, base(*lite, "block6a_se_squeeze"), None) == "block5c_add"
    assert resolve_cut(SimpleNamespace(name="efficientnetb0"), base(*lite), None) == "block5c_add"
    assert resolve_cut(spec, base(*lite), "block5c_add") == "block5c_add"
    assert resolve_cut(spec, base(*lite), None, crop="none") == "block5c_add"
    assert resolve_cut(spec, base(*lite), None, crop="coin") == "block4c_add"
    with pytest.raises(CoinfeatError, match="no default cut"):
        resolve_cut(spec, base("conv_1", "top"), None)


def test_test_photos_with_copies_in_train_are_flagged():
    from coinfeat.core.store import Manifest, Store
    from coinfeat.finetune.run import _leak_notes

    items = pd.DataFrame(
        {
            "sha256": ["a", "b", "a", "c"],
            "split": ["train", "val", "test", "test"],
            "status": "ok",
            "view": 0,
        }
    )
    [note] = _leak_notes(Store(None, Manifest(fingerprint="f"), items, np.zeros((4, 2))))
    assert note.startswith("leakage: 1 test photo(s)") and "inflated" in note


def test_single_class_store_is_refused(tmp_path):
    data = write_class_folders(tmp_path / "d", per_class=8, colours={"gold": (212, 175, 55)})
    extract_features(data, tmp_path / "s", tiny_config())
    with pytest.raises(CoinfeatError, match="at least 2"):
        finetune(tmp_path / "s", tmp_path / "out", quick())


def test_kill_9_while_caching_then_rerun_keeps_finished_batches(tmp_path):
    colours = {f"c{i}": (40 * i, 200 - 30 * i, 90) for i in range(4)}
    data = write_class_folders(tmp_path / "d", per_class=20, colours=colours)
    extract_features(data, tmp_path / "s", small_config())
    parts = tmp_path / "s" / ACTIVATIONS / DEFAULT_CUTS["efficientnetb0"] / PARTS
    args = [
        "fine-tune",
        "--features",
        str(tmp_path / "s"),
        "--out",
        str(tmp_path / "out"),
        "--views",
        "4",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--no-embed",
        "--engine",
        "keras",
        "-q",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "coinfeat", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(list(parts.glob("*.parquet"))) < 5:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = sum(len(pd.read_parquet(p)) for p in parts.glob("*.parquet"))
    assert kept >= 20
    result = finetune(tmp_path / "s", tmp_path / "out", quick(views=4, epochs=1, embed=False))
    assert result.cache_reused >= kept
    assert result.cache_rows == result.train_photos * 5 + result.val_photos
    record = json.loads((tmp_path / "out" / "finetune.json").read_text())
    assert record["pretrained"] is False and "NOT PRETRAINED" in record["summary"], "said from random B0"


@needs_euro
@needs_lite0
def test_fine_tuning_beats_the_frozen_dense_head_on_real_photos(tmp_path):
    from sklearn.metrics import balanced_accuracy_score

    from coinfeat import ExtractConfig
    from coinfeat.core.heads import make_head

    data = tmp_path / "euro"
    for split, per_class in (("train", 24), ("test", 15)):
        for class_dir in sorted((EURO / split).iterdir()):
            (data / split / class_dir.name).mkdir(parents=True)
            for photo in sorted(class_dir.glob("*.jpg"))[::3][:per_class]:
                shutil.copy(photo, data / split / class_dir.name / photo.name)
    config = ExtractConfig(backbone=str(LITE0), group_regex=EURO_GROUPS, progress=False)
    frozen = open_store(extract_features(data, tmp_path / "frozen", config).store)
    result = finetune(
        frozen.path,
        tmp_path / "ft",
        quick(views=3, epochs=6, patience=2, batch_size=32, embed_out=str(tmp_path / "tuned")),
    )
    X, train = frozen.select("train")
    X_val, val = frozen.select("val")
    X_test, test = frozen.select("test")
    dense = make_head("dense").fit(X, train["label"], X_val, val["label"])
    frozen_score = balanced_accuracy_score(test["label"], dense.predict(X_test))
    tuned_X, tuned_test = open_store(result.store).select("test")
    tuned_score = balanced_accuracy_score(tuned_test["label"], load_head(result.head_dir).predict(tuned_X))
    print(f"balanced accuracy on test: frozen dense {frozen_score:.3f}, fine-tuned {tuned_score:.3f}")
    assert tuned_score > frozen_score + 0.03
