"""The one COCO builder every format reader feeds, and the record of what was not converted.

Readers (yft/data/formats/) give images and boxes in pixels with source class names; this turns
them into the project's COCO: categories in the Exp's order with the Exp's ids, image and
annotation ids 1, 2, ... over the whole output (never reused: YOLOX issue #504), `area` and
`iscrowd` on every box, images in file-name order. Every box passes the same checks whatever
its format: a box that is not finite, has no size or lies outside its image is not converted;
a box that crosses the image edge is clipped. Both are counted by reason in the `Report`, which
the summary prints, the JSON report keeps and `--strict` turns into a failure.
"""

import math
from collections import Counter

from yft.project import UserError


def shown(name):
    """A class name for messages: a blank one is shown as such, never as an empty string."""
    return repr(name) if name.strip() else "(blank label)"


class ClassMap:
    """Source class names to the Exp's category ids, with --map renames and --drop-unknown."""

    def __init__(self, class_names, category_ids, mapping=(), drop_unknown=False):
        self.class_names = list(class_names)
        self.ids = dict(zip(self.class_names, category_ids))
        self.drop_unknown = drop_unknown
        self.mapping = {}
        for item in mapping:
            old, sep, new = item.partition("=")
            # an empty `old` is allowed: it names the blank label some tools export ('=cat')
            old, new = old.strip(), new.strip()
            if not sep or not new:
                raise UserError(f"--map {item!r}: expected old=new (old may be empty for a blank label)")
            if new not in self.ids:
                raise UserError(
                    f"--map {item}: {new!r} is not one of the Exp's classes "
                    f"({', '.join(self.class_names[-20:])})"
                )
            self.mapping[old] = new

    def resolve(self, name, where):
        """Category id for a source class name; None when it is dropped (--drop-unknown)."""
        name = self.mapping.get(name.strip(), name.strip())
        cid = self.ids.get(name)
        if cid is None and not self.drop_unknown:
            if not name:
                raise UserError(
                    f"{where}: a box with a blank label; give it a class with "
                    "--map '=<class>' or skip such boxes with --drop-unknown"
                )
            raise UserError(
                f"{where}: unknown class {name!r} (not in the Exp's classes; rename it "
                f"with --map '{name}=<class>' or skip it with --drop-unknown)"
            )
        return cid

    def target(self, name):
        """The Exp class a source name becomes (None: unknown)."""
        name = self.mapping.get(name.strip(), name.strip())
        return name if name in self.ids else None

    def categories(self):
        coco_first = len(self.class_names) > 80 and 91 in self.ids.values()
        return [
            {"id": cid, "name": name, "supercategory": "coco" if coco_first and i < 80 else "object"}
            for i, (name, cid) in enumerate(self.ids.items())
        ]


class Report:
    """Annotations not converted (by reason, with a few examples of where) and boxes changed."""

    EXAMPLES = 5

    def __init__(self):
        self.not_converted = Counter()
        self.changed = Counter()
        self.examples = {}
        self.notes = []

    def skip(self, reason, where, count=1):
        if count:
            self.not_converted[reason] += count
            examples = self.examples.setdefault(reason, [])
            if len(examples) < self.EXAMPLES:
                examples.append(str(where))

    def change(self, reason, where, count=1):
        if count:
            self.changed[reason] += count
            examples = self.examples.setdefault(reason, [])
            if len(examples) < self.EXAMPLES:
                examples.append(str(where))

    def as_dict(self):
        return {
            "not_converted": dict(self.not_converted),
            "changed": dict(self.changed),
            "examples": self.examples,
            "notes": self.notes,
        }


def check_box(x, y, w, h, width, height):
    """(x, y, w, h) rounded to 1/1000 px and clipped to the image, or (None, reason) when the box
    cannot be converted. The second value is True when the box was clipped."""
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(w) and math.isfinite(h)):
        return None, "coordinate is not a finite number (NaN or infinity)"
    x1, y1, x2, y2 = round(x, 3), round(y, 3), round(x + w, 3), round(y + h, 3)
    if w < 0 or h < 0:
        return None, "negative width or height"
    if x2 <= x1 or y2 <= y1:
        return None, "zero width or height"
    if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
        return None, "outside the image"
    clipped = x1 < 0 or y1 < 0 or x2 > width or y2 > height
    if clipped:
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    return (x1, y1, round(x2 - x1, 3), round(y2 - y1, 3)), clipped


def _crowd_flag(value, where):
    """0 or 1 from an iscrowd attribute: a number, or a checkbox's true/false as CVAT writes it."""
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return 1
    if text in ("0", "false", "no", ""):
        return 0
    raise UserError(f"{where}: attribute iscrowd is {value!r}: use 0/1 or true/false")


def _where(source, where):
    """A box's place for messages: its own, or a number in the image's label file (YOLO: the
    line; VOC: the <object>), which saves a string per box on 100k-box datasets."""
    return f"{source}:{where}" if where.__class__ is int else where


