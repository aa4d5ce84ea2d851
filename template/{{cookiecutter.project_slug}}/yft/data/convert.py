"""Convert labels from YOLO, Pascal VOC, LabelMe, CVAT, Label Studio and COCO files to this
project's COCO format (and COCO back to YOLO).

Every converter produces the same thing: image and annotation ids numbered 1, 2, ... across the
whole output (never reused: YOLOX issue #504), `area` and `iscrowd` on every box, categories in
the Exp's order with the Exp's ids, and the file written atomically. Images without labels are
kept as negatives (with --require-labels they are an error instead); labels without an image are
an error. The first problem found stops the conversion with one line naming the file (and line)
and nothing is written.

Coordinate conventions:
  * YOLO: class index, then centre x, centre y, width, height, normalised to [0, 1] by the
    displayed image size (the EXIF orientation tag applied, as Ultralytics and OpenCV do).
  * Pascal VOC: the VOC devkit defines pixel indices that start at 1, with xmax/ymax the last
    pixel inside the box (inclusive). A box covering pixels 1..10 is COCO x=0, w=10:
    x = xmin - 1, y = ymin - 1, w = xmax - xmin + 1, h = ymax - ymin + 1. Fractional values
    (CVAT and some LabelImg forks write floats) are kept, not truncated.
  * LabelMe, CVAT and Label Studio use continuous coordinates (0 at the left edge of the first
    pixel): x = left, w = right - left. Label Studio gives percentages of the image size.
"""

import json
import os
import re
from collections import Counter
from functools import partial
from json.encoder import encode_basestring as _json_str  # what json.dumps(ensure_ascii=False) uses
from pathlib import Path

from yft.data.coco_io import read_json
from yft.data.imageio import ImageProblem, header_size, is_image_name
from yft.io import write_atomic
from yft.project import UserError

FORMATS = ("yolo", "voc", "labelme", "cvat", "labelstudio", "coco")


# ------------------------------------------------------------------ classes


class ClassMap:
    """Source class names to the Exp's category ids, with --map renames and --drop-unknown."""

    def __init__(self, class_names, category_ids, mapping=(), drop_unknown=False):
        self.class_names = list(class_names)
        self.ids = dict(zip(self.class_names, category_ids))
        self.drop_unknown = drop_unknown
        self.dropped = Counter()
        self.mapping = {}
        for item in mapping:
            old, sep, new = item.partition("=")
            old, new = old.strip(), new.strip()
            if not sep or not old or not new:
                raise UserError(f"--map {item!r}: expected old=new")
            if new not in self.ids:
                raise UserError(f"--map {item}: {new!r} is not one of the Exp's classes "
                                f"({', '.join(self.class_names[-20:])})")
            self.mapping[old] = new

    def resolve(self, name, where):
        """Category id for a source class name; None when dropped (--drop-unknown)."""
        name = self.mapping.get(name, name)
        cid = self.ids.get(name)
        if cid is None:
            if self.drop_unknown:
                self.dropped[name] += 1
                return None
            raise UserError(f"{where}: unknown class {name!r} (not in the Exp's classes; rename it "
                            f"with --map '{name}=<class>' or skip it with --drop-unknown)")
        return cid

    def categories(self):
        coco_first = len(self.class_names) > 80 and 91 in self.ids.values()
        return [{"id": cid, "name": name,
                 "supercategory": "coco" if coco_first and i < 80 else "object"}
                for i, (name, cid) in enumerate(self.ids.items())]


# ------------------------------------------------------------------ files


def _utf8(path):
    """The path itself; a UserError when its name is not valid UTF-8 (JSON cannot hold it)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{os.fsencode(path)!r}: file name is not valid UTF-8; rename the file") from None
    return path


def _walk(root, keep):
    """Relative posix paths of the files under root for which keep(name) is true, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: folder not found")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(folder, root)
        for name in files:
            if keep(name):
                found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    found.sort()
    _utf8(root)
    for rel in found:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            _utf8(root / rel)  # raises, naming the file
    return found


