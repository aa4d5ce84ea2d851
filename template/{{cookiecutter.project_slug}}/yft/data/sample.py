"""A small synthetic dataset in the COCO layout, labelled with this project's own class names.

Each of our classes gets its own shape and colour (class 1: a red circle, class 2: a green
square, ...) drawn on a noisy background, so a freshly rendered project can train, evaluate
and export before any real data exists. Some images are left empty on purpose: negatives.
"""

import colorsys
from pathlib import Path

import cv2
import numpy as np

from yft.data.coco_io import annotation_path, image_dir
from yft.exp import COCO_CLASS_NAMES
from yft.io import write_atomic, write_json
from yft.project import UserError, relative

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")


def class_style(index):
    """(shape, BGR colour) for our class number `index` (0-based among our own classes)."""
    hue = (index * 0.61803398875) % 1.0  # golden-ratio steps keep neighbouring hues apart
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return SHAPES[index % len(SHAPES)], (int(b * 255), int(g * 255), int(r * 255))


def draw_shape(img, shape, color, x, y, w, h):
    """Draw a filled shape whose tight bounding box is (x, y, w, h)."""
    x2, y2, cx, cy = x + w - 1, y + h - 1, x + w // 2, y + h // 2
    if shape == "circle":
        cv2.ellipse(img, (cx, cy), (w // 2, h // 2), 0, 0, 360, color, -1)
    elif shape == "square":
        cv2.rectangle(img, (x, y), (x2, y2), color, -1)
    elif shape == "triangle":
        cv2.fillPoly(img, [np.array([(cx, y), (x, y2), (x2, y2)], np.int32)], color)
    elif shape == "diamond":
        cv2.fillPoly(img, [np.array([(cx, y), (x2, cy), (cx, y2), (x, cy)], np.int32)], color)
    elif shape == "cross":
        cv2.rectangle(img, (x, y + h // 3), (x2, y + 2 * h // 3), color, -1)
        cv2.rectangle(img, (x + w // 3, y), (x + 2 * w // 3, y2), color, -1)
    else:  # ring
        thickness = max(2, min(w, h) // 6)
        cv2.ellipse(img, (cx, cy), (w // 2 - thickness // 2, h // 2 - thickness // 2), 0, 0, 360,
                    color, thickness)


def make_image(rng, our_indices, negative_rate=0.1):
    """One image and its boxes [(x, y, w, h, class_index), ...], drawing our classes only."""
    height, width = (int(v) for v in rng.integers(96, 225, size=2))
    base = rng.integers(40, 200, size=3)
    img = np.clip(rng.normal(base, 18, size=(height, width, 3)), 0, 255).astype(np.uint8)
    boxes = []
    if rng.random() < negative_rate:
        return img, boxes
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(len(our_indices)))
        w = int(rng.integers(width // 6, width // 2.2))
        h = int(w * rng.uniform(0.75, 1.33))
        h = min(h, height - 2)
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        shape, color = class_style(k)
        draw_shape(img, shape, color, x, y, w, h)
        boxes.append((x, y, w, h, our_indices[k]))
    return img, boxes


def existing_data(exp):
    """What the splits already hold: annotation files and non-empty image folders."""
    found = []
    for split in ("train", "val", "test"):
        ann, folder = annotation_path(exp, split), image_dir(exp, split)
        if ann.exists():
            found.append(ann)
        # A fresh project's folders hold only .gitkeep: hidden files are not data.
        if folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir()):
            found.append(folder)
    return found


def make_sample_dataset(exp, counts=(64, 16, 16), seed=0, force=False):
    """Write train/val/test images and COCO files under exp.data_dir; return the paths written.
    Refuses when a split already holds annotations or images (real labels must never be replaced
    by synthetic ones by accident), unless force."""
    if any(not isinstance(n, int) or n < 0 for n in counts) or min(counts[:2]) < 1:
        raise UserError(f"image counts {tuple(counts)}: train and val need at least 1 image, test 0 or more")
    found = existing_data(exp)
    if found and not force:
        raise UserError(f"{relative(found[0])}: the dataset already holds data ({len(found)} annotation files "
                        "and image folders); sample-data would replace it: pass --force to do that anyway")
    rng = np.random.default_rng(seed)
    # Our classes: all of them (fresh), those after COCO's 80 (keep_coco), or the renamed COCO
    # slots (replace); COCO's own classes get no synthetic objects.
    if exp.class_mode == "keep_coco":
        our_indices = list(range(80, len(exp.class_names)))
    elif exp.class_mode == "replace":
        our_indices = [i for i, name in enumerate(exp.class_names) if name not in COCO_CLASS_NAMES]
    else:
        our_indices = list(range(len(exp.class_names)))
    cat_ids = exp.category_ids()
    categories = [
        {"id": cid, "name": name, "supercategory": "object" if i in our_indices else "coco"}
        for i, (cid, name) in enumerate(zip(cat_ids, exp.class_names))
    ]
    written, image_id, ann_id = [], 1, 1
    for split, count in zip(("train", "val", "test"), counts):
        if not count:  # no test split rather than an empty one (validate and eval refuse those)
            continue
        folder = image_dir(exp, split)
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for n in range(count):
            img, boxes = make_image(rng, our_indices)
            name = f"{split}_{n:05d}.jpg"
            ok, encoded = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            write_atomic(folder / name, encoded.tobytes())
            images.append({"id": image_id, "file_name": name, "height": img.shape[0],
                           "width": img.shape[1]})
            for x, y, w, h, k in boxes:
                annotations.append({"id": ann_id, "image_id": image_id, "category_id": cat_ids[k],
                                    "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
                ann_id += 1
            image_id += 1
        path = annotation_path(exp, split)
        write_json(path, {"images": images, "annotations": annotations, "categories": categories})
        written.append(Path(path))
    return written
