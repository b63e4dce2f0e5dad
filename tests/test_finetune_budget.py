"""Fine-tuning whose cost follows the time budget, not the collection: the plan's arithmetic, and
a fine-tune that, told the collection is large and this machine slow, caches fewer views, samples
its epochs, moves its cut up, and says why."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import tiny_config, write_class_folders

from coinfeat import extract_features
from coinfeat.finetune import FinetuneConfig, finetune
from coinfeat.finetune import budget as budget_module
from coinfeat.finetune.budget import (
    affordable_views,
    balanced_sample,
    higher_cut,
    rows_per_epoch,
    training_fits,
)


def test_views_fit_the_cache_share_of_the_time_left():
    # 1,000 photos at 10 ms a row: a view costs 1000 * 0.01 * 1.3 * 1.25 = 16.25 s
    views, why = affordable_views(1000, seconds=1000, seconds_per_row=0.01, requested=6)
    assert views == 6 and why is None  # 6 views: 97.5 s, under 40% of 1,000 s
    views, why = affordable_views(1000, seconds=100, seconds_per_row=0.01, requested=6)
    assert views == 2 and "2 cached view(s) per train photo instead of 6" in why
    assert affordable_views(1000, seconds=1, seconds_per_row=0.01, requested=6, cached=4)[0] == 4


def test_rows_per_epoch_shrink_until_the_epochs_fit():
    assert rows_per_epoch(5000, seconds=10_000, seconds_per_row=0.01, epochs=5, batch_size=32) == (None, None)
    rows, why = rows_per_epoch(5000, seconds=100, seconds_per_row=0.01, epochs=5, batch_size=32)
    assert rows == 1600 and "class-balanced sample of 1600 of the 5000" in why
    assert rows_per_epoch(5000, seconds=0.1, seconds_per_row=0.01, epochs=5, batch_size=32)[0] == 32


def test_a_balanced_sample_gives_every_class_its_share():
    codes = np.repeat(np.arange(4), [1000, 100, 10, 10])
    picked = balanced_sample(codes, 200, np.random.default_rng(0))
    assert len(set(picked)) == 200 and np.all(np.diff(picked) > 0)
    per_class = np.bincount(codes[picked], minlength=4)
    assert per_class[2] == per_class[3] == 10, "small classes give all their rows"
    assert abs(per_class[0] - per_class[1]) < 40, "the rest is shared about equally"


def test_the_cut_moves_up_the_stages_the_network_has():
    layers = ["block4c_add", "block5c_add", "top"]
    assert higher_cut("block4c_add", layers) == "block5c_add"
    assert higher_cut("block5c_add", layers) is None
    assert higher_cut("block3b_add", ["block3b_add", "block6d_add"]) == "block6d_add"
    assert higher_cut("conv4_block6_out", layers) is None
    assert training_fits(1000, seconds=100, seconds_per_row=0.01, epochs=5)
    assert not training_fits(1000, seconds=30, seconds_per_row=0.01, epochs=5)


@pytest.fixture(scope="module")
def coin_store(tmp_path_factory):
    """A coin-crop store on the tiny backbone (cut like Lite0: block4c_add, with block5c_add above)."""
    root = tmp_path_factory.mktemp("budget")
    data = write_class_folders(root / "d", per_class=12)
    extract_features(data, root / "s", tiny_config(crop="coin"))
    return root / "s"


def hurried(**overrides) -> FinetuneConfig:
    options = {
        "epochs": 2,
        "patience": 2,
        "batch_size": 4,
        "progress": False,
        "engine": "keras",
        "embed": False,
    }
    return FinetuneConfig(**{**options, **overrides})


@pytest.mark.slow
def test_a_large_collection_on_a_slow_machine_gets_fewer_views_and_sampled_epochs(
    coin_store, tmp_path, monkeypatch
):
    monkeypatch.setattr(budget_module, "LARGE_ROWS", 0)  # treat 24 train photos as a large collection
    monkeypatch.setattr(budget_module, "CACHE_SHARE", 1e-6)  # no time for views
    monkeypatch.setattr("coinfeat.finetune.run.CACHE_SHARE", 1e-6)
    monkeypatch.setattr("coinfeat.finetune.run.train_seconds_per_row", lambda *a, **k: 2.0)
    result = finetune(coin_store, tmp_path / "out", hurried(max_minutes=1.5, cut="block4c_add"))
    record = json.loads((tmp_path / "out" / "finetune.json").read_text())
    plan = record["plan"]
    assert result.views == 0 and plan["views"] == 0 and record["views"] == 0
    assert plan["cut"] == "block4c_add" and plan["train_rows"] == result.train_photos
    # under 30 s left for 2 epochs at 2 s a row (x1.25): a few rows an epoch
    assert 4 <= plan["rows_per_epoch"] < plan["train_rows"]
    assert any("0 cached view(s) per train photo instead of 6" in why for why in plan["reasons"])
    assert result.epochs_run == 2, "the epochs are kept"


@pytest.mark.slow
def test_epochs_are_class_balanced_samples_when_all_rows_do_not_fit(coin_store, tmp_path, monkeypatch):
    monkeypatch.setattr(budget_module, "LARGE_ROWS", 0)
    monkeypatch.setattr("coinfeat.finetune.run.train_seconds_per_row", lambda *a, **k: 0.5)
    result = finetune(coin_store, tmp_path / "out", hurried(views=2, max_minutes=2.0))
    plan = json.loads((tmp_path / "out" / "finetune.json").read_text())["plan"]
    assert plan["views"] == 2, "views given on the command line are kept"
    assert plan["train_rows"] == 3 * result.train_photos
    assert plan["rows_per_epoch"] is not None and 4 <= plan["rows_per_epoch"] < plan["train_rows"]
    assert any("class-balanced sample" in why for why in plan["reasons"])


@pytest.mark.slow
def test_the_cut_moves_up_when_a_few_epochs_cannot_train_it(coin_store, tmp_path, monkeypatch):
    monkeypatch.setattr(budget_module, "LARGE_ROWS", 0)
    costs = iter([100.0, 0.001])  # block4c_add hopeless, block5c_add cheap
    monkeypatch.setattr("coinfeat.finetune.run.train_seconds_per_row", lambda *a, **k: next(costs, 0.001))
    result = finetune(coin_store, tmp_path / "out", hurried(views=1, max_minutes=2.0))
    plan = json.loads((tmp_path / "out" / "finetune.json").read_text())["plan"]
    assert result.cut == plan["cut"] == "block5c_add"
    assert any("cut moved up from block4c_add to block5c_add" in why for why in plan["reasons"])
    pinned = finetune(coin_store, tmp_path / "pinned", hurried(views=1, max_minutes=2.0, cut="block4c_add"))
    assert pinned.cut == "block4c_add", "a cut given on the command line is kept"