class ImageIndex:
    """The images under a folder, found by relative path, by name or by stem."""

    def __init__(self, root):
        self.root = Path(root)
        self.files = _walk(root, is_image_name)
        self.known = set(self.files)
        self._by_name = self._by_stem = None

    def _lookups(self):
        # built on first use: most conversions find every image by its relative path
        self._by_name, self._by_stem = {}, {}
        for rel in self.files:
            base = rel.rsplit("/", 1)[-1]
            self._by_name.setdefault(base, []).append(rel)
            self._by_stem.setdefault(os.path.splitext(rel)[0], []).append(rel)

    @property
    def by_name(self):
        if self._by_name is None:
            self._lookups()
        return self._by_name

    @property
    def by_stem(self):
        if self._by_stem is None:
            self._lookups()
        return self._by_stem

    def find(self, name, where):
        """The relative path of the image called `name` (a path, a file name or a stem)."""
        name = name.replace("\\", "/")
        if name in self.known:
            return name
        if (self.root / name).is_file() and is_image_name(name):
            return os.path.normpath(name).replace(os.sep, "/")
        for candidates in (self.by_name.get(name.rsplit("/", 1)[-1]),
                           self.by_stem.get(os.path.splitext(name)[0])):
            if candidates and len(candidates) == 1:
                return candidates[0]
            if candidates:
                raise UserError(f"{where}: image {name!r} is ambiguous: {', '.join(candidates[:3])}")
        raise UserError(f"{where}: label without an image ({name!r} not found in {self.root})")


def _size(path):
    try:
        return header_size(path)
    except ImageProblem as err:
        raise UserError(f"{path}: {err}") from None


def _read_file(path, binary=False):
    """A label file's bytes (or UTF-8 text); UserError naming it when unreadable.
    os.open/os.read: no buffered file object, about half the cost of open() on small files.
    The first read asks for 64 KiB: a larger buffer is mmap-ed, shrunk and unmapped by malloc
    (three more system calls per file); a short read of a regular file is its end."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, 65536)
            if len(data) == 65536:
                parts = [data]
                while data:
                    data = os.read(fd, 1 << 20)
                    parts.append(data)
                data = b"".join(parts)
        finally:
            os.close(fd)
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    if binary:
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None


def _workers():
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, 8)


def _run_chunks(func, items, workers=None):
    """func(item) for every item, in processes for large inputs; results in order.
    The first UserError (in input order) is raised."""
    workers = workers or _workers()
    if len(items) < 2000 or workers < 2:
        return [func(item) for item in items]
    from concurrent.futures import ProcessPoolExecutor  # imported only when used

    size = max(1, -(-len(items) // (workers * 4)))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    results = []
    with ProcessPoolExecutor(workers) as pool:
        for part, error in pool.map(_chunk, [func] * len(chunks), chunks):
            results.extend(part)
            if error:
                raise UserError(error)
    return results


def _chunk(func, items):
    out = []
    for item in items:
        try:
            out.append(func(item))
        except UserError as err:
            return out, str(err)
    return out, None


# ------------------------------------------------------------------ COCO output


class CocoBuilder:
    """Collects images and boxes; numbers ids 1, 2, ... over everything it is given."""

    def __init__(self, classes):
        self.classes = classes
        self.images, self.annotations = [], []
        self.file_names = {}

    def add_image(self, file_name, width, height, where):
        if file_name in self.file_names:
            raise UserError(f"{where}: image {file_name!r} appears twice "
                            f"(also in {self.file_names[file_name]})")
        self.file_names[file_name] = where
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": int(width),
                            "height": int(height)})
        return image_id

    def add_box(self, image_id, category_id, x, y, w, h, attributes=None, iscrowd=0, rounded=False):
        if not rounded:
            x, y, w, h = round(x, 3), round(y, 3), round(w, 3), round(h, 3)
        ann = {"id": len(self.annotations) + 1, "image_id": image_id, "category_id": category_id,
               "bbox": [x, y, w, h], "area": round(w * h, 3), "iscrowd": iscrowd}
        if attributes:
            ann["attributes"] = attributes
        self.annotations.append(ann)

    def coco(self, source):
        return {"info": {"description": f"converted from {source} by yft"},
                "images": self.images, "annotations": self.annotations,
                "categories": self.classes.categories()}


class CocoText:
    """CocoBuilder's output for the YOLO and VOC converters, kept as JSON text: workers format
    each box (`"bbox":[...],"area":...,"iscrowd":0...}`), this adds the ids. The bytes written are
    those json.dumps(builder.coco(...), separators=(",", ":"), ensure_ascii=False) would give."""

    def __init__(self, classes):
        self.classes = classes
        self.images, self.annotations = [], []
        self.annotated = 0

    def add_image(self, file_name, width, height):
        image_id = len(self.images) + 1
        self.images.append('{"id":%d,"file_name":%s,"width":%d,"height":%d}'
                           % (image_id, _json_str(file_name), int(width), int(height)))
        return image_id

    def add_boxes(self, image_id, boxes):
        """boxes: ',"category_id":...}' strings (the annotation after its ids)."""
        if boxes:
            self.annotated += 1
            first = len(self.annotations) + 1
            head = ',"image_id":%d' % image_id
            self.annotations += ['{"id":%d%s%s' % (first + i, head, box) for i, box in enumerate(boxes)]

    def text(self, source):
        dumps = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
        return "".join(('{"info":', dumps({"description": f"converted from {source} by yft"}),
                        ',"images":[', ",".join(self.images), '],"annotations":[',
                        ",".join(self.annotations), '],"categories":',
                        dumps(self.classes.categories()), "}"))


def _json_number(value):
    return json.dumps(value)  # Infinity / NaN as json.dumps writes them; repr() otherwise


# ------------------------------------------------------------------ YOLO


def yolo_class_names(src, fallback):
    """Class names of a YOLO dataset: classes.txt, else data.yaml's names, else `fallback`."""
    src = Path(src)
    for folder in (src, src.parent):
        path = folder / "classes.txt"
        if path.is_file():
            try:
                names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            except UnicodeDecodeError:
                raise UserError(f"{path}: not UTF-8 text") from None
            return [n for n in names if n], path
    for folder in (src, src.parent, src.parent.parent):
        for name in ("data.yaml", "dataset.yaml"):
            path = folder / name
            if path.is_file():
                import yaml

                try:
                    data = yaml.safe_load(path.read_text(encoding="utf-8"))
                except (yaml.YAMLError, UnicodeDecodeError) as err:
                    raise UserError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
                names = data.get("names") if isinstance(data, dict) else None
                if isinstance(names, dict):
                    names = [names[k] for k in sorted(names, key=int)]
                if not isinstance(names, list):
                    raise UserError(f"{path}: no 'names' list")
                return [str(n) for n in names], path
    return list(fallback), None


