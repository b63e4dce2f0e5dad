"""Process-wide plumbing: the user cache directory, a quiet TensorFlow import, user JSON files.

TensorFlow is imported lazily, only by the stages that run a network, so that
commands which only read cached vectors start in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

log = logging.getLogger("coinfeat")


def cache_dir() -> Path:
    """Where converted models live: ``$COINFEAT_CACHE_DIR``, else the XDG cache, else ~/.cache."""
    override = os.environ.get("COINFEAT_CACHE_DIR")
    if override:
        base = Path(override)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "coinfeat"
    base.mkdir(parents=True, exist_ok=True)
    return base


def keras_cache_dir() -> Path:
    """Keras's own download cache (``$KERAS_HOME/models``, default ~/.keras/models)."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(home) / "models"


def default_threads() -> int:
    """Decode and inference threads: ``$COINFEAT_THREADS`` when set (sharing a machine), else every core."""
    configured = os.environ.get("COINFEAT_THREADS", "")
    return int(configured) if configured.isdigit() and int(configured) > 0 else max(1, os.cpu_count() or 1)


def import_tensorflow() -> ModuleType:
    """Import TensorFlow with its start-up chatter silenced."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated.*")
    with quiet_native_output():
        import tensorflow as tf

        tf.config.list_physical_devices()  # probes for GPUs now, while native logging is muted

    tf.get_logger().setLevel(logging.ERROR)
    return tf


def import_keras() -> ModuleType:
    """Keras 3 on TensorFlow (the default), or on the backend ``KERAS_BACKEND`` names (e.g. jax on
    a GPU machine without TensorFlow: training works there; TFLite conversion needs TensorFlow)."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import_tensorflow()
    import keras

    return keras


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silence C++ logging and prints that bypass Python (TensorFlow start-up, the TFLite
    converter's graph dump) by pointing file descriptors 1 and 2 at /dev/null."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in [*saved, devnull]:
            os.close(fd)


def read_json_object(path: str | Path, what: str) -> dict:
    """A JSON object from a file the user named (``what``: "sizes", "values", ...); every way it
    can be wrong is one clear :class:`CoinfeatError`."""
    from coinfeat.core.errors import CoinfeatError

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CoinfeatError(f"{what} file not found: {path}") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CoinfeatError(f"{what} file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CoinfeatError(f"{what} file {path} must hold one JSON object")
    return raw


def file_hash(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
