"""COCO detection files: one, several (merged), or an export's root folder holding them
(Roboflow: train/_annotations.coco.json beside its images; CVAT: annotations/instances_*.json
with images/). Categories are mapped by name; ids are renumbered by the builder.

Each file's image folder is --images (one for all files, or one per --src in order), else found
beside the file (its own folder, ../images, images/). When folders are known every image is
checked to exist and file names are written relative to the folders' common parent, so a merge
of files from different folders keeps every image reachable; the summary names that folder.
"""

import os
from pathlib import Path

from yft.data.formats.common import field, read_json, walk
from yft.project import UserError


def load_coco(path):
    """A COCO detection file, its structure checked (UserError naming the file and field)."""
    coco = read_json(path)
    if not isinstance(coco, dict):
        raise UserError(f"{path}: not a COCO file (top level is not an object)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise UserError(f"{path}: no '{key}' list (not a COCO detection file)")
    return coco


def expand(sources):
    """COCO files of the --src given: files as they are, folders searched for COCO JSON files."""
    files = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            found = [src / rel for rel in walk(src, lambda n: n.lower().endswith(".json"))]
            found = [p for p in found if _is_coco(p)]
            if not found:
                raise UserError(f"{src}: no COCO annotation file in this folder")
            files += found
        else:
            files.append(src)
    return files


def _is_coco(path):
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return False
    return b'"images"' in head or b'"annotations"' in head or b'"categories"' in head


def _image_folder(path, coco, given):
    """The folder the file's image names are relative to; None when unknown."""
    if given is not None:
        return Path(given)
    names = [i.get("file_name") for i in coco["images"][:20] if isinstance(i, dict)]
    names = [n for n in names if isinstance(n, str)]
    here = path.parent
    subset = path.stem.split("instances_", 1)[-1]
    candidates = (here, here.parent / "images" / subset, here.parent / "images", here / "images", here.parent)
    hits = [sum((folder / n).is_file() for n in names) for folder in candidates]
    return candidates[hits.index(max(hits))] if names and max(hits) else None


def read(sources, ctx, images=()):
    """[(file name, width, height, boxes, where)] from every COCO file, and the folder the file
    names are relative to (None when no image folder is known)."""
    files = expand(sources)
    images = [Path(i) for i in images or ()]
    if len(images) not in (0, 1, len(files)):
        raise UserError(
            f"--images given {len(images)} times for {len(files)} COCO files: give one "
            "folder for all, or one per file in --src order"
        )
    loaded = [(path, load_coco(path)) for path in files]
    folders = [
        _image_folder(path, coco, images[0] if len(images) == 1 else images[k] if images else None)
        for k, (path, coco) in enumerate(loaded)
    ]
    known = all(f is not None for f in folders)
    if not known and len(files) > 1:
        k = folders.index(None)
        raise UserError(
            f"{files[k]}: cannot find the folder of its images to merge it; give "
            "--images once per --src, in order"
        )
    root = Path(os.path.commonpath([os.path.abspath(f) for f in folders])) if known else None
    entries = []
    for (path, coco), folder in zip(loaded, folders):
        entries += _entries(path, coco, folder, root, ctx)
    return entries, root


def _entries(path, coco, folder, root, ctx):
    names = {}
    for c in coco["categories"]:
        cid = field(c, "id", int, f"{path}: categories")
        name = field(c, "name", str, f"{path}: categories")
        if cid in names and names[cid] != name:  # which class would its boxes be? refuse to guess
            raise UserError(f"{path}: categories: id {cid} is both {names[cid]!r} and {name!r}")
        names[cid] = name
    boxes, images = {}, {}
    for i, image in enumerate(coco["images"]):
        where = f"{path}: images[{i}]"
        old = field(image, "id", (int, str), where)
        if old in images:
            raise UserError(f"{where}: duplicate image id {old}")
        images[old] = (
            field(image, "file_name", str, where),
            field(image, "width", (int, float), where),
            field(image, "height", (int, float), where),
            where,
        )
        boxes[old] = []
    for i, ann in enumerate(coco["annotations"]):
        where = f"{path}: annotations[{i}]"
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if image_id not in images:
            raise UserError(f"{where}: image_id {image_id!r} is not in 'images'")
        category = field(ann, "category_id", int, where)
        if category not in names:
            raise UserError(f"{where}: category_id {category} is not in 'categories'")
        bbox = field(ann, "bbox", list, where)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise UserError(f"{where}: bbox must be four numbers [x, y, w, h]")
        attributes = ann.get("attributes") if isinstance(ann.get("attributes"), dict) else {}
        if ann.get("iscrowd"):
            attributes = {**attributes, "iscrowd": 1}
        boxes[image_id].append((names[category], *bbox, where, attributes or None))
    entries = []
    for old, (name, width, height, where) in images.items():
        if folder is not None:
            file = folder / name
            if not file.is_file():
                if not ctx.skip_missing_images:
                    raise UserError(
                        f"{where}: image {name!r} not found in {folder} "
                        "(--skip-missing-images leaves it out, counted)"
                    )
                ctx.report.skip("image not found (--skip-missing-images)", where, max(len(boxes[old]), 1))
                continue
            name = Path(os.path.relpath(os.path.abspath(file), root)).as_posix()
        entries.append((name, width, height, boxes[old], where))
    return entries
