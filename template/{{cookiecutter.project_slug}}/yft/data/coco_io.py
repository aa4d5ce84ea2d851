"""Reading and writing COCO annotation files safely."""

import json
import os
import tempfile
from pathlib import Path

from yft.project import UserError


def write_atomic(path, data: bytes):
    """Write bytes to `path` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_png(path, img):
    """Encode a BGR image as PNG and write it atomically; returns the path."""
    import cv2

    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise UserError(f"{path}: could not encode the image as PNG")
    write_atomic(path, data.tobytes())
    return Path(path)


def write_figure(path, fig):
    """Render a matplotlib figure to PNG in memory, write it atomically, close the figure."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return Path(path)


def copy_atomic(source, target):
    """Copy a file so that `target` is either absent/old or complete, never half written."""
    import shutil

    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def write_json(path, obj, indent=None):
    """Write JSON atomically (UTF-8, non-ASCII kept as is)."""
    write_atomic(path, json.dumps(obj, ensure_ascii=False, indent=indent).encode("utf-8"))


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
