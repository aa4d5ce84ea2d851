"""YOLO labels: one `.txt` per image, `class cx cy w h` per line, normalised to [0, 1] by the
displayed image size (EXIF orientation applied, as Ultralytics and OpenCV do). A line with more
than five values is an Ultralytics segment (`class x1 y1 x2 y2 ...`): its box is the polygon's.

--src may be a label folder or an export's root: Roboflow (data.yaml, train/valid/test with
images/ and labels/), Ultralytics (images/ and labels/ side by side), CVAT "YOLO 1.1" (obj.data,
obj.names, train.txt, obj_train_data/). A label file pairs with the image of the same relative
path, or of the same path with `images` replaced by `labels` (the Ultralytics rule), or, last,
of the same file name. Image lists (train.txt) and READMEs are never read as labels.

Class names come from --names, else the first of classes.txt, obj.names, *.names, data.yaml
(list or dict) found in --src or the two folders above it; without one, class indices follow the
Exp's class order. The summary shows the index-to-class table either way.
"""

import os
from functools import partial
from pathlib import Path

from yft.data.formats.common import Context, read_file, run_chunks, size_of, walk
from yft.project import UserError


def _names_from_text(path):
    lines = [line.strip() for line in read_file(path).splitlines()]
    while lines and not lines[-1]:
        lines.pop()  # trailing blank lines only: a blank line inside still holds an index
    return lines


def _names_from_yaml(path):
    import yaml

    try:
        data = yaml.safe_load(read_file(path))
    except yaml.YAMLError as err:
        raise UserError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            keys = sorted(names, key=int)
        except (TypeError, ValueError):
            raise UserError(f"{path}: 'names' keys must be class indices 0, 1, ...") from None
        if [int(k) for k in keys] != list(range(len(keys))):
            raise UserError(f"{path}: 'names' indices must be 0..{len(keys) - 1}, found {keys}")
        names = [names[k] for k in keys]
    if not isinstance(names, list):
        return None
    return [str(n) for n in names]


def _obj_data(root):
    """CVAT / Darknet obj.data: {'names': path, 'train': path, ...}, paths under the root."""
    path = root / "obj.data"
    if not path.is_file():
        return {}
    found = {}
    for line in read_file(path).splitlines():
        key, sep, value = line.partition("=")
        if sep and value.strip():
            value = value.strip().replace("\\", "/")
            # Darknet paths start at darknet's folder: "data/train.txt" is <root>/train.txt
            candidates = [value, value.split("/", 1)[-1]]
            found[key.strip()] = next((root / c for c in candidates if (root / c).exists()), None)
    return found


def class_names(src, names_file=None):
    """(names, file) of a YOLO dataset, or (None, None) when no names file is found."""
    if names_file:
        path = Path(names_file)
        if not path.is_file():
            raise UserError(f"--names {path}: file not found")
        names = _names_from_yaml(path) if path.suffix in (".yaml", ".yml") else _names_from_text(path)
        if not names:
            raise UserError(f"--names {path}: no class names in it")
        return names, path
    folders = [src, src.parent, src.parent.parent] if src.is_dir() else [src.parent]
    for folder in folders:
        data = _obj_data(folder)
        if data.get("names"):
            return _names_from_text(data["names"]), data["names"]
        for name in ("classes.txt", "obj.names"):
            if (folder / name).is_file():
                return _names_from_text(folder / name), folder / name
        others = sorted(folder.glob("*.names"))
        if others:
            return _names_from_text(others[0]), others[0]
        for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
            names = _names_from_yaml(path)
            if names is not None:
                return names, path
    return None, None


def _looks_like_labels(path):
    """True when a .txt file's first line is numbers (or it is empty): a label file, perhaps a
    malformed one, rather than an image list or a README."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            for line in f:
                if line.split():
                    [float(v) for v in line.split()]  # ValueError: words, paths
                    return True
    except (OSError, ValueError):
        return False
    return True


def _swap(stem, old, new):
    """Replace the last path component `old` by `new` ('a/images/x' -> 'a/labels/x')."""
    parts = stem.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == old:
            return "/".join(parts[:i] + [new] + parts[i + 1 :])
    return None


# Exporters write normalised values through float32 (1.0 becomes 1.0000001, 0.0 -0.0000001):
# that is rounding, not a pixel coordinate. A box it puts past the edge is then clipped and
# counted by the builder, like any other box crossing the edge.
UNIT_TOLERANCE = 1e-6


def _class_index(text, path, number):
    """A label line's class index: a whole number, also written as a float ("1.0", as scripts
    that save labels with numpy do; Ultralytics reads it the same way)."""
    try:
        return int(text)
    except ValueError:
        value = float(text)  # ValueError here: not a number at all (the caller says so)
    if not value.is_integer():
        raise UserError(f"{path}:{number}: class index {text!r} is not a whole number")
    return int(value)


def _unit(value):
    """True for a normalised coordinate in [0, 1] give or take float rounding (False for NaN)."""
    return -UNIT_TOLERANCE <= value <= 1.0 + UNIT_TOLERANCE


def parse(text, path, names, width, height):
    """[(class name, x, y, w, h, line number, None)] in pixels from a YOLO label file's text."""
    boxes = []
    count = len(names)
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        try:
            if len(fields) == 5:  # the usual line: class cx cy w h
                index, cx, cy = _class_index(fields[0], path, number), float(fields[1]), float(fields[2])
                w, h = float(fields[3]), float(fields[4])
                ok = all(_unit(v) for v in (cx, cy, w, h))
                x, y = cx - w / 2, cy - h / 2
            elif not fields:
                continue
            elif len(fields) >= 7 and len(fields) % 2:  # an Ultralytics segment: class x1 y1 x2 y2 ...
                index, values = _class_index(fields[0], path, number), [float(v) for v in fields[1:]]
                ok = all(_unit(v) for v in values)
                xs, ys = values[0::2], values[1::2]
                x, y, w, h = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
            else:
                raise UserError(
                    f"{path}:{number}: expected 5 fields (class cx cy w h) or a segment "
                    f"(class x1 y1 x2 y2 x3 y3 ...), found {len(fields)}"
                )
        except ValueError:
            raise UserError(f"{path}:{number}: not a number in {line.strip()!r}") from None
        if not ok:  # also for NaN
            raise UserError(
                f"{path}:{number}: coordinates must be normalised to [0, 1], found {line.strip()!r}"
            )
        if not 0 <= index < count:
            raise UserError(f"{path}:{number}: unknown class index {index} ({count} classes)")
        # rounded to 1/1000 px here, in the worker processes, rather than in the builder
        boxes.append(
            (
                names[index],
                round(x * width, 3),
                round(y * height, 3),
                round(w * width, 3),
                round(h * height, 3),
                number,
                None,
            )
        )
    return boxes


