"""kill -9 in the middle of a run loses no finished batch; the CLI speaks in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import SMALL, small_config, write_class_folders

from coinfeat import extract_features, open_store
from coinfeat.core.answer_sets import AnswerSets
from coinfeat.core.errors import StoreBusy
from coinfeat.core.extraction.backbones import build_model, resolve_backbone
from coinfeat.core.extraction.engines import KerasEngine, cosine_rows
from coinfeat.core.images.model_input import load_image
from coinfeat.core.store import PARTS

CLI = [sys.executable, "-m", "coinfeat"]


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_loses_nothing(tmp_path):
    colours = {f"c{i}": (40 * i, 200 - 30 * i, 90) for i in range(5)}
    data = write_class_folders(tmp_path / "d", per_class=30, colours=colours)
    store = tmp_path / "store"
    args = [
        "extract-features",
        "--data",
        str(data),
        "--out",
        str(store),
        "--weights",
        "none",
        "--image-size",
        str(SMALL),
        "--batch-size",
        "2",
        "--engine",
        "keras",
        "--crop",
        "none",  # as small_config(), which resumes the run below
        "--quiet",
    ]
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(list((store / PARTS).glob("*.parquet"))) >= 5:
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()[-500:]}"
    with pytest.raises(StoreBusy, match="another coinfeat process"):
        extract_features(data, store, small_config(engine="keras", batch_size=2))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    parts_done = len(list((store / PARTS).glob("*.parquet")))
    assert parts_done >= 5 and parts_done < 75
    assert not (store / "manifest.json").exists()

    resumed = extract_features(data, store, small_config(engine="keras", batch_size=2))
    assert resumed.total == 150
    assert resumed.reused >= 2 * parts_done - 2, "finished batches must be reused"
    assert resumed.embedded == 150 - resumed.reused
    reference = extract_features(data, tmp_path / "ref", small_config(engine="keras"))
    assert reference.embedded == 150
    a, b = open_store(store), open_store(tmp_path / "ref")
    assert a.items.path.tolist() == b.items.path.tolist()
    assert cosine_rows(np.asarray(a.embeddings), np.asarray(b.embeddings)).min() >= 0.9999


@pytest.mark.slow
def test_pipeline_feeds_0_255_pixels_to_the_model(folders_dataset, tmp_path):
    """The /255 trap end to end: stored vectors equal the model on raw 0..255 pixels."""
    extract_features(folders_dataset, tmp_path / "s", small_config(engine="keras"))
    store = open_store(tmp_path / "s")
    model = KerasEngine(build_model(resolve_backbone("efficientnetb0", "none", image_size=SMALL)))
    raw = np.stack([load_image(folders_dataset / p, SMALL) for p in store.items.path])
    stored = np.asarray(store.embeddings)
    assert cosine_rows(stored, model.embed(raw)).min() >= 0.9999
    assert cosine_rows(stored, model.embed(raw / 255.0)).mean() < 0.99


@pytest.mark.slow
def test_cli_json_summary_and_help(folders_dataset, tmp_path):
    result = _cli(
        "extract-features",
        "--data",
        str(folders_dataset),
        "--out",
        str(tmp_path / "s"),
        "--weights",
        "none",
        "--image-size",
        str(SMALL),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    for key in ("embedded", "reused", "skipped", "total", "seconds", "store"):
        assert key in summary
    assert summary["embedded"] == 18 and summary["pretrained"] is False
    helped = _cli("extract-features", "--help")
    assert "--weights" in helped.stdout and "imagenet" in helped.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["extract-features", "--data", "/no/such/folder"], "dataset not found"),
        (["extract-features", "--data", ".", "--batch-size", "x"], "invalid int value"),
        (["extract-features", "--data", ".", "--backbone", "vgg99"], "unknown backbone"),
        (["extract-features", "--data", ".", "--split", "1/2"], "--split"),
        (["nonsense-command"], "invalid choice"),
        (["fit-head", "--type", "forest", "--features", "x"], "invalid choice"),
        (["fit-head", "--type", "knn", "--features", "/no/store", "--param", "k5"], "key=value"),
        (["fit-head", "--type", "knn", "--features", "/no/store"], "feature store not found"),
        (
            ["fit-head", "--type", "knn", "--features", "/no/store", "--param", "K=3"],
            "feature store not found",
        ),
        (["predict", "x.jpg", "--head", "/no/head"], "head not found"),
        (["compare", "--features", "/no/store"], "feature store not found"),
        (["compare", "--features", "/no/store", "--top-k", "a"], "--top-k"),
        (["similar", "x.jpg", "--features", "/no/store"], "feature store not found"),
        (["fine-tune", "--features", "/no/store"], "feature store not found"),
        (["fine-tune", "--features", "/no/store", "--epochs", "0"], "--epochs must be at least 1"),
    ],
)
def test_user_mistakes_are_one_line_without_traceback(args, message, capsys):
    from coinfeat.cli import main

    try:
        code = main(args)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    stderr = capsys.readouterr().err
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], stderr
    assert "Traceback" not in stderr


def test_debug_shows_the_traceback():
    from coinfeat.cli import main
    from coinfeat.core.errors import CoinfeatError

    with pytest.raises(CoinfeatError, match="dataset not found"):  # raised, so Python prints its traceback
        main(["--debug", "extract-features", "--data", "/no/such/folder"])


@pytest.mark.slow
def test_demo_runs_offline_and_says_weights_are_random(tmp_path):
    """The README's first command, as a user runs it (the console script)."""
    result = _cli("demo", "--out", str(tmp_path / "demo"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    summary = output["extract"]
    assert summary["total"] == 144 and summary["skipped"] == 0
    if not summary["pretrained"]:
        assert "NOT PRETRAINED" in result.stderr
    assert open_store(summary["store"]).items.label.nunique() == 8
    assert [h["type"] for h in output["heads"]] == ["centroid", "dense", "knn", "logreg"]  # every head
    assert len(output["predictions"]) == 8 and all(p["labels"] for p in output["predictions"])
    assert output["report"].endswith("report.html") and (tmp_path / output["report"]).is_file()
    assert len(output["similar"]["neighbours"]) == 5
    assert not (tmp_path / "demo" / "report" / "heads").exists(), "compare reuses the heads the demo fitted"
    counted = output["count"]
    assert abs(len(counted["coins"]) - 29) <= 1 and Path(counted["annotated"]).is_file()
    calibration = output["calibration"]
    assert calibration["photos"] + calibration["left_out"] == 48, "every photo of the sample's test folder"
    assert AnswerSets.load(calibration["head_dir"]).source == str(Path(calibration["store"]).resolve())
    best = max(output["heads"], key=lambda h: h["val_accuracy"] or 0)
    assert AnswerSets.load(best["head_dir"]) is None, "12 val photos are too few: only the copy has sets"


def test_demo_on_ray_extracts_into_a_sharded_store(monkeypatch, tmp_path):
    """``demo --ray`` only changes the extraction's runner (every command reading a sharded store is
    tested in test_distributed.py)."""
    from coinfeat import demo

    seen = {}

    def stop_after_extract(data, out, config):
        seen.update(data=data, out=out, runner=config.runner)
        raise SystemExit(0)

    monkeypatch.setattr(demo, "extract_features", stop_after_extract)
    with pytest.raises(SystemExit):
        demo.run_demo(tmp_path, ray=True, progress=False, announce=lambda *_: None)
    assert seen["runner"] == "ray" and seen["out"].name.endswith("-sharded")
    assert seen["data"] == demo.sample_dir()


def test_param_takes_several_key_values_as_the_readme_writes_them():
    from coinfeat.cli import build_parser
    from coinfeat.cli.compare import head_params
    from coinfeat.fit import parse_params

    fit = build_parser().parse_args(
        ["fit-head", "--type", "knn", "--features", "s", "--param", "index=ivfpq", "nlist=1024", "nprobe=64"]
    )
    assert parse_params(fit.param) == {"index": "ivfpq", "nlist": 1024, "nprobe": 64}
    compare = build_parser().parse_args(
        ["compare", "--features", "s", "--param", "knn.k=5", "knn.weights=distance", "--param", "logreg.C=2"]
    )
    assert head_params(compare.param) == {"knn": {"k": 5, "weights": "distance"}, "logreg": {"C": 2}}


def test_engine_ray_still_works_with_a_deprecation_line(monkeypatch, capsys):
    from coinfeat import cli

    seen = {}

    def fake(data, out, config):
        seen["c"] = config

    monkeypatch.setattr("coinfeat.core.extraction.extract.extract_features", fake)
    monkeypatch.setattr("coinfeat.cli.extract.print_summary", lambda summary, args: None)
    assert cli.main(["extract-features", "--data", "d", "--engine", "ray", "--workers", "3"]) == 0
    assert seen["c"].runner == "ray" and seen["c"].engine == "auto" and seen["c"].workers == 3
    assert "--engine ray is deprecated; use --runner ray" in capsys.readouterr().err
