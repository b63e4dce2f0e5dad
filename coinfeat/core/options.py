"""One options style for every command's library function: a ``...Config`` dataclass.

Each command function takes its inputs, then ``config=None`` or the config's fields as keyword
arguments (``predict_images(photos, head, top_k=3)`` is ``predict_images(photos, head,
PredictConfig(top_k=3))``); :func:`resolve` turns either into a validated config.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from coinfeat.core.errors import CoinfeatError

T = TypeVar("T")


def resolve(cls: type[T], config: T | None, options: dict[str, Any]) -> T:
    """The config of a call: ``config`` or one built from keyword ``options`` (never both), validated."""
    if config is not None and options:
        raise CoinfeatError(f"pass a {cls.__name__} or keyword options ({', '.join(options)}), not both")
    if config is None:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(options) - known)
        if unknown:
            raise CoinfeatError(
                f"unknown option(s) {', '.join(unknown)}; {cls.__name__} takes {', '.join(sorted(known))}"
            )
        config = cls(**options)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config
