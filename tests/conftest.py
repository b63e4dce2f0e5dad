"""Shared fixtures; the helpers they use live in helpers.py (tests import them from there)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_class_folders


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
