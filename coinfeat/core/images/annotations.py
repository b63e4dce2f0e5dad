"""Annotated photos: coins marked by boxes or circles on whole photos, in three common formats.

* ``yolo``: a folder with the photos (``photos/`` or ``images/``), one ``.txt`` per photo
  (``boxes/`` or ``labels/``: ``class cx cy w h`` as fractions of the photo's size) and a
  ``classes.txt`` naming the class indices, one per line.
* ``labelme``: one LabelMe ``.json`` per photo (``shapes`` of type ``rectangle``, ``circle`` or
  ``polygon``, ``imagePath`` beside it).
* ``coco``: one COCO ``.json`` (``images``, ``annotations`` with ``bbox`` = x, y, w, h, ``categories``).

:func:`read_annotations` recognises the format from what the path holds; :func:`cut_coins` turns
the marked coins into a class-folder dataset of single-coin photos (a square around each mark), so
``extract-features --annotations`` can embed a test set from someone else's labelled photos.
Coordinates are pixels of the photo as stored; a photo whose EXIF tag rotates it is refused with a
clear reason rather than cut in the wrong place.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from coinfeat.core.errors import CoinfeatError, DecodeError
from coinfeat.core.images.crop import square_around
from coinfeat.core.images.decode import IMAGE_EXTENSIONS, decode, read_bytes

ANNOTATION_FORMATS = ("auto", "yolo", "labelme", "coco")
CUT_SCALE = 1.3
"""Side of a cut square as a multiple of the mark's longer side (the coin and a little of its surface)."""
_YOLO_PHOTOS, _YOLO_BOXES = ("photos", "images"), ("boxes", "labels")


