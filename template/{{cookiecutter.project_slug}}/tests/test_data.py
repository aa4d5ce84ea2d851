import json
import os

import cv2
import pytest

from yft.data.coco_io import annotation_path, image_dir, read_json
from yft.data.precheck import check_split
from yft.io import write_atomic
from yft.project import UserError


def test_sample_dataset_is_valid_coco(sample_exp):
    ids = set()
    for split in ("train", "val", "test"):
        coco = check_split(sample_exp, split)
        assert [c["name"] for c in coco["categories"]] == list(sample_exp.class_names)
        assert [c["id"] for c in coco["categories"]] == sample_exp.category_ids()
        sizes = {}
        for image in coco["images"]:
            assert image["id"] not in ids  # image ids unique across splits
            ids.add(image["id"])
            img = cv2.imread(str(image_dir(sample_exp, split) / image["file_name"]))
            assert img.shape[:2] == (image["height"], image["width"])
            sizes[image["id"]] = (image["width"], image["height"])
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            width, height = sizes[ann["image_id"]]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= width and y + h <= height
            assert ann["area"] == w * h and ann["iscrowd"] == 0


def test_missing_annotations_are_named(exp):
    with pytest.raises(UserError, match="instances_val2017.json: annotation file not found"):
        check_split(exp, "val")


def test_categories_must_match_the_exp(sample_exp):
    path = annotation_path(sample_exp, "val")
    coco = json.loads(path.read_text())
    coco["categories"] = coco["categories"][:-1]
    path.write_text(json.dumps(coco))
    with pytest.raises(UserError, match="categories have ids"):
        check_split(sample_exp, "val")


def test_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "images": [,]\n}')
    with pytest.raises(UserError, match=r"bad.json:2:\d+: invalid JSON"):
        read_json(path)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "out.json"
    write_atomic(path, b"old")

    with pytest.raises(TypeError):
        write_atomic(path, None)  # fails mid-write
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.json"]  # no temporary file left behind


def test_sample_data_never_replaces_a_dataset_without_force(exp):
    from yft.data.sample import make_sample_dataset

    make_sample_dataset(exp, counts=(2, 1, 1))
    ann = annotation_path(exp, "train")
    ann.write_text('{"images": [], "annotations": [], "categories": [], "note": "real labels"}')
    with pytest.raises(UserError, match="already holds data.*--force"):
        make_sample_dataset(exp, counts=(2, 1, 1))
    assert "real labels" in ann.read_text()
    make_sample_dataset(exp, counts=(2, 1, 1), force=True)
    assert "real labels" not in ann.read_text()


def test_sample_data_fills_a_fresh_skeleton(exp):
    """A freshly rendered project's split folders hold only .gitkeep: that is no data to protect."""
    from yft.data.sample import make_sample_dataset

    for split in ("train", "val", "test"):
        image_dir(exp, split).mkdir(parents=True)
        (image_dir(exp, split) / ".gitkeep").write_bytes(b"")
    assert make_sample_dataset(exp, counts=(2, 1, 1))[0] == annotation_path(exp, "train")


def test_sample_data_refuses_next_to_user_images_and_bad_counts(exp):
    from yft.data.sample import make_sample_dataset

    folder = image_dir(exp, "val")
    folder.mkdir(parents=True)
    (folder / "mine.jpg").write_bytes(b"a user's photo")
    with pytest.raises(UserError, match="val2017: the dataset already holds data"):
        make_sample_dataset(exp, counts=(2, 1, 0))
    with pytest.raises(UserError, match="at least 1 image"):
        make_sample_dataset(exp, counts=(-4, 1, 0), force=True)
    assert make_sample_dataset(exp, counts=(2, 1, 0), force=True)[-1] == annotation_path(exp, "val")
    assert (folder / "mine.jpg").read_bytes() == b"a user's photo"
