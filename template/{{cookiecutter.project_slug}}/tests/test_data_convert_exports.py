"""Converters on files in the shape real tools export them (CVAT, LabelMe, Label Studio,
Roboflow, Darknet/CVAT YOLO 1.1, Ultralytics): every box exact, or counted as not converted,
or a one-line refusal. The fixtures are written here, following the tools' documented formats."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from yft.data.convert import convert, format_summary
from yft.project import UserError

NAMES = ["cat", "dog", "bird"]
IDS = [1, 2, 3]


def jpg(path, width=100, height=50):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 80, np.uint8)).save(path)
    return path


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if isinstance(text, str) else json.dumps(text))
    return path


def run(fmt, src, images, out, **kw):
    return convert(
        fmt,
        src if isinstance(src, list) else [src],
        images,
        out,
        kw.pop("classes", NAMES),
        kw.pop("ids", IDS),
        **kw,
    )


def boxes(out):
    coco = json.loads(out.read_text())
    files = {i["id"]: i["file_name"] for i in coco["images"]}
    return sorted((files[a["image_id"]], a["category_id"], a["bbox"]) for a in coco["annotations"])


def files(out):
    return [i["file_name"] for i in json.loads(out.read_text())["images"]]


# ------------------------------------------------------------------ YOLO exports


def test_cvat_yolo11_root_reads_obj_names_and_never_train_txt(tmp_path):
    root = tmp_path / "task_yolo 1.1"
    write(root / "obj.names", "bird\ncat\n")  # not the project's order: mapped by name
    write(
        root / "obj.data", "classes = 2\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n"
    )
    write(root / "train.txt", "data/obj_train_data/a.jpg\ndata/obj_train_data/b.jpg\n")
    jpg(root / "obj_train_data" / "a.jpg")
    jpg(root / "obj_train_data" / "b.jpg")
    write(root / "obj_train_data" / "a.txt", "0 0.5 0.5 0.2 0.4\n1 0.25 0.5 0.1 0.2\n")
    write(root / "obj_train_data" / "b.txt", "")
    out = tmp_path / "out.json"
    summary = run("yolo", root, None, out)
    assert boxes(out) == [
        ("obj_train_data/a.jpg", 1, [20.0, 20.0, 10.0, 10.0]),
        ("obj_train_data/a.jpg", 3, [40.0, 15.0, 20.0, 20.0]),
    ]
    assert summary["negatives"] == 1 and summary["class_table"]["names"] == ["bird", "cat"]
    assert (
        summary["class_table"]["map"] == ["bird", "cat"] and "obj.names" in summary["class_table"]["source"]
    )
    text = format_summary(summary)
    assert "0  'bird'" in text and "-> bird" in text and "1  'cat'" in text
    assert any("train.txt: not a label file" in n for n in summary["notes"])


def test_cvat_yolo11_without_images_pairs_labels_with_a_flat_image_folder(tmp_path):
    root = tmp_path / "export"
    write(root / "obj.names", "cat\ndog\n")
    write(root / "train.txt", "data/obj_train_data/sub/a.jpg\n")
    write(root / "obj_train_data" / "sub" / "a.txt", "1 0.5 0.5 0.2 0.4\n")
    jpg(tmp_path / "photos" / "a.jpg")
    jpg(tmp_path / "photos" / "b.jpg")
    out = tmp_path / "out.json"
    summary = run("yolo", root, tmp_path / "photos", out)
    assert boxes(out) == [("a.jpg", 2, [40.0, 15.0, 20.0, 20.0])] and summary["negatives"] == 1


def test_roboflow_yolo_root_with_data_yaml_dict_and_readmes(tmp_path):
    root = tmp_path / "rf"
    write(
        root / "data.yaml",
        "train: ../train/images\nval: ../valid/images\nnc: 2\nnames:\n  0: dog\n  1: cat\n",
    )
    write(root / "README.roboflow.txt", "Exported via roboflow.com\n")
    for split, name in (("train", "x"), ("valid", "y")):
        jpg(root / split / "images" / f"{name}.jpg", 200, 100)
        write(root / split / "labels" / f"{name}.txt", "1 0.5 0.5 0.5 0.5\n")
    out = tmp_path / "out.json"
    summary = run("yolo", root, None, out)
    assert boxes(out) == [
        ("train/images/x.jpg", 1, [50.0, 25.0, 100.0, 50.0]),
        ("valid/images/y.jpg", 1, [50.0, 25.0, 100.0, 50.0]),
    ]
    assert summary["negatives"] == 0 and summary["class_table"]["names"] == ["dog", "cat"]


def test_ultralytics_layout_and_names_file_options(tmp_path):
    root = tmp_path / "ds"
    jpg(root / "images" / "train" / "a.jpg")
    jpg(root / "images" / "val" / "b.jpg")
    write(root / "labels" / "train" / "a.txt", "0 0.5 0.5 0.2 0.4\n")
    write(root / "labels" / "val" / "b.txt", "2 0.5 0.5 0.2 0.4\n")
    # no names file: indices follow the project's class order, and the summary says so
    summary = run("yolo", root, None, tmp_path / "plain.json")
    assert [b[1] for b in boxes(tmp_path / "plain.json")] == [1, 3]
    assert "Exp's class order" in summary["class_table"]["source"]
    assert "no names file" in format_summary(summary)
    write(tmp_path / "my.names", "bird\ndog\ncat\n")
    run("yolo", root, None, tmp_path / "named.json", names=tmp_path / "my.names")
    assert [b[1] for b in boxes(tmp_path / "named.json")] == [3, 1]
    write(root / "dataset.yaml", "path: .\ntrain: images/train\nnames: [dog, bird, cat]\n")
    run("yolo", root, None, tmp_path / "yaml.json")
    assert [b[1] for b in boxes(tmp_path / "yaml.json")] == [2, 1]


def test_yolo_label_without_image_stops_or_is_counted(tmp_path):
    root = tmp_path / "ds"
    jpg(root / "images" / "a.jpg")
    write(root / "labels" / "a.txt", "0 0.5 0.5 0.2 0.4\n")
    write(root / "labels" / "gone.txt", "0 0.5 0.5 0.2 0.4\n1 0.5 0.5 0.2 0.4\n")
    with pytest.raises(UserError, match=r"gone.txt: label without an image .*--skip-missing-images"):
        run("yolo", root / "labels", root / "images", tmp_path / "x.json")
    summary = run("yolo", root / "labels", root / "images", tmp_path / "out.json", skip_missing_images=True)
    assert summary["boxes"] == 1
    assert summary["not_converted"] == {"image not found (--skip-missing-images)": 2}


def test_a_label_folder_without_images_asks_for_them(tmp_path):
    write(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.2 0.4\n")
    with pytest.raises(UserError, match=r"labels: no images in this folder .*--images"):
        run("yolo", tmp_path / "labels", None, tmp_path / "x.json")


def test_yolo_renamed_class_with_map_and_segments(tmp_path):
    root = tmp_path / "ds"
    write(root / "classes.txt", "kitty\ndog\n")
    jpg(root / "a.jpg", 200, 100)
    write(root / "a.txt", "0 0.1 0.2 0.5 0.2 0.3 0.6\n")  # an Ultralytics segment: its bounding box
    with pytest.raises(UserError, match=r"a.txt:1: unknown class 'kitty'.*--map 'kitty=<class>'"):
        run("yolo", root, None, tmp_path / "x.json")
    summary = run("yolo", root, None, tmp_path / "out.json", mapping=["kitty=cat"])
    assert boxes(tmp_path / "out.json") == [("a.jpg", 1, [20.0, 20.0, 80.0, 40.0])]
    assert summary["class_table"]["map"] == ["cat", "dog"]


# ------------------------------------------------------------------ LabelMe


def labelme(image_path, shapes, width=100, height=50, data=None):
    return {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": data,
        "imageHeight": height,
        "imageWidth": width,
    }


def shape(label, points, kind="rectangle", group=None):
    return {
        "label": label,
        "points": points,
        "group_id": group,
        "description": "",
        "shape_type": kind,
        "flags": {},
        "mask": None,
    }


def test_labelme_json_apart_from_images_counts_each_image_once(tmp_path):
    jpg(tmp_path / "images" / "p.jpg")
    jpg(tmp_path / "images" / "q.jpg")
    write(tmp_path / "ann" / "p.json", labelme("../images/p.jpg", [shape("cat", [[10, 5], [30, 40]])]))
    out = tmp_path / "out.json"
    summary = run("labelme", tmp_path / "ann", tmp_path / "images", out)
    assert files(out) == ["p.jpg", "q.jpg"]  # p once, labelled; q a negative
    assert boxes(out) == [("p.jpg", 1, [10.0, 5.0, 20.0, 35.0])] and summary["negatives"] == 1


def test_labelme_embedded_image_data_and_group_id(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    folder = tmp_path / "lm"
    write(
        folder / "gone.json",
        labelme(
            "gone.png",
            [
                shape("dog", [[1, 2], [9, 4], [5, 12]], "polygon", group=1),
                shape("dog", [[20, 20], [30, 35]], "rectangle", group=1),  # same object: one box
                shape("dog", [[40, 1], [50, 9]], "rectangle", group=2),
                shape("cat", [[3, 3]], "point"),
            ],
            width=60,
            height=40,
            data=data,
        ),
    )
    out = tmp_path / "out.json"
    summary = run("labelme", folder, None, out)
    assert (folder / "gone.png").is_file()  # written from imageData, counted in the notes
    assert boxes(out) == [("gone.png", 2, [1.0, 2.0, 29.0, 33.0]), ("gone.png", 2, [40.0, 1.0, 10.0, 8.0])]
    assert summary["not_converted"] == {"point (no box)": 1}
    assert summary["changed"] == {"shape merged into its object's box (same label and group_id)": 1}
    assert any("imageData" in n for n in summary["notes"])
    write(folder / "gone.json", labelme("other.png", [], data=None))
    with pytest.raises(UserError, match="gone.json: label without an image"):
        run("labelme", folder, None, tmp_path / "again.json")
    jpg(tmp_path / "elsewhere" / "e.jpg")
    write(folder / "gone.json", labelme("../elsewhere/e.jpg", [], data=data))
    with pytest.raises(UserError, match=r"gone.json: its image .*e.jpg is outside --images"):
        run("labelme", folder, None, tmp_path / "again.json")


# ------------------------------------------------------------------ Label Studio


def ls_rect(label, x, y, w, h, rotation=0, kind="rectanglelabels", rid="r1"):
    return {
        "id": rid,
        "type": kind,
        "from_name": "label",
        "to_name": "image",
        "original_width": 200,
        "original_height": 100,
        "image_rotation": 0,
        "origin": "manual",
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, kind: [label]},
    }


def ls_task(tid, image, *annotations, predictions=()):
    return {
        "id": tid,
        "data": {"image": image},
        "annotations": list(annotations),
        "predictions": list(predictions),
        "meta": {},
        "project": 3,
        "file_upload": "x",
    }


def ls_annotation(results, by=1, cancelled=False):
    return {
        "id": 100 + by,
        "completed_by": by,
        "result": results,
        "was_cancelled": cancelled,
        "ground_truth": False,
        "lead_time": 3.2,
    }


@pytest.fixture
def ls_images(tmp_path):
    for name in ("a", "b", "c", "d", "e", "f"):
        jpg(tmp_path / "img" / "sub" / f"{name}.jpg", 200, 100)
    return tmp_path / "img"


def test_labelstudio_paths_polygons_and_rotation(tmp_path, ls_images):
    polygon = {
        "id": "p1",
        "type": "polygonlabels",
        "original_width": 200,
        "original_height": 100,
        "value": {"points": [[10, 10], [40, 20], [20, 60]], "polygonlabels": ["dog"]},
    }
    tasks = [
        ls_task(1, "/data/local-files/?d=photos/sub/a.jpg", ls_annotation([ls_rect("cat", 10, 20, 30, 10)])),
        ls_task(2, "/data/upload/3/0a1b2c3d-b.jpg", ls_annotation([polygon])),
        ls_task(3, "s3://bucket/sub/c.jpg", ls_annotation([ls_rect("bird", 10, 20, 30, 10, rotation=90)])),
        ls_task(4, "gs://bucket/deep/d.jpg", ls_annotation([])),
        ls_task(
            5,
            "https://host.example/media/e.jpg?token=1",
            ls_annotation(
                [
                    {
                        "id": "k",
                        "type": "keypointlabels",
                        "original_width": 200,
                        "original_height": 100,
                        "value": {"x": 5, "y": 5, "width": 1, "keypointlabels": ["cat"]},
                    }
                ]
            ),
        ),
    ]
    src = write(tmp_path / "project-3.json", tasks)
    with pytest.raises(UserError, match=r"task 3 region r1: box is rotated \(90 degrees\)"):
        run("labelstudio", src, ls_images, tmp_path / "x.json")
    out = tmp_path / "out.json"
    summary = run("labelstudio", src, ls_images, out, rotated="enclose")
    assert boxes(out) == [
        ("sub/a.jpg", 1, [20.0, 20.0, 60.0, 10.0]),
        ("sub/b.jpg", 2, [20.0, 10.0, 60.0, 50.0]),  # the polygon's box
        ("sub/c.jpg", 3, [10.0, 20.0, 10.0, 60.0]),
    ]  # turned 90 degrees about (x, y)
    assert files(out) == ["sub/a.jpg", "sub/b.jpg", "sub/c.jpg", "sub/d.jpg", "sub/e.jpg", "sub/f.jpg"]
    assert summary["not_converted"] == {"keypoint (no box)": 1}
    assert summary["changed"] == {"rotated box enclosed by an axis-aligned box (--rotated enclose)": 1}


def test_labelstudio_several_annotators_cancelled_and_predictions(tmp_path, ls_images):
    first, second = ls_rect("cat", 0, 0, 10, 10), ls_rect("dog", 50, 50, 10, 10)
    tasks = [
        ls_task(1, "/data/upload/1/a.jpg", ls_annotation([first], by=7), ls_annotation([second], by=9)),
        ls_task(2, "/data/upload/1/b.jpg", ls_annotation([], by=7, cancelled=True)),
        ls_task(3, "/data/upload/1/c.jpg", predictions=[{"model_version": "v1", "result": [second]}]),
    ]
    src = write(tmp_path / "export.json", tasks)
    out = tmp_path / "first.json"
    summary = run("labelstudio", src, ls_images, out)
    assert boxes(out) == [("sub/a.jpg", 1, [0.0, 0.0, 20.0, 10.0])]
    assert summary["not_converted"] == {
        "box of another annotation of the task (--annotation first)": 1,
        "task skipped or cancelled by the annotator: image left out": 1,
        "task without annotations: image left out": 1,
    }
    assert files(out) == ["sub/a.jpg", "sub/d.jpg", "sub/e.jpg", "sub/f.jpg"]  # b, c are not negatives
    run("labelstudio", src, ls_images, tmp_path / "last.json", annotation="last")
    assert [b[1] for b in boxes(tmp_path / "last.json")] == [2]
    run("labelstudio", src, ls_images, tmp_path / "all.json", annotation="all")
    assert [b[1] for b in boxes(tmp_path / "all.json")] == [1, 2]
    run("labelstudio", src, ls_images, tmp_path / "nine.json", annotation="9")
    assert [b[1] for b in boxes(tmp_path / "nine.json")] == [2]
    run("labelstudio", src, ls_images, tmp_path / "pred.json", predictions=True)
    assert [(b[0], b[1]) for b in boxes(tmp_path / "pred.json")] == [("sub/a.jpg", 1), ("sub/c.jpg", 2)]
    with pytest.raises(UserError, match=r"--strict: 3 annotations not converted"):
        run("labelstudio", src, ls_images, tmp_path / "strict.json", strict=True)
    assert not (tmp_path / "strict.json").exists()


def test_labelstudio_json_min(tmp_path, ls_images):
    value = {
        "x": 10,
        "y": 20,
        "width": 30,
        "height": 10,
        "rotation": 0,
        "rectanglelabels": ["bird"],
        "original_width": 200,
        "original_height": 100,
    }
    records = [
        {
            "image": "/data/local-files/?d=sub/a.jpg",
            "id": 1,
            "label": [value],
            "annotator": 1,
            "annotation_id": 1,
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "lead_time": 2.1,
        },
        {
            "image": "/data/local-files/?d=sub/a.jpg",
            "id": 1,
            "label": [dict(value, rectanglelabels=["cat"])],
            "annotator": 2,
            "annotation_id": 2,
            "created_at": "x",
            "updated_at": "x",
            "lead_time": 1,
        },
        {
            "image": "/data/local-files/?d=sub/b.jpg",
            "id": 2,
            "label": [
                {
                    "points": [[0, 0], [50, 0], [50, 50]],
                    "polygonlabels": ["dog"],
                    "original_width": 200,
                    "original_height": 100,
                }
            ],
            "annotator": 1,
            "annotation_id": 3,
        },
        # <Rectangle name="bbox"> + <Labels name="label">: each region once bare, once labelled
        {
            "image": "/data/local-files/?d=sub/c.jpg",
            "id": 3,
            "annotator": 1,
            "annotation_id": 4,
            "bbox": [
                {
                    "x": 50,
                    "y": 50,
                    "width": 10,
                    "height": 10,
                    "rotation": 0,
                    "original_width": 200,
                    "original_height": 100,
                }
            ],
            "label": [
                {
                    "x": 50,
                    "y": 50,
                    "width": 10,
                    "height": 10,
                    "rotation": 0,
                    "labels": ["cat"],
                    "original_width": 200,
                    "original_height": 100,
                }
            ],
        },
    ]
    src = write(tmp_path / "min.json", records)
    summary = run("labelstudio", src, ls_images, tmp_path / "out.json", annotation="2")
    assert boxes(tmp_path / "out.json") == [("sub/a.jpg", 1, [20.0, 20.0, 60.0, 10.0])]
    assert summary["not_converted"] == {
        "box of another annotation of the task (--annotation 2)": 3,
        "task without an annotation by annotator 2: image left out": 2,
    }
    run("labelstudio", src, ls_images, tmp_path / "all.json", annotation="all")
    assert [(b[0], b[1]) for b in boxes(tmp_path / "all.json")] == [
        ("sub/a.jpg", 1),
        ("sub/a.jpg", 3),
        ("sub/b.jpg", 2),
        ("sub/c.jpg", 1),
    ]


# ------------------------------------------------------------------ CVAT


CVAT_VIDEO = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><id>4</id><name>street</name><size>3</size><mode>interpolation</mode>
    <start_frame>0</start_frame><stop_frame>2</stop_frame>
    <labels><label><name>cat</name><type>rectangle</type></label></labels>
    <original_size><width>100</width><height>50</height></original_size></task></meta>
  <track id="0" label="cat" source="manual">
    <box frame="0" keyframe="1" outside="0" occluded="0" xtl="10.00" ytl="5.00" xbr="30.00" ybr="25.00" z_order="0"/>
    <box frame="1" keyframe="0" outside="0" occluded="1" xtl="12.00" ytl="5.00" xbr="32.00" ybr="25.00" z_order="0"/>
    <box frame="2" keyframe="1" outside="1" occluded="0" xtl="14.00" ytl="5.00" xbr="34.00" ybr="25.00" z_order="0"/>
  </track>
  <track id="1" label="dog" source="manual">
    <polygon frame="1" keyframe="1" outside="0" occluded="0" points="1.0,2.0;9.0,4.0;5.0,12.0" z_order="0"/>
  </track>
</annotations>"""


