"""Pascal VOC XML: one file per image, <object><name><bndbox><xmin>... per box.

Coordinates: CVAT, Roboflow, labelme2voc and globox write and read `xmin` as the left edge of
the box, so by default x = xmin, w = xmax - xmin (a Roboflow box at xmin=0 stays at x=0). The
VOC devkit instead numbers pixels from 1 with xmax the last pixel inside the box (inclusive):
`--voc-convention devkit` reads x = xmin - 1, w = xmax - xmin + 1. Fractional values (CVAT and
some LabelImg forks write floats) are kept.
"""

import os
from functools import partial

from yft.data.formats.common import flag, num, parse_xml, read_file, run_chunks, size_of, walk
from yft.project import UserError

CONVENTIONS = ("edge", "devkit")
_FLAGS = {"0": False, "1": True}
_ATTRIBUTES = {}  # (difficult, truncated, occluded or None) -> one shared dict per combination


def _attributes(key):
    attributes = _ATTRIBUTES.get(key)
    if attributes is None:
        attributes = {"difficult": key[0], "truncated": key[1]}
        if key[2] is not None:
            attributes["occluded"] = key[2]
        _ATTRIBUTES[key] = attributes
    return attributes


def _flag(text):
    return _FLAGS[text] if text in _FLAGS else flag(text)


def parse(devkit, path):
    """(filename, width or 0, height or 0, [(name, x, y, w, h, where, attributes)])."""
    root = parse_xml(path, read_file(path, binary=True))
    if root.tag != "annotation":
        raise UserError(f"{path}: not a Pascal VOC file (root element <{root.tag}>, expected <annotation>)")
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        raise UserError(f"{path}: no <filename>")
    size = root.find("size")
    width = height = 0
    if size is not None and size.findtext("width"):
        width = num(size.findtext("width"), path, "<size>/<width>")
        height = num(size.findtext("height"), path, "<size>/<height>")
    shift = 1 if devkit else 0
    boxes = []
    for n, obj in enumerate(root.iter("object"), 1):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if box is None:
            raise UserError(f"{path}: <object> {n} has no <bndbox>")
        where = f"{path}: <object> {n}"
        texts = [box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
        if all(t and len(t) < 8 and t.isdigit() and t.isascii() for t in texts):
            x1, y1, x2, y2 = (int(t) for t in texts)  # whole pixels, the usual case: exact
        else:
            x1, y1, x2, y2 = (num(t, where, f"<bndbox>/<{k}>")
                              for t, k in zip(texts, ("xmin", "ymin", "xmax", "ymax")))
        occluded = obj.findtext("occluded")
        key = (_flag(obj.findtext("difficult", "0")), _flag(obj.findtext("truncated", "0")),
               None if occluded is None else flag(occluded))
        boxes.append((name, x1 - shift, y1 - shift, x2 - x1 + shift, y2 - y1 + shift, where,
                      _attributes(key)))
    return filename, int(width), int(height), boxes


def read(src, ctx):
    """[(image rel, width, height, boxes, where)]: images without a size get it from the file."""
    convention = ctx.option("voc_convention", "edge")
    if convention not in CONVENTIONS:
        raise UserError(f"--voc-convention {convention}: expected edge or devkit")
    difficult = ctx.option("difficult", "keep")
    src_dir = os.fspath(src)
    if not os.path.isdir(src_dir):
        raise UserError(f"{src}: --from voc needs the folder of XML files")
    files = [f"{src_dir}/{rel}" for rel in walk(src, lambda n: n.lower().endswith(".xml"))]
    parsed = run_chunks(partial(parse, convention == "devkit"), files)
    entries = []
    for path, (filename, width, height, boxes) in zip(files, parsed):
        rel = ctx.find(filename, path, boxes=len(boxes))
        if rel is None:
            continue
        if difficult == "drop":
            kept = [b for b in boxes if not b[6]["difficult"]]
            for box in boxes:
                if box[6]["difficult"]:
                    ctx.report.skip("difficult object (--difficult drop)", box[5])
            boxes = kept
        entries.append((rel, width, height, boxes, path))
    missing = [e[0] for e in entries if not e[1] or not e[2]]
    sizes = dict(zip(missing, run_chunks(size_of, [str(ctx.index.root / rel) for rel in missing])))
    return [(rel, *(sizes[rel] if rel in sizes else (w, h)), boxes, path)
            for rel, w, h, boxes, path in entries]
