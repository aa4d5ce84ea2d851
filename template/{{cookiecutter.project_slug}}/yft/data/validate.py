"""Check a COCO dataset before training on it: every image decodes, every box is sane, no image
leaks from one split into another.

Errors (non-zero exit): files missing or not decoding, sizes in the JSON that differ from the
image (including sizes taken before the EXIF rotation), boxes that are NaN, zero or negative in
size or outside the image, duplicate ids or file names, annotations pointing at unknown images or
categories, categories that differ from the Exp, byte-identical images in two splits.
Warnings: images that are not 8-bit RGB/grayscale (CMYK, RGBA, 16-bit, palette), near-identical
images across splits (perceptual hash), duplicates inside one split. Images without boxes are
counted as negatives (allowed).

`--fix` writes `<name>.fixed.json` next to each annotation file (never the original): boxes
clipped to the image, broken boxes and missing or undecodable images dropped, ids renumbered,
`area`/`iscrowd` filled in, and 8-bit RGB copies of odd images under `<image folder>/converted/`.
"""

import math
import os
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from yft.data.coco_io import annotation_path, image_dir, read_json
from yft.data.imageio import convert_to_rgb, decode_check
from yft.io import write_json
from yft.project import ROOT, UserError

NEAR_DUPLICATE_BITS = 3  # dHash bits that may differ for two images to count as near-identical
EDGE_TOLERANCE = 0.5  # px a box may poke past the image edge before it is an error