def test_cvat_video_tracks(tmp_path):
    for n in range(3):
        jpg(tmp_path / "images" / f"frame_{n:06d}.jpg")
    src = write(tmp_path / "annotations.xml", CVAT_VIDEO)
    out = tmp_path / "out.json"
    summary = run("cvat", tmp_path, None, out)  # the export's root: annotations.xml and images/
    assert boxes(out) == [
        ("frame_000000.jpg", 1, [10.0, 5.0, 20.0, 20.0]),
        ("frame_000001.jpg", 1, [12.0, 5.0, 20.0, 20.0]),
        ("frame_000001.jpg", 2, [1.0, 2.0, 8.0, 10.0]),
    ]
    assert summary["negatives"] == 1  # frame 2: the object is outside
    # outside=1 is an absence, not an annotation lost: a note, and --strict passes
    assert summary["not_converted"] == {}
    assert any("1 track shape(s) with outside=1" in note for note in summary["notes"])
    assert run("cvat", tmp_path, None, tmp_path / "strict.json", strict=True)["not_converted"] == {}
    ann = json.loads(out.read_text())["annotations"][1]
    assert ann["attributes"] == {"occluded": True, "track_id": 0}
    (tmp_path / "images" / "frame_000001.jpg").unlink()
    with pytest.raises(UserError, match=r"frame 1: no image frame_000001\.\*"):
        run("cvat", src, tmp_path / "images", tmp_path / "x.json")
    summary = run("cvat", src, tmp_path / "images", tmp_path / "skip.json", skip_missing_images=True)
    assert summary["not_converted"]["image not found (--skip-missing-images)"] == 2


