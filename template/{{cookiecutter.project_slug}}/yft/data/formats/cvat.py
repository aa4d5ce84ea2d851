"""CVAT XML 1.1, both kinds (https://docs.cvat.ai/docs/other/xml_format/):

  * "CVAT for images": <image name width height [subset]> holding <box>, <polygon>, <ellipse>,
    <mask> (each becomes its bounding box) and shapes without a box (points, polylines,
    cuboids, skeletons, tags), which are counted as not converted.
  * "CVAT for video": <track label> holding one <box frame outside ...> (or polygon) per frame.
    A shape with outside="1" marks frames where the object is gone: no box, a note. Frame N is
    the exported image frame_NNNNNN.* in --images (N as in the XML, or counted from the task's
    start_frame with its frame_filter step when only those names exist). The point tracks inside
    a skeleton track are parts of the skeleton, counted once with it.

Boxes with `rotation` (degrees, clockwise about the box centre) follow --rotated. A project
export with several subsets (the same file names may appear in each) needs --subset NAME, or
--subset all for one COCO file per subset; images are looked for in <images>/<subset>/ first.
"""

import math

from yft.data.formats.common import flag, num, parse_xml, rotated, rotated_bounds, xywh
from yft.project import UserError

NO_BOX = {
    "points": "points (no box)",
    "polyline": "polyline (no box)",
    "cuboid": "cuboid (no box)",
    "skeleton": "skeleton (no box)",
    "tag": "tag (an image label, no box)",
}


def load(src):
    root = parse_xml(src)
    if root.tag != "annotations":
        raise UserError(f"{src}: not a CVAT XML file (root <{root.tag}>, expected <annotations>)")
    return root


def subsets(root):
    """The subset names of a project export, in file order ([] for a task export)."""
    found = []
    for image in root.iter("image"):
        name = image.get("subset")
        if name is not None and name not in found:
            found.append(name)
    return found


def _points(text, where):
    try:
        pairs = [[float(v) for v in p.split(",")] for p in (text or "").split(";") if p.strip()]
        if any(len(p) != 2 or not all(math.isfinite(v) for v in p) for p in pairs):
            raise ValueError
    except ValueError:
        raise UserError(f"{where}: bad points {(text or '')[:40]!r}") from None
    return pairs


def shape_box(shape, where, ctx):
    """(x1, y1, x2, y2) of a CVAT shape, or None (counted) when it has none."""
    tag = shape.tag
    angle = num(shape.get("rotation") or 0, where, "rotation")
    if tag == "box":
        x1, y1, x2, y2 = (num(shape.get(a), where, a) for a in ("xtl", "ytl", "xbr", "ybr"))
        if angle % 360 and rotated(ctx, angle, where):
            cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            return rotated_bounds(cx, cy, [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)], angle)
        return x1, y1, x2, y2
    if tag == "polygon":
        pairs = _points(shape.get("points"), where)
        if len(pairs) < 2:
            ctx.report.skip("polygon without points", where)
            return None
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        return min(xs), min(ys), max(xs), max(ys)
    if tag == "ellipse":
        cx, cy, rx, ry = (num(shape.get(a), where, a) for a in ("cx", "cy", "rx", "ry"))
        if angle % 360 and rotated(ctx, angle, where):
            a = math.radians(angle)
            hw = math.hypot(rx * math.cos(a), ry * math.sin(a))
            hh = math.hypot(rx * math.sin(a), ry * math.cos(a))
            return cx - hw, cy - hh, cx + hw, cy + hh
        return cx - rx, cy - ry, cx + rx, cy + ry
    if tag == "mask":
        left, top, width, height = (num(shape.get(a), where, a) for a in ("left", "top", "width", "height"))
        return left, top, left + width, top + height
    if tag in NO_BOX:
        ctx.report.skip(NO_BOX[tag], where)
    return None


def _attributes(shape, **extra):
    attributes = {"occluded": flag(shape.get("occluded", "0")), **extra}
    for attr in shape.findall("attribute"):
        attributes[attr.get("name", "")] = attr.text or ""
    return attributes


