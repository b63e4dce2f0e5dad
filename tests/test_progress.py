"""Progress fits where it goes: plain lines (no carriage returns) in files and pipes."""

from __future__ import annotations

import io

from coinfeat.core.progress import LineProgress, keras_verbosity, progress_bar


def test_a_bar_in_a_file_prints_a_line_every_tenth_and_never_a_carriage_return():
    out = io.StringIO()
    with LineProgress(total=47, desc="embedding", unit="img", file=out) as bar:
        for _ in range(47):
            bar.update(1)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 10
    assert lines[-1].startswith("embedding: 100%") and "47/47" in lines[-1]
    percents = [int(line.split(":")[1].split("%")[0]) for line in lines]
    assert [p // 10 for p in percents] == list(range(1, 11))  # one line as each tenth is passed


def test_an_unfinished_bar_ends_with_its_last_count():
    out = io.StringIO()
    with LineProgress(total=300, desc="x", unit="img", file=out) as bar:
        bar.update(7)
    assert out.getvalue().splitlines()[-1].startswith("x:   2%") and "7/300" in out.getvalue()


def test_off_a_terminal_bars_are_lines_and_keras_prints_one_line_per_epoch(capsys):
    with progress_bar(total=4, desc="y", unit="img") as bar:
        bar.update(4)
    assert "\r" not in capsys.readouterr().err  # pytest's capture is not a terminal
    assert keras_verbosity(True) == 2 and keras_verbosity(False) == 0