CVAT_PROJECT = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
  <meta><project><id>1</id><name>p</name><subsets>Train
Validation</subsets></project></meta>
  <image id="0" name="x.jpg" subset="Train" task_id="1" width="100" height="50">
    <box label="cat" source="manual" occluded="0" xtl="10" ytl="10" xbr="30" ybr="20" rotation="90" z_order="0"/>
    <box label="" source="manual" occluded="0" xtl="1" ytl="1" xbr="5" ybr="5" z_order="0"/>
  </image>
  <image id="1" name="x.jpg" subset="Validation" task_id="2" width="100" height="50">
    <box label="dog" source="manual" occluded="0" xtl="0" ytl="0" xbr="10" ybr="10" z_order="0"/>
    <points label="dog" source="manual" occluded="0" points="3,3" z_order="0"/>
  </image>
</annotations>"""


def test_cvat_project_subsets_rotation_and_blank_label(tmp_path):
    jpg(tmp_path / "images" / "Train" / "x.jpg")
    jpg(tmp_path / "images" / "Validation" / "x.jpg")
    src = write(tmp_path / "annotations.xml", CVAT_PROJECT)
    with pytest.raises(UserError, match="subsets Train, Validation: convert one with --subset NAME"):
        run("cvat", src, tmp_path / "images", tmp_path / "x.json")
    with pytest.raises(UserError, match=r"a box with a blank label; give it a class with --map '=<class>'"):
        run("cvat", src, tmp_path / "images", tmp_path / "x.json", subset="Train", rotated="enclose")
    out = tmp_path / "train.json"
    summary = run("cvat", src, tmp_path / "images", out, subset="Train", rotated="enclose", mapping=["=bird"])
    assert boxes(out) == [
        ("Train/x.jpg", 1, [15.0, 5.0, 10.0, 20.0]),
        ("Train/x.jpg", 3, [1.0, 1.0, 4.0, 4.0]),
    ]
    assert files(out) == ["Train/x.jpg"]  # the Validation image is another subset's, not a negative
    assert "''" not in format_summary(summary)
    summary = run(
        "cvat",
        src,
        tmp_path / "images",
        tmp_path / "all.json",
        subset="all",
        rotated="enclose",
        drop_unknown=True,
    )
    train, val = summary["parts"]
    assert train["out"].endswith("all_Train.json") and val["out"].endswith("all_Validation.json")
    assert boxes(tmp_path / "all_Validation.json") == [("Validation/x.jpg", 2, [0.0, 0.0, 10.0, 10.0])]
    assert val["not_converted"] == {"points (no box)": 1}
    assert train["not_converted"] == {"unknown class (blank label) (--drop-unknown)": 1}
    with pytest.raises(UserError, match="--strict: 1 annotations not converted"):
        run(
            "cvat",
            src,
            tmp_path / "images",
            tmp_path / "strict.json",
            subset="all",
            rotated="enclose",
            mapping=["=bird"],
            strict=True,
        )
    assert not list(tmp_path.glob("strict*"))  # no subset written when another fails


# ------------------------------------------------------------------ COCO


def test_coco_checks_boxes_like_every_format(tmp_path):
    jpg(tmp_path / "images" / "a.jpg")
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": k, "image_id": 1, "category_id": 1, "bbox": bbox, "iscrowd": 0, "area": 1}
            for k, bbox in enumerate(
                [
                    [10, 10, 5, 5],
                    [float("nan"), 1, 2, 3],
                    [1, 1, -4, 3],
                    [90, 40, 30, 30],
                    [200, 1, 5, 5],
                    [3, 3, 0, 4],
                ],
                1,
            )
        ],
    }
    (tmp_path / "nan.json").write_text(json.dumps(coco))  # Python's json writes bare NaN
    out = tmp_path / "out.json"
    summary = run("coco", tmp_path / "nan.json", None, out)
    assert "NaN" not in out.read_text()
    assert boxes(out) == [("a.jpg", 1, [10.0, 10.0, 5.0, 5.0]), ("a.jpg", 1, [90.0, 40.0, 10.0, 10.0])]
    assert summary["not_converted"] == {
        "box coordinate is not a finite number (NaN or infinity)": 1,
        "box negative width or height": 1,
        "box outside the image": 1,
        "box zero width or height": 1,
    }
    assert summary["changed"] == {"box clipped to the image edge": 1}
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["not_converted"] == summary["not_converted"] and report["examples"]
    convert("coco", [tmp_path / "nan.json"], None, tmp_path / "yolo", NAMES, IDS, to="yolo")
    assert (tmp_path / "yolo" / "a.txt").read_text().count("\n") == 2
    with pytest.raises(UserError, match="out.json: exists; --force replaces it"):
        run("coco", tmp_path / "nan.json", None, out)


def test_cvat_coco_export_root_and_missing_images(tmp_path):
    root = tmp_path / "cvat_coco"
    jpg(root / "images" / "a.jpg")
    coco = {
        "licenses": [],
        "info": {},
        "categories": [{"id": 1, "name": "dog", "supercategory": ""}],
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
            {"id": 2, "file_name": "lost.jpg", "width": 100, "height": 50},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [1, 2, 3, 4],
                "area": 12,
                "iscrowd": 0,
                "segmentation": [],
                "attributes": {"occluded": False},
            },
            {
                "id": 2,
                "image_id": 2,
                "category_id": 1,
                "bbox": [1, 2, 3, 4],
                "area": 12,
                "iscrowd": 0,
                "segmentation": [],
            },
        ],
    }
    write(root / "annotations" / "instances_default.json", coco)
    with pytest.raises(UserError, match=r"images\[1\]: image 'lost.jpg' not found"):
        run("coco", root, None, tmp_path / "x.json")
    summary = run("coco", root, None, tmp_path / "out.json", skip_missing_images=True)
    assert boxes(tmp_path / "out.json") == [("a.jpg", 2, [1.0, 2.0, 3.0, 4.0])]
    assert summary["not_converted"] == {"image not found (--skip-missing-images)": 1}
    assert summary["images_root"] == str(root / "images")


# ------------------------------------------------------------------ VOC from Roboflow


def test_voc_left_edge_at_zero_stays_inside(tmp_path):
    jpg(tmp_path / "train" / "r.jpg", 64, 48)
    write(
        tmp_path / "train" / "r.xml",
        "<annotation><folder></folder><filename>r.jpg</filename><path>r.jpg</path>"
        "<source><database>roboflow.com</database></source><size><width>64</width><height>48</height>"
        "<depth>3</depth></size><segmented>0</segmented><object><name>cat</name><pose>Unspecified</pose>"
        "<truncated>0</truncated><difficult>0</difficult><occluded>0</occluded><bndbox><xmin>0</xmin>"
        "<xmax>20</xmax><ymin>0</ymin><ymax>48</ymax></bndbox></object></annotation>",
    )
    summary = run("voc", tmp_path / "train", tmp_path / "train", tmp_path / "out.json")
    assert boxes(tmp_path / "out.json") == [("r.jpg", 1, [0.0, 0.0, 20.0, 48.0])] and not summary["changed"]
    summary = run(
        "voc", tmp_path / "train", tmp_path / "train", tmp_path / "dk.json", voc_convention="devkit"
    )
    assert boxes(tmp_path / "dk.json") == [("r.jpg", 1, [0.0, 0.0, 20.0, 48.0])]  # -1 clipped, counted
    assert summary["changed"] == {"box clipped to the image edge": 1}


def cvat_voc_xml(filename, width=100, height=50):
    """An object as CVAT's "Pascal VOC 1.1" export writes it (float corners, empty <folder>)."""
    return (
        f"<annotation><folder></folder><filename>{filename}</filename><source><database>Unknown"
        "</database><annotation>Unknown</annotation><image>Unknown</image></source><size>"
        f"<width>{width}</width><height>{height}</height><depth></depth></size><segmented>1</segmented>"
        "<object><name>cat</name><truncated>0</truncated><difficult>0</difficult><occluded>0</occluded>"
        "<bndbox><xmin>10.0</xmin><ymin>5.0</ymin><xmax>30.0</xmax><ymax>25.0</ymax></bndbox></object>"
        "</annotation>"
    )


