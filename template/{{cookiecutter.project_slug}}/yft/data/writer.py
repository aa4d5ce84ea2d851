"""The converter's one writer: COCO JSON (orjson: UTF-8, compact, several times faster than the
standard library on 100k boxes), YOLO label folders, and the JSON report beside the output.
Every file is written atomically; nothing is written when the conversion fails."""

import os
import shutil
import tempfile
from pathlib import Path

import orjson

from yft.io import write_atomic
from yft.project import UserError


def report_path(out):
    """The JSON report beside the output: labels.json -> labels.report.json."""
    out = Path(out)
    return out.with_name((out.stem if out.suffix == ".json" else out.name) + ".report.json")


def check_target(out, force, folder=False):
    """Refuse to replace what the user has (an output file or its report) without --force."""
    out = Path(out)
    if folder:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserError(f"{out}: exists and is not an empty folder; choose a new one")
    elif out.is_dir():
        raise UserError(f"{out}: is a folder; --out needs a .json file path")
    elif out.exists() and not force:
        raise UserError(f"{out}: exists; --force replaces it")
    report = report_path(out)
    if report.exists() and not force:
        raise UserError(f"{report}: exists; --force replaces it (or choose another --out)")


def write_coco(out, coco):
    write_atomic(out, orjson.dumps(coco))


def write_report(out, report):
    write_atomic(report_path(out), orjson.dumps(report, option=orjson.OPT_INDENT_2))


def write_yolo(out, coco, classes):
    """YOLO label files (one per image, empty for negatives) and classes.txt in `out`, a new
    folder, class indices in the Exp's order; returns the number of crowd boxes left out."""
    out = Path(out)
    index = {cid: i for i, cid in enumerate(classes.ids.values())}
    lines = {image["id"]: [] for image in coco["images"]}
    sizes = {image["id"]: (image["width"], image["height"]) for image in coco["images"]}
    crowd = 0
    for ann in coco["annotations"]:
        if ann["iscrowd"]:
            crowd += 1
            continue
        x, y, w, h = ann["bbox"]
        W, H = sizes[ann["image_id"]]
        lines[ann["image_id"]].append(
            f"{index[ann['category_id']]} {(x + w / 2) / W:.6f} {(y + h / 2) / H:.6f} {w / W:.6f} {h / H:.6f}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for image in coco["images"]:
            path = staging / (os.path.splitext(image["file_name"])[0] + ".txt")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(line + "\n" for line in lines[image["id"]]), encoding="utf-8")
        (staging / "classes.txt").write_text("".join(n + "\n" for n in classes.ids), encoding="utf-8")
        os.chmod(staging, 0o777 & ~_umask())
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return crowd


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
