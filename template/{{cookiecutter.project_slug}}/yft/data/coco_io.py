"""Reading and writing COCO annotation files safely."""

import json
from pathlib import Path

from yft.project import UserError


def read_json(path):
    """Load a JSON file; a missing or malformed file is a UserError naming it (and the line)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}:{err.colno}: invalid JSON ({err.msg})") from None


def annotation_path(exp, split):
    """datasets/<name>/annotations/instances_<split>2017.json for split train, val or test."""
    ann = {"train": exp.train_ann, "val": exp.val_ann, "test": exp.test_ann}[split]
    return Path(exp.data_dir) / "annotations" / ann


def image_dir(exp, split):
    """The image folder of a split (train2017, val2017, test2017)."""
    return Path(exp.data_dir) / {"train": exp.train_name, "val": exp.val_name, "test": exp.test_name}[split]


def check_split(exp, split):
    """Fail early, with the file named, when a split's annotations or images are missing."""
    ann, images = annotation_path(exp, split), image_dir(exp, split)
    if not ann.is_file():
        raise UserError(f"{ann}: annotation file not found (make one with `invoke sample-data` "
                        "or convert your labels)")
    if not images.is_dir():
        raise UserError(f"{images}: image folder not found")
    coco = read_json(ann)
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise UserError(f"{ann}: no '{key}' list (not a COCO detection file)")
    if not coco["images"]:
        raise UserError(f"{ann}: holds no images")
    expected = list(exp.category_ids())
    found = sorted(c["id"] for c in coco["categories"])
    if found != sorted(expected):
        raise UserError(
            f"{ann}: categories have ids {found[:10]}{'...' if len(found) > 10 else ''} but the Exp's "
            f"{len(exp.class_names)} classes need ids {expected[:10]}{'...' if len(expected) > 10 else ''}"
        )
    names = [c["name"] for c in sorted(coco["categories"], key=lambda c: expected.index(c["id"]))]
    if names != list(exp.class_names):
        wrong = [(a, b) for a, b in zip(names, exp.class_names) if a != b][:3]
        raise UserError(f"{ann}: category names differ from the Exp's class names, e.g. "
                        + ", ".join(f"{a!r} vs {b!r}" for a, b in wrong))
    return coco