def test_voc_export_root_segmentation_masks_are_not_negatives(tmp_path):
    root = tmp_path / "cvat_voc"
    for stem in ("a", "b", "c"):
        jpg(root / "JPEGImages" / f"{stem}.jpg")
    for folder in ("SegmentationClass", "SegmentationObject"):
        for stem in ("a", "c"):  # label maps beside the photos, same stems
            path = root / folder / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("P", (100, 50)).save(path)
    write(root / "Annotations" / "a.xml", cvat_voc_xml("a.jpg"))
    write(root / "Annotations" / "c.xml", cvat_voc_xml("c.jpg"))
    write(root / "ImageSets" / "Main" / "default.txt", "a\nb\nc\n")
    write(root / "labelmap.txt", "# label:color_rgb:parts:actions\ncat:0,0,0::\n")
    summary = run("voc", root / "Annotations", root, tmp_path / "out.json")
    assert files(tmp_path / "out.json") == ["JPEGImages/a.jpg", "JPEGImages/b.jpg", "JPEGImages/c.jpg"]
    assert summary["images"] == 3 and summary["boxes"] == 2 and summary["negatives"] == 1  # b.jpg only
    assert any("4 segmentation masks" in note for note in summary["notes"])


# ------------------------------------------------------------------ one box set, every format


