"""Shared by the benchmark scripts: run a measurement in its own process; update BENCHMARKS.md."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path


def write_section(path: Path, section: str, name: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` (or append it)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def run_child(script: str, *args: str) -> dict:
    """Run ``script --child ARGS`` in a fresh process (its own peak memory); return its JSON line."""
    out = subprocess.run(
        [sys.executable, script, "--child", *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark child {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class AnonMemorySampler:
    """Peak anonymous memory (RssAnon) of this process, sampled every 0.2 s. Memory-mapped vector
    files count in VmHWM as page cache the kernel can drop; RssAnon is what the build itself holds."""

    def __init__(self) -> None:
        self.peak, self.running = 0.0, True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak = max(self.peak, int(line.split()[1]) / 1024)
            time.sleep(0.2)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return self.peak
