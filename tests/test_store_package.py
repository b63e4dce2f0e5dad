"""The store package stands alone: it imports no image or network code and packs what it declares."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import REPO


def test_importing_the_store_loads_no_image_or_network_code():
    code = (
        "import sys, coinfeat.core.store; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PIL', 'tensorflow', 'keras') "
        "or m.startswith(('coinfeat.core.images', 'coinfeat.core.extraction'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_declared_pillow_has_the_font_api_the_sheets_use():
    # similar.sheets.contact_sheet calls ImageFont.load_default(size=...), new in Pillow 10.1
    [lower] = re.findall(r'"pillow>=([0-9.]+)"', (REPO / "pyproject.toml").read_text())
    lower = tuple(int(p) for p in lower.split("."))
    assert lower >= (10, 1)
    assert "load_default(size=" in (REPO / "coinfeat" / "similar" / "sheets.py").read_text()


def test_files_are_replaced_only_through_the_atomic_helper():
    # single.py's own renames are the commit journal's, which atomic_write cannot express
    renames = sorted(
        p.relative_to(REPO).as_posix()
        for p in (REPO / "coinfeat").rglob("*.py")
        if re.search(r"os\.replace\(|\.replace\(directory|tmp\.replace\(", p.read_text())
    )
    assert renames == ["coinfeat/core/store/atomic.py", "coinfeat/core/store/single.py"]


def test_manifest_is_a_typed_record_that_keeps_unknown_keys_and_refuses_newer_formats(tmp_path):
    import json

    import pytest

    from coinfeat.core.errors import CoinfeatError
    from coinfeat.core.store.manifest import FORMAT_VERSION, Manifest, read_manifest_file

    data = {
        "fingerprint": "abc",
        "resize": "pad",
        "dataset": {"root": "/photos", "name": "coins", "label_names": {"1c": "1 Cent"}},
        "cut": "block5c_add",
        "format_version": FORMAT_VERSION,
    }
    manifest = Manifest.from_dict(data)
    assert manifest.dataset.absolute("a/b.jpg").as_posix() == "/photos/a/b.jpg"
    assert manifest.label_names == {"1c": "1 Cent"} and manifest.extra == {"cut": "block5c_add"}
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(CoinfeatError, match="newer coinfeat"):
        read_manifest_file(tmp_path)
    assert read_manifest_file(tmp_path / "none") is None