def _item(names, item):
    image, label = item
    width, height = size_of(image)
    return width, height, parse(read_file(label), label, names, width, height) if label else None


def _pairs(src, index):
    """{image rel: label path} and the .txt files that pair with no image."""
    labels = {rel[:-4]: rel for rel in walk(src, lambda n: n.lower().endswith(".txt"))}
    root = Path(os.path.abspath(index.root))
    try:
        inside = root.relative_to(os.path.abspath(src)).as_posix()  # images inside --src
    except ValueError:
        inside = None
    stems = {}
    for rel in index.files:
        stems.setdefault(os.path.splitext(rel)[0], []).append(rel)
    pairs, used = {}, set()
    for stem, rels in stems.items():
        label = labels.get(stem)  # the usual case: the same relative path
        if label is None:
            candidates = [_swap(stem, "images", "labels")]
            if inside is not None:
                full = stem if inside == "." else f"{inside}/{stem}"
                candidates += [full, _swap(full, "images", "labels")]
            label = next((labels[c] for c in candidates if c in labels), None)
        if label is None:
            continue
        if len(rels) > 1:
            raise UserError(
                f"{index.root / stem}.*: two images share this name "
                f"({', '.join(rels)}); one label file cannot tell them apart"
            )
        pairs[rels[0]] = label
        used.add(label)
    rest = [rel for rel in labels.values() if rel not in used]
    if rest:
        # last resort, the file name alone: a label folder apart from a flat image folder
        by_base = {}
        for rel in index.files:
            if rel not in pairs:
                by_base.setdefault(os.path.splitext(rel.rsplit("/", 1)[-1])[0], []).append(rel)
        unpaired = []
        for label in rest:
            found = by_base.get(os.path.splitext(label.rsplit("/", 1)[-1])[0], [])
            if len(found) == 1 and found[0] not in pairs:
                pairs[found[0]] = label
            else:
                unpaired.append(label)
        rest = unpaired
    return pairs, rest


def read(src, ctx: Context, class_names_fallback):
    """(entries [(image rel, width, height, boxes, where)], class table) for the builder."""
    src = Path(src)
    if not src.is_dir():
        raise UserError(f"{src}: --from yolo needs a folder (labels, or the export's root)")
    index = ctx.index
    names, names_file = class_names(src, ctx.option("names"))
    from_file = names is not None
    if not from_file:
        names = list(class_names_fallback)
    pairs, unpaired = _pairs(src, index)
    skip = {Path(p).resolve() for p in _obj_data(src).values() if p is not None}
    for rel in unpaired:
        path = src / rel
        if names_file is not None and path.resolve() == Path(names_file).resolve():
            continue
        if path.resolve() in skip or not _looks_like_labels(path):
            ctx.report.notes.append(f"{path}: not a label file (an image list or a README), not read")
            continue
        count = sum(1 for line in read_file(path).splitlines() if line.strip())
        if ctx.find(rel[:-4], f"{path}", boxes=count) is not None:
            raise UserError(f"{path}: label file whose image is ambiguous")
    if index.files and not pairs:
        # a wrong --src (the image folder, a parent) would otherwise make every image a negative
        raise UserError(
            f"{src}: no .txt label file pairs with an image in {index.root} (is --from yolo "
            "the export's format, and --src its label folder?)"
        )
    if ctx.option("require_labels"):
        for rel in index.files:
            if rel not in pairs:
                raise UserError(f"{index.root / rel}: image without a label file (--require-labels)")
    root, src_dir = os.fspath(index.root), os.fspath(src)  # strings: 20k Path objects cost ~1 s
    items = [(f"{root}/{rel}", f"{src_dir}/{pairs[rel]}" if rel in pairs else None) for rel in index.files]
    results = run_chunks(partial(_item, names), items)
    entries = [
        (rel, width, height, boxes or [], label or image)
        for rel, (image, label), (width, height, boxes) in zip(index.files, items, results)
    ]
    table = {
        "source": str(names_file)
        if from_file
        else "the Exp's class order (no names file found; --names FILE gives one)",
        "names": names,
    }
    return entries, table
