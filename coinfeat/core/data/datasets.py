"""Data discovery: find the photos of a coin collection and their labels.

Three layouts are understood:

* one folder per class: ``root/<class>/**/*.jpg``
* predefined splits: ``root/{train,val|validation,test}/<class>/**/*.jpg``
* a CSV manifest ``path,label[,split]`` with paths relative to the CSV (the Kaggle layout)

An optional ``cat_to_name.json`` maps class folder names to display names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.images.decode import IMAGE_EXTENSIONS, is_image_path
from coinfeat.core.runtime import read_json_object

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
LABEL_NAMES_FILE = "cat_to_name.json"
DISCOVERED_COLUMNS = ["path", "label", "split", "error"]
BAD_NAME = "file or folder name is not valid UTF-8; rename it"


@dataclass
class Dataset:
    """Discovered photos: ``items`` has one row per file (path relative to ``root``, label, split)."""

    root: Path
    name: str
    layout: str
    items: pd.DataFrame
    label_names: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source: Path | None = None
    """What was discovered: the folder, or the CSV manifest (whose folder is ``root``)."""

    @property
    def classes(self) -> list[str]:
        return sorted(self.items["label"].unique())

    def absolute(self, relpath: str) -> Path:
        return self.root / relpath


def discover(data: str | Path, label_names: str | Path | None = None) -> Dataset:
    """Find every image under ``data`` (a folder or a CSV manifest) and label it."""
    path = Path(data).expanduser()
    if not path.exists():
        raise CoinfeatError(f"dataset not found: {path}")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise CoinfeatError(f"{path} is a file but not a CSV manifest; pass a folder or a .csv")
        dataset = _from_csv(path)
    else:
        dataset = _from_folders(path)
    names_file = Path(label_names) if label_names else dataset.root / LABEL_NAMES_FILE
    if label_names or names_file.exists():
        dataset.label_names = load_label_names(names_file)
    if dataset.items.empty:
        raise CoinfeatError(
            f"no images found in {path} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))} "
            "in class folders, train/val/test folders or a CSV manifest)"
        )
    return dataset


def load_label_names(path: str | Path) -> dict[str, str]:
    """Read a ``{"class folder": "display name"}`` JSON file."""
    return {str(k): str(v) for k, v in read_json_object(path, "label-names").items()}


def display_label(label: str, names: dict[str, str], with_id: bool = True) -> str:
    """What a person reads for a class: its display name, with the class id when they differ
    ("1 Euro Cent, Spain (55)"); the id alone when no name is known."""
    label = str(label)
    name = names.get(label)
    if not name or name == label:
        return label
    return f"{name} ({label})" if with_id else name


def _walk_images(folder: Path) -> list[Path]:
    """Image files below ``folder``, sorted; symlinked folders are not followed (no loops)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            Path(dirpath) / f for f in sorted(filenames) if is_image_path(f) and not f.startswith(".")
        )
    return found


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _rows_for_classes(root: Path, folder: Path, split: str | None) -> list[dict]:
    rows = []
    for class_dir in _class_dirs(folder):
        for file in _walk_images(class_dir):
            path, label = file.relative_to(root).as_posix(), class_dir.name
            if _is_text(path):
                rows.append({"path": path, "label": label, "split": split, "error": None})
            else:
                rows.append(
                    {"path": _escaped(path), "label": _escaped(label), "split": split, "error": BAD_NAME}
                )
    return rows