def write_every_format(root, images, seed):
    """The same random boxes written as YOLO, VOC, LabelMe, CVAT, Label Studio and COCO."""
    rng = np.random.default_rng(seed)
    truth = {}
    for n in range(6):
        width, height = int(rng.integers(40, 160)), int(rng.integers(30, 120))
        name = f"im{n}.jpg"
        jpg(images / name, width, height)
        objs = []
        for _ in range(int(rng.integers(0, 4))):
            w, h = int(rng.integers(2, width // 2)), int(rng.integers(2, height // 2))
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            objs.append((int(rng.integers(0, 3)), x, y, w, h))
        truth[name] = (width, height, objs)
    write(root / "yolo" / "classes.txt", "\n".join(NAMES) + "\n")
    cvat, tasks = ['<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version>'], []
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 10 + k, "name": c} for k, c in enumerate(NAMES)],
    }
    for n, (name, (width, height, objs)) in enumerate(truth.items()):
        stem = name[:-4]
        write(
            root / "yolo" / f"{stem}.txt",
            "".join(
                f"{k} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} {w / width:.6f} {h / height:.6f}\n"
                for k, x, y, w, h in objs
            ),
        )
        write(
            root / "voc" / f"{stem}.xml",
            f"<annotation><filename>{name}</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>"
            + "".join(
                f"<object><name>{NAMES[k]}</name><difficult>0</difficult><bndbox><xmin>{x}</xmin><ymin>{y}</ymin>"
                f"<xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
                for k, x, y, w, h in objs
            )
            + "</annotation>",
        )
        write(
            root / "labelme" / f"{stem}.json",
            labelme(
                f"../../images/{name}",
                [shape(NAMES[k], [[x, y], [x + w, y + h]]) for k, x, y, w, h in objs],
                width,
                height,
            ),
        )
        cvat.append(
            f'<image id="{n}" name="{name}" width="{width}" height="{height}">'
            + "".join(
                f'<box label="{NAMES[k]}" occluded="0" xtl="{x}" ytl="{y}" xbr="{x + w}" ybr="{y + h}" z_order="0"/>'
                for k, x, y, w, h in objs
            )
            + "</image>"
        )
        tasks.append(
            ls_task(
                n,
                f"/data/local-files/?d=images/{name}",
                ls_annotation(
                    [
                        dict(
                            ls_rect(
                                NAMES[k],
                                x * 100 / width,
                                y * 100 / height,
                                w * 100 / width,
                                h * 100 / height,
                                rid=f"r{i}",
                            ),
                            original_width=width,
                            original_height=height,
                        )
                        for i, (k, x, y, w, h) in enumerate(objs)
                    ]
                ),
            )
        )
        coco["images"].append({"id": 100 + n, "file_name": name, "width": width, "height": height})
        coco["annotations"] += [
            {
                "id": len(coco["annotations"]) + i + 5,
                "image_id": 100 + n,
                "category_id": 10 + k,
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
            }
            for i, (k, x, y, w, h) in enumerate(objs)
        ]
    write(root / "cvat.xml", "".join(cvat) + "</annotations>")
    write(root / "ls.json", tasks)
    write(root / "coco.json", coco)
    return {(name, IDS[k], x, y, w, h) for name, (_, _, objs) in truth.items() for k, x, y, w, h in objs}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_box_set_in_every_format_converts_to_the_same_coco(tmp_path, seed):
    images = tmp_path / "images"
    truth = write_every_format(tmp_path / "src", images, seed)
    sources = {
        "yolo": "yolo",
        "voc": "voc",
        "labelme": "labelme",
        "cvat": "cvat.xml",
        "labelstudio": "ls.json",
        "coco": "coco.json",
    }
    results = {}
    for fmt, src in sources.items():
        out = tmp_path / f"{fmt}.json"
        summary = run(fmt, tmp_path / "src" / src, images, out, strict=True)
        coco = json.loads(out.read_text())
        results[fmt] = (coco["images"], {(f, c, *[round(v, 2) for v in b]) for f, c, b in boxes(out)})
        assert not summary["not_converted"] and not summary["changed"]
    for fmt, (images_list, found) in results.items():
        assert found == {(f, c, float(x), float(y), float(w), float(h)) for f, c, x, y, w, h in truth}, fmt
        assert images_list == results["coco"][0], fmt  # same file names, sizes and ids


