"""The issue's acceptance run on the real euro-coins set (skipped when it is absent)."""

from __future__ import annotations

import shutil

import pytest
from helpers import EURO, EURO_GROUPS, needs_euro

from coinfeat import ExtractConfig, extract_features, open_store


@pytest.mark.slow
@needs_euro
def test_full_set_then_rerun_then_ten_new_photos(tmp_path):
    data = tmp_path / "euro-coins"
    shutil.copytree(EURO, data)
    config = ExtractConfig(weights="none", group_regex=EURO_GROUPS, progress=False)
    first = extract_features(data, tmp_path / "store", config)
    assert (first.embedded, first.skipped, first.total) == (2830, 0, 2830)

    second = extract_features(data, tmp_path / "store", config)
    assert second.embedded == 0 and second.reused == 2830
    assert second.engine is None and second.stage_seconds["infer"] == 0, "no photo was decoded or embedded"

    sources = sorted((EURO / "test" / "2e").glob("*.jpg"))[:10]
    for i, src in enumerate(sources):
        (data / "train" / "2e" / f"added_{i}.jpg").write_bytes(src.read_bytes() + bytes([i]))
    third = extract_features(data, tmp_path / "store", config)
    assert third.embedded == 10 and third.total == 2840

    store = open_store(tmp_path / "store")
    groups = store.items.groupby("group").split.nunique()
    assert groups.max() == 1, "coins of one photo never straddle splits"
    assert set(store.items.split) == {"train", "val", "test"}
    assert (store.items[store.items.path.str.startswith("test/")].split == "test").all()
