"""The store's ``manifest.json`` as typed records, read and written only here.

A manifest says which extractor made the vectors (fingerprint, backbone, resize, precision,
pretrained), from which dataset (:class:`DatasetInfo`), how it was split and augmented, what it
holds (counts, rows, row shape) and when. Stages may add their own keys (the activation cache of
fine-tuning records its cut): those are kept verbatim in ``extra``. ``format_version`` guards
against a manifest written by a newer coinfeat.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from coinfeat.core.errors import CoinfeatError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetInfo:
    """Where a store's photos live and what their classes are called."""

    root: str = ""
    name: str = ""
    source: str | None = None
    layout: str | None = None
    label_names: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.root)

    def absolute(self, relative: str) -> Path:
        """A stored photo's path on this machine."""
        return Path(self.root) / relative


@dataclass(frozen=True)
class Manifest:
    """One store's (or one shard's) ``manifest.json``."""

    fingerprint: str
    backbone: dict[str, Any] = field(default_factory=dict)
    resize: str | None = None
    crop: str = "none"
    """How photos were framed (:data:`coinfeat.core.images.crop.CROPS`); stores older than the coin crop:
    none."""
    pretrained: bool = False
    precision: str = "fp32"
    int8: dict[str, Any] | None = None
    image_size: int | None = None
    engine: str | None = None
    weights_note: str | None = None
    dataset: DatasetInfo = field(default_factory=DatasetInfo)
    group_regex: str | None = None
    split: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str | None = None
    updated: str | None = None
    format_version: int = 0
    commit: str | None = None
    rows: int | None = None
    dim: int | None = None
    row_shape: list[int] | None = None
    dtype: str = "float32"
    shards: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys a stage added that coinfeat's core does not read (kept verbatim)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | Path = "") -> Manifest:
        version = int(data.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise CoinfeatError(
                f"store {where} was written by a newer coinfeat (format {version}, this one reads "
                f"{FORMAT_VERSION}); upgrade coinfeat"
            )
        if "fingerprint" not in data:
            raise CoinfeatError(f"manifest of {where} names no fingerprint; re-run extract-features --force")
        known = {f.name for f in fields(cls)} - {"dataset", "extra"}
        dataset_keys = {f.name for f in fields(DatasetInfo)}
        dataset = DatasetInfo(**{k: v for k, v in (data.get("dataset") or {}).items() if k in dataset_keys})
        extra = {k: v for k, v in data.items() if k not in known | {"dataset", "extra"}}
        return cls(**{k: v for k, v in data.items() if k in known}, dataset=dataset, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        return {**data, **extra}

    def updated_with(self, **changes: Any) -> Manifest:
        """A copy with some fields changed (a manifest is never changed in place)."""
        return replace(self, **changes)

    @property
    def label_names(self) -> dict[str, str]:
        return self.dataset.label_names


def read_manifest_file(path: Path) -> Manifest | None:
    """The manifest of the store folder ``path``, or None when it has none yet."""
    try:
        data = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CoinfeatError(
            f"manifest of {path} is unreadable ({exc}); re-run extract-features --force"
        ) from None
    if not isinstance(data, dict):
        raise CoinfeatError(f"manifest of {path} is not a JSON object; re-run extract-features --force")
    return Manifest.from_dict(data, path)


def manifest_json(manifest: Manifest) -> str:
    return json.dumps(manifest.to_dict(), indent=2, default=str)
