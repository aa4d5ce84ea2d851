"""What every format reader shares: the image folder index, the conversion context (options and
the not-converted report), safe file, XML and JSON field readers, and the worker pool."""

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from yft.data.builder import Report
from yft.io import ImageProblem, image_size, list_images
from yft.project import UserError


def utf8(path):
    """The path itself; a UserError when its name is not valid UTF-8 (JSON cannot hold it)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{os.fsencode(path)!r}: file name is not valid UTF-8; rename the file") from None
    return path


def walk(root, keep):
    """Relative posix paths of the files under root for which keep(name) is true, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: folder not found")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, root)
        found += [
            name if rel == "." else f"{rel}/{name}".replace(os.sep, "/") for name in files if keep(name)
        ]
    found.sort()
    utf8(root)
    for rel in found:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            utf8(root / rel)  # raises, naming the file
    return found


def _same_tail(a, b, strip_suffix=False):
    """True when the shorter of two relative paths is the tail of the other (folder by folder)."""
    if strip_suffix:
        a, b = os.path.splitext(a)[0], os.path.splitext(b)[0]
    a, b = a.split("/"), b.split("/")
    n = min(len(a), len(b))
    return a[-n:] == b[-n:]


class ImageIndex:
    """The images under a folder, found by relative path, by name or by stem."""

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"{self.root}: image folder not found")
        self.files = list_images(self.root, relative=True)
        for rel in self.files:
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                utf8(self.root / rel)
        self.known = set(self.files)
        self._by_name = self._by_stem = None

    def drop(self, unwanted):
        """Remove the files for which unwanted(rel) is true (not images of the dataset: they are
        neither found by a label nor kept as negatives); returns them."""
        dropped = [rel for rel in self.files if unwanted(rel)]
        if dropped:
            self.files = [rel for rel in self.files if not unwanted(rel)]
            self.known = set(self.files)
            self._by_name = self._by_stem = None
        return dropped

    def _lookups(self):
        # built on first use: most conversions find every image by its relative path
        self._by_name, self._by_stem = {}, {}
        for rel in self.files:
            self._by_name.setdefault(rel.rsplit("/", 1)[-1], []).append(rel)
            self._by_stem.setdefault(os.path.splitext(rel)[0], []).append(rel)

    def by_name(self, name):
        if self._by_name is None:
            self._lookups()
        return self._by_name.get(name, [])

    def by_stem(self, stem):
        if self._by_stem is None:
            self._lookups()
        return self._by_stem.get(stem, [])

    def relative(self, path):
        """The relative name of an image file given by its path (None if it is not in the index)."""
        try:
            rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(self.root)).as_posix()
        except ValueError:
            return None
        return rel if rel in self.known else None

    def lookup(self, name, where, prefer=()):
        """The relative path of the image called `name` (a path, a file name or a stem); None when
        absent. Each `prefer` folder is tried first (a subset's folder)."""
        name = name.replace("\\", "/").lstrip("/")
        for folder in prefer:
            if f"{folder}/{name}" in self.known:
                return f"{folder}/{name}"
        if name in self.known:
            return name
        base = name.rsplit("/", 1)[-1]
        for candidates, strip in (
            (self.by_name(base), False),
            (self.by_stem(os.path.splitext(name)[0]), True),
        ):
            # the folders both paths name must agree: "cam1/0001.jpg" is not "cam2/0001.jpg",
            # but an export's "frames/0001.jpg" is the 0001.jpg of an --images folder of frames
            candidates = [c for c in candidates if _same_tail(name, c, strip)]
            if prefer and len(candidates) > 1:
                candidates = [
                    c for c in candidates if any(c.startswith(f"{p}/") for p in prefer)
                ] or candidates
            if len(candidates) == 1:
                return candidates[0]
            if candidates:
                raise UserError(f"{where}: image {name!r} is ambiguous: {', '.join(candidates[:3])}")
        return None


class Context:
    """One conversion: the image index, the options and the report every reader writes to."""

    def __init__(self, images=None, report=None, skip_missing_images=False, **options):
        self.index = ImageIndex(images) if images else None
        self.report = report or Report()
        self.skip_missing_images = skip_missing_images
        self.options = options
        self.excluded = set()  # images the source says are not part of it: never negatives

    def exclude(self, rel):
        self.excluded.add(rel)

    def option(self, name, default=None):
        value = self.options.get(name)
        return default if value is None else value

    def find(self, name, where, boxes=0, prefer=()):
        """The relative path of an image in --images; None (counted) when it is missing and
        --skip-missing-images is on, else a UserError naming the label."""
        rel = self.index.lookup(name, where, prefer)
        if rel is None:
            if not self.skip_missing_images:
                raise UserError(
                    f"{where}: label without an image ({name!r} not found in "
                    f"{self.index.root}; --skip-missing-images leaves such labels out, counted)"
                )
            self.report.skip("image not found (--skip-missing-images)", f"{where}: {name}", max(boxes, 1))
        return rel


