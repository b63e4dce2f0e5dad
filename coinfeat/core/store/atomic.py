"""The one way coinfeat replaces a file: write a temporary beside it, fsync, rename, fsync the folder.

A reader (or a process killed half-way) sees either the old file or the new one, never a mix.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(final: str | Path, content: bytes | str | Callable[[Path], object]) -> Path:
    """Replace ``final`` atomically with ``content``: bytes, text, or a function that writes a path."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        write_synced(tmp, content)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(final.parent)
    return final


def write_synced(path: Path, content: bytes | str | Callable[[Path], object]) -> None:
    """Write ``content`` to ``path`` and flush it to disk (for renames that must not lose data)."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        content(path)
    fsync_path(path)


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes the renames inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
