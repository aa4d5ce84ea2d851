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
# A VOC (or CVAT "Pascal VOC") export root holds, beside JPEGImages/, the segmentation masks as
# PNGs: label maps, not photos. With --images at the root they must not become negatives.
MASK_FOLDERS = {"SegmentationClass", "SegmentationObject"}


def is_mask(rel):
    return any(part in MASK_FOLDERS for part in rel.split("/")[:-1])


_ATTRIBUTES = {}  # the texts of <difficult>, <truncated>, <occluded> -> attribute pairs


def _attributes(difficult, truncated, occluded):
    """(("difficult", bool), ("truncated", bool)[, ("occluded", bool)]): a tuple of pairs, which
    the garbage collector need not track (100k dicts would make it walk them again and again)."""
    key = (difficult, truncated, occluded)
    attributes = _ATTRIBUTES.get(key)
    if attributes is None:
        attributes = (("difficult", flag(difficult or "0")), ("truncated", flag(truncated or "0")))
        if occluded is not None:
            attributes += (("occluded", flag(occluded)),)
        _ATTRIBUTES[key] = attributes
    return attributes


def parse(devkit, path):
    """(filename, width or 0, height or 0, [(name, x, y, w, h, object number, attributes)])."""
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
        texts = [box.findtext("xmin"), box.findtext("ymin"), box.findtext("xmax"), box.findtext("ymax")]
        try:
            x1, y1, x2, y2 = int(texts[0]), int(texts[1]), int(texts[2]), int(texts[3])  # whole pixels: exact
            w, h = x2 - x1 + shift, y2 - y1 + shift
        except (TypeError, ValueError):
            where = f"{path}: <object> {n}"
            x1, y1, x2, y2 = (
                round(num(t, where, f"<bndbox>/<{k}>"), 3)
                for t, k in zip(texts, ("xmin", "ymin", "xmax", "ymax"))
            )
            w, h = round(x2 - x1 + shift, 3), round(y2 - y1 + shift, 3)
        attributes = _attributes(
            obj.findtext("difficult"), obj.findtext("truncated"), obj.findtext("occluded")
        )
        boxes.append((name, x1 - shift, y1 - shift, w, h, n, attributes))
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
    masks = ctx.index.drop(is_mask) if ctx.index is not None else []
    if masks:
        ctx.report.notes.append(
            f"{len(masks)} segmentation masks in {', '.join(sorted(MASK_FOLDERS))} "
            f"left out (label maps, not images), e.g. {masks[0]}"
        )
    files = [f"{src_dir}/{rel}" for rel in walk(src, lambda n: n.lower().endswith(".xml"))]
    parsed = run_chunks(partial(parse, convention == "devkit"), files)
    entries = []
    for path, (filename, width, height, boxes) in zip(files, parsed):
        rel = ctx.find(filename, path, boxes=len(boxes))
        if rel is None:
            continue
        if difficult == "drop":
            kept = [b for b in boxes if not b[6][0][1]]
            for box in boxes:
                if box[6][0][1]:
                    ctx.report.skip("difficult object (--difficult drop)", f"{path}: <object> {box[5]}")
            boxes = kept
        entries.append((rel, width, height, boxes, path))
    missing = [e[0] for e in entries if not e[1] or not e[2]]
    sizes = dict(zip(missing, run_chunks(size_of, [str(ctx.index.root / rel) for rel in missing])))
    return [
        (rel, *(sizes[rel] if rel in sizes else (w, h)), boxes, path) for rel, w, h, boxes, path in entries
    ]
