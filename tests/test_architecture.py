"""The layers of ARCHITECTURE.md hold: lint-imports keeps its contracts on this tree and breaks
them on a copy where a core module imports an application."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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


def test_a_core_module_importing_an_application_breaks_them(tmp_path):
    shutil.copytree(
        REPO / "coinfeat", tmp_path / "coinfeat", ignore=shutil.ignore_patterns("sample", "*.pyc")
    )
    images = tmp_path / "coinfeat" / "core" / "images" / "decode.py"
    images.write_text(images.read_text() + "\nfrom coinfeat.fit import fit_head  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "coinfeat.core.images.decode -> coinfeat.fit" in result.stdout


def test_two_applications_importing_each_other_break_them(tmp_path):
    shutil.copytree(
        REPO / "coinfeat", tmp_path / "coinfeat", ignore=shutil.ignore_patterns("sample", "*.pyc")
    )
    export = tmp_path / "coinfeat" / "export.py"
    export.write_text(export.read_text() + "\nfrom coinfeat.predict import predict_images  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "coinfeat.export -> coinfeat.predict" in result.stdout


def test_the_store_importing_extraction_breaks_them(tmp_path):
    shutil.copytree(
        REPO / "coinfeat", tmp_path / "coinfeat", ignore=shutil.ignore_patterns("sample", "*.pyc")
    )
    keys = tmp_path / "coinfeat" / "core" / "store" / "keys.py"
    keys.write_text(keys.read_text() + "\nfrom coinfeat.core.extraction import engines  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "coinfeat.core.store.keys -> coinfeat.core.extraction.engines" in result.stdout


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
