"""What a saved head records beside its weights (``head.json``), as typed records read and written
only here: :class:`ExtractorRecord` (which extractor made the vectors it learned from, enough to
rebuild it) and :class:`HeadMeta` (that, the dataset's names, counts, how its photos frame their
coins, training facts). Keys this version does not know are kept in ``extra``; ``format_version``
guards against a head written by a newer coinfeat.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.heads.unknown import UnknownRule

HEAD_FILE = "head.json"
FORMAT_VERSION = 1
RECORD_KEYS = ("type", "params", "classes", "n_features_in", "fit_seconds", "format_version")
"""Keys of head.json that the head itself writes; metadata can never overwrite them."""


@dataclass(frozen=True, kw_only=True)
class ExtractorRecord:
    """The extractor behind a store's vectors: a head embeds new photos with exactly this one."""

    fingerprint: str
    backbone: dict[str, Any] = field(default_factory=dict)
    resize: str = "pad"
    crop: str = "none"
    pretrained: bool = False
    int8: dict[str, Any] | None = None
    """For int8 stores: the calibration sample (hash, photos, held-out photos, root)."""
    store: str | None = None
    dataset: str | None = None
    use_augmented: bool | None = None

    @classmethod
    def of_manifest(cls, manifest: Any, **where: Any) -> ExtractorRecord:
        """The record of a store's :class:`~coinfeat.core.store.Manifest`."""
        int8 = None
        if manifest.int8:
            int8 = {k: manifest.int8[k] for k in ("hash", "calibration", "held_out", "root")}
        return cls(
            fingerprint=manifest.fingerprint,
            backbone=manifest.backbone,
            resize=manifest.resize,
            crop=manifest.crop,
            pretrained=bool(manifest.pretrained),
            int8=int8,
            **where,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractorRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(kw_only=True)
class HeadMeta:
    """Everything ``head.json`` holds besides the head's type, parameters and classes."""

    features: ExtractorRecord | None = None
    label_names: dict[str, str] = field(default_factory=dict)
    crops: dict[str, Any] = field(default_factory=dict)
    """How the training photos frame their coins (:class:`~coinfeat.core.images.crop.CropConvention`)."""
    counts: dict[str, Any] = field(default_factory=dict)
    val_accuracy: float | None = None
    dropped_conflicts: int = 0
    training: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] | None = None
    """For the head of a fine-tuned backbone: how it was tuned (summary, cut, views, epochs)."""
    unknown_threshold: float | None = None
    """A best probability below which ``count`` calls a coin unknown (set by hand; older heads)."""
    unknown: dict[str, Any] | None = None
    """The unknown-coin rule calibrated on val (:class:`~coinfeat.core.heads.unknown.UnknownRule`)."""
    coinfeat_version: str | None = None
    created: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadMeta:
        known = {f.name for f in fields(cls)} - {"features", "extra"}
        features = data.get("features")
        return cls(
            features=ExtractorRecord.from_dict(features) if features else None,
            **{k: v for k, v in data.items() if k in known},
            extra={k: v for k, v in data.items() if k not in known | {"features", *RECORD_KEYS}},
        )

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("features", "extra")}
        if self.features is not None:
            data["features"] = self.features.to_dict()
        return {**self.extra, **data}

    def unknown_rule(self) -> UnknownRule | None:
        """The head's unknown-coin rule, or None (none was calibrated)."""
        return UnknownRule.from_dict(self.unknown)

    def extractor(self, where: str | Path) -> ExtractorRecord:
        """The extractor record, or a clear error for a head that lacks one."""
        if self.features is None:
            raise CoinfeatError(f"head at {where} does not record its extractor; fit it again with fit-head")
        return self.features


def read_head_record(directory: str | Path) -> dict[str, Any]:
    """The ``head.json`` of a saved head, with clear errors for missing, damaged or newer ones."""
    path = Path(directory) / HEAD_FILE
    if not Path(directory).is_dir():
        raise CoinfeatError(f"head not found: {directory} (fit one with `coinfeat fit-head`)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CoinfeatError(f"{directory} is not a saved head ({HEAD_FILE} missing)") from None
    except (OSError, ValueError) as exc:
        raise CoinfeatError(f"head at {directory} is damaged ({HEAD_FILE}: {exc}); fit it again") from None
    if not isinstance(record, dict):
        raise CoinfeatError(f"head at {directory} is damaged ({HEAD_FILE} is not an object); fit it again")
    if int(record.get("format_version", 0)) > FORMAT_VERSION:
        raise CoinfeatError(
            f"head at {directory} was written by a newer coinfeat (format {record['format_version']}, this "
            f"one reads {FORMAT_VERSION}); upgrade coinfeat"
        )
    for key in ("type", "params", "classes", "n_features_in"):
        if key not in record:
            raise CoinfeatError(f"head at {directory} is damaged ({HEAD_FILE} lacks {key!r}); fit it again")
    return record