@dataclass(frozen=True)
class Mark:
    """One coin marked on a photo: its label and bounding box in pixels (x0, y0, x1, y1)."""

    label: str
    box: tuple[float, float, float, float]
    shape: str = "box"

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def side(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


@dataclass
class AnnotatedPhoto:
    """A photo and the coins marked on it."""

    path: Path
    marks: list[Mark] = field(default_factory=list)


def detect_format(path: str | Path) -> str:
    """The annotation format ``path`` holds (see the module docstring), or a clear error."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return "coco" if _is_coco(path) else "labelme"
    if not path.is_dir():
        raise CoinfeatError(f"annotations not found: {path} is neither a folder nor a .json file")
    if (path / "classes.txt").exists() and any((path / d).is_dir() for d in _YOLO_BOXES):
        return "yolo"
    jsons = sorted(path.glob("*.json"))
    if len(jsons) == 1 and _is_coco(jsons[0]):
        return "coco"
    if jsons:
        return "labelme"
    raise CoinfeatError(
        f"no annotations recognised in {path}: expected classes.txt with boxes/ or labels/ (YOLO), "
        "LabelMe .json files, or one COCO .json"
    )


def read_annotations(path: str | Path, fmt: str = "auto") -> list[AnnotatedPhoto]:
    """Every annotated photo under ``path``, in the format given or recognised."""
    if fmt not in ANNOTATION_FORMATS:
        raise CoinfeatError(f"--annotations {fmt!r}: choose from {', '.join(ANNOTATION_FORMATS)}")
    path = Path(path).expanduser()
    fmt = detect_format(path) if fmt == "auto" else fmt
    reader = {"yolo": read_yolo, "labelme": read_labelme, "coco": read_coco}[fmt]
    photos = reader(path)
    if not photos:
        raise CoinfeatError(f"no annotated photos found in {path} ({fmt})")
    return photos


def read_yolo(root: str | Path) -> list[AnnotatedPhoto]:
    """YOLO boxes: ``root/classes.txt``, photos in ``photos/`` or ``images/``, boxes in ``boxes/``
    or ``labels/`` (same file stem)."""
    root = Path(root)
    names = [line.strip() for line in _read_text(root / "classes.txt").splitlines() if line.strip()]
    photos_dir = next((root / d for d in _YOLO_PHOTOS if (root / d).is_dir()), root)
    boxes_dir = next((root / d for d in _YOLO_BOXES if (root / d).is_dir()), None)
    if boxes_dir is None:
        raise CoinfeatError(f"{root}: no boxes/ or labels/ folder beside classes.txt")
    result = []
    for photo in sorted(p for p in photos_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        txt = boxes_dir / f"{photo.stem}.txt"
        lines = _read_text(txt).splitlines() if txt.exists() else []
        width, height = _size(photo)
        marks = [_yolo_mark(line, names, width, height, txt) for line in lines if line.strip()]
        result.append(AnnotatedPhoto(photo, marks))
    return result


def _yolo_mark(line: str, names: list[str], width: int, height: int, source: Path) -> Mark:
    parts = line.split()
    try:
        index, cx, cy, w, h = int(parts[0]), *map(float, parts[1:5])
    except (ValueError, IndexError):
        raise CoinfeatError(f"{source}: not a YOLO box line: {line!r}") from None
    if not 0 <= index < len(names):
        raise CoinfeatError(f"{source}: class index {index} is not in classes.txt ({len(names)} classes)")
    cx, cy, w, h = cx * width, cy * height, w * width, h * height
    return Mark(names[index], (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))


def read_labelme(path: str | Path) -> list[AnnotatedPhoto]:
    """LabelMe files: one ``.json`` (or a folder of them), each naming its photo in ``imagePath``."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    result = []
    for file in files:
        record = _read_json(file)
        if "shapes" not in record or "imagePath" not in record:
            raise CoinfeatError(f"{file}: not a LabelMe file (no 'shapes' or 'imagePath')")
        marks = [_labelme_mark(shape, file) for shape in record["shapes"]]
        result.append(AnnotatedPhoto(file.parent / record["imagePath"], marks))
    return result


def _labelme_mark(shape: dict, source: Path) -> Mark:
    points = shape.get("points") or []
    kind = shape.get("shape_type") or "polygon"
    try:
        xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    except (TypeError, ValueError, IndexError):
        raise CoinfeatError(f"{source}: shape {shape.get('label')!r} has unreadable points") from None
    if kind == "circle" and len(points) == 2:
        radius = ((xs[1] - xs[0]) ** 2 + (ys[1] - ys[0]) ** 2) ** 0.5
        return Mark(
            str(shape["label"]), (xs[0] - radius, ys[0] - radius, xs[0] + radius, ys[0] + radius), "circle"
        )
    if len(points) < 2:
        raise CoinfeatError(f"{source}: shape {shape.get('label')!r} ({kind}) needs at least two points")
    return Mark(str(shape["label"]), (min(xs), min(ys), max(xs), max(ys)))


def read_coco(path: str | Path) -> list[AnnotatedPhoto]:
    """A COCO file (or the one ``.json`` in a folder); photo paths are relative to its folder,
    or to an ``images/`` folder beside it."""
    path = Path(path)
    file = path if path.is_file() else next(iter(sorted(path.glob("*.json"))), path / "annotations.json")
    record = _read_json(file)
    if not _looks_coco(record):
        raise CoinfeatError(f"{file}: not a COCO file (needs 'images', 'annotations' and 'categories')")
    names = {c["id"]: str(c["name"]) for c in record["categories"]}
    photos = {
        img["id"]: AnnotatedPhoto(_coco_photo(file.parent, img["file_name"])) for img in record["images"]
    }
    for ann in record["annotations"]:
        if ann.get("image_id") not in photos or ann.get("category_id") not in names:
            raise CoinfeatError(f"{file}: annotation {ann.get('id')} names an unknown image or category")
        x, y, w, h = map(float, ann["bbox"])
        photos[ann["image_id"]].marks.append(Mark(names[ann["category_id"]], (x, y, x + w, y + h)))
    return list(photos.values())


def _coco_photo(folder: Path, name: str) -> Path:
    direct = folder / name
    return direct if direct.exists() or not (folder / "images" / name).exists() else folder / "images" / name


def cut_coins(
    photos: list[AnnotatedPhoto], out: str | Path, scale: float = CUT_SCALE
) -> tuple[Path, list[str]]:
    """Write each marked coin as ``out/<label>/<photo stem>_<n>.png`` (a square ``scale`` times the
    mark's longer side, filled with the photo's edge colour beyond its border). Crops already there
    are kept, so a second run costs only the listing. Returns ``out`` and one note per photo that
    could not be cut."""
    out = Path(out)
    notes = []
    for photo in photos:
        targets = [out / _safe(m.label) / f"{photo.path.stem}_{n}.png" for n, m in enumerate(photo.marks)]
        if all(t.exists() for t in targets):
            continue
        try:
            img = _oriented(photo.path)
        except DecodeError as exc:
            notes.append(f"{photo.path}: {exc}")
            continue
        for mark, target in zip(photo.marks, targets):
            target.parent.mkdir(parents=True, exist_ok=True)
            square(img, mark, scale).save(target)
    return out, notes


def square(img: Image.Image, mark: Mark, scale: float = CUT_SCALE) -> Image.Image:
    """The square around a mark, ``scale`` times its longer side."""
    (cx, cy), half = mark.centre, mark.side * scale / 2
    return square_around(img, cx, cy, half)


def _oriented(path: Path) -> Image.Image:
    """The photo as stored; refuse one whose EXIF orientation would move the marks."""
    data = read_bytes(path)
    with Image.open(io.BytesIO(data)) as raw:
        orientation = raw.getexif().get(0x0112, 1)
    if orientation not in (1, None):
        raise DecodeError(f"EXIF orientation {orientation}: re-save the photo upright before annotating")
    return decode(data)


def _size(photo: Path) -> tuple[int, int]:
    try:
        with Image.open(photo) as img:
            return img.size
    except OSError as exc:
        raise CoinfeatError(f"{photo}: cannot read the photo's size ({exc})") from None


def _safe(label: str) -> str:
    return label.replace("/", "_").replace("\\", "_").strip() or "_"


def _is_coco(path: Path) -> bool:
    try:
        return _looks_coco(_read_json(path))
    except CoinfeatError:
        return False


def _looks_coco(record: dict) -> bool:
    return all(isinstance(record.get(k), list) for k in ("images", "annotations", "categories"))


def _read_json(path: Path) -> dict:
    try:
        record = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise CoinfeatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise CoinfeatError(f"{path}: expected a JSON object")
    return record


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CoinfeatError(f"cannot read {path}: {exc.strerror or exc}") from None