def _is_text(name: str) -> bool:
    """False for names holding bytes that are not UTF-8 (they cannot be stored as text)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(name: str) -> str:
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _from_folders(root: Path) -> Dataset:
    subdirs = _class_dirs(root)
    split_dirs = {d: _SPLIT_ALIASES[d.name.lower()] for d in subdirs if d.name.lower() in _SPLIT_ALIASES}
    notes = []
    if split_dirs:
        layout = "splits"
        rows = []
        for d, split in split_dirs.items():
            rows.extend(_rows_for_classes(root, d, split))
        ignored = [d.name for d in subdirs if d not in split_dirs]
        if ignored:
            notes.append(f"ignored folders beside the split folders: {', '.join(ignored)}")
    else:
        layout = "folders"
        rows = _rows_for_classes(root, root, None)
    loose = [f.name for f in root.iterdir() if f.is_file() and is_image_path(f)]
    if loose:
        notes.append(f"{len(loose)} image(s) directly in {root} have no class folder and were ignored")
    items = pd.DataFrame(rows, columns=DISCOVERED_COLUMNS)
    return Dataset(root=root.resolve(), name=root.resolve().name, layout=layout, items=items, notes=notes)


def _from_csv(csv_path: Path) -> Dataset:
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CoinfeatError(f"cannot read CSV manifest {csv_path}: {exc}") from None
    columns = {c.strip().lower(): c for c in table.columns}
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise CoinfeatError(
            f"CSV manifest {csv_path} lacks column(s) {', '.join(missing)}; "
            f"expected a header path,label[,split] (found: {', '.join(table.columns)})"
        )
    notes = []
    extra = [c for key, c in columns.items() if key not in ("path", "label", "split")]
    if extra:
        notes.append(f"CSV columns ignored: {', '.join(extra)}")
    items = pd.DataFrame(
        {
            "path": table[columns["path"]].str.strip().map(lambda p: Path(p).as_posix()),
            "label": table[columns["label"]].str.strip(),
            "split": table[columns["split"]].map(_normalise_split) if "split" in columns else None,
            "error": None,
        }
    )
    bad = items["path"].eq("") | items["label"].eq("")
    if bad.any():
        notes.append(f"{int(bad.sum())} CSV row(s) with an empty path or label were ignored")
        items = items[~bad].reset_index(drop=True)
    if "split" in columns and items["split"].isna().any() and items["split"].notna().any():
        notes.append("some CSV rows have no split; they are assigned one")
    root = csv_path.resolve().parent
    return Dataset(
        root=root, name=root.name, layout="csv", items=items, notes=notes, source=csv_path.resolve()
    )


def _normalise_split(value: str) -> str | None:
    value = (value or "").strip().lower()
    if not value:
        return None
    if value not in _SPLIT_ALIASES:
        raise CoinfeatError(f"unknown split {value!r} in CSV manifest; use train, val or test")
    return _SPLIT_ALIASES[value]


def group_of(paths: pd.Series, group_regex: str | None) -> pd.Series:
    """Group key per path: the regex's first group (or whole match) on the file stem, else the path.

    Photos in one group always land in the same split (e.g. coins cut from one photo).
    """
    if not group_regex:
        return paths.copy()
    try:
        pattern = re.compile(group_regex)
    except re.error as exc:
        raise CoinfeatError(
            f"--group-regex {group_regex!r} is not a valid regular expression: {exc}"
        ) from None

    def key(path: str) -> str:
        stem = Path(path).stem
        match = pattern.search(stem)
        if not match:
            return path
        return match.group(1) if pattern.groups else match.group(0)

    return paths.map(key)


def safe_name(label: str) -> str:
    """A label as a file or folder name: letters, digits, "-", "_" and "." kept, the rest "_"."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)


def collect_photos(inputs: list[str | Path]) -> list[tuple[str, str | None]]:
    """(photo path, label or None) for every photo named by ``inputs``: files as given, folders
    and CSV manifests as ``extract-features`` discovers them (plus loose photos in a folder)."""
    found: list[tuple[str, str | None]] = []
    for item in map(Path, inputs):
        if item.is_file() and item.suffix.lower() == ".csv":
            dataset = discover(item)
            found += [
                (str(dataset.absolute(p)), lbl)
                for p, lbl in zip(dataset.items["path"], dataset.items["label"])
            ]
        elif item.is_dir():
            found += _folder_photos(item)
        else:
            found.append((str(item), None))
    return found


def _folder_photos(folder: Path) -> list[tuple[str, str | None]]:
    loose = [(str(f), None) for f in sorted(folder.iterdir()) if f.is_file() and is_image_path(f)]
    if not any(p.is_dir() for p in folder.iterdir()):
        return loose
    try:
        dataset = discover(folder)
    except CoinfeatError:
        return loose
    labelled = [
        (str(dataset.absolute(p)), lbl) for p, lbl in zip(dataset.items["path"], dataset.items["label"])
    ]
    return labelled + loose
