"""The layers of ARCHITECTURE.md hold: lint-imports keeps its contracts on this tree and breaks
them on a copy where a core module imports an application."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run import-linter with the project's contracts over the package found under ``root``."""
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_contracts_are_kept():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def lint_with_an_extra_import(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the package where ``module`` (a path under coinfeat/) imports more."""
    shutil.copytree(
        REPO / "coinfeat", tmp_path / "coinfeat", ignore=shutil.ignore_patterns("sample", "builtin", "*.pyc")
    )
    path = tmp_path / "coinfeat" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    return lint_imports(tmp_path)


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        (
            "core/images/decode.py",
            "from coinfeat.fit import fit_head",
            "coinfeat.core.images.decode -> coinfeat.fit",
        ),
        ("export.py", "from coinfeat.predict import predict_images", "coinfeat.export -> coinfeat.predict"),
        (
            "core/store/keys.py",
            "from coinfeat.core.extraction import engines",
            "coinfeat.core.store.keys -> coinfeat.core.extraction.engines",
        ),
    ],
    ids=["core imports an application", "two applications", "store imports extraction"],
)
def test_an_import_across_the_layers_breaks_the_contracts(tmp_path, module, line, broken):
    result = lint_with_an_extra_import(tmp_path, module, line)
    assert result.returncode != 0
    assert broken in result.stdout


def import_circles(package: str = "coinfeat") -> list[tuple[str, str]]:
    """Pairs (a, b) where a imports b and b leads back to a, at module level or inside functions."""
    import grimp

    graph = grimp.build_graph(package)
    return sorted(
        (a, b)
        for a in graph.modules
        for b in graph.find_modules_directly_imported_by(a)
        if graph.chain_exists(importer=b, imported=a)
    )


def test_no_module_imports_itself_back():
    assert import_circles() == []


def test_the_core_has_few_loose_modules_and_no_long_one():
    core = REPO / "coinfeat" / "core"
    loose = [p.name for p in core.glob("*.py") if p.name != "__init__.py"]
    assert len(loose) <= 12, loose
    long = {
        str(p.relative_to(REPO)): n
        for p in (REPO / "coinfeat").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert long == {}


def test_every_lazy_name_of_the_package_is_public_and_resolves():
    import coinfeat

    assert set(coinfeat.__all__) == {"CoinfeatError", "__version__", *coinfeat._LAZY}
    for name in coinfeat._LAZY:
        assert callable(getattr(coinfeat, name)), name


def test_every_head_documents_each_of_its_parameters():
    from coinfeat.core.heads import head_types

    shipped = {name: cls for name, cls in head_types().items() if cls.__module__.startswith("coinfeat.")}
    assert {"dense", "logreg", "knn", "centroid"} <= set(shipped)
    for name, cls in shipped.items():
        missing = [key for key in cls.defaults if f"``{key}``" not in (cls.__doc__ or "")]
        assert missing == [], f"{name} head's docstring lacks {missing}"