def test_cvat_video_from_a_later_start_frame_with_a_skeleton(tmp_path):
    xml = CVAT_VIDEO.replace(
        "<start_frame>0</start_frame><stop_frame>2</stop_frame>",
        "<start_frame>10</start_frame><stop_frame>16</stop_frame><frame_filter>step=3</frame_filter>",
    )
    for old, new in (('frame="0"', 'frame="10"'), ('frame="1"', 'frame="13"'), ('frame="2"', 'frame="16"')):
        xml = xml.replace(old, new)
    xml = xml.replace(
        "</annotations>",
        """<track id="5" label="cat" source="manual">
    <skeleton frame="10" outside="0" occluded="0" keyframe="1" points="1,1;2,2" z_order="0"></skeleton>
    <track id="0" label="1" source="manual"><points frame="10" outside="0" occluded="0" keyframe="1"
      points="1,1" z_order="0"></points></track></track></annotations>""",
    )
    src = write(tmp_path / "annotations.xml", xml)
    for n in range(3):  # frames exported by position in the task
        jpg(tmp_path / "images" / f"frame_{n:06d}.jpg")
    summary = run("cvat", src, tmp_path / "images", tmp_path / "out.json")
    assert [b[:2] for b in boxes(tmp_path / "out.json")] == [
        ("frame_000000.jpg", 1),
        ("frame_000001.jpg", 1),
        ("frame_000001.jpg", 2),
    ]
    assert summary["not_converted"] == {"skeleton (no box)": 1}  # outside=1: a note, not a loss


