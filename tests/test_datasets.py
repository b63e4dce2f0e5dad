"""Data discovery (three layouts) and the deterministic, group-aware split."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from helpers import coin_image, write_class_folders

from coinfeat.core.data.datasets import discover, group_of
from coinfeat.core.data.splits import assign_splits, parse_fractions, resolve_splits
from coinfeat.core.errors import CoinfeatError


def test_class_folders_any_extension_case(tmp_path):
    root = write_class_folders(tmp_path / "d", per_class=2)
    coin_image((1, 2, 3)).save(root / "gold" / "UPPER.JPEG")
    coin_image((1, 2, 3)).save(root / "gold" / "scan.TIFF")
    (root / "gold" / "notes.txt").write_text("not an image")
    (root / "gold" / ".hidden.jpg").write_bytes(b"")
    ds = discover(root)
    assert ds.layout == "folders"
    assert ds.classes == ["copper", "gold", "silver"]
    gold = ds.items[ds.items.label == "gold"].path.tolist()
    assert "gold/UPPER.JPEG" in gold and "gold/scan.TIFF" in gold
    assert not any(p.endswith((".txt", ".hidden.jpg")) for p in gold)
    assert ds.items.split.isna().all()


def test_split_folders_with_validation_alias(tmp_path):
    for split in ("train", "validation", "test"):
        write_class_folders(tmp_path / "d" / split, per_class=2)
    ds = discover(tmp_path / "d")
    assert ds.layout == "splits"
    assert set(ds.items.split) == {"train", "val", "test"}
    assert ds.items.path.iloc[0].count("/") == 2


def test_csv_manifest_relative_paths_and_label_names(tmp_path):
    root = write_class_folders(tmp_path / "imgs", per_class=2)
    rows = [
        {
            "path": f"imgs/{p.parent.name}/{p.name}",
            "label": p.parent.name,
            "split": "train" if i % 2 else "test",
            "extra": 1,
        }
        for i, p in enumerate(sorted(root.rglob("*.jpg")))
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    (tmp_path / "cat_to_name.json").write_text(json.dumps({"gold": "1 Kurus,Turkish Lira,turkey"}))
    ds = discover(tmp_path / "labels.csv")
    assert ds.layout == "csv" and len(ds.items) == 6
    assert ds.absolute(ds.items.path[0]).is_file()
    assert set(ds.items.split) == {"train", "test"}
    assert ds.label_names["gold"].startswith("1 Kurus")
    assert any("extra" in note for note in ds.notes)


def test_csv_manifest_missing_column_is_a_clear_error(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\na.jpg,x\n")
    with pytest.raises(CoinfeatError, match="lacks column"):
        discover(tmp_path / "m.csv")


def test_empty_and_missing_dataset(tmp_path):
    with pytest.raises(CoinfeatError, match="no images"):
        discover(tmp_path)
    with pytest.raises(CoinfeatError, match="not found"):
        discover(tmp_path / "missing")


def test_symlink_loop_is_not_followed(tmp_path):
    root = write_class_folders(tmp_path / "d", per_class=2)
    os.symlink(root, root / "gold" / "loop")
    assert len(discover(root).items) == 6


def test_group_regex_takes_text_before_last_underscore():
    paths = pd.Series(["a/IMG_1_0.jpg", "a/IMG_1_12.jpg", "b/IMG_2_0.jpg", "c/plain.jpg"])
    assert group_of(paths, r"^(.*)_[^_]+$").tolist() == ["IMG_1", "IMG_1", "IMG_2", "c/plain.jpg"]
    assert group_of(paths, None).tolist() == paths.tolist()
    with pytest.raises(CoinfeatError, match="regular expression"):
        group_of(paths, "(")


def _items(n_groups_per_class: dict[str, int], per_group: int = 3) -> pd.DataFrame:
    rows = [
        {"label": label, "group": f"{label}-{g}", "split": None}
        for label, n in n_groups_per_class.items()
        for g in range(n)
        for _ in range(per_group)
    ]
    return pd.DataFrame(rows)


def test_split_is_stratified_deterministic_and_group_aware():
    items = _items({"a": 40, "b": 20})
    first = assign_splits(items).splits
    assert first.equals(assign_splits(items).splits)
    for label in ("a", "b"):
        shares = first[items.label == label].value_counts(normalize=True)
        assert abs(shares["train"] - 0.70) < 0.08 and abs(shares["test"] - 0.15) < 0.08
    assert items.assign(split=first).groupby("group").split.nunique().max() == 1
    assert not first.equals(assign_splits(items, seed=1).splits)


def test_existing_groups_keep_their_split_when_photos_are_added():
    items = _items({"a": 20})
    before = assign_splits(items).splits
    sticky = dict(zip(items.group, before))
    grown = pd.concat([items, _items({"a": 30}).iloc[60:]], ignore_index=True)
    after = assign_splits(grown, sticky=sticky).splits
    assert after.iloc[: len(items)].equals(before)


def test_tiny_classes_are_reported_not_crashed_on():
    result = assign_splits(_items({"big": 20, "one": 1, "two": 2}))
    splits = result.splits
    assert set(splits[_items({"big": 20, "one": 1, "two": 2}).label == "one"]) == {"train"}
    assert any("'one'" in n for n in result.notes) and any("'two'" in n for n in result.notes)


def test_predefined_train_test_gets_a_val_share_carved_from_train():
    items = _items({"a": 20, "b": 20})
    items["split"] = ["test" if int(g.split("-")[1]) < 5 else "train" for g in items.group]
    result = resolve_splits(items)
    assert (result.splits[items.split == "test"] == "test").all()
    assert set(result.splits[items.split == "train"]) == {"train", "val"}
    assert any("no val split" in n for n in result.notes)


def test_parse_fractions():
    assert parse_fractions("70/15/15") == pytest.approx((0.7, 0.15, 0.15))
    assert parse_fractions("0.8,0.1,0.1") == pytest.approx((0.8, 0.1, 0.1))
    for bad in ("70/30", "a/b/c", "0/50/50"):
        with pytest.raises(CoinfeatError):
            parse_fractions(bad)
