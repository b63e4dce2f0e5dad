"""count --truth: truth readers and the scorecard's figures on a tiny set computed by hand."""

from __future__ import annotations

import pytest
from helpers import pile, raw_markdown

from coinfeat.core.errors import CoinfeatError
from coinfeat.core.images.annotations import Mark
from coinfeat.counting.money import Doubt, FaceValue
from coinfeat.counting.results import Coin, PhotoCount
from coinfeat.counting.scorecard import PhotoTruth, iou, read_truth, score, write_report


def _coin(number, x, y, diameter, label, value):
    return Coin(
        number=number,
        x=x,
        y=y,
        diameter_px=diameter,
        label=label,
        name=label,
        probability=0.9,
        unknown=False,
        value=value,
        currency="EUR",
    )


def test_iou_of_boxes():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_scorecard_figures_by_hand():
    # photo a: 3 true coins; found: one right, one wrong class, one false; one true coin missed
    a = PhotoCount(
        "a.jpg",
        coins=[
            _coin(1, 50, 50, 40, "1e", 1.0),  # matches the 1e mark
            _coin(2, 150, 50, 40, "20c", 0.2),  # on the 10c mark: wrong class
            _coin(3, 400, 400, 40, "5c", 0.05),  # nothing there
        ],
    )
    truth_a = PhotoTruth(
        marks=[
            Mark("1e", (30, 30, 70, 70)),
            Mark("10c", (132, 32, 172, 72)),
            Mark("2e", (250, 250, 290, 290)),
        ]
    )
    # photo b: counts only (2 x 2c), counted as 2c + 1c
    b = PhotoCount("dir/b.jpg", coins=[_coin(1, 10, 10, 8, "2c", 0.02), _coin(2, 30, 10, 8, "1c", 0.01)])
    b.coins[1].answer_set = ["1c", "2c"]  # in doubt: the total is 0.03, up to 0.04
    b.doubts = [Doubt(2, FaceValue(0.01, "EUR"), [("2c", FaceValue(0.02, "EUR"))])]
    b.total = {"EUR": 0.03}
    truth_b = PhotoTruth(counts={"2c": 2}, value=0.04)
    card = score([a, b, PhotoCount("c.jpg")], {"a.jpg": truth_a, "b.jpg": truth_b})
    assert [p.photo for p in card.photos] == ["a.jpg", "dir/b.jpg"], "photos without truth are left out"
    pa, pb = card.photos
    assert (pa.found, pa.true, pa.matched, pa.right_class, pa.count_error) == (3, 3, 2, 1, 0)
    assert pa.false_coins == [3] and pa.missed == [[250, 250, 290, 290]]
    assert pa.wrong_class == [{"coin": 2, "found": "20c", "true": "10c"}]
    assert pa.value_true == pytest.approx(3.1) and pa.value_found == pytest.approx(1.25)
    assert (pb.matched, pb.right_class, pb.count_error) == (None, 1, 0)
    assert pb.value_error == pytest.approx(0.25)
    s = card.summary()
    assert s["detection_precision"] == pytest.approx(2 / 3) and s["detection_recall"] == pytest.approx(2 / 3)
    assert s["class_accuracy"] == pytest.approx(1 / 2)
    assert s["count_exact"] == 1.0
    assert s["median_total_error"] == pytest.approx(((3.1 - 1.25) / 3.1 + 0.25) / 2)
    assert (pa.in_range, pb.in_range, pb.doubtful) == (False, True, 1)
    assert s["total_in_range"] == 0.5 and s["doubtful_coins"] == 1
    counts_only = score([b], {"b.jpg": truth_b}).summary()
    assert counts_only["class_accuracy"] == 0.5 and counts_only["detection_recall"] is None, "1 of 2 2c found"


