"""Shared fixtures and the test tiers; the helpers they use live in helpers.py.

Tiers: ``python -m pytest -m "not slow"`` is the inner loop. A test is ``slow`` when it says so,
or when it needs ``../shared`` (real photos or pretrained weights: it skips cleanly without them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import write_class_folders


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker gets one core's worth of threads, so two workers share the
    machine instead of each oversubscribing it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for name in ("COINFEAT_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            os.environ.setdefault(name, "1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need ../shared (real data, pretrained weights) belong to the slow tier. Files with
    the most slow tests run first (each file's tests stay together, so its fixtures are built once),
    so two xdist workers end together instead of one waiting on a late minute-long test."""
    slow: dict[str, int] = {}
    for item in items:
        if any("../shared" in str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skipif")):
            item.add_marker(pytest.mark.slow)
        slow[item.path] = slow.get(item.path, 0) + bool(item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


@pytest.fixture(scope="session", autouse=True)
def coinfeat_cache(tmp_path_factory) -> Path:
    """One converted-model cache for the whole session (conversion takes ~12 s per model)."""
    path = tmp_path_factory.mktemp("coinfeat-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("COINFEAT_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture
def folders_dataset(tmp_path) -> Path:
    return write_class_folders(tmp_path / "coins")


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    """A store of small generated photos (random seeded weights), made once per session: tests that
    only read a store share it; tests that change one make their own."""
    from helpers import small_config

    from coinfeat import extract_features

    root = tmp_path_factory.mktemp("tiny")
    data = write_class_folders(root / "coins")
    return Path(extract_features(data, root / "store", small_config()).store)
