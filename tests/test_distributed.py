"""Extraction on a local Ray instance into a sharded store that every command reads unchanged."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import EURO, EURO_GROUPS, SMALL, needs_euro

from coinfeat import ExtractConfig, extract_features, open_store
from coinfeat.core.errors import FingerprintMismatch
from coinfeat.core.extraction.engines import cosine_rows
from coinfeat.core.store import ShardedArray

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray") / "euro"
    for split in ("train", "test"):
        for class_dir in sorted((EURO / split).iterdir()):
            (root / split / class_dir.name).mkdir(parents=True)
            for photo in sorted(class_dir.glob("*.jpg"))[:8]:
                shutil.copy(photo, root / split / class_dir.name / photo.name)
    yield root
    ray.shutdown()


def config(**overrides) -> ExtractConfig:
    return ExtractConfig(
        **{
            "weights": "none",
            "image_size": SMALL,
            "group_regex": EURO_GROUPS,
            "progress": False,
            "batch_size": 16,
            **overrides,
        }
    )


def _by_path(store) -> dict[str, np.ndarray]:
    return dict(zip(store.items["path"], np.asarray(store.embeddings)))


@pytest.mark.slow
@needs_euro
def test_ray_store_equals_the_single_process_store(photos, tmp_path):
    summary = extract_features(photos, tmp_path / "sharded", config(runner="ray", workers=2, shards=3))
    single = extract_features(photos, tmp_path / "single", config())
    assert summary.embedded == single.embedded == 128
    stages = summary.stage_seconds
    assert stages["startup"] > 0 and stages["infer"] > 0 and stages["write"] > 0
    assert "startup" not in single.stage_seconds
    sharded, plain = open_store(tmp_path / "sharded"), open_store(tmp_path / "single")
    assert isinstance(sharded.embeddings, ShardedArray) and sharded.embeddings.shape == (128, 1280)
    assert sorted(sharded.items["path"]) == sorted(plain.items["path"])
    a, b = _by_path(sharded), _by_path(plain)
    keys = sorted(a)
    assert cosine_rows(np.stack([a[k] for k in keys]), np.stack([b[k] for k in keys])).min() >= 0.9999
    splits = sharded.items.set_index("path")["split"].sort_index()
    assert splits.equals(plain.items.set_index("path")["split"].sort_index())
    assert len({*sharded.items["shard"]}) == 3

    again = extract_features(photos, tmp_path / "sharded", config(runner="ray", workers=2))
    assert again.embedded == 0 and again.reused == 128
    with pytest.raises(FingerprintMismatch):
        extract_features(photos, tmp_path / "sharded", config(resize="crop", runner="ray", workers=1))


@pytest.mark.slow
@needs_euro
def test_every_command_reads_a_sharded_store(photos, tmp_path):
    from coinfeat.compare import CompareConfig, compare_heads
    from coinfeat.fit import fit_head
    from coinfeat.similar import find_similar

    extract_features(photos, tmp_path / "s", config(runner="ray", workers=1, shards=2))
    result = fit_head(tmp_path / "s", "knn", tmp_path / "knn", params={"k": 3})
    assert result.train > 0
    comparison = compare_heads(tmp_path / "s", CompareConfig(heads=["centroid", "knn"], top_k=[1, 3]))
    assert {r.name for r in comparison.results} == {"centroid", "knn"}
    query = sorted((photos / "train" / "1e").glob("*.jpg"))[0]
    [similar] = find_similar([str(query)], tmp_path / "s", k=2, split="all")
    assert similar.neighbours[0].similarity == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
@needs_euro
def test_ray_limit_embeds_clean_photos_before_augmented_views(photos, tmp_path):
    summary = extract_features(
        photos, tmp_path / "s", config(runner="ray", workers=1, shards=4, augment=2, limit=100)
    )
    store = open_store(tmp_path / "s")
    assert summary.embedded == 100 and summary.pending > 0
    assert (store.items["view"] == 0).all(), "every clean photo comes before any augmented view"


def test_a_coinfeat_error_inside_a_ray_actor_comes_out_as_itself():
    from coinfeat.core.errors import WeightsUnavailable
    from coinfeat.core.extraction.distributed import RunnerActor, _raise_fatal

    class Failing:
        def make_reader(self, work):
            raise WeightsUnavailable("could not download the ImageNet weights for efficientnetb0")

    batch = {"key": np.array(["a", "b"]), "path": np.array(["a.jpg", "b.jpg"]), "view": np.array([0, 0])}
    answer = RunnerActor(Failing())(batch)
    with pytest.raises(WeightsUnavailable, match="could not download"):
        _raise_fatal(answer)
    _raise_fatal({"fatal": np.array(["", ""])})  # an ordinary batch raises nothing