def read(src, ctx, root=None, subset=None):
    """[(image rel, width or None, height or None, boxes, where)] of one CVAT XML file."""
    root = load(src) if root is None else root
    names = subsets(root)
    if len(names) > 1 and subset is None:
        raise UserError(
            f"{src}: a project export with subsets {', '.join(names)}: convert one with "
            "--subset NAME, or each to its own COCO file with --subset all"
        )
    if subset is not None and subset not in names:
        raise UserError(f"--subset {subset}: {src} has subsets {', '.join(names) or '(none)'}")
    prefer = (subset,) if subset else ()
    entries, others = [], []
    for n, image in enumerate(root.iter("image"), 1):
        where = f"{src}: <image> {n}"
        name = image.get("name")
        if not name:
            raise UserError(f"{where}: no name attribute")
        if subset is not None and image.get("subset") != subset:
            others.append((name, image.get("subset")))
            continue
        where = f"{src}: <image name={name!r}>"
        boxes = []
        for k, shape in enumerate(image, 1):
            here = f"{where} <{shape.tag}> {k}"
            box = shape_box(shape, here, ctx)
            if box is not None:
                boxes.append((shape.get("label", ""), *xywh(*box), here, _attributes(shape)))
        rel = ctx.find(name, where, boxes=len(boxes), prefer=prefer)
        if rel is not None:
            size = [image.get(k) for k in ("width", "height")]
            size = (
                [None, None]
                if None in size
                else [num(v, where, k) for v, k in zip(size, ("width", "height"))]
            )
            entries.append((rel, *size, boxes, where))
    excluded, kept = [], {e[0] for e in entries}
    for name, other in others:
        try:
            rel = ctx.index.lookup(name, src, prefer=(other,) if other else ())
        except UserError:  # ambiguous: then no single file to keep out
            continue
        if rel is not None and rel not in kept:
            excluded.append(rel)  # another subset's image: not a negative of this one
    return entries + _tracks(src, root, ctx), excluded


def _frame_numbering(root):
    """(start_frame, step) of a video task, from <meta><task>."""
    task = root.find("meta/task")
    start = task.findtext("start_frame", "0") if task is not None else "0"
    step = (task.findtext("frame_filter", "") if task is not None else "").partition("step=")[2]
    try:
        return int(start or 0), max(1, int(step or 1))
    except ValueError:
        return 0, 1


def _tracks(src, root, ctx):
    frames, out_of_view = {}, 0
    for t, track in enumerate(root.findall("track")):
        label = track.get("label", "")
        for shape in track:
            if shape.tag in ("attribute", "track"):  # a skeleton's point tracks: part of it
                continue
            frame = shape.get("frame")
            here = f"{src}: <track id={track.get('id', t)}> frame {frame}"
            if flag(shape.get("outside", "0")):
                # CVAT's way of saying "the object is out of view from this frame on": an absence,
                # not an annotation left behind, so a note rather than "not converted" (every
                # track that ends before the video does has one; --strict must not fail on it).
                out_of_view += 1
                continue
            box = shape_box(shape, here, ctx)
            if box is None:
                continue
            number = int(num(frame, here, "frame"))
            attributes = _attributes(shape, track_id=int(num(track.get("id", t), here, "id")))
            frames.setdefault(number, []).append((label, *xywh(*box), here, attributes))
    if out_of_view:
        ctx.report.notes.append(
            f"{src}: {out_of_view} track shape(s) with outside=1 (the object out of "
            "view in those frames): no box there, as CVAT means"
        )
    by_base = {}
    if frames:
        for rel in ctx.index.files:
            by_base.setdefault(rel.rsplit("/", 1)[-1].rsplit(".", 1)[0], []).append(rel)
    # one numbering for the whole file, never a mix: the XML's frame numbers if any image has
    # such a name, else the position in the task (start_frame, frame_filter step)
    start, step = _frame_numbering(root)
    absolute = (start, step) == (0, 1) or any(f"frame_{n:06d}" in by_base for n in frames)
    entries = []
    for number in sorted(frames):
        index = number if absolute else (number - start) // step
        name = f"frame_{index:06d}"
        where = f"{src}: frame {number}"
        found = by_base.get(name, []) if absolute or (number - start) % step == 0 else []
        if len(found) == 1:
            entries.append((found[0], None, None, frames[number], where))
        elif found:
            raise UserError(f"{where}: several images are frame {number}: {', '.join(found[:3])}")
        elif ctx.skip_missing_images:
            ctx.report.skip("image not found (--skip-missing-images)", where, len(frames[number]))
        else:
            raise UserError(
                f"{where}: no image {name}.* in {ctx.index.root} (CVAT for video names "
                "frames frame_NNNNNN; export with images, or --skip-missing-images)"
            )
    return entries
