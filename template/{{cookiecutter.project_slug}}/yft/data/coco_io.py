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
