"""Annotated photos (YOLO, LabelMe, COCO) read and cut into single-coin test sets."""

from __future__ import annotations

import json

import pytest
from helpers import pile, small_config
from PIL import Image

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.images.annotations import cut_coins, detect_format, read_annotations

DISCS = [(150, 120, 50), (330, 200, 70)]
SIZE = (480, 320)


def _photo(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    pile(DISCS, size=SIZE).save(path)
    return path


def _yolo(root):
    _photo(root / "photos" / "001.jpg")
    (root / "boxes").mkdir()
    lines = [
        f"{k} {x / SIZE[0]:.6f} {y / SIZE[1]:.6f} {2 * r / SIZE[0]:.6f} {2 * r / SIZE[1]:.6f}"
        for k, (x, y, r) in enumerate(DISCS)
    ]
    (root / "boxes" / "001.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("1c\n2e\n")
    return root


def _expected_boxes():
    return [(x - r, y - r, x + r, y + r) for x, y, r in DISCS]


def test_yolo_boxes_become_pixel_boxes_with_class_names(tmp_path):
    root = _yolo(tmp_path / "set")
    assert detect_format(root) == "yolo"
    (photo,) = read_annotations(root)
    assert [m.label for m in photo.marks] == ["1c", "2e"]
    for mark, expected in zip(photo.marks, _expected_boxes()):
        assert mark.box == pytest.approx(expected, abs=0.01)


def test_labelme_rectangles_and_circles(tmp_path):
    _photo(tmp_path / "001.jpg")
    (x0, y0, r0), (x1, y1, r1) = DISCS
    shapes = [
        {"label": "1c", "shape_type": "rectangle", "points": [[x0 - r0, y0 - r0], [x0 + r0, y0 + r0]]},
        {"label": "2e", "shape_type": "circle", "points": [[x1, y1], [x1 + r1, y1]]},
    ]
    (tmp_path / "001.json").write_text(json.dumps({"imagePath": "001.jpg", "shapes": shapes}))
    assert detect_format(tmp_path) == "labelme"
    (photo,) = read_annotations(tmp_path)
    assert photo.path == tmp_path / "001.jpg"
    assert [m.shape for m in photo.marks] == ["box", "circle"]
    for mark, expected in zip(photo.marks, _expected_boxes()):
        assert mark.box == pytest.approx(expected)


def test_coco_boxes_and_unknown_categories(tmp_path):
    _photo(tmp_path / "images" / "a.jpg")
    anns = [
        {"id": k, "image_id": 7, "category_id": 10 + k, "bbox": [x - r, y - r, 2 * r, 2 * r]}
        for k, (x, y, r) in enumerate(DISCS)
    ]
    record = {
        "images": [{"id": 7, "file_name": "a.jpg"}],
        "annotations": anns,
        "categories": [{"id": 10, "name": "1c"}, {"id": 11, "name": "2e"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(record))
    assert detect_format(tmp_path) == detect_format(tmp_path / "coco.json") == "coco"
    (photo,) = read_annotations(tmp_path / "coco.json")
    assert photo.path == tmp_path / "images" / "a.jpg"
    assert [m.label for m in photo.marks] == ["1c", "2e"]
    assert photo.marks[1].box == pytest.approx(_expected_boxes()[1])
    record["annotations"][0]["category_id"] = 99
    (tmp_path / "coco.json").write_text(json.dumps(record))
    with pytest.raises(CoinfeatError, match="unknown image or category"):
        read_annotations(tmp_path / "coco.json")


def test_bad_annotations_say_what_is_wrong(tmp_path):
    root = _yolo(tmp_path / "set")
    (root / "boxes" / "001.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    with pytest.raises(CoinfeatError, match=r"class index 5 is not in classes\.txt"):
        read_annotations(root)
    (root / "boxes" / "001.txt").write_text("zero 0.5 0.5\n")
    with pytest.raises(CoinfeatError, match="not a YOLO box line"):
        read_annotations(root)
    with pytest.raises(CoinfeatError, match="no annotations recognised"):
        detect_format(tmp_path / "set" / "photos")
    with pytest.raises(CoinfeatError, match="choose from"):
        read_annotations(root, "voc")


def test_cut_coins_writes_class_folders_once_and_refuses_rotated_photos(tmp_path):
    root = _yolo(tmp_path / "set")
    out, notes = cut_coins(read_annotations(root), tmp_path / "cut")
    assert notes == []
    small, big = Image.open(out / "1c" / "001_0.png"), Image.open(out / "2e" / "001_1.png")
    assert small.size == (130, 130) and big.size == (182, 182), "1.3 x the box side"
    stamp = (out / "1c" / "001_0.png").stat().st_mtime_ns
    cut_coins(read_annotations(root), tmp_path / "cut")
    assert (out / "1c" / "001_0.png").stat().st_mtime_ns == stamp, "crops already there are kept"
    rotated = pile(DISCS, size=SIZE)
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(root / "photos" / "002.jpg", exif=exif)
    (root / "boxes" / "002.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    _, notes = cut_coins(read_annotations(root), tmp_path / "cut")
    assert len(notes) == 1 and "EXIF orientation 6" in notes[0]


def test_extract_features_embeds_the_marked_coins_as_a_store(tmp_path):
    from coinfeat import extract_features
    from coinfeat.core.store import open_store

    root = _yolo(tmp_path / "set")
    config = small_config(annotations="auto", cut_dir=str(tmp_path / "cut"), split=(0.0, 0.0, 1.0))
    summary = extract_features(root, tmp_path / "store", config)
    assert summary.embedded == 2
    assert any("cut 2 marked coins from 1 annotated photos" in n for n in summary.notes)
    assert sorted(open_store(summary.store).items["label"]) == ["1c", "2e"]