def test_truth_from_yolo_boxes_and_a_counts_csv(tmp_path):
    root = tmp_path / "set"
    (root / "photos").mkdir(parents=True)
    (root / "boxes").mkdir()
    pile([(100, 100, 40)], size=(400, 200)).save(root / "photos" / "001.jpg")
    (root / "boxes" / "001.txt").write_text("1 0.25 0.5 0.2 0.4\n")
    (root / "classes.txt").write_text("1c\n50c\n")
    (root / "truth.csv").write_text("photo,coins,1c,50c,value_cents\nphotos/001.jpg,1,0,1,50\n")
    truth = read_truth(root)
    entry = truth["001.jpg"]
    assert [m.label for m in entry.marks] == ["50c"] and entry.marks[0].box == pytest.approx(
        (60, 60, 140, 140)
    )
    assert entry.counts == {"50c": 1} and entry.value == 0.5
    counts_only = read_truth(root / "truth.csv")
    assert counts_only["001.jpg"].marks is None
    with pytest.raises(CoinfeatError, match="no marked coins"):
        read_truth(root / "photos")
    (tmp_path / "piles.csv").write_text(  # euro-coins-photos' column names
        "photo,labelled_coins,1c,2e,labelled_value_cents\ntrain/t_1.jpg,3,1,2,401\n"
    )
    assert read_truth(tmp_path / "piles.csv")["t_1.jpg"] == PhotoTruth(counts={"1c": 1, "2e": 2}, value=4.01)
    (tmp_path / "bad.csv").write_text("file,1c\nx.jpg,1\n")
    with pytest.raises(CoinfeatError, match="'photo' column"):
        read_truth(tmp_path / "bad.csv")


def test_report_files_name_the_worst_photo_first(tmp_path):
    photo = tmp_path / "a.jpg"
    pile([(100, 100, 40)], size=(300, 200)).save(photo)
    result = PhotoCount(str(photo), coins=[_coin(1, 250, 150, 40, "1c", 0.01)])
    good = PhotoCount(str(tmp_path / "b.jpg"), coins=[_coin(1, 100, 100, 80, "1e", 1.0)])
    truth = {
        "a.jpg": PhotoTruth(marks=[Mark("1e", (60, 60, 140, 140))]),
        "b.jpg": PhotoTruth(marks=[Mark("1e", (60, 60, 140, 140))]),
    }
    card = score([good, result], truth)
    md, html = write_report(card, [good, result], tmp_path / "report")
    rows = [
        line
        for line in md.read_text().splitlines()
        if line.startswith("| a.jpg") or line.startswith("| b.jpg")
    ]
    assert rows[0].startswith("| a.jpg"), "worst first"
    text = html.read_text()
    assert text.count("data:image/jpeg;base64,") == 1, "a.jpg drawn; b.jpg cannot be read and is left out"
    assert raw_markdown(text) == []
    assert text.count("<table") == 2 and "<td>a.jpg</td>" in text


def test_raw_markdown_is_found_in_a_page():
    page = "<p>x</p><pre>| figure | value |\n|---|---|\n| coins | 3 |</pre><p>**Use** `dense`</p>"
    assert len(raw_markdown(page)) == 4
    assert raw_markdown("<style>a{b:c}</style><table><tr><td>3</td></tr></table><p>fine | text</p>") == []


def test_labels_of_drawn_photos_are_readable_at_the_shown_size(tmp_path):
    import base64
    import io

    from PIL import Image

    from coinfeat.counting.annotate import label_font
    from coinfeat.counting.scorecard import SHOWN_WIDTH, _drawn

    photo = tmp_path / "big.jpg"
    pile([(800, 600, 200)], size=(4000, 3000)).save(photo)
    result = PhotoCount(str(photo), coins=[_coin(1, 800, 600, 400, "2e", 0.9)])
    [scored] = score([result], {"big.jpg": PhotoTruth(marks=[Mark("1e", (600, 400, 1000, 800))])}).photos
    data = _drawn(scored, result)
    with Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))) as shown:
        assert max(shown.size) == SHOWN_WIDTH
        assert label_font(shown.width).size >= 16