def image_ref_name(ref):
    """The file path inside a URL or storage reference, as Label Studio and others write them:
    /data/local-files/?d=dir/x.jpg, /data/upload/3/0a1b2c3d-x.jpg, s3://bucket/dir/x.jpg,
    gs://..., http(s)://host/dir/x.jpg?query -> 'dir/x.jpg' (upload prefix removed)."""
    parts = urlsplit(ref)
    match = re.search(r"(?:^|&)d=([^&]*)", parts.query)
    if parts.path.rstrip("/").endswith("local-files") and match:
        path = unquote(match.group(1))
    elif parts.scheme in ("s3", "gs", "azure-blob", "http", "https") or parts.path.startswith("/"):
        path = unquote(parts.path)
    else:
        path = unquote(ref)
    path = path.lstrip("/")
    if "/data/upload/" in f"/{path}" or path.startswith("upload/"):
        head, _, base = path.rpartition("/")
        base = re.sub(r"^[0-9a-f]{8}-", "", base)  # uploads are stored as "<8 hex>-name.jpg"
        path = base
    return path


def suffixes(path):
    """'a/b/c.jpg' -> ['a/b/c.jpg', 'b/c.jpg', 'c.jpg']: a storage path matched against --images."""
    parts = path.split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def size_of(path):
    try:
        return image_size(path)
    except ImageProblem as err:
        raise UserError(f"{path}: {err}") from None


def read_file(path, binary=False):
    """A label file's bytes (or UTF-8 text, without the byte-order mark Windows editors such as
    Notepad put first: it would glue onto the first class name or number); UserError naming it
    when unreadable."""
    try:
        with open(path, "rb", buffering=0) as f:  # unbuffered: one read, no buffer object
            data = f.read()
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    if binary:
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None


def read_json(path):
    """A JSON file (orjson); a missing or malformed file is a UserError naming it."""
    import json

    import orjson

    data = read_file(path, binary=True)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        # the standard parser also reads NaN and Infinity, which Python's json.dump writes: such
        # boxes are then counted as not converted rather than refusing the whole file
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f"{err.lineno}:{err.colno}" if isinstance(err, json.JSONDecodeError) else "1:1"
        raise UserError(f"{path}:{where}: invalid JSON ({getattr(err, 'msg', 'not UTF-8')})") from None


def field(obj, key, kind, where):
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{where}: field '{key}' missing or not a {getattr(kind, '__name__', 'number')}")
    return value


def num(text, where, name):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {name} is not a number ({text!r})") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UserError(f"{where}: {name} is not a finite number ({text!r})")
    return value


def flag(text):
    return str(text).strip().lower() in ("1", "true", "yes")


def parse_xml(path, data=None):
    """An ElementTree root, parsed with defusedxml: entity expansion, external entities and
    DTDs are refused with a UserError naming the file."""
    import defusedxml
    from defusedxml import ElementTree as SafeET

    try:
        if data is None:
            data = read_file(path, binary=True)
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
        raise UserError(
            f"{path}: refused XML with entity or DTD declarations ({type(err).__name__}); "
            "label files never need them"
        ) from None


def xywh(x1, y1, x2, y2):
    """Corners to (x, y, w, h), rounded to 1/1000 px (x2 - x1 in floats leaves noise such as
    11.200000000000001 that would otherwise reach the JSON)."""
    return round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)


def rotated_bounds(cx, cy, corners, degrees):
    """The axis-aligned box (x1, y1, x2, y2) around `corners` [(dx, dy)] offset from (cx, cy) and
    turned clockwise on screen by `degrees` about (cx, cy) (image y points down)."""
    import math

    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    xs = [cx + dx * cos - dy * sin for dx, dy in corners]
    ys = [cy + dx * sin + dy * cos for dx, dy in corners]
    return min(xs), min(ys), max(xs), max(ys)


def rotated(ctx, degrees, where):
    """True when a rotated box is to be enclosed (--rotated enclose, counted); a UserError otherwise."""
    if ctx.option("rotated", "error") != "enclose":
        raise UserError(
            f"{where}: box is rotated ({degrees:g} degrees) and COCO boxes are "
            "axis-aligned: --rotated enclose converts it to the box around it (counted)"
        )
    ctx.report.change("rotated box enclosed by an axis-aligned box (--rotated enclose)", where)
    return True


def workers():
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, 8)


def run_chunks(func, items):
    """func(item) for every item, in processes for large inputs; results in order.
    The first UserError (in input order) is raised."""
    count = workers()
    if len(items) < 2000 or count < 2:
        return [func(item) for item in items]
    from concurrent.futures import ProcessPoolExecutor  # imported only when used

    size = max(1, -(-len(items) // (count * 4)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    results = []
    with ProcessPoolExecutor(count) as pool:
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