def parse_yolo_text(text, path, num_classes, width, height, category=None):
    """[(class_index, x, y, w, h) in pixels] from a YOLO label file's text.

    With `category` (a list: per class index, the category id as JSON text, None for a dropped
    class or an error message naming no file), the result is instead ([',"category_id":...}'
    JSON text per box], [class indices of dropped boxes])."""
    boxes, dropped = [], []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise UserError(f"{path}:{number}: expected 5 fields (class cx cy w h), found {len(fields)}")
        try:
            cx, cy, w, h = float(fields[1]), float(fields[2]), float(fields[3]), float(fields[4])
            index = int(fields[0])
        except ValueError:
            raise UserError(f"{path}:{number}: not a number in {line.strip()!r}") from None
        if not (0.0 <= cx <= 1.0 and 0.0 <= cy <= 1.0 and 0.0 <= w <= 1.0 and 0.0 <= h <= 1.0):
            # also false for NaN
            raise UserError(f"{path}:{number}: coordinates must be normalised to [0, 1], found {line.strip()!r}")
        if not 0 <= index < num_classes:
            raise UserError(f"{path}:{number}: unknown class index {index} ({num_classes} classes)")
        x, y = round((cx - w / 2) * width, 3), round((cy - h / 2) * height, 3)
        w, h = round(w * width, 3), round(h * height, 3)
        if category is None:
            boxes.append((index, x, y, w, h))
            continue
        cid = category[index]
        if cid is None:
            dropped.append(index)
        elif cid[0] != ",":
            raise UserError(f"{path}: class index {index} {cid}")
        else:
            # repr of a finite float is what json.dumps writes
            boxes.append('%s,"bbox":[%r,%r,%r,%r],"area":%r,"iscrowd":0}' % (cid, x, y, w, h, round(w * h, 3)))
    return boxes if category is None else (boxes, dropped)


def _yolo_item(context, item):
    num_classes, category = context
    image, label = item
    width, height = _size(image)
    if label is None:
        return width, height, None
    return width, height, parse_yolo_text(_read_file(label), label, num_classes, width, height,
                                          category)


def from_yolo(src, images, classes, require_labels=False, class_names=None):
    src, index = Path(src), ImageIndex(images)
    names, names_file = yolo_class_names(src, class_names or classes.class_names)
    labels = _walk(src, lambda n: n.endswith(".txt") and n != "classes.txt")
    by_stem = {os.path.splitext(rel)[0]: rel for rel in index.files}
    root, src_dir = os.fspath(index.root), os.fspath(src)
    if len(by_stem) != len(index.files):
        stems = Counter(os.path.splitext(rel)[0] for rel in index.files)
        twice = next(s for s, c in stems.items() if c > 1)
        raise UserError(f"{index.root / twice}.*: two images share this name; one label file cannot tell them apart")
    label_of = {}
    for rel in labels:
        stem = os.path.splitext(rel)[0]
        if stem not in by_stem:
            raise UserError(f"{src / rel}: label without an image (no {stem}.jpg/.png/... in {index.root})")
        label_of[by_stem[stem]] = f"{src_dir}/{rel}"
    if require_labels:
        for rel in index.files:
            if rel not in label_of:
                raise UserError(f"{index.root / rel}: image without a label file (--require-labels)")
    # class index -> ',"category_id":<id>' (None: dropped; otherwise the error, raised by the
    # worker that meets the index, naming the label file)
    where = names_file or "the Exp's class names"
    category = []
    for name in names:
        try:
            cid = classes.resolve(name, "")
        except UserError as err:
            category.append(f"({where}){err}")
            continue
        category.append(None if cid is None else f',"category_id":{json.dumps(cid)}')
    items = [(f"{root}/{rel}", label_of.get(rel)) for rel in index.files]
    work = partial(_yolo_item, (len(names), category))
    dropped, builder = Counter(), CocoText(classes)
    for rel, (width, height, parsed) in zip(index.files, _run_chunks(work, items)):
        image_id = builder.add_image(rel, width, height)
        if parsed:
            builder.add_boxes(image_id, parsed[0])
            for k in parsed[1]:
                dropped[classes.mapping.get(names[k], names[k])] += 1
    classes.dropped = dropped  # boxes per dropped class, not classes seen
    return builder


