"""LabelMe JSON: one file per image with `imagePath`, `imageWidth`, `imageHeight`, `shapes`.

`imagePath` is relative to the JSON file, as LabelMe writes and reads it (`../images/x.jpg`);
failing that the image is looked for by name in --images. When the image file is absent and
the JSON embeds it (`imageData`, base64), the image is written into --images (a new file, never
over another) and counted. Rectangles, polygons, circles and masks become their bounding box;
shapes of one object (same label and `group_id`) become one box, as labelme2coco does; points,
lines and line strips have no box and are counted as not converted.
"""

import base64
import binascii
import os
from pathlib import Path

from yft.data.formats.common import field, read_json, walk, xywh
from yft.io import ImageProblem, image_size
from yft.project import UserError

NO_BOX = ("point", "line", "linestrip", "points")


def _box(shape, kind, where, report):
    points = field(shape, "points", list, where)
    try:
        xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    except (TypeError, ValueError, IndexError):
        raise UserError(f"{where}: points must be [x, y] pairs") from None
    if kind in NO_BOX:
        report.skip(f"{kind} (no box)", where)
        return None
    if kind == "circle" and len(xs) == 2:
        r = ((xs[1] - xs[0]) ** 2 + (ys[1] - ys[0]) ** 2) ** 0.5
        return xs[0] - r, ys[0] - r, xs[0] + r, ys[0] + r
    if kind in ("rectangle", "polygon", "mask") and len(xs) >= 2:
        return min(xs), min(ys), max(xs), max(ys)
    report.skip(
        f"{kind} without enough points"
        if kind in ("rectangle", "polygon", "circle", "mask")
        else f"unknown shape type {kind!r}",
        where,
    )
    return None


def _embedded(data, target, where, ctx):
    """Write the JSON's imageData to `target` (a new file in --images); its relative name."""
    from yft.io import write_atomic

    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise UserError(f"{where}: imageData is not base64") from None
    if target.exists():
        raise UserError(f"{target}: exists but is not an image of {ctx.index.root}; move it away")
    write_atomic(target, blob)
    try:
        image_size(target)
    except ImageProblem as err:
        target.unlink()
        raise UserError(f"{where}: imageData is not an image ({err})") from None
    rel = target.relative_to(ctx.index.root).as_posix()
    ctx.index.files.append(rel)
    ctx.index.known.add(rel)
    ctx.report.notes.append(f"{target}: written from the imageData of {where}")
    return rel


def _image(data, path, ctx, boxes):
    image_path = field(data, "imagePath", str, path).replace("\\", "/")
    resolved = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), image_path))
    rel = ctx.index.relative(resolved)
    if rel is not None:
        return rel
    rel = ctx.index.lookup(image_path, path)
    if rel is not None:
        return rel
    if os.path.isfile(resolved):
        raise UserError(
            f"{path}: its image {resolved} is outside --images {ctx.index.root}; "
            "give the folder that holds the images as --images"
        )
    if isinstance(data.get("imageData"), str) and data["imageData"]:
        root = os.path.abspath(ctx.index.root)
        inside = resolved.startswith(root + os.sep)
        target = Path(resolved) if inside else Path(root) / image_path.rsplit("/", 1)[-1]
        return _embedded(data["imageData"], target, path, ctx)
    return ctx.find(image_path, path, boxes=boxes)


def read(src, ctx):
    src = Path(src)
    files = (
        [src] if src.is_file() else [src / rel for rel in walk(src, lambda n: n.lower().endswith(".json"))]
    )
    entries = []
    for path in files:
        data = read_json(path)
        shapes = field(data, "shapes", list, path)
        boxes, groups = [], {}
        for k, shape in enumerate(shapes):
            where = f"{path}: shapes[{k}]"
            if not isinstance(shape, dict):
                raise UserError(f"{where}: not an object")
            label = field(shape, "label", str, where)
            box = _box(shape, shape.get("shape_type") or "polygon", where, ctx.report)
            if box is None:
                continue
            group = shape.get("group_id")
            if group is not None:
                key = (label, group)
                if key in groups:
                    b = groups[key]
                    groups[key] = [
                        label,
                        min(b[1], box[0]),
                        min(b[2], box[1]),
                        max(b[3], box[2]),
                        max(b[4], box[3]),
                        b[5],
                    ]
                    ctx.report.change("shape merged into its object's box (same label and group_id)", where)
                    continue
                groups[key] = [label, *box, where]
                boxes.append(key)
            else:
                boxes.append([label, *box, where])
        boxes = [groups[b] if isinstance(b, tuple) else b for b in boxes]
        rel = _image(data, path, ctx, len(boxes))
        if rel is None:
            continue
        width = field(data, "imageWidth", (int, float), path)
        height = field(data, "imageHeight", (int, float), path)
        entries.append(
            (
                rel,
                width,
                height,
                [(label, *xywh(x1, y1, x2, y2), where, None) for label, x1, y1, x2, y2, where in boxes],
                path,
            )
        )
    return entries
