"""Label Studio exports: "JSON" (a list of tasks, each with `data` and `annotations`) and
"JSON-MIN" (one flat record per annotation: the task's data, `annotator`, and one list of
region values per control tag), recognised by their shape.

Regions are in percent of the image size. Rectangles (x, y = the top-left corner before the
rotation, `rotation` clockwise about that corner, following --rotated), polygons and ellipses
become their bounding box, computed in pixels. Keypoints and brush masks have no box and are
counted as not converted.

Which annotation of a task: --annotation first (default), last, all (every annotator's boxes),
or an annotator's id or e-mail; the boxes of the others are counted, never dropped silently.
Cancelled (skipped) annotations are not used; a task with no usable annotation is left out,
counted, rather than turned into a negative. Predictions are used only with --predictions, for
tasks without annotations.

Image references are resolved to a file in --images: /data/local-files/?d=dir/x.jpg,
/data/upload/3/0a1b2c3d-x.jpg (upload prefix removed), s3://, gs://, http(s):// paths.
"""

import math

from yft.data.formats.common import (
    image_ref_name,
    read_json,
    rotated,
    rotated_bounds,
    size_of,
    suffixes,
    xywh,
)
from yft.io import is_image_name
from yft.project import UserError

GEOMETRY = {
    "rectanglelabels": "rectangle",
    "rectangle": "rectangle",
    "polygonlabels": "polygon",
    "polygon": "polygon",
    "ellipselabels": "ellipse",
    "ellipse": "ellipse",
}
NO_BOX = {
    "keypointlabels": "keypoint (no box)",
    "keypoint": "keypoint (no box)",
    "brushlabels": "brush mask (not converted)",
    "brush": "brush mask (not converted)",
    "magicwand": "brush mask (not converted)",
    "polylinelabels": "polyline (no box)",
}


def _image_ref(data, where):
    if not isinstance(data, dict):
        raise UserError(f"{where}: no 'data' object")
    ref = data.get("image")
    if not isinstance(ref, str):
        ref = next((v for v in data.values() if isinstance(v, str) and is_image_name(v.split("?")[0])), None)
    if not isinstance(ref, str):
        raise UserError(f"{where}: no image reference in the task data")
    return ref


def _locate(ref, ctx, where):
    """The image of a reference in --images (longest matching path first), or None."""
    path = image_ref_name(ref)
    for candidate in suffixes(path):  # exact relative paths first: the file-name fallback of
        if candidate in ctx.index.known:  # lookup() would call 'x/sub b/dup.jpg' ambiguous
            return candidate
    for candidate in suffixes(path):
        rel = ctx.index.lookup(candidate, where)
        if rel is not None:
            return rel
    base = ref.split("?")[0].rstrip("/").rsplit("/", 1)[-1]  # an upload kept under its stored name
    return ctx.index.lookup(base, where) if base and base != path.rsplit("/", 1)[-1] else None


def _find(ref, ctx, where, boxes):
    rel = _locate(ref, ctx, where)
    if rel is None:
        return ctx.find(
            image_ref_name(ref).rsplit("/", 1)[-1] or ref, f"{where} (image {ref!r})", boxes=boxes
        )
    return rel


def _geometry(v):
    return (
        "polygon" if "points" in v else "ellipse" if "radiusX" in v else "rectangle" if "width" in v else None
    )


def _min_results(values):
    """JSON-MIN region values -> full-format results. A <Rectangle> + <Labels> config exports
    each region twice, the geometry alone and again with `labels` (JSON-MIN drops the ids that
    pair them): the labelled copy is kept and the bare one with the same geometry dropped."""
    results, labelled = [], set()
    for v in values:
        kind = next((k for k in (*GEOMETRY, *NO_BOX) if k in v and k.endswith("labels")), None)
        if kind is None and isinstance(v.get("labels"), list) and _geometry(v):
            kind = f"{_geometry(v)}labels"
            v = {**v, kind: v["labels"]}
        kind = kind or _geometry(v)
        if kind:
            results.append(
                {
                    "type": kind,
                    "value": v,
                    "original_width": v.get("original_width"),
                    "original_height": v.get("original_height"),
                }
            )
            if kind.endswith("labels"):
                labelled.add(repr([v.get(k) for k in ("x", "y", "width", "height", "points")]))
    return [
        r
        for r in results
        if r["type"].endswith("labels")
        or repr([r["value"].get(k) for k in ("x", "y", "width", "height", "points")]) not in labelled
    ]


def _min_records(records, src):
    """JSON-MIN records -> tasks in the full format (one annotation per record)."""
    tasks = {}
    for n, record in enumerate(records):
        if not isinstance(record, dict):
            raise UserError(f"{src}: item {n} is not an object")
        key = record.get("id", f"#{n}")
        data, values = {}, []
        for name, value in record.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                values += value
            elif name not in ("annotator", "annotation_id", "created_at", "updated_at", "lead_time", "id"):
                data[name] = value
        results = _min_results(values)
        task = tasks.setdefault(key, {"id": key, "data": data, "annotations": []})
        task["annotations"].append({"result": results, "completed_by": record.get("annotator")})
    return list(tasks.values())


def _annotator(annotation):
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        return {str(who.get("id")), str(who.get("email"))}
    return {str(who)}


