"""Messy real-world input: every case ends in a recorded skip or a one-line error, never lost work."""

from __future__ import annotations

import errno
import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pandas as pd
import pytest
from helpers import SMALL, coin_image, small_config, write_class_folders
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from coinfeat import extract_features, open_store
from coinfeat.core.errors import CoinfeatError, DecodeError
from coinfeat.core.images.decode import decode, fit_square
from coinfeat.core.images.model_input import load_image
from coinfeat.core.store import PartWriter

CLI = [sys.executable, "-m", "coinfeat"]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size, with almost no pixel data (a decompression bomb stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


def test_20000_by_20000_image_is_refused_by_the_bomb_guard():
    with pytest.raises(DecodeError, match="too large"):
        decode(png_header_only(20000, 20000))


def test_tiny_and_misnamed_images_still_work(tmp_path):
    one = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (10, 200, 30)).save(one)
    arr = load_image(one, SMALL)
    assert arr.shape == (SMALL, SMALL, 3) and tuple(arr[SMALL // 2, SMALL // 2]) == (10, 200, 30)
    png_named_jpg = tmp_path / "really_a_png.jpg"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(png_named_jpg, format="PNG")
    assert load_image(png_named_jpg, SMALL).shape == (SMALL, SMALL, 3)


def test_odd_names_loops_and_missing_files_in_one_collection(tmp_path):
    root = tmp_path / "d"
    write_class_folders(root, per_class=4)
    spaced = root / "2 Euro, Germany"
    spaced.mkdir()
    for i in range(4):
        coin_image((90, 90, 200), seed=70 + i).save(spaced / f"münze {i}_0.jpg")
    os.symlink(root / "gold" / "loop_b.jpg", root / "gold" / "loop_a.jpg")
    os.symlink(root / "gold" / "loop_a.jpg", root / "gold" / "loop_b.jpg")
    bad_name = os.fsencode(root / "gold") + b"/caf\xe9_0.jpg"
    with open(bad_name, "wb") as fh:
        fh.write((root / "gold" / "gold0_0.jpg").read_bytes())
    summary = extract_features(root, tmp_path / "s", small_config())
    reasons = " | ".join(summary.skipped_reasons)
    assert "symbolic links" in reasons and "not valid UTF-8" in reasons
    store = open_store(tmp_path / "s")
    ok = store.items[store.items.status == "ok"]
    assert "2 Euro, Germany" in set(ok.label)
    assert any("münze" in p for p in ok.path)


def test_csv_manifest_with_paths_that_do_not_exist(tmp_path):
    write_class_folders(tmp_path / "imgs", per_class=3)
    rows = [{"path": f"imgs/gold/gold{i // 2}_{i % 2}.jpg", "label": "gold"} for i in range(3)]
    rows += [{"path": f"imgs/silver/silver{i // 2}_{i % 2}.jpg", "label": "silver"} for i in range(3)]
    rows.append({"path": "imgs/gold/missing.jpg", "label": "gold"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    summary = extract_features(tmp_path / "m.csv", tmp_path / "s", small_config())
    assert summary.embedded == 6 and summary.skipped_reasons == {"file not found (or a broken link)": 1}


@pytest.mark.slow
def test_one_class_only_extracts_but_cannot_train(tmp_path):
    write_class_folders(tmp_path / "d", per_class=6, colours={"gold": (212, 175, 55)})
    extract_features(tmp_path / "d", tmp_path / "s", small_config())
    result = subprocess.run(
        [*CLI, "fit-head", "--type", "logreg", "--features", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "at least 2 classes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_full_disk_mid_run_stops_with_one_line_and_keeps_finished_batches(
    folders_dataset, tmp_path, monkeypatch
):
    real_write = PartWriter.write
    calls = {"n": 0}

    def fills_up(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args)

    monkeypatch.setattr(PartWriter, "write", fills_up)
    with pytest.raises(CoinfeatError, match=r"No space left on device.*run the same command again"):
        extract_features(folders_dataset, tmp_path / "s", small_config())
    monkeypatch.setattr(PartWriter, "write", real_write)
    resumed = extract_features(folders_dataset, tmp_path / "s", small_config())
    assert resumed.reused == 8 and resumed.embedded == 10, "two finished batches of 4 were kept"


def test_read_only_output_is_one_line(folders_dataset, tmp_path, monkeypatch):
    from pathlib import Path

    def refuse(self, data):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(CoinfeatError, match=r"cannot write to .*Permission denied"):
        extract_features(folders_dataset, tmp_path / "ro", small_config())


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_fuzz_random_bytes_only_ever_raise_decode_error(data):
    try:
        img = decode(data)
    except DecodeError:
        return
    assert img.mode == "RGB" and fit_square(img, 32).size == (32, 32)


@settings(max_examples=60, deadline=3000)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "CMYK"]),
    st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]),
    st.integers(0, 2**32 - 1),
)
def test_fuzz_random_small_images_decode_to_the_model_shape(width, height, mode, fmt, seed):
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).convert(
        "RGB" if mode == "I;16" else mode
    )
    buf = io.BytesIO()
    try:
        img.save(buf, fmt)
    except (OSError, ValueError, KeyError):
        return  # that format cannot hold that mode: nothing to decode
    arr = load_image(buf.getvalue(), SMALL)
    assert arr.shape == (SMALL, SMALL, 3) and arr.dtype == np.float32 and 0 <= arr.min() <= arr.max() <= 255


@pytest.fixture(scope="module")
def knn_head(tmp_path_factory):
    from coinfeat.fit import fit_head

    root = tmp_path_factory.mktemp("fuzzhead")
    data = write_class_folders(root / "d", per_class=6)
    extract_features(data, root / "s", small_config())
    fit_head(root / "s", "knn", root / "knn", params={"k": 3})
    return root / "knn"


@settings(max_examples=25, deadline=10000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=2048), st.integers(0, 2**32 - 1).map(lambda s: _random_png(s))))
def test_fuzz_predict_answers_every_file(knn_head, tmp_path_factory, data):
    from coinfeat.predict import predict_images

    path = tmp_path_factory.mktemp("q") / "query.jpg"
    path.write_bytes(data)
    [result] = predict_images([path], knn_head, top_k=2, tta="none")
    assert (result.error is not None) != bool(result.labels)


def _random_png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 64, 2)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()
