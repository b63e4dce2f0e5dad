"""Progress that fits where it goes: a live bar on a terminal, plain lines in a file or a pipe.

``coinfeat demo > log`` (CI, ``nohup``) must not fill the log with carriage-return bar frames or
coloured Keras step bars: off a terminal a bar prints one line every ~10% of the work or 30 s,
and Keras prints one line per epoch.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

LINE_EVERY_SECONDS = 30.0
LINE_EVERY_PERCENT = 10


def on_terminal(stream: Any = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class LineProgress(tqdm):
    """A tqdm bar for files and pipes: one plain line at every ~10% step, at most 30 s apart, and at
    the end; never a carriage return."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._next_percent, self._last_line, self._lined_n = LINE_EVERY_PERCENT, time.monotonic(), -1
        out = _NoReturns(kwargs.pop("file", None) or sys.stderr)
        options = {"leave": False, "ascii": True, "mininterval": 0, "miniters": 1, "file": out}
        super().__init__(*args, **{**kwargs, **options})

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self.disable or msg == "":
            return True
        percent = self.n * 100 // self.total if self.total else 0
        if percent >= self._next_percent or time.monotonic() - self._last_line >= LINE_EVERY_SECONDS:
            self._line()
            self._next_percent = (percent // LINE_EVERY_PERCENT + 1) * LINE_EVERY_PERCENT
        return True

    def _line(self) -> None:
        self._last_line, self._lined_n = time.monotonic(), self.n
        self.fp.write(self.__str__().strip() + "\n")
        self.fp.flush()

    def close(self) -> None:
        if not self.disable and self._lined_n != self.n:
            self._line()
        super().close()


class _NoReturns:
    """A stream that drops the carriage returns tqdm writes to clear its line."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "")
        if text:
            self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(
    *, total: int | None, desc: str | None, unit: str, enabled: bool = True, **kwargs: Any
) -> tqdm:
    """A progress bar on stderr: tqdm's live bar on a terminal, :class:`LineProgress` elsewhere."""
    kind = tqdm if on_terminal() else LineProgress
    return kind(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, **kwargs)


def keras_verbosity(enabled: bool) -> int:
    """Keras ``verbose``: a step bar on a terminal, one line per epoch elsewhere, nothing when off."""
    if not enabled:
        return 0
    return 1 if on_terminal(sys.stdout) else 2
