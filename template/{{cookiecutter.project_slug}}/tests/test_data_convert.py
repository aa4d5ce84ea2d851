"""Converters: YOLO, VOC, LabelMe, CVAT, Label Studio, COCO merge and COCO -> YOLO, on small
real image folders written by the tests."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from yft.data.convert import convert
from yft.exp import COCO_CLASS_NAMES, FinetuneExp
from yft.project import UserError

NAMES = ["cat", "dog", "bird"]
IDS = [1, 2, 3]


def write_jpg(path, width, height, orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.full((height, width, 3), 90, np.uint8))
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(path, exif=exif.tobytes())
    else:
        img.save(path)


def run(fmt, src, images, out, **kw):
    return convert(fmt, [src], images, out, kw.pop("names", NAMES), kw.pop("ids", IDS), **kw)


@pytest.fixture
def yolo(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    write_jpg(images / "a.jpg", 200, 100)
    write_jpg(images / "b.jpg", 64, 48)  # no label file: a negative
    write_jpg(images / "sub" / "c.jpg", 80, 40, orientation=6)  # shown as 40x80
    labels.mkdir()
    (labels / "classes.txt").write_text("cat\ndog\nbird\n")
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n2 0.25 0.75 0.5 0.5\n")
    (labels / "sub").mkdir()
    (labels / "sub" / "c.txt").write_text("1 0.5 0.5 1 1\n")
    return images, labels


def test_yolo_to_coco(yolo, tmp_path):
    images, labels = yolo
    summary = run("yolo", labels, images, tmp_path / "out.json")
    coco = json.loads((tmp_path / "out.json").read_text())
    assert summary["negatives"] == 1 and summary["boxes"] == 3
    assert [i["file_name"] for i in coco["images"]] == ["a.jpg", "b.jpg", "sub/c.jpg"]
    assert [(i["width"], i["height"]) for i in coco["images"]] == [(200, 100), (64, 48), (40, 80)]
    assert [a["id"] for a in coco["annotations"]] == [1, 2, 3]
    assert [c["name"] for c in coco["categories"]] == NAMES
    a1, a2, a3 = coco["annotations"]
    assert a1["bbox"] == pytest.approx([80, 30, 40, 40]) and a1["category_id"] == 1
    assert a2["bbox"] == pytest.approx([0, 50, 100, 50]) and a2["category_id"] == 3
    assert a3["bbox"] == pytest.approx([0, 0, 40, 80]) and a3["image_id"] == 3
    assert all(
        a["iscrowd"] == 0 and a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])
        for a in coco["annotations"]
    )


def test_yolo_float_rounding_is_not_a_pixel_coordinate(yolo, tmp_path):
    """1.0000001 is float32's 1.0 as exporters print it: accepted, and the box it puts past the
    edge is clipped and counted; 1.001 is a coordinate out of range and refused."""
    images, labels = yolo
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n2 1.0000001 0.5 0.2 1.0000001\n")
    summary = run("yolo", labels, images, tmp_path / "out.json")
    coco = json.loads((tmp_path / "out.json").read_text())
    assert summary["boxes"] == 3 and summary["changed"] == {"box clipped to the image edge": 1}
    assert coco["annotations"][1]["bbox"] == pytest.approx([180, 0, 20, 100])
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 1.001\n")
    with pytest.raises(UserError, match=r"a.txt:1: coordinates must be normalised"):
        run("yolo", labels, images, tmp_path / "x.json")


def test_yolo_class_written_as_a_float(yolo, tmp_path):
    """'2.0' (labels saved through numpy) is class 2; '1.5' is refused on its line."""
    images, labels = yolo
    (labels / "a.txt").write_text("0.0 0.5 0.5 0.2 0.4\n2.0 0.25 0.75 0.5 0.5\n")
    run("yolo", labels, images, tmp_path / "out.json")
    assert [a["category_id"] for a in json.loads((tmp_path / "out.json").read_text())["annotations"][:2]] == [
        1,
        3,
    ]
    (labels / "a.txt").write_text("1.5 0.5 0.5 0.2 0.4\n")
    with pytest.raises(UserError, match=r"a.txt:1: class index '1.5' is not a whole number"):
        run("yolo", labels, images, tmp_path / "x.json")


def test_yolo_map_and_drop_unknown(yolo, tmp_path):
    images, labels = yolo
    (labels / "classes.txt").write_text("kitty\ndog\nparrot\n")
    with pytest.raises(UserError, match=r"a.txt:1: unknown class 'kitty'"):
        run("yolo", labels, images, tmp_path / "x.json")
    summary = run("yolo", labels, images, tmp_path / "out.json", mapping=["kitty=cat"], drop_unknown=True)
    assert summary["boxes"] == 2 and summary["not_converted"] == {
        "unknown class 'parrot' (--drop-unknown)": 1
    }
    with pytest.raises(UserError, match="'lion' is not one of the Exp's classes"):
        run("yolo", labels, images, tmp_path / "x.json", mapping=["kitty=lion"])
    assert not (tmp_path / "x.json").exists()


def test_keep_coco_ids_follow_coco_then_ours(yolo, tmp_path):
    images, labels = yolo
    exp = FinetuneExp()
    exp.class_mode, exp.class_names = "keep_coco", COCO_CLASS_NAMES + ("helmet", "vest")
    (labels / "classes.txt").write_text("helmet\nperson\nvest\n")
    run("yolo", labels, images, tmp_path / "out.json", names=exp.class_names, ids=exp.category_ids())
    coco = json.loads((tmp_path / "out.json").read_text())
    assert [a["category_id"] for a in coco["annotations"]] == [91, 92, 1]
    assert [c["id"] for c in coco["categories"]][-3:] == [90, 91, 92]


VOC = """<annotation><folder>x</folder><filename>{name}</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>
<object><name>dog</name><truncated>1</truncated><difficult>0</difficult>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>
<object><name>cat</name><difficult>1</difficult>
<bndbox><xmin>10.5</xmin><ymin>5.25</ymin><xmax>30.5</xmax><ymax>15.25</ymax></bndbox></object>
</annotation>"""


def test_voc_conventions_and_difficult(tmp_path):
    images, xml = tmp_path / "JPEGImages", tmp_path / "Annotations"
    write_jpg(images / "one.jpg", 64, 48)
    write_jpg(images / "two.jpg", 64, 48)  # negative
    xml.mkdir()
    (xml / "one.xml").write_text(VOC.format(name="one.jpg", w=64, h=48))
    run("voc", xml, images, tmp_path / "out.json")
    coco = json.loads((tmp_path / "out.json").read_text())
    dog, cat = coco["annotations"]
    # default: xmin is the left edge, as CVAT, Roboflow, labelme2voc and globox write it
    assert dog["bbox"] == [1, 1, 9, 19]
    assert cat["bbox"] == pytest.approx([10.5, 5.25, 20, 10])  # fractions kept
    assert dog["attributes"] == {"difficult": False, "truncated": True}
    assert cat["attributes"]["difficult"] is True
    assert len(coco["images"]) == 2
    run("voc", xml, images, tmp_path / "devkit.json", voc_convention="devkit")
    dog, cat = json.loads((tmp_path / "devkit.json").read_text())["annotations"]
    assert dog["bbox"] == [0, 0, 10, 20]  # VOC devkit pixels 1..10 are 10 pixels wide, from COCO x=0
    assert cat["bbox"] == pytest.approx([9.5, 4.25, 21, 11])
    summary = run("voc", xml, images, tmp_path / "drop.json", difficult="drop")
    assert summary["boxes"] == 1 and summary["not_converted"] == {"difficult object (--difficult drop)": 1}


def test_labelme_cvat_labelstudio(tmp_path):
    images = tmp_path / "img"
    write_jpg(images / "p.jpg", 100, 50)
    lm = tmp_path / "labelme"
    lm.mkdir()
    (lm / "p.json").write_text(
        json.dumps(
            {
                "imagePath": "../img/p.jpg",
                "imageWidth": 100,
                "imageHeight": 50,
                "shapes": [
                    {"label": "cat", "shape_type": "rectangle", "points": [[30, 40], [10, 5]]},
                    {"label": "bird", "shape_type": "polygon", "points": [[1, 2], [9, 4], [5, 12]]},
                    {"label": "dog", "shape_type": "point", "points": [[3, 3]]},
                ],
            }
        )
    )
    summary = run("labelme", lm, images, tmp_path / "lm.json")
    coco = json.loads((tmp_path / "lm.json").read_text())
    assert [a["bbox"] for a in coco["annotations"]] == [[10, 5, 20, 35], [1, 2, 8, 10]]
    assert summary["not_converted"] == {"point (no box)": 1}

    cvat = tmp_path / "cvat.xml"
    cvat.write_text("""<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version>
    <image id="0" name="p.jpg" width="100" height="50">
      <box label="dog" occluded="1" xtl="10.5" ytl="5" xbr="20.5" ybr="25" z_order="0">
        <attribute name="color">brown</attribute></box>
      <polygon label="cat" occluded="0" points="1,1;5,9;3,4"/>
    </image></annotations>""")
    run("cvat", cvat, images, tmp_path / "cvat.json")
    dog, cat = json.loads((tmp_path / "cvat.json").read_text())["annotations"]
    assert dog["bbox"] == [10.5, 5, 10, 20] and dog["attributes"] == {"occluded": True, "color": "brown"}
    assert cat["bbox"] == [1, 1, 4, 8] and cat["category_id"] == 1

    ls = tmp_path / "ls.json"
    task = {
        "id": 7,
        "data": {"image": "/data/upload/1/0a1b2c3d-p.jpg"},
        "annotations": [
            {
                "result": [
                    {
                        "type": "rectanglelabels",
                        "original_width": 100,
                        "original_height": 50,
                        "value": {
                            "x": 10,
                            "y": 20,
                            "width": 50,
                            "height": 40,
                            "rotation": 0,
                            "rectanglelabels": ["bird"],
                        },
                    }
                ]
            }
        ],
    }
    ls.write_text(json.dumps([task]))
    run("labelstudio", ls, images, tmp_path / "ls_out.json")
    (ann,) = json.loads((tmp_path / "ls_out.json").read_text())["annotations"]
    assert ann["bbox"] == [10, 10, 50, 20] and ann["category_id"] == 3
    task["annotations"][0]["result"][0]["value"]["rotation"] = 15
    ls.write_text(json.dumps([task]))
    with pytest.raises(
        UserError, match=r"ls.json: task 7 region 0: box is rotated \(15 degrees\).*--rotated enclose"
    ):
        run("labelstudio", ls, images, tmp_path / "rot.json")
    assert not (tmp_path / "rot.json").exists()


def test_merge_coco_and_back_to_yolo(yolo, tmp_path):
    images, labels = yolo
    run("yolo", labels, images, tmp_path / "a.json")
    other = json.loads((tmp_path / "a.json").read_text())
    # a second export in another folder, images beside it (Roboflow's layout), other category ids
    for image in other["images"]:
        write_jpg(tmp_path / "second" / "train" / image["file_name"], image["width"], image["height"])
    other["categories"] = [{"id": 7, "name": "dog"}, {"id": 9, "name": "cat"}, {"id": 3, "name": "bird"}]
    for ann in other["annotations"]:
        ann["category_id"] = {1: 9, 2: 7, 3: 3}[ann["category_id"]]
    (tmp_path / "second" / "train" / "_annotations.coco.json").write_text(json.dumps(other))
    summary = convert(
        "coco", [tmp_path / "a.json", tmp_path / "second"], None, tmp_path / "m.json", NAMES, IDS
    )
    merged = json.loads((tmp_path / "m.json").read_text())
    assert [i["id"] for i in merged["images"]] == list(range(1, 7))
    assert [a["id"] for a in merged["annotations"]] == list(range(1, 7))
    cats = [a["category_id"] for a in merged["annotations"]]
    assert cats[:3] == cats[3:]  # same classes after mapping by name
    # every image stays reachable from one folder, the one the summary names
    assert summary["images_root"] == str(tmp_path)
    assert all((tmp_path / i["file_name"]).is_file() for i in merged["images"])
    assert {i["file_name"] for i in merged["images"]} >= {"images/a.jpg", "second/train/a.jpg"}

    convert("coco", [tmp_path / "a.json"], None, tmp_path / "yolo_out", NAMES, IDS, to="yolo")
    assert (tmp_path / "yolo_out" / "classes.txt").read_text() == "cat\ndog\nbird\n"
    assert (tmp_path / "yolo_out" / "b.txt").read_text() == ""  # negative keeps an empty file
    got = [line.split() for line in (tmp_path / "yolo_out" / "a.txt").read_text().splitlines()]
    want = [line.split() for line in (labels / "a.txt").read_text().splitlines()]
    assert [[int(g[0])] + [float(v) for v in g[1:]] for g in got] == [
        [int(w[0])] + [pytest.approx(float(v)) for v in w[1:]] for w in want
    ]
    with pytest.raises(UserError, match="not an empty folder"):
        convert("coco", [tmp_path / "a.json"], None, tmp_path / "yolo_out", NAMES, IDS, to="yolo")
    # a crowd box has no YOLO form: counted as not converted, and not in the written count
    crowd = json.loads((tmp_path / "a.json").read_text())
    crowd["annotations"][0]["iscrowd"] = 1
    (tmp_path / "crowd.json").write_text(json.dumps(crowd))
    summary = convert("coco", [tmp_path / "crowd.json"], None, tmp_path / "yolo_crowd", NAMES, IDS, to="yolo")
    written = sum(
        len(p.read_text().splitlines())
        for p in (tmp_path / "yolo_crowd").rglob("*.txt")
        if p.name != "classes.txt"
    )
    assert summary["boxes"] == written == len(crowd["annotations"]) - 1
    assert summary["not_converted"] == {"crowd box (YOLO has no crowd flag)": 1}


def test_parallel_path_matches_serial(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    ok, jpg = cv2.imencode(".jpg", np.zeros((8, 16, 3), np.uint8))
    for n in range(2100):  # above the threshold for worker processes
        (images / f"{n:05d}.jpg").write_bytes(jpg.tobytes())
        if n % 3:
            (labels / f"{n:05d}.txt").write_text(f"{n % 3} 0.5 0.5 0.5 0.5\n")
    (labels / "classes.txt").write_text("cat\ndog\nbird\n")
    summary = run("yolo", labels, images, tmp_path / "out.json")
    coco = json.loads((tmp_path / "out.json").read_text())
    assert summary["images"] == 2100 and summary["negatives"] == 700
    assert {(i["width"], i["height"]) for i in coco["images"]} == {(16, 8)}
    assert [a["id"] for a in coco["annotations"]] == list(range(1, 1401))