# ------------------------------------------------------------------ XML (VOC, CVAT)


def parse_xml(path, data=None):
    """An ElementTree root, parsed with defusedxml: entity expansion, external entities and
    DTDs are refused with a UserError naming the file."""
    import defusedxml
    from defusedxml import ElementTree as SafeET

    try:
        if data is None:
            data = _read_file(path, binary=True)
        if b"<!" not in data:
            # No DTD, so nothing to expand or fetch: the C parser of the standard library is safe
            # here and several times faster. Anything with a declaration goes through defusedxml.
            import xml.etree.ElementTree as ET

            return ET.fromstring(data)
        return SafeET.fromstring(data)
    except SafeET.ParseError as err:  # the same class as xml.etree.ElementTree.ParseError
        line, col = getattr(err, "position", (0, 0))
        raise UserError(f"{path}:{line}:{col}: malformed XML ({str(err).split(':')[0]})") from None
    except defusedxml.DefusedXmlException as err:
        raise UserError(f"{path}: refused XML with entity or DTD declarations ({type(err).__name__}); "
                        "label files never need them") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None


def _num(text, path, field):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UserError(f"{path}: <{field}> is not a number ({text!r})") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UserError(f"{path}: <{field}> is not a finite number ({text!r})")
    return value


def _flag(text):
    return str(text).strip().lower() in ("1", "true", "yes")


_FLAGS = {"0": False, "1": True}
_ATTRIBUTES = {}  # (difficult, truncated, occluded or None) -> JSON text


def _voc_attributes(key):
    text = _ATTRIBUTES.get(key)
    if text is None:
        attributes = {"difficult": key[0], "truncated": key[1]}
        if key[2] is not None:
            attributes["occluded"] = key[2]
        text = _ATTRIBUTES[key] = json.dumps(attributes, separators=(",", ":"))
    return text


