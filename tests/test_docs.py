"""The manual builds with ``--strict``, its command pages equal ``coinfeat COMMAND --help`` and its
API pages show the package's entry points and the heads with their parameters."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from coinfeat.cli import command_names

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def page_text(path: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_each_command_page_is_its_help(site):
    for name in command_names():
        shown = page_text(site / "reference" / "commands" / name / "index.html")
        printed = subprocess.run(
            [sys.executable, "-m", "coinfeat", name, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "100"},
        ).stdout
        assert printed.strip() and printed.strip() in shown, name


def test_api_pages_show_entry_points_and_head_parameters(site):
    api = page_text(site / "reference" / "api" / "coinfeat" / "index.html")
    assert "coinfeat.extract_features" in api
    assert re.search(r"extract_features\(\s*data: str \| Path", api)
    heads = page_text(site / "reference" / "api" / "heads" / "index.html")
    for head, parameter in [("KnnHead", "nprobe"), ("LogRegHead", "max_iter"), ("DenseHead", "patience")]:
        assert head in heads and parameter in heads


def test_every_page_of_the_manual_is_in_its_navigation():
    config = (REPO / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    assert [p for p in sorted(pages) if p not in config] == []