def _choose(task, ctx, where):
    """The annotations to convert; counts what is left out. None: the task is left out."""
    report, choice = ctx.report, str(ctx.option("annotation", "first"))
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
    usable = [a for a in annotations if not a.get("was_cancelled")]
    if not usable and ctx.option("predictions") and task.get("predictions"):
        usable = [p for p in task["predictions"] if isinstance(p, dict)][:1]
    if not usable:
        reason = (
            "task skipped or cancelled by the annotator: image left out"
            if annotations
            else "task without annotations: image left out"
        )
        report.skip(reason, where)
        return None
    if choice == "all" or len(usable) == 1 and choice in ("first", "last"):
        return usable
    if choice in ("first", "last"):
        chosen = usable[0] if choice == "first" else usable[-1]
    else:
        chosen = next((a for a in usable if choice in _annotator(a)), None)
    for other in usable:
        if other is not chosen:
            regions = sum(
                1
                for r in other.get("result") or []
                if isinstance(r, dict) and r.get("type") in {**GEOMETRY, **NO_BOX}
            )
            report.skip(f"box of another annotation of the task (--annotation {choice})", where, regions)
    if chosen is None:
        report.skip(f"task without an annotation by annotator {choice}: image left out", where)
        return None
    return [chosen]


def _region_box(result, labels, width, height, ctx, where):
    """(label, x, y, w, h) in pixels, or None (counted)."""
    kind = result.get("type")
    value = result.get("value") if isinstance(result.get("value"), dict) else {}
    names = value.get(kind) if kind.endswith("labels") else None
    names = names if isinstance(names, list) else labels.get(result.get("id"), [])
    if len(names) != 1:
        ctx.report.skip("region without a label" if not names else "region with several labels", where)
        return None
    sx, sy = width / 100, height / 100
    geometry = GEOMETRY[kind]
    try:
        if geometry == "polygon":
            points = [(float(p[0]) * sx, float(p[1]) * sy) for p in value.get("points") or []]
            if len(points) < 2:
                ctx.report.skip("polygon without points", where)
                return None
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        elif geometry == "rectangle":
            x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
            x, y, w, h = x * sx, y * sy, w * sx, h * sy
            angle = float(value.get("rotation") or 0)
            x1, y1, x2, y2 = x, y, x + w, y + h
            if angle % 360 and rotated(ctx, angle, where):
                x1, y1, x2, y2 = rotated_bounds(x, y, [(0, 0), (w, 0), (w, h), (0, h)], angle)
        else:
            cx, cy, rx, ry = (float(value[k]) for k in ("x", "y", "radiusX", "radiusY"))
            cx, cy, rx, ry = cx * sx, cy * sy, rx * sx, ry * sy
            angle = float(value.get("rotation") or 0)
            hw, hh = rx, ry
            if angle % 360 and rotated(ctx, angle, where):
                a = math.radians(angle)
                hw, hh = (
                    math.hypot(rx * math.cos(a), ry * math.sin(a)),
                    math.hypot(rx * math.sin(a), ry * math.cos(a)),
                )
            x1, y1, x2, y2 = cx - hw, cy - hh, cx + hw, cy + hh
    except (KeyError, TypeError, ValueError, IndexError):
        raise UserError(f"{where}: {kind} value without numeric coordinates") from None
    return (str(names[0]), *xywh(x1, y1, x2, y2))


def _whole(pair):
    """(int, int) of two sizes as Label Studio writes them (numbers, or numbers in strings), or None."""
    try:
        return tuple(int(float(v)) for v in pair)
    except (TypeError, ValueError, OverflowError):
        return None


def read(src, ctx):
    tasks = read_json(src)
    if not isinstance(tasks, list):
        raise UserError(f"{src}: expected a list of tasks (Label Studio's JSON or JSON-MIN export)")
    if tasks and isinstance(tasks[0], dict) and "data" not in tasks[0] and "annotations" not in tasks[0]:
        tasks = _min_records(tasks, src)
    entries = []
    for t, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise UserError(f"{src}: task {t} is not an object")
        where = f"{src}: task {task.get('id', t)}"
        ref = _image_ref(task.get("data"), where)
        chosen = _choose(task, ctx, where)
        if chosen is None:
            rel = _locate(ref, ctx, where)
            if rel is not None:
                ctx.exclude(rel)  # not labelled: not a negative either
            continue
        for a in chosen:
            if not isinstance(a.get("result") or [], list):  # else its keys read as no regions: a negative
                raise UserError(f"{where}: annotation {a.get('id', '?')}: 'result' is not a list of regions")
        results = [r for a in chosen for r in a.get("result") or [] if isinstance(r, dict)]
        labels = {
            r.get("id"): r["value"]["labels"]
            for r in results
            if r.get("type") == "labels"
            and isinstance(r.get("value"), dict)
            and isinstance(r["value"].get("labels"), list)
        }
        regions = [r for r in results if r.get("type") in GEOMETRY or r.get("type") in NO_BOX]
        rel = _find(ref, ctx, where, len(regions))
        if rel is None:
            continue
        # Label Studio stores percentages of the image: the file's own size turns them into
        # pixels. The export's original_width/height may be another size (the image replaced or
        # resized since it was labelled): the percentages still hold, and the change is counted.
        width, height = size_of(ctx.index.root / rel)
        declared = (
            next((r.get("original_width") for r in regions if r.get("original_width")), None),
            next((r.get("original_height") for r in regions if r.get("original_height")), None),
        )
        if all(declared) and _whole(declared) != (width, height):
            ctx.report.change(
                "original_width/height differ from the image file (percentages applied to the file's size)",
                f"{where} ({declared[0]}x{declared[1]} in the export, {width}x{height} in {rel})",
            )
        boxes = []
        for r, result in enumerate(regions):
            here = f"{where} region {result.get('id', r)}"
            if result["type"] in NO_BOX:
                ctx.report.skip(NO_BOX[result["type"]], here)
                continue
            box = _region_box(result, labels, width, height, ctx, here)
            if box is not None:
                boxes.append((*box, here, None))
        entries.append((rel, width, height, boxes, where))
    return entries
