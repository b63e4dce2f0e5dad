"""extract-features and its store: layout, incremental runs, fingerprints, crash safety."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import coin_image, small_config, write_class_folders

from coinfeat import extract_features, open_store
from coinfeat.core.errors import CoinfeatError, FingerprintMismatch, StoreBusy
from coinfeat.core.store import ITEM_COLUMNS, JOURNAL, store_lock


@pytest.fixture
def extracted(folders_dataset, tmp_path):
    store = tmp_path / "store"
    summary = extract_features(folders_dataset, store, small_config())
    return folders_dataset, store, summary


def test_store_layout_and_manifest(extracted):
    _, path, summary = extracted
    assert (summary.embedded, summary.reused, summary.skipped, summary.total) == (18, 0, 0, 18)
    emb = np.load(path / "embeddings.npy", mmap_mode="r")
    assert isinstance(emb, np.memmap) and emb.dtype == np.float32 and emb.shape == (18, 1280)
    items = pd.read_parquet(path / "items.parquet")
    assert list(items.columns) == ITEM_COLUMNS
    assert items.sha256.str.len().eq(64).all()
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["pretrained"] is False and "NOT PRETRAINED" in manifest["weights_note"]
    for key in (
        "fingerprint",
        "backbone",
        "image_size",
        "resize",
        "engine",
        "versions",
        "dataset",
        "counts",
        "created",
    ):
        assert key in manifest
    assert manifest["versions"]["tensorflow"] and manifest["versions"]["keras"]
    assert manifest["counts"]["ok"] == 18
    assert not list((path / "parts").iterdir()), "parts are removed once committed"
    x, _rows = open_store(path).select()
    assert x.shape == (18, 1280) and np.linalg.norm(x, axis=1).min() > 0


def test_rerun_embeds_nothing_then_only_new_changed_and_drops_deleted(extracted):
    data, path, _first = extracted
    again = extract_features(data, path, small_config())
    assert (again.embedded, again.reused) == (0, 18)
    before = open_store(path)
    vectors_before = dict(zip(before.items.path, np.asarray(before.embeddings)))
    for i in range(3):
        coin_image((20, 160, 40), seed=50 + i).save(data / "gold" / f"new{i}_0.jpg")
    coin_image((0, 0, 0), seed=99).save(data / "copper" / "copper0_0.jpg")  # changed content
    (data / "silver" / "silver0_0.jpg").unlink()
    third = extract_features(data, path, small_config())
    assert third.embedded == 4 and third.removed == 1 and third.total == 20
    after = open_store(path)
    assert "silver/silver0_0.jpg" not in set(after.items.path)
    unchanged = after.items.path == "gold/gold0_0.jpg"
    np.testing.assert_array_equal(
        np.asarray(after.embeddings)[unchanged.to_numpy()][0], vectors_before["gold/gold0_0.jpg"]
    )


def test_bad_files_are_recorded_as_skipped_and_never_abort(folders_dataset, tmp_path):
    (folders_dataset / "gold" / "empty_0.jpg").write_bytes(b"")
    (folders_dataset / "gold" / "text_0.jpg").write_text("hello")
    good = (folders_dataset / "gold" / "gold0_0.jpg").read_bytes()
    (folders_dataset / "gold" / "cut_0.jpg").write_bytes(good[: len(good) // 3])
    summary = extract_features(folders_dataset, tmp_path / "s", small_config())
    assert summary.skipped == 3 and summary.embedded == 18
    store = open_store(tmp_path / "s")
    skipped = store.items[store.items.status == "skipped"].set_index("path").error
    assert "empty" in skipped["gold/empty_0.jpg"]
    assert "not an image" in skipped["gold/text_0.jpg"]
    assert "truncated" in skipped["gold/cut_0.jpg"]
    rows = store.items.index[store.items.status == "skipped"]
    assert not np.asarray(store.embeddings)[rows].any(), "skipped rows hold zero vectors"
    assert extract_features(folders_dataset, tmp_path / "s", small_config()).embedded == 0


def test_limit_embeds_in_steps_and_loses_nothing(folders_dataset, tmp_path):
    first = extract_features(folders_dataset, tmp_path / "s", small_config(limit=5))
    assert first.embedded == 5 and first.pending == 13 and first.total == 5
    second = extract_features(folders_dataset, tmp_path / "s", small_config())
    assert (second.embedded, second.reused, second.total) == (13, 5, 18)


def test_other_fingerprint_is_refused_and_force_rebuilds(extracted):
    data, path, _ = extracted
    with pytest.raises(FingerprintMismatch, match="another extractor"):
        extract_features(data, path, small_config(resize="crop"))
    rebuilt = extract_features(data, path, small_config(resize="crop", force=True))
    assert rebuilt.embedded == 18
    assert open_store(path).manifest.resize == "crop"


def test_damaged_and_newer_stores_give_clear_errors(extracted):
    _, path, _ = extracted
    manifest = json.loads((path / "manifest.json").read_text())
    np.save(path / "embeddings.npy", np.zeros((3, 1280), np.float32))
    with pytest.raises(CoinfeatError, match="damaged"):
        open_store(path)
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CoinfeatError, match="newer coinfeat"):
        open_store(path)


def test_second_writer_is_refused(extracted):
    data, path, _ = extracted
    with store_lock(path), pytest.raises(StoreBusy, match="another coinfeat process"):
        extract_features(data, path, small_config())


def test_interrupted_commit_is_completed_on_next_open(folders_dataset, tmp_path, monkeypatch):
    """A crash between the renames of a commit: the journal finishes it, files agree."""
    path = tmp_path / "s"
    extract_features(folders_dataset, path, small_config(limit=6))
    coin_image((1, 1, 1)).save(folders_dataset / "gold" / "late_0.jpg")
    real_replace = os.replace
    calls = []

    def crash_after_first_store_rename(src, dst):
        real_replace(src, dst)
        if str(dst).endswith("embeddings.npy"):
            calls.append(dst)
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(os, "replace", crash_after_first_store_rename)
    with pytest.raises(KeyboardInterrupt):
        extract_features(folders_dataset, path, small_config())
    monkeypatch.setattr(os, "replace", real_replace)
    assert calls and (path / JOURNAL).exists()
    store = open_store(path)  # recovers from the journal
    assert len(store.items) == store.embeddings.shape[0] == 19
    assert not (path / JOURNAL).exists()


def test_unreadable_and_vanished_files(folders_dataset, tmp_path, monkeypatch):
    import builtins

    os.symlink(folders_dataset / "missing.jpg", folders_dataset / "gold" / "dangling_0.jpg")
    locked = folders_dataset / "gold" / "locked_0.jpg"
    shutil.copy(folders_dataset / "gold" / "gold0_0.jpg", locked)
    locked.chmod(0)
    real_open = builtins.open

    def as_without_root(file, *args, **kwargs):  # root reads anything: refuse like the OS would
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", as_without_root)
    try:
        summary = extract_features(folders_dataset, tmp_path / "s", small_config())
    finally:
        locked.chmod(0o644)
    reasons = " | ".join(summary.skipped_reasons)
    assert "not found" in reasons and "permission denied" in reasons
    assert summary.embedded == 18


def test_label_conflict_and_leakage_are_warned(tmp_path):
    root = tmp_path / "d"
    for split in ("train", "test"):
        write_class_folders(root / split, per_class=3)
    shutil.copy(root / "train" / "gold" / "gold0_0.jpg", root / "train" / "silver" / "x_0.jpg")
    shutil.copy(root / "train" / "copper" / "copper0_0.jpg", root / "test" / "copper" / "y_0.jpg")
    notes = " ".join(extract_features(root, tmp_path / "s", small_config()).notes)
    assert "label conflict" in notes and "leakage" in notes


def test_views_of_an_older_augmentation_policy_are_made_again(folders_dataset, tmp_path, monkeypatch):
    from coinfeat.core.store import keys

    store = tmp_path / "store"
    first = extract_features(folders_dataset, store, small_config(augment=1))
    views = int(open_store(store).items["view"].gt(0).sum())
    assert views > 0 and first.embedded == 18 + views
    bumped = keys.AUGMENT_VERSION + 1  # the policy changed, so its version was bumped
    monkeypatch.setattr(keys, "AUGMENT_VERSION", bumped)
    again = extract_features(folders_dataset, store, small_config(augment=1))
    assert (again.embedded, again.reused) == (views, 18)
    after = open_store(store)
    assert after.manifest.augment["version"] == keys.AUGMENT_VERSION
    assert int(after.items["view"].gt(0).sum()) == views
    third = extract_features(folders_dataset, store, small_config(augment=1))
    assert (third.embedded, third.reused) == (0, 18 + views)