def decode_all(paths, workers=None):
    """decode_check for every path, on all cores for more than a few images."""
    workers = workers or os.cpu_count() or 1
    if len(paths) < 64 or workers < 2:
        return [decode_check(p) for p in paths]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(decode_check, paths, chunksize=max(1, len(paths) // (workers * 8))))


class Report:
    def __init__(self):
        self.issues = []
        self.splits = {}

    def add(self, level, split, check, where, message):
        self.issues.append(
            {"level": level, "split": split, "check": check, "file": str(where), "message": message}
        )

    @property
    def errors(self):
        return [i for i in self.issues if i["level"] == "error"]

    def as_dict(self):
        return {
            "ok": not self.errors,
            "splits": self.splits,
            "errors": len(self.errors),
            "warnings": len(self.issues) - len(self.errors),
            "issues": self.issues,
        }

    def text(self, limit=5):
        lines = []
        for split, s in self.splits.items():
            lines.append(
                f"{split}: {s['images']} images, {s['boxes']} boxes, {s['negatives']} negatives (allowed)"
            )
        by_check = defaultdict(list)
        for issue in self.issues:
            by_check[(issue["level"], issue["check"])].append(issue)
        for (level, check), items in sorted(by_check.items()):
            lines.append(f"{level}: {check}: {len(items)}")
            for issue in items[:limit]:
                lines.append(f"  {issue['file']}: {issue['message']}")
            if len(items) > limit:
                lines.append(f"  ... {len(items) - limit} more in the JSON report")
        lines.append(f"{len(self.errors)} errors, {len(self.issues) - len(self.errors)} warnings")
        return "\n".join(lines)


def _finite(values):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _id(value):
    """An id usable as a key (int or str), else None: lists or floats as ids are malformed."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def new_fix():
    """What --fix changes, filled in by the checks."""
    return {"drop_images": set(), "drop_anns": set(), "clip": {}, "convert": {}, "fill": 0}


def check_image_entries(split, ann_path, coco, report, fix):
    """The `images` entries: well formed, ids and file names unique. Returns {id: (index, entry)}."""
    images_by_id, names = {}, {}
    for n, image in enumerate(coco["images"]):
        here = f"{ann_path} images[{n}]"
        if (
            not isinstance(image, dict)
            or not isinstance(image.get("file_name"), str)
            or not _finite([image.get("width"), image.get("height")])
            or _id(image.get("id")) is None
        ):
            report.add("error", split, "malformed image entry", here, "needs id, file_name, width, height")
            fix["drop_images"].add(n)
            continue
        if image["id"] in images_by_id:
            report.add("error", split, "duplicate image id", here, f"id {image['id']} used twice")
            fix["drop_images"].add(n)
            continue
        if image["file_name"] in names:
            report.add("error", split, "duplicate file name", here, f"{image['file_name']} listed twice")
            fix["drop_images"].add(n)
            continue
        images_by_id[image["id"]] = (n, image)
        names[image["file_name"]] = n
    return images_by_id


def check_annotations(split, ann_path, coco, images_by_id, cats, report, fix):
    """Every annotation: its image and category known, the box four finite numbers of positive
    size inside the image (JSON sizes), area and iscrowd present. Returns boxes per image id."""
    boxes, seen_ann = Counter(), set()
    for k, ann in enumerate(coco["annotations"]):
        here = f"{ann_path} annotations[{k}]"
        if not isinstance(ann, dict):
            report.add("error", split, "malformed annotation", here, "not an object")
            fix["drop_anns"].add(k)
            continue
        if _id(ann.get("id")) is None:
            report.add("error", split, "malformed annotation", here, f"id {ann.get('id')!r} is not a number")
            fix["drop_anns"].add(k)
            continue
        if ann.get("id") in seen_ann:
            report.add("error", split, "duplicate annotation id", here, f"id {ann.get('id')} used twice")
        seen_ann.add(ann.get("id"))
        entry = images_by_id.get(_id(ann.get("image_id")))
        if entry is None:
            report.add(
                "error",
                split,
                "annotation of an unknown image",
                here,
                f"image_id {ann.get('image_id')!r} is not in images",
            )
            fix["drop_anns"].add(k)
            continue
        if _id(ann.get("category_id")) not in cats:
            report.add("error", split, "unknown category", here, f"category_id {ann.get('category_id')!r}")
            fix["drop_anns"].add(k)
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not _finite(bbox):
            report.add("error", split, "box is not four finite numbers", here, f"bbox {bbox!r}")
            fix["drop_anns"].add(k)
            continue
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            report.add("error", split, "zero or negative box size", here, f"bbox {bbox}")
            fix["drop_anns"].add(k)
            continue
        image = entry[1]
        W, H = image["width"], image["height"]
        if (
            x < -EDGE_TOLERANCE
            or y < -EDGE_TOLERANCE
            or x + w > W + EDGE_TOLERANCE
            or y + h > H + EDGE_TOLERANCE
        ):
            report.add(
                "error",
                split,
                "box outside the image",
                here,
                f"bbox {bbox} in a {W}x{H} image (--fix clips it)",
            )
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(W), x + w), min(float(H), y + h)
            if x2 - x1 < 1 or y2 - y1 < 1:
                fix["drop_anns"].add(k)
                continue
            fix["clip"][k] = [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]
        if "area" not in ann or "iscrowd" not in ann:
            report.add("error", split, "area or iscrowd missing", here, "YOLOX's loader needs both")
            fix["fill"] += 1
        boxes[ann["image_id"]] += 1
    return boxes


def check_split_file(split, ann_path, images, report, category_ids=None):
    """Check one annotation file and its images; returns (coco, per-image decode results, fixes)."""
    coco = read_json(ann_path)
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise UserError(
            f"{ann_path}: not a COCO detection file (needs images, annotations and categories lists)"
        )
    where = ann_path
    cats = {_id(c.get("id")) for c in coco["categories"] if isinstance(c, dict)} - {None}
    if category_ids is not None and sorted(cats, key=str) != sorted(category_ids, key=str):
        report.add(
            "error",
            split,
            "categories differ from the Exp",
            where,
            f"category ids {sorted(cats, key=str)[:8]} but the Exp needs {list(category_ids)[:8]}",
        )
    fix = new_fix()
    if not coco["images"]:
        report.add("error", split, "empty split", where, "holds no images (train and eval refuse it)")
    images_by_id = check_image_entries(split, ann_path, coco, report, fix)

    # files: decode everything (in parallel)
    order = [n for n, _ in images_by_id.values()]
    paths = [str(Path(images) / coco["images"][n]["file_name"]) for n in order]
    decoded = dict(zip(order, decode_all(paths)))
    for n, info in decoded.items():
        image = coco["images"][n]
        path = Path(images) / image["file_name"]
        if "error" in info:
            missing = not path.exists()
            report.add(
                "error",
                split,
                "missing image" if missing else "image does not decode",
                path,
                "file not found" if missing else info["error"],
            )
            fix["drop_images"].add(n)
            continue
        shown, raw = tuple(info["size"]), tuple(info["raw_size"])
        if (image["width"], image["height"]) != shown:
            if (image["width"], image["height"]) == raw:
                report.add(
                    "error",
                    split,
                    "size before EXIF rotation",
                    path,
                    f"JSON says {raw[0]}x{raw[1]} but the EXIF orientation tag ({info['orientation']}) "
                    f"shows it as {shown[0]}x{shown[1]}: boxes were drawn on the unrotated image? "
                    "--fix cannot repair it",
                )
            else:
                report.add(
                    "error",
                    split,
                    "size differs from the image",
                    path,
                    f"JSON says {image['width']}x{image['height']}, the image is {shown[0]}x{shown[1]}; "
                    "--fix cannot repair it (its boxes belong to the other size): export the labels again",
                )
        if info["mode"] not in ("RGB", "L"):
            report.add(
                "warning",
                split,
                "not 8-bit RGB/grayscale",
                path,
                f"mode {info['mode']}; --fix writes an 8-bit RGB copy",
            )
            fix["convert"][n] = path

    boxes = check_annotations(split, ann_path, coco, images_by_id, cats, report, fix)
    report.splits[split] = {
        "file": str(ann_path),
        "images": len(images_by_id),
        "boxes": sum(boxes.values()),
        "negatives": sum(1 for i in images_by_id if not boxes[i]),
    }
    return coco, decoded, fix


def check_duplicates(decoded_by_split, report, names_by_split):
    """Byte-identical and near-identical images, inside a split and across splits."""
    import numpy as np

    seen = {}
    for split, decoded in decoded_by_split.items():
        for n, info in decoded.items():
            if "sha1" not in info:
                continue
            key = info["sha1"]
            path = names_by_split[split][n]
            if key in seen:
                other_split, other = seen[key]
                if other_split != split:
                    report.add(
                        "error",
                        split,
                        "identical image in two splits (leakage)",
                        path,
                        f"same bytes as {other} ({other_split})",
                    )
                else:
                    report.add(
                        "warning", split, "identical images in one split", path, f"same bytes as {other}"
                    )
            else:
                seen[key] = (split, path)
    splits = list(decoded_by_split)
    for a in range(len(splits)):
        for b in range(a + 1, len(splits)):
            sa, sb = splits[a], splits[b]
            ka = [n for n, i in decoded_by_split[sa].items() if "dhash" in i]
            kb = [n for n, i in decoded_by_split[sb].items() if "dhash" in i]
            if not ka or not kb:
                continue
            ha = np.array([decoded_by_split[sa][n]["dhash"] for n in ka], dtype=np.uint64)
            hb = np.array([decoded_by_split[sb][n]["dhash"] for n in kb], dtype=np.uint64)
            for start in range(0, len(ha), 256):
                x = ha[start : start + 256, None] ^ hb[None, :]
                bits = np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1)
                for i, j in zip(*np.nonzero(bits <= NEAR_DUPLICATE_BITS)):
                    ia, jb = ka[start + i], kb[j]
                    if decoded_by_split[sa][ia]["sha1"] == decoded_by_split[sb][jb]["sha1"]:
                        continue  # already an error above
                    report.add(
                        "warning",
                        sb,
                        "near-identical image in two splits (possible leakage)",
                        names_by_split[sb][jb],
                        f"looks like {names_by_split[sa][ia]} ({sa}); "
                        f"{int(bits[i, j])} of 64 hash bits differ",
                    )


def write_fixed(coco, fix, ann_path, images):
    """The cleaned copy of one annotation file; returns its path and what changed."""
    keep_images = []
    for n, image in enumerate(coco["images"]):
        if n in fix["drop_images"]:
            continue
        image = dict(image)
        if n in fix["convert"]:
            rel = "converted/" + os.path.splitext(image["file_name"])[0] + ".png"
            convert_to_rgb(fix["convert"][n], Path(images) / rel)
            image["file_name"] = rel
        keep_images.append(image)
    kept_ids = {i["id"] for i in keep_images}
    anns = []
    for k, ann in enumerate(coco["annotations"]):
        if k in fix["drop_anns"] or ann.get("image_id") not in kept_ids:
            continue
        ann = dict(ann, id=len(anns) + 1)
        if k in fix["clip"]:
            ann["bbox"] = fix["clip"][k]
            ann["area"] = round(ann["bbox"][2] * ann["bbox"][3], 3)
        ann.setdefault("area", round(ann["bbox"][2] * ann["bbox"][3], 3))
        ann.setdefault("iscrowd", 0)
        anns.append(ann)
    out = Path(ann_path).with_name(Path(ann_path).stem + ".fixed.json")
    write_json(out, dict(coco, images=keep_images, annotations=anns))
    changes = {
        "images_dropped": len(coco["images"]) - len(keep_images),
        "boxes_dropped": len(coco["annotations"]) - len(anns),
        "boxes_clipped": len(fix["clip"]),
        "images_converted": len(fix["convert"]),
    }
    return out, changes


def validate(exp=None, ann=None, images=None, fix=False, report_path=None):
    """Validate the Exp's splits (or one --ann/--images pair); returns (report, fixed files)."""
    if ann:
        if not images:
            raise UserError("--ann needs --images DIR (the folder its file names are relative to)")
        targets = [(Path(ann).stem, Path(ann), Path(images))]
    else:
        targets = [
            (s, annotation_path(exp, s), image_dir(exp, s))
            for s in ("train", "val", "test")
            if annotation_path(exp, s).is_file()
        ]
        if not targets:
            raise UserError(
                f"{annotation_path(exp, 'train')}: no annotation files to validate "
                "(convert your labels or run `invoke sample-data`)"
            )
    category_ids = list(exp.category_ids()) if exp is not None else None
    report, decoded, names, results = Report(), {}, {}, []
    for split, ann_path, folder in targets:
        if not Path(folder).is_dir():
            raise UserError(f"{folder}: image folder not found")
        coco, dec, fixes = check_split_file(split, ann_path, folder, report, category_ids)
        decoded[split] = dec
        names[split] = {n: Path(folder) / coco["images"][n]["file_name"] for n in dec}
        results.append((coco, fixes, ann_path, folder))
    check_duplicates(decoded, report, names)
    fixed = []
    if fix:
        troubled = {i["split"] for i in report.issues}
        for (split, _, _), (coco, fixes, ann_path, folder) in zip(targets, results):
            if split in troubled:  # clean splits get no .fixed copy
                fixed.append(write_fixed(coco, fixes, ann_path, folder))
    if report_path is None and exp is not None:
        report_path = ROOT / exp.output_dir / "data" / "validation.json"
    if report_path:
        data = report.as_dict()
        data["fixed"] = [{"file": str(p), **c} for p, c in fixed]
        write_json(report_path, data, indent=1)
    return report, fixed, report_path