def _voc_box(box, path, n):
    """The bndbox as COCO text '"bbox":[x,y,w,h],"area":a' (VOC devkit convention)."""
    texts = [box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
    if all(t and len(t) < 8 and t.isdigit() and t.isascii() for t in texts):
        # whole pixel numbers, the usual case: exact in integers, and repr(float(v)) is "v.0"
        x1, y1, x2, y2 = (int(t) for t in texts)
        w, h = x2 - x1 + 1, y2 - y1 + 1
        area = f"{w * h}.0" if w * h else repr(float(w) * float(h))  # 0.0 * -3.0 is -0.0
        return f'"bbox":[{x1 - 1}.0,{y1 - 1}.0,{w}.0,{h}.0],"area":{area}'
    x1, y1, x2, y2 = (_num(t, path, f"object {n} bndbox/{k}")
                      for t, k in zip(texts, ("xmin", "ymin", "xmax", "ymax")))
    x, y, w, h = round(x1 - 1, 3), round(y1 - 1, 3), round(x2 - x1 + 1, 3), round(y2 - y1 + 1, 3)
    return (f'"bbox":[{_json_number(x)},{_json_number(y)},{_json_number(w)},{_json_number(h)}],'
            f'"area":{_json_number(round(w * h, 3))}')


def parse_voc(path, data=None):
    """(filename, width or 0, height or 0, [(name, difficult, box)]) from a VOC XML file, box the
    rest of the COCO annotation as JSON text: ',"bbox":[...],"area":...,"iscrowd":0,"attributes":...' and a closing brace."""
    return _voc_record(path, parse_xml(path, _read_file(path, binary=True) if data is None else data))


def _voc_record(path, root):
    if root.tag != "annotation":
        raise UserError(f"{path}: not a Pascal VOC file (root element <{root.tag}>, expected <annotation>)")
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        raise UserError(f"{path}: no <filename>")
    size = root.find("size")
    width = height = 0
    if size is not None and size.findtext("width"):
        width = _num(size.findtext("width"), path, "size/width")
        height = _num(size.findtext("height"), path, "size/height")
    boxes = []
    for n, obj in enumerate(root.iter("object"), 1):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            raise UserError(f"{path}: <object> {n} has no <name> or <bndbox>")
        bbox = _voc_box(box, path, n)
        difficult, truncated = obj.findtext("difficult", "0"), obj.findtext("truncated", "0")
        occluded = obj.findtext("occluded")
        key = (_FLAGS[difficult] if difficult in _FLAGS else _flag(difficult),
               _FLAGS[truncated] if truncated in _FLAGS else _flag(truncated),
               None if occluded is None else _flag(occluded))
        boxes.append((name, key[0], ',%s,"iscrowd":0,"attributes":%s}' % (bbox, _voc_attributes(key))))
    return filename, int(width), int(height), boxes


def from_voc(src, images, classes, require_labels=False, difficult="keep"):
    index = ImageIndex(images)
    src_dir = os.fspath(src)
    xml_files = [f"{src_dir}/{rel}" for rel in _walk(src, lambda n: n.lower().endswith(".xml"))]
    parsed = _run_chunks(parse_voc, xml_files)
    builder, labelled = CocoText(classes), set()
    records = []
    for path, (filename, width, height, boxes) in zip(xml_files, parsed):
        rel = index.find(filename, path)
        if rel in labelled:
            raise UserError(f"{path}: a second label file for image {rel}")
        labelled.add(rel)
        records.append((rel, width, height, boxes, path))
    records += [(rel, 0, 0, [], index.root / rel) for rel in index.files if rel not in labelled]
    if require_labels and len(records) > len(xml_files):
        raise UserError(f"{records[len(xml_files)][4]}: image without a label file (--require-labels)")
    missing = [r for r in records if not r[1] or not r[2]]
    sizes = dict(zip([r[0] for r in missing],
                     _run_chunks(_size, [str(index.root / r[0]) for r in missing])))
    records.sort(key=lambda r: r[0])
    dropped, resolved = 0, {}
    drop_difficult = difficult == "drop"
    for rel, width, height, boxes, path in records:
        if not width or not height:
            width, height = sizes[rel]
        image_id = builder.add_image(rel, width, height)
        kept = []
        for name, is_difficult, box in boxes:
            if drop_difficult and is_difficult:
                dropped += 1
                continue
            cid = resolved.get(name)
            if cid is None:
                cid = classes.resolve(name, path)
                if cid is None:
                    continue
                cid = f',"category_id":{json.dumps(cid)}'
                if not classes.drop_unknown:
                    resolved[name] = cid
            kept.append(cid + box)
        builder.add_boxes(image_id, kept)
    builder.dropped_difficult = dropped
    return builder


def from_cvat(src, images, classes, require_labels=False):
    """CVAT "for images 1.1" XML: <image name width height> with <box> and <polygon> children."""
    index, src = ImageIndex(images), Path(src)
    root = parse_xml(src)
    if root.tag != "annotations":
        raise UserError(f"{src}: not a CVAT for images 1.1 file (root <{root.tag}>, expected <annotations>)")
    builder, labelled = CocoBuilder(classes), set()
    entries = []
    for n, image in enumerate(root.iter("image"), 1):
        where = f"{src}: <image> {n}"
        name = image.get("name")
        if not name:
            raise UserError(f"{where}: no name attribute")
        rel = index.find(name, where)
        width = _num(image.get("width"), src, f"image {n} width")
        height = _num(image.get("height"), src, f"image {n} height")
        entries.append((rel, width, height, image, where))
        labelled.add(rel)
    unlabelled = [rel for rel in index.files if rel not in labelled]
    if require_labels and unlabelled:
        raise UserError(f"{index.root / unlabelled[0]}: image without labels in {src} (--require-labels)")
    entries += [(rel, *_size(index.root / rel), None, index.root / rel) for rel in unlabelled]
    entries.sort(key=lambda e: e[0])
    for rel, width, height, image, where in entries:
        image_id = builder.add_image(rel, width, height, where)
        if image is None:
            continue
        for k, shape in enumerate(image, 1):
            if shape.tag not in ("box", "polygon"):
                continue
            if shape.tag == "box":
                rotation = float(shape.get("rotation", "0") or 0)
                if rotation:
                    raise UserError(f"{where}: box {k} is rotated ({rotation} degrees); COCO boxes are "
                                    "axis-aligned: remove the rotation in CVAT first")
                x1, y1, x2, y2 = (_num(shape.get(a), src, f"image {rel} box {k} {a}")
                                  for a in ("xtl", "ytl", "xbr", "ybr"))
            else:
                x1, y1, x2, y2 = _points_box(shape.get("points", ""), f"{where} polygon {k}")
            attributes = {"occluded": _flag(shape.get("occluded", "0"))}
            for attr in shape.findall("attribute"):
                attributes[attr.get("name", "")] = attr.text or ""
            cid = classes.resolve(shape.get("label", ""), where)
            if cid is not None:
                builder.add_box(image_id, cid, x1, y1, x2 - x1, y2 - y1, attributes)
    return builder


def _points_box(points, where):
    try:
        pairs = [tuple(float(v) for v in p.split(",")) for p in points.split(";") if p.strip()]
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        return min(xs), min(ys), max(xs), max(ys)
    except (ValueError, IndexError):
        raise UserError(f"{where}: bad points {points[:40]!r}") from None


# ------------------------------------------------------------------ JSON tools


def _field(obj, key, kind, where):
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{where}: field '{key}' missing or not a {getattr(kind, '__name__', 'number')}")
    return value


def from_labelme(src, images, classes, require_labels=False):
    """LabelMe JSON files: rectangles, polygons (their bounding box) and circles."""
    index, src = ImageIndex(images), Path(src)
    files = [src / rel for rel in _walk(src, lambda n: n.lower().endswith(".json"))]
    builder, labelled, entries = CocoBuilder(classes), set(), []
    skipped = Counter()
    for path in files:
        data = read_json(path)
        rel = index.find(_field(data, "imagePath", str, path), path)
        labelled.add(rel)
        width = _field(data, "imageWidth", (int, float), path)
        height = _field(data, "imageHeight", (int, float), path)
        boxes = []
        for k, shape in enumerate(_field(data, "shapes", list, path), 1):
            where = f"{path}: shapes[{k - 1}]"
            kind = shape.get("shape_type") or "polygon" if isinstance(shape, dict) else None
            points = _field(shape, "points", list, where)
            try:
                xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
            except (TypeError, ValueError, IndexError):
                raise UserError(f"{where}: points must be [x, y] pairs") from None
            if kind in ("rectangle", "polygon") and len(xs) >= 2:
                box = min(xs), min(ys), max(xs), max(ys)
            elif kind == "circle" and len(xs) == 2:
                r = ((xs[1] - xs[0]) ** 2 + (ys[1] - ys[0]) ** 2) ** 0.5
                box = xs[0] - r, ys[0] - r, xs[0] + r, ys[0] + r
            else:
                skipped[kind] += 1
                continue
            x1, y1, x2, y2 = box
            boxes.append((_field(shape, "label", str, where), x1, y1, x2 - x1, y2 - y1, where))
        entries.append((rel, width, height, boxes, path))
    _add_entries(builder, classes, index, entries, labelled, require_labels, "image without a label file")
    builder.skipped_shapes = dict(skipped)
    return builder


def _add_entries(builder, classes, index, entries, labelled, require_labels, missing):
    """Add (image, width, height, [(label, x, y, w, h, where)], source) entries and the images no
    label mentions (negatives, or an error with require_labels) to the builder, in file order."""
    unlabelled = [rel for rel in index.files if rel not in labelled]
    if require_labels and unlabelled:
        raise UserError(f"{index.root / unlabelled[0]}: {missing} (--require-labels)")
    entries += [(rel, *_size(index.root / rel), [], index.root / rel) for rel in unlabelled]
    entries.sort(key=lambda e: e[0])
    for rel, width, height, boxes, source in entries:
        image_id = builder.add_image(rel, width, height, source)
        for label, x, y, w, h, where in boxes:
            cid = classes.resolve(label, where)
            if cid is not None:
                builder.add_box(image_id, cid, x, y, w, h)


def _labelstudio_image(task, index, where):
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        raise UserError(f"{where}: no 'data' object")
    ref = data.get("image") or next((v for v in data.values() if isinstance(v, str) and is_image_name(v)), None)
    if not isinstance(ref, str):
        raise UserError(f"{where}: no image in 'data'")
    base = ref.split("?")[0].rsplit("/", 1)[-1]
    try:
        return index.find(base, where)
    except UserError:
        # uploads are stored as "<8 hex>-name.jpg"
        match = re.match(r"^[0-9a-f]{8}-(.+)$", base)
        if match:
            return index.find(match.group(1), where)
        raise


def from_labelstudio(src, images, classes, require_labels=False):
    """A Label Studio JSON export: rectanglelabels results in percent of the image size."""
    index, src = ImageIndex(images), Path(src)
    tasks = read_json(src)
    if not isinstance(tasks, list):
        raise UserError(f"{src}: expected a list of tasks (Label Studio's JSON export)")
    builder, labelled, entries = CocoBuilder(classes), set(), []
    for t, task in enumerate(tasks):
        where = f"{src}: task {task.get('id', t) if isinstance(task, dict) else t}"
        rel = _labelstudio_image(task, index, where)
        labelled.add(rel)
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        results = annotations[0].get("result", []) if annotations else []
        width = height = None
        boxes = []
        for r, result in enumerate(results):
            if result.get("type") != "rectanglelabels":
                continue
            here = f"{where} result {r}"
            value = _field(result, "value", dict, here)
            rotation = value.get("rotation") or 0
            if rotation:
                raise UserError(f"{here}: box is rotated ({rotation} degrees); COCO boxes are "
                                "axis-aligned: remove the rotation in Label Studio first")
            x, y, w, h = (_field(value, k, (int, float), here) for k in ("x", "y", "width", "height"))
            labels = _field(value, "rectanglelabels", list, here)
            if len(labels) != 1:
                raise UserError(f"{here}: expected one label, found {labels}")
            width = result.get("original_width") or width
            height = result.get("original_height") or height
            boxes.append((labels[0], x, y, w, h, here))
        if not width or not height:
            width, height = _size(index.root / rel)
        pixels = [(label, x * width / 100, y * height / 100, w * width / 100, h * height / 100, here)
                  for label, x, y, w, h, here in boxes]
        entries.append((rel, width, height, pixels, where))
    _add_entries(builder, classes, index, entries, labelled, require_labels,
                 f"image without a task in {src}")
    return builder


def load_coco(path):
    """A COCO detection file, its structure checked (UserError naming the file and field)."""
    coco = read_json(path)
    if not isinstance(coco, dict):
        raise UserError(f"{path}: not a COCO file (top level is not an object)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise UserError(f"{path}: no '{key}' list (not a COCO detection file)")
    return coco


def from_coco(sources, classes):
    """Merge one or more COCO files: categories mapped by name, every id renumbered."""
    builder = CocoBuilder(classes)
    for path in sources:
        coco = load_coco(path)
        names = {}
        for c in coco["categories"]:
            names[_field(c, "id", int, f"{path}: categories")] = _field(c, "name", str, f"{path}: categories")
        new_ids = {}
        for i, image in enumerate(coco["images"]):
            where = f"{path}: images[{i}]"
            old = _field(image, "id", (int, str), where)
            if old in new_ids:
                raise UserError(f"{where}: duplicate image id {old}")
            new_ids[old] = builder.add_image(_field(image, "file_name", str, where),
                                             _field(image, "width", (int, float), where),
                                             _field(image, "height", (int, float), where), path)
        for i, ann in enumerate(coco["annotations"]):
            where = f"{path}: annotations[{i}]"
            image_id = new_ids.get(ann.get("image_id") if isinstance(ann, dict) else None)
            if image_id is None:
                raise UserError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
            category = _field(ann, "category_id", int, where)
            if category not in names:
                raise UserError(f"{where}: category_id {category} is not in 'categories'")
            bbox = _field(ann, "bbox", list, where)
            if len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
                raise UserError(f"{where}: bbox must be four numbers [x, y, w, h]")
            cid = classes.resolve(names[category], where)
            if cid is not None:
                builder.add_box(image_id, cid, *bbox, attributes=ann.get("attributes"),
                                iscrowd=int(ann.get("iscrowd", 0)))
    return builder


def coco_to_yolo(source, out, classes):
    """Write YOLO label files (one per image, empty for negatives) and classes.txt into `out`,
    a new folder. Class indices follow the Exp's order. Crowd boxes are skipped."""
    builder = from_coco([source], classes)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: folder exists and is not empty; choose a new one")
    index = {cid: i for i, cid in enumerate(classes.ids.values())}
    lines = {image["id"]: [] for image in builder.images}
    sizes = {image["id"]: (image["width"], image["height"]) for image in builder.images}
    crowd = 0
    for ann in builder.annotations:
        if ann["iscrowd"]:
            crowd += 1
            continue
        x, y, w, h = ann["bbox"]
        W, H = sizes[ann["image_id"]]
        lines[ann["image_id"]].append(f"{index[ann['category_id']]} {(x + w / 2) / W:.6f} "
                                      f"{(y + h / 2) / H:.6f} {w / W:.6f} {h / H:.6f}")
    import shutil
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for image in builder.images:
            path = staging / (os.path.splitext(image["file_name"])[0] + ".txt")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(line + "\n" for line in lines[image["id"]]), encoding="utf-8")
        (staging / "classes.txt").write_text("".join(n + "\n" for n in classes.ids), encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return builder, crowd


# ------------------------------------------------------------------ entry point


def convert(fmt, sources, images, out, class_names, category_ids, mapping=(), drop_unknown=False,
            require_labels=False, difficult="keep", to="coco"):
    """Convert and write; returns a summary dict. Nothing is written when anything fails."""
    if fmt not in FORMATS:
        raise UserError(f"--from {fmt}: expected one of {', '.join(FORMATS)}")
    if difficult not in ("keep", "drop"):
        raise UserError(f"--difficult {difficult}: expected keep or drop")
    sources = [Path(_utf8(s)) for s in sources]
    if not sources:
        raise UserError("--src: give the labels (a folder or a file)")
    for s in sources:
        if not s.exists():
            raise UserError(f"{s}: not found")
    if fmt != "coco" and len(sources) != 1:
        raise UserError(f"--from {fmt}: one --src only (merging is for COCO files)")
    if fmt != "coco" and not images:
        raise UserError(f"--from {fmt}: --images DIR is required (image sizes and negatives)")
    classes = ClassMap(class_names, category_ids, mapping, drop_unknown)
    out = Path(out)
    # The conversion makes no reference cycles, only many small objects (XML trees, tuples,
    # strings) that live until the end: the cyclic collector would traverse them over and over.
    import gc

    collecting = gc.isenabled()
    gc.disable()
    try:
        return _convert(fmt, sources, images, out, classes, require_labels, difficult, to)
    finally:
        if collecting:
            gc.enable()


def _convert(fmt, sources, images, out, classes, require_labels, difficult, to):
    if to == "yolo":
        if fmt != "coco":
            raise UserError("--to yolo converts a COCO file: use --from coco")
        builder, crowd = coco_to_yolo(sources[0], out, classes)
        return _summary(builder, classes, out, crowd_skipped=crowd)
    if to != "coco":
        raise UserError(f"--to {to}: expected coco or yolo")
    if fmt == "yolo":
        builder = from_yolo(sources[0], images, classes, require_labels)
    elif fmt == "voc":
        builder = from_voc(sources[0], images, classes, require_labels, difficult)
    elif fmt == "cvat":
        builder = from_cvat(sources[0], images, classes, require_labels)
    elif fmt == "labelme":
        builder = from_labelme(sources[0], images, classes, require_labels)
    elif fmt == "labelstudio":
        builder = from_labelstudio(sources[0], images, classes, require_labels)
    else:
        builder = from_coco(sources, classes)
    if any(out.resolve() == s.resolve() for s in sources):
        raise UserError(f"{out}: the output would overwrite a source; choose another --out")
    if isinstance(builder, CocoText):
        text = builder.text(fmt)
    else:
        # compact separators and no circular check: a 20k-image file is written in a fraction of the time
        text = json.dumps(builder.coco(fmt), ensure_ascii=False, separators=(",", ":"), check_circular=False)
    write_atomic(out, text.encode("utf-8"))
    return _summary(builder, classes, out)


def _summary(builder, classes, out, **extra):
    if isinstance(builder, CocoText):
        annotated = builder.annotated
    else:
        annotated = len({a["image_id"] for a in builder.annotations})
    summary = {"out": str(out), "images": len(builder.images), "boxes": len(builder.annotations),
               "negatives": len(builder.images) - annotated,
               "dropped_unknown": dict(classes.dropped)}
    for key in ("dropped_difficult", "skipped_shapes"):
        if getattr(builder, key, None):
            summary[key] = getattr(builder, key)
    summary.update(extra)
    return summary


def format_summary(summary):
    lines = [f"wrote {summary['out']}: {summary['images']} images, {summary['boxes']} boxes, "
             f"{summary['negatives']} negatives (images without boxes, kept)"]
    if summary["dropped_unknown"]:
        lines.append("dropped unknown classes: " + ", ".join(f"{k} ({v} boxes)" for k, v in
                                                           sorted(summary["dropped_unknown"].items())))
    if summary.get("dropped_difficult"):
        lines.append(f"dropped {summary['dropped_difficult']} difficult objects (--difficult drop)")
    if summary.get("skipped_shapes"):
        lines.append("skipped shapes that have no box: " + ", ".join(
            f"{k} ({v})" for k, v in summary["skipped_shapes"].items()))
    if summary.get("crowd_skipped"):
        lines.append(f"skipped {summary['crowd_skipped']} crowd boxes (YOLO has no crowd flag)")
    return "\n".join(lines)


def main(argv=None):
    """`python -m yft.data.convert`: the converter without loading the Exp (scripts, benchmarks)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="fmt", required=True, choices=FORMATS)
    parser.add_argument("--src", action="append", required=True)
    parser.add_argument("--images")
    parser.add_argument("--out", required=True)
    parser.add_argument("--classes", required=True, help="comma-separated class names (ids 1, 2, ...)")
    parser.add_argument("--to", default="coco")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.classes.split(",")]
    try:
        summary = convert(args.fmt, args.src, args.images, args.out, names, range(1, len(names) + 1),
                          to=args.to)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
