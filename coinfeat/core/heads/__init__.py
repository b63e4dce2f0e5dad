"""Classifier heads trained on cached vectors, and the registry that maps ``--type`` names to them.

Every module in this package that defines a :class:`Head` subclass decorated with
:func:`register` is discovered automatically: adding a head is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads.base import Head, IncrementalHead
from coinfeat.core.heads.record import ExtractorRecord, HeadMeta, read_head_record

_REGISTRY: dict[str, type[Head]] = {}
_DISCOVERED = False


def register(cls: type[Head]) -> type[Head]:
    _REGISTRY[cls.name] = cls
    return cls


def head_types() -> dict[str, type[Head]]:
    """All registered heads by ``--type`` name (every module of this package is imported once,
    whichever head was imported first)."""
    global _DISCOVERED
    if not _DISCOVERED:
        for module in pkgutil.iter_modules(__path__):
            if module.name not in ("base", "builtin", "record", "prototypes", "unknown"):
                importlib.import_module(f"{__name__}.{module.name}")
        _DISCOVERED = True
    return dict(sorted(_REGISTRY.items()))


def make_head(name: str, **params) -> Head:
    types = head_types()
    if name not in types:
        raise CoinfeatError(f"unknown head type {name!r}; choose from {', '.join(types)}")
    return types[name](**params)


def load_head(directory: str | Path) -> Head:
    """Load any saved head; the type is read from its ``head.json``."""
    record = read_head_record(directory)
    types = head_types()
    if record["type"] not in types:
        raise CoinfeatError(f"head at {directory} has unknown type {record['type']!r}")
    return types[record["type"]].load(directory)


__all__ = [
    "ExtractorRecord",
    "Head",
    "HeadMeta",
    "IncrementalHead",
    "head_types",
    "load_head",
    "make_head",
    "register",
]
