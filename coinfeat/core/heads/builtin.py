"""Built-in models: heads shipped inside the package, so coinfeat answers before you train.

Each lives in ``coinfeat/builtin/<name>/``: its backbone, ``head/``, a card (``card.md``, what a
person reads: data, licences, how it was made, what it scores, its limits) and ``card.json``
(the same as a record, with the sha256 of every file). A model is checked against its card
before it is loaded: a changed or damaged file is refused. ``--head euro`` names one; commands
that identify coins use :data:`DEFAULT_MODEL` when no ``--head`` is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.runtime import file_hash

DEFAULT_MODEL = "euro"
CARD_JSON, CARD_TEXT = "card.json", "card.md"


@dataclass(kw_only=True)
class ModelCard:
    """``card.json``: what a built-in model is, and the sha256 of each of its files."""

    name: str
    title: str
    files: dict[str, str]
    """Path inside the model's folder -> sha256."""
    figures: dict[str, Any] = field(default_factory=dict)
    made: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> ModelCard:
        data = json.loads((folder / CARD_JSON).read_text(encoding="utf-8"))
        return cls(**{k: data[k] for k in ("name", "title", "files", "figures", "made") if k in data})

    def write(self, folder: Path) -> Path:
        data = {"name": self.name, "title": self.title, "made": self.made, "figures": self.figures}
        (folder / CARD_JSON).write_text(json.dumps({**data, "files": self.files}, indent=2) + "\n")
        return folder / CARD_JSON


def builtin_root() -> Path:
    return Path(str(resources.files("coinfeat").joinpath("builtin")))


def builtin_models() -> list[str]:
    """The names of the built-in models this installation has."""
    root = builtin_root()
    return sorted(p.name for p in root.iterdir() if (p / CARD_JSON).is_file()) if root.is_dir() else []


def model_card(name: str) -> tuple[ModelCard, str]:
    """A built-in model's card: the record and the text."""
    folder = _folder(name)
    return ModelCard.read(folder), (folder / CARD_TEXT).read_text(encoding="utf-8")


def builtin_head(name: str = DEFAULT_MODEL) -> Path:
    """The head folder of built-in model ``name``, after every file of the model matched the
    sha256 its card records."""
    folder = _folder(name)
    _verify(str(folder))
    return folder / "head"


def resolve_head(head: str | Path | None) -> Path:
    """What a ``--head`` names: a head folder (one with ``head.json``), a built-in model by name,
    or, when None, the default built-in model."""
    if head is None:
        return builtin_head(DEFAULT_MODEL)
    path = Path(head).expanduser()
    if (path / "head.json").is_file() or str(head) not in builtin_models():
        return path
    return builtin_head(str(head))


def _folder(name: str) -> Path:
    if name not in builtin_models():
        known = ", ".join(builtin_models()) or "none in this installation"
        raise CoinfeatError(f"no built-in model {name!r} (built-in: {known}); or give a head folder")
    return builtin_root() / name


@cache
def _verify(folder: str) -> None:
    """Every file the card lists has its sha256 (once per process and model)."""
    card = ModelCard.read(Path(folder))
    for relative, expected in card.files.items():
        path = Path(folder) / relative
        actual = file_hash(path) if path.is_file() else "missing"
        if actual != expected:
            raise CoinfeatError(
                f"built-in model {card.name!r}: {relative} does not match the sha256 its card records "
                f"({'missing' if actual == 'missing' else 'changed or damaged'}); reinstall coinfeat"
            )