class Builder:
    """Collects images and boxes, checks them, and numbers everything when asked for the COCO."""

    def __init__(self, classes, report=None):
        self.classes = classes
        self.report = report or Report()
        self.entries = {}  # file_name -> (width, height, boxes, where)
        self.excluded = set()  # images the source says are not part of it (not negatives)
        self._resolved = {}

    def __contains__(self, file_name):
        return file_name in self.entries

    def add(self, file_name, width, height, boxes, where):
        """One image with its boxes [(label, x, y, w, h, where, attributes)] in pixels; width and
        height None when the image file gives them. A box's `where` may be a number in the
        image's label file (see _where); attributes are None, a dict or (name, value) pairs."""
        if file_name in self.entries:
            raise UserError(
                f"{where}: image {file_name!r} appears twice (also in {self.entries[file_name][3]})"
            )
        if width is not None or height is not None:  # None: read from the image file later
            try:
                width, height = int(width), int(height)
            except (TypeError, ValueError, OverflowError):
                raise UserError(f"{where}: image size {width!r} x {height!r} is not a number") from None
            if width <= 0 or height <= 0:
                raise UserError(f"{where}: image size {width} x {height} is not positive")
        self.entries[file_name] = (width, height, boxes, where)

    def _check_size(self, name, real):
        """An image whose labels give another size than its file: without boxes it takes the
        file's size (noted); with boxes, the image and its boxes are left out and counted (their
        pixels belong to another image size, e.g. the image resized or rotated after labelling)."""
        width, height, boxes, where = self.entries[name]
        if (width, height) == real:
            return
        here = f"{where} ({width}x{height} in the labels, {real[0]}x{real[1]} in {name})"
        if not boxes:
            self.report.change("image size in the labels differs from the file (the file's size used)", here)
            self.entries[name] = (*real, boxes, where)
            return
        self.report.skip(
            "image size in the labels differs from the file (image and its boxes left out)", here, len(boxes)
        )
        del self.entries[name]
        self.excluded.add(name)

    def exclude(self, file_name):
        self.excluded.add(file_name)

    def _category(self, label, where):
        cid = self._resolved.get(label, False)
        if cid is False:
            cid = self.classes.resolve(label, where)
            self._resolved[label] = cid
        return cid

    def add_negatives(self, index, require_labels, missing="image without labels"):
        """Images of the index that no label mentions become negatives (an error with
        require_labels); images the source excluded stay out."""
        for rel in index.files:
            if rel not in self.entries and rel not in self.excluded:
                if require_labels:
                    raise UserError(f"{index.root / rel}: {missing} (--require-labels)")
                self.entries[rel] = (None, None, (), index.root / rel)

    def coco(self, description, sizes=None, check_sizes=()):
        """The COCO dict. `sizes(file_names)` gives the sizes of the images files: those added
        without one, and those in `check_sizes` (the files at hand), whose size in the labels must
        be the file's: boxes in the pixels of another size would land in the wrong place."""
        unsized = [name for name, entry in self.entries.items() if entry[0] is None]
        checked = [
            name for name, entry in self.entries.items() if entry[0] is not None and name in check_sizes
        ]
        if unsized or checked:
            measured = dict(zip(unsized + checked, sizes(unsized + checked)))
            for name in unsized:
                entry = self.entries[name]
                self.entries[name] = (*measured[name], entry[2], entry[3])
            for name in checked:
                self._check_size(name, tuple(measured[name]))
        images, annotations = [], []
        report, category, resolved = self.report, self._category, self._resolved
        for image_id, name in enumerate(sorted(self.entries), 1):
            width, height, boxes, source = self.entries[name]
            images.append({"id": image_id, "file_name": name, "width": width, "height": height})
            for label, x, y, w, h, where, attributes in boxes:
                cid = resolved.get(label, False)
                if cid is False:
                    cid = category(label, _where(source, where))
                if cid is None:
                    report.skip(f"unknown class {shown(label)} (--drop-unknown)", _where(source, where))
                    continue
                # The usual case (a box inside its image) skips the checks. Readers that compute
                # coordinates round them to 1/1000 px; values copied from a file stay as written.
                if not (0 <= x and 0 <= y and 0 < w and 0 < h and x + w <= width and y + h <= height):
                    box, clipped = check_box(x, y, w, h, width, height)
                    if box is None:
                        report.skip(f"box {clipped}", _where(source, where))
                        continue
                    if clipped:
                        report.change("box clipped to the image edge", _where(source, where))
                    x, y, w, h = box
                ann = {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cid,
                    "bbox": [x, y, w, h],
                    "area": round(w * h, 3),
                    "iscrowd": 0,
                }
                if attributes:
                    attributes = dict(attributes)  # a dict or (name, value) pairs; a copy either way
                    if "iscrowd" in attributes:
                        ann["iscrowd"] = _crowd_flag(attributes.pop("iscrowd"), _where(source, where))
                    if attributes:
                        ann["attributes"] = attributes
                annotations.append(ann)
        return {
            "info": {"description": description},
            "images": images,
            "annotations": annotations,
            "categories": self.classes.categories(),
        }
