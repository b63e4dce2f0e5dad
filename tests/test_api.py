"""The Python API shown in the README works as written (on generated photos)."""

from __future__ import annotations

import pytest
from helpers import pile, small_config

import coinfeat


@pytest.mark.slow
def test_readme_python_example(folders_dataset, tmp_path):
    summary = coinfeat.extract_features(folders_dataset, tmp_path / "store", small_config())
    store = coinfeat.open_store(summary.store)
    X, items = store.select(split="train")
    head = coinfeat.make_head("knn", k=5).fit(X, items["label"])
    proba = head.predict_proba(X)
    assert proba.shape == (len(X), len(head.classes_))
    result = coinfeat.fit_head(summary.store, "dense", out=tmp_path / "dense", params={"epochs": 5})
    photo = str(folders_dataset / "gold" / "gold0_0.jpg")
    answers = coinfeat.predict_images([photo], result.head_dir, top_k=3)
    assert len(answers[0].labels) == 3
    comparison = coinfeat.compare_heads(summary.store, coinfeat.CompareConfig(heads=["dense", "knn"]))
    assert coinfeat.write_report(comparison, tmp_path / "report").is_file()
    similar = coinfeat.find_similar([photo], summary.store, k=4)
    assert len(similar[0].neighbours) == 4
    tuned = coinfeat.fine_tune(
        summary.store, tmp_path / "tuned", views=1, epochs=1, embed=False, progress=False
    )
    assert tuned.epochs_run == 1 and (tmp_path / "tuned" / "backbone.keras").is_file()
    exported = coinfeat.export_head(result.head_dir, tmp_path / "coins.keras")
    assert exported.classes == 3
    pile([(120, 120, 50), (260, 130, 55)], size=(400, 300)).save(tmp_path / "pile.jpg")
    [counted] = coinfeat.count_coins([tmp_path / "pile.jpg"], result.head_dir, tta="none")
    assert len(counted.coins) == 2
