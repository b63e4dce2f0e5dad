"""Built-in models: found by name, checked against the sha256 their card records before they are
loaded, and used when no --head is given; the wheel carries them and stays small."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads import builtin, load_head, make_head
from coinfeat.core.heads.builtin import ModelCard, builtin_head, builtin_models, resolve_head
from coinfeat.core.runtime import file_hash

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_builtin(tmp_path, monkeypatch):
    """A package folder with one built-in model, "coins", made of a small head and its card."""
    root = tmp_path / "builtin"
    model = root / "coins"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8)).astype(np.float32) + np.repeat(np.eye(8)[:4] * 5, 10, axis=0)
    make_head("centroid").fit(X, np.repeat(list("abcd"), 10)).save(model / "head")
    files = {str(p.relative_to(model)): file_hash(p) for p in model.rglob("*") if p.is_file()}
    ModelCard(name="coins", title="four test coins", files=files).write(model)
    (model / "card.md").write_text("# coins\n")
    monkeypatch.setattr(builtin, "builtin_root", lambda: root)
    builtin._verify.cache_clear()
    yield model
    builtin._verify.cache_clear()


def test_a_built_in_model_is_found_by_name_and_loads(fake_builtin, tmp_path):
    assert builtin_models() == ["coins"]
    assert resolve_head("coins") == fake_builtin / "head"
    assert list(load_head(resolve_head("coins")).classes_) == list("abcd")
    own = tmp_path / "coins"  # a head folder of the user's own with the same name wins
    make_head("centroid").fit(np.eye(4, 8, dtype=np.float32), list("wxyz")).save(own)
    assert resolve_head(own) == own
    assert resolve_head(str(tmp_path / "mine")) == tmp_path / "mine", "any other path is a head folder"


def test_a_changed_file_is_refused_with_a_clear_error(fake_builtin):
    weights = fake_builtin / "head" / "centroids.npy"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CoinfeatError, match=r"centroids\.npy does not match the sha256 its card records"):
        builtin_head("coins")
    with pytest.raises(CoinfeatError, match="reinstall coinfeat"):
        resolve_head("coins")


def test_an_unknown_built_in_model_lists_the_ones_there_are(fake_builtin):
    with pytest.raises(CoinfeatError, match="no built-in model 'dollars' \\(built-in: coins\\)"):
        builtin_head("dollars")


def test_the_euro_model_ships_with_its_card_and_every_file_checks():
    assert "euro" in builtin_models()
    head = builtin_head("euro")
    card = ModelCard.read(head.parent)
    assert {"backbone.keras", "head/head.json"} <= set(card.files)
    assert card.figures.get("coins", {}).get("top1") is not None, "the card says what it scores"
    assert load_head(head).meta.features.backbone["model_file"] == "coinfeat:builtin/euro/backbone.keras"


@pytest.mark.slow
def test_the_wheel_carries_the_built_in_model_and_an_install_outside_the_checkout_uses_it(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        timeout=600,
    )
    [wheel] = tmp_path.glob("coinfeat-*.whl")
    assert wheel.stat().st_size <= 40e6, f"the wheel weighs {wheel.stat().st_size / 1e6:.1f} MB"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"coinfeat/builtin/euro/backbone.keras", "coinfeat/builtin/NOTICE"} <= names
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        timeout=600,
    )
    code = "import coinfeat.core.heads.builtin as b; print(b.resolve_head(None))"
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(site)), "the installed copy, not the checkout"
    backbone = site / "coinfeat" / "builtin" / "euro" / "backbone.keras"
    backbone.write_bytes(backbone.read_bytes() + b"tampered")
    tampered = subprocess.run(
        [
            sys.executable,
            "-m",
            "coinfeat",
            "predict",
            str(REPO / "coinfeat" / "sample" / "euro-coins-pile" / "train_11.jpg"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tampered.returncode == 1 and "backbone.keras does not match the sha256" in tampered.stderr
