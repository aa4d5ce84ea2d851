"""The cheap checks `train`, `eval` and the other tasks run on a split before using it
(`check_split`).

`invoke validate` decodes every image; this reads only the annotation file and each image's
header and last bytes (microseconds per image), with the same rules for entries and boxes
(yft.data.validate), so bad data stops a run in one line, before the first step, instead of a
traceback inside YOLOX or a model silently trained on NaN boxes:

- the file: COCO structure, categories equal to the Exp's, at least one image;
- entries: well formed, unique ids and file names; annotations of known images and categories,
  boxes of four finite numbers, positive size, inside the image, area and iscrowd present;
- images: the file exists, is not empty, has a readable header whose size is the JSON's and is
  below the decoder's pixel limit, and a JPEG is not cut off (a truncated JPEG only makes libjpeg
  print "Premature end of JPEG file", naming no file).
"""

import os
from collections import Counter

from yft.data.coco_io import annotation_path, image_dir, read_json
from yft.io import MAX_PIXELS, ImageProblem, image_size
from yft.project import UserError, relative

_checked = {}  # (path, size, mtime) -> coco: train checks a split, then its loader does again


def jpeg_cut_off(path):
    """True when a JPEG lacks its end-of-image marker and Pillow cannot fully decode it (files
    with data after the marker, such as motion photos, decode and pass)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if os.pread(fd, 2, 0) != b"\xff\xd8" or os.pread(fd, 2, max(0, size - 2)) == b"\xff\xd9":
            return False
    finally:
        os.close(fd)
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, SyntaxError, ValueError):
        return True
    return False


def check_image_file(path, width, height):
    """None when the header looks right, else the reason."""
    if not path.is_file():
        return "image file not found"
    try:
        shown = image_size(path)
    except ImageProblem as err:
        return str(err)
    if shown[0] * shown[1] > MAX_PIXELS:
        return f"header says {shown[0]}x{shown[1]} pixels, above the decoders' limit of 2^30"
    if shown != (width, height):
        return f"JSON says {width}x{height}, the image is {shown[0]}x{shown[1]}"
    if jpeg_cut_off(path):
        return "truncated JPEG (does not decode to the end)"
    return None


def check_categories(exp, ann, coco):
    expected = list(exp.category_ids())
    cats = [c for c in coco["categories"] if isinstance(c, dict)]
    found = sorted((c.get("id") for c in cats), key=str)
    if found != sorted(expected, key=str):
        raise UserError(
            f"{ann}: categories have ids {found[:10]}{'...' if len(found) > 10 else ''} but the Exp's "
            f"{len(exp.class_names)} classes need ids {expected[:10]}{'...' if len(expected) > 10 else ''}"
        )
    names = [c.get("name") for c in sorted(cats, key=lambda c: expected.index(c["id"]))]
    if names != list(exp.class_names):
        wrong = [(a, b) for a, b in zip(names, exp.class_names) if a != b][:3]
        raise UserError(
            f"{ann}: category names differ from the Exp's class names, e.g. "
            + ", ".join(f"{a!r} vs {b!r}" for a, b in wrong)
        )


def check_split(exp, split):
    """The split's COCO dict when every cheap check passes; else one UserError that counts the
    problems by kind, names the first, and points to `invoke validate --fix`."""
    from yft.data.validate import Report, check_annotations, check_image_entries, new_fix

    ann, images = annotation_path(exp, split), image_dir(exp, split)
    if not ann.is_file():
        raise UserError(
            f"{ann}: annotation file not found (make one with `invoke sample-data` or convert your labels)"
        )
    if not images.is_dir():
        raise UserError(f"{images}: image folder not found")
    stat = ann.stat()
    key = (str(ann), stat.st_size, stat.st_mtime_ns)
    if key in _checked:
        return _checked[key]
    coco = read_json(ann)
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise UserError(
            f"{ann}: not a COCO detection file (needs 'images', 'annotations' and 'categories' lists)"
        )
    if not coco["images"]:
        raise UserError(f"{ann}: holds no images")
    check_categories(exp, ann, coco)

    report, fix = Report(), new_fix()
    by_id = check_image_entries(split, ann, coco, report, fix)
    cats = set(exp.category_ids())
    check_annotations(split, ann, coco, by_id, cats, report, fix)
    for _, image in by_id.values():
        path = images / image["file_name"]
        problem = check_image_file(path, image["width"], image["height"])
        if problem:
            report.add("error", split, "image file", path, problem)
    if report.errors:
        first = report.errors[0]
        kinds = Counter(i["check"] for i in report.errors)
        raise UserError(
            f"{relative(ann)}: {len(report.errors)} problem{'s' if len(report.errors) > 1 else ''} ("
            + ", ".join(f"{n} {k}" for k, n in kinds.most_common())
            + f"), first {relative(first['file'])}: "
            f"{first['message']}; `invoke validate` lists them, `invoke validate --fix` writes a cleaned copy"
        )
    _checked[key] = coco
    return coco