# ------------------------------------------------------------------ labels that disagree with the images


def voc_xml(name, width, height, objects=()):
    boxes = "".join(
        f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for label, x1, y1, x2, y2 in objects
    )
    return (
        f"<annotation><folder>img</folder><filename>{name}</filename><size><width>{width}</width>"
        f"<height>{height}</height><depth>3</depth></size>{boxes}</annotation>"
    )


def test_an_image_whose_labels_give_another_size_is_left_out_and_counted(tmp_path):
    """Pixel boxes of a 200x160 image put on a 100x80 file would be wrong boxes: the image and its
    boxes are not converted (counted; --strict fails); a negative takes the file's size."""
    images, labels = tmp_path / "img", tmp_path / "xml"
    for name in ("right", "resized", "empty"):
        jpg(images / f"{name}.jpg", 100, 80)
    write(labels / "right.xml", voc_xml("right.jpg", 100, 80, [("cat", 10, 10, 50, 40)]))
    write(
        labels / "resized.xml",
        voc_xml("resized.jpg", 200, 160, [("cat", 10, 10, 150, 120), ("dog", 1, 1, 9, 9)]),
    )
    write(labels / "empty.xml", voc_xml("empty.jpg", 80, 100))
    out = tmp_path / "out.json"
    summary = run("voc", labels, images, out)
    coco = json.loads(out.read_text())
    assert [(i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [
        ("empty.jpg", 100, 80),
        ("right.jpg", 100, 80),
    ]
    assert boxes(out) == [("right.jpg", 1, [10.0, 10.0, 40.0, 30.0])]
    assert summary["not_converted"] == {
        "image size in the labels differs from the file (image and its boxes left out)": 2
    }
    assert summary["changed"] == {"image size in the labels differs from the file (the file's size used)": 1}
    assert "200x160 in the labels, 100x80 in resized.jpg" in format_summary(summary)
    with pytest.raises(UserError, match="--strict: 2 annotations not converted"):
        run("voc", labels, images, tmp_path / "strict.json", strict=True)


def test_labelstudio_percentages_follow_the_image_file(tmp_path):
    """Label Studio stores percentages: on a file of another size than the export's
    original_width/height (here given as strings) they still hold, applied to the file's size."""
    jpg(tmp_path / "img" / "a.jpg", 100, 80)
    region = ls_rect("cat", 10, 10, 20, 20) | {"original_width": "200", "original_height": "160"}
    src = write(tmp_path / "ls.json", [ls_task(1, "/data/upload/1/a.jpg", ls_annotation([region]))])
    out = tmp_path / "out.json"
    summary = run("labelstudio", src, tmp_path / "img", out)
    assert boxes(out) == [("a.jpg", 1, [10.0, 8.0, 20.0, 16.0])]
    assert list(summary["changed"]) == [
        "original_width/height differ from the image file (percentages applied to the file's size)"
    ]


def test_a_label_for_another_folder_is_not_put_on_a_same_named_image(tmp_path):
    """cam1/0001.jpg is not cam2/0001.jpg; an export's frames/0001.jpg is an image folder's 0001.jpg."""
    jpg(tmp_path / "img" / "cam2" / "0001.jpg")
    xml = CVAT_IMAGE_XML.format(name="cam1/0001.jpg")
    with pytest.raises(UserError, match=r"cam1/0001.jpg"):
        run("cvat", write(tmp_path / "a.xml", xml), tmp_path / "img", tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
    out = tmp_path / "out.json"
    run(
        "cvat",
        write(tmp_path / "b.xml", CVAT_IMAGE_XML.format(name="frames/0001.jpg")),
        tmp_path / "img" / "cam2",
        out,
    )
    assert boxes(out) == [("0001.jpg", 1, [10.0, 10.0, 20.0, 20.0])]


CVAT_IMAGE_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <image id="0" name="{name}" width="100" height="50">
    <box label="cat" source="manual" occluded="0" xtl="10" ytl="10" xbr="30" ybr="30" z_order="0">
      <attribute name="iscrowd">true</attribute>
    </box>
  </image>
</annotations>
"""


def test_checkbox_iscrowd_and_conflicting_category_ids(tmp_path):
    jpg(tmp_path / "img" / "a.jpg")
    out = tmp_path / "out.json"
    run("cvat", write(tmp_path / "a.xml", CVAT_IMAGE_XML.format(name="a.jpg")), tmp_path / "img", out)
    assert [a["iscrowd"] for a in json.loads(out.read_text())["annotations"]] == [1]  # CVAT's checkbox "true"
    bad = CVAT_IMAGE_XML.format(name="a.jpg").replace(">true<", ">maybe<")
    with pytest.raises(UserError, match=r"b.xml: .*: attribute iscrowd is 'maybe': use 0/1 or true/false"):
        run("cvat", write(tmp_path / "b.xml", bad), tmp_path / "img", tmp_path / "x.json")
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 10, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}
        ],
        "categories": [{"id": 10, "name": "dog"}, {"id": 20, "name": "cat"}, {"id": 10, "name": "cat"}],
    }
    with pytest.raises(UserError, match=r"categories: id 10 is both 'dog' and 'cat'"):
        run("coco", write(tmp_path / "c.json", coco), tmp_path / "img", tmp_path / "y.json")


def test_labelstudio_result_that_is_not_a_list_is_refused(tmp_path, ls_images):
    """A hand-edited export whose 'result' is one object would otherwise read as no regions,
    turning a labelled image into a negative."""
    annotation = ls_annotation([]) | {"result": ls_rect("cat", 10, 20, 30, 10)}
    src = write(tmp_path / "ls.json", [ls_task(1, "/data/upload/1/a.jpg", annotation)])
    with pytest.raises(UserError, match=r"task 1: annotation 101: 'result' is not a list of regions"):
        run("labelstudio", src, ls_images, tmp_path / "x.json")
