"""invoke validate: decodes, box checks, leakage across splits, --fix writes a cleaned copy."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from yft.data.coco_io import annotation_path, image_dir
from yft.data.validate import validate


def digest(folder):
    return {
        p.relative_to(folder): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def checks(report):
    return {(i["level"], i["check"]) for i in report.issues}


def test_sample_data_is_clean(sample_exp):
    report, fixed, path = validate(sample_exp)
    assert not report.issues and fixed == []
    assert report.splits["train"]["images"] == 12
    assert json.loads(path.read_text())["ok"] is True


def test_problems_are_found_and_fixed_in_a_copy(sample_exp):
    train, val = image_dir(sample_exp, "train"), image_dir(sample_exp, "val")
    ann = annotation_path(sample_exp, "train")
    coco = json.loads(ann.read_text())
    first = coco["images"][0]
    coco["annotations"][0]["bbox"] = [-5, -5, first["width"], 20]  # sticks out: clip
    coco["annotations"][1]["bbox"] = [1, 1, 0, 5]  # zero width: drop
    coco["annotations"][2]["bbox"] = [1, 1, float("nan"), 5]  # NaN: drop
    coco["annotations"][3]["id"] = coco["annotations"][4]["id"]  # duplicate id
    del coco["annotations"][5]["area"]
    coco["images"][1]["file_name"] = "missing.jpg"
    ann.write_text(json.dumps(coco))
    # an RGBA PNG, a CMYK JPEG and a 16-bit PNG
    for name, img in (
        ("rgba.png", Image.new("RGBA", (40, 30), (255, 0, 0, 128))),
        ("cmyk.jpg", Image.new("CMYK", (40, 30), (0, 255, 0, 0))),
        ("deep.png", Image.fromarray(np.full((30, 40), 60000, np.uint16))),
    ):
        img.save(train / name)
        coco["images"].append(
            {"id": 1000 + len(coco["images"]), "file_name": name, "width": 40, "height": 30}
        )
    ann.write_text(json.dumps(coco))
    shutil.copy(
        val / json.loads(annotation_path(sample_exp, "val").read_text())["images"][0]["file_name"],
        train / "leak.jpg",
    )  # the same bytes in train and val
    coco["images"].append({"id": 999, "file_name": "leak.jpg", "width": 1, "height": 1})
    ann.write_text(json.dumps(coco))
    before = digest(sample_exp_dir := train.parent)

    report, fixed, _ = validate(sample_exp, fix=True)
    found = checks(report)
    for expected in [
        ("error", "box outside the image"),
        ("error", "zero or negative box size"),
        ("error", "box is not four finite numbers"),
        ("error", "duplicate annotation id"),
        ("error", "area or iscrowd missing"),
        ("error", "missing image"),
        ("error", "identical image in two splits (leakage)"),
        ("error", "size differs from the image"),
        ("warning", "not 8-bit RGB/grayscale"),
    ]:
        assert expected in found
    sizes = [i["message"] for i in report.issues if i["check"] == "size differs from the image"]
    assert sizes and all("--fix cannot repair it" in m for m in sizes)  # said, not silently kept
    modes = {i["message"].split(";")[0] for i in report.issues if i["check"] == "not 8-bit RGB/grayscale"}
    assert (
        modes - {"mode I", "mode I;16"} == {"mode RGBA", "mode CMYK"} and len(modes) == 3
    )  # 16-bit: I or I;16

    after = digest(sample_exp_dir)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed and all(k not in before for k in changed)  # originals untouched, new files only
    assert {str(k) for k in changed if "converted" not in str(k)} <= {
        "annotations/instances_train2017.fixed.json",
        "annotations/instances_val2017.fixed.json",
    }
    ((out, changes),) = [f for f in fixed if "train" in f[0].name]
    assert changes["boxes_clipped"] == 1 and changes["images_converted"] == 3
    clean = json.loads(out.read_text())
    assert clean["annotations"][0]["bbox"][:2] == [0.0, 0.0]
    assert len({a["id"] for a in clean["annotations"]}) == len(clean["annotations"])
    for image in clean["images"]:
        if image["file_name"].startswith("converted/"):
            assert Image.open(train / image["file_name"]).mode == "RGB"


def test_exif_rotated_size_is_an_error(exp, tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (80, 40)).save(folder / "r.jpg", exif=exif.tobytes())
    ann = tmp_path / "a.json"
    ann.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "r.jpg", "width": 80, "height": 40}],
                "annotations": [],
                "categories": [{"id": 1, "name": "x"}],
            }
        )
    )
    report, _, _ = validate(None, ann, folder, report_path=tmp_path / "r.json")
    (issue,) = report.errors
    assert issue["check"] == "size before EXIF rotation" and "40x80" in issue["message"]


def test_near_duplicates_across_splits_but_not_blank_images(sample_exp):
    """A re-encoded copy (JPEG quality 60, one pixel changed) of a val image in train is found by
    its perceptual hash; two different blank images (flat grey with noise, solid black) are not
    called near-identical, since a featureless image's hash says nothing about it."""
    train, val = image_dir(sample_exp, "train"), image_dir(sample_exp, "val")
    ann = annotation_path(sample_exp, "train")
    coco = json.loads(ann.read_text())
    val_data = json.loads(annotation_path(sample_exp, "val").read_text())
    boxes = [a["image_id"] for a in val_data["annotations"]]
    source = max(val_data["images"], key=lambda im: boxes.count(im["id"]))  # one with objects
    copy = np.asarray(Image.open(val / source["file_name"])).copy()
    copy[0, 0] = 255 - copy[0, 0]
    Image.fromarray(copy).save(train / "recoded.jpg", quality=60)
    rng = np.random.default_rng(0)
    Image.fromarray(np.clip(128 + rng.normal(0, 6, (60, 80, 3)), 0, 255).astype(np.uint8)).save(
        train / "grey.jpg"
    )
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(val / "black.png")
    for name, (w, h) in (("recoded.jpg", (source["width"], source["height"])), ("grey.jpg", (80, 60))):
        coco["images"].append({"id": 5000 + len(coco["images"]), "file_name": name, "width": w, "height": h})
    ann.write_text(json.dumps(coco))
    val_ann = annotation_path(sample_exp, "val")
    val_coco = json.loads(val_ann.read_text())
    val_coco["images"].append({"id": 6000, "file_name": "black.png", "width": 80, "height": 60})
    val_ann.write_text(json.dumps(val_coco))

    report, _, _ = validate(sample_exp)
    near = [i for i in report.issues if i["check"] == "near-identical image in two splits (possible leakage)"]
    flagged = {(Path(i["file"]).name, i["message"].split(" (")[0].split("/")[-1]) for i in near}
    assert ("recoded.jpg", source["file_name"]) in flagged or (source["file_name"], "recoded.jpg") in flagged
    assert not any(
        "grey.jpg" in i["file"] + i["message"] or "black.png" in i["file"] + i["message"] for i in near
    )
