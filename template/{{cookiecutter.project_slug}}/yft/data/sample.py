"""A small synthetic dataset in the COCO layout, labelled with this project's own class names.

Each of our classes is a shape (a class named after one of SHAPES gets that shape, the others
take the shapes left over in order). Three objects in four have their class's hue, the others
any colour, so colour alone cannot tell the classes apart. Objects range from a sixth to half the
image width, may overlap a little, and lie on mixed backgrounds (noise, gradients, stripes,
clutter of lines and blobs that are not objects). About one image in ten is left empty on
purpose: negatives.
"""

import colorsys
from pathlib import Path

import cv2
import numpy as np

from yft.data.coco_io import annotation_path, image_dir
from yft.exp import COCO_CLASS_NAMES
from yft.io import write_atomic, write_json
from yft.project import UserError, relative

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring", "star", "hexagon")


def class_style(index):
    """(shape, BGR colour) for class number `index`: the palette predictions and plots use."""
    hue = (index * 0.61803398875) % 1.0  # golden-ratio steps keep neighbouring hues apart
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return SHAPES[index % len(SHAPES)], (int(b * 255), int(g * 255), int(r * 255))


def class_shapes(names):
    """The shape drawn for each class name: its own name when it is a shape, else the next unused one."""
    spare = iter([s for s in SHAPES if s not in names] * (len(names) // len(SHAPES) + 1))
    return [name if name in SHAPES else next(spare) for name in names]


def _fit(points, x, y, w, h):
    """Points (N, 2) scaled and moved so their bounding box is exactly (x, y, w, h)."""
    lo, hi = points.min(0), points.max(0)
    return ((points - lo) / (hi - lo) * [w - 1, h - 1] + [x, y]).round().astype(np.int32)


def _star_hexagon(shape):
    angles = np.arange(10) * np.pi / 5 - np.pi / 2
    if shape == "star":  # five points, the inner radius 0.42 of the outer
        radius = np.tile([1.0, 0.42], 5)
    else:
        angles, radius = np.arange(6) * np.pi / 3, np.ones(6)
    return np.column_stack([np.cos(angles) * radius, np.sin(angles) * radius])


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
    elif shape == "ring":
        thickness = max(2, min(w, h) // 6)
        cv2.ellipse(
            img, (cx, cy), (w // 2 - thickness // 2, h // 2 - thickness // 2), 0, 0, 360, color, thickness
        )
    else:  # star, hexagon
        cv2.fillPoly(img, [_fit(_star_hexagon(shape), x, y, w, h)], color)


def _background(rng, height, width):
    """Noise on a flat colour, a gradient or stripes, with clutter that is not an object."""
    base = rng.integers(30, 226, size=3).astype(np.float64)
    kind = rng.integers(3)
    if kind == 0:
        img = np.broadcast_to(base, (height, width, 3)).copy()
    elif kind == 1:
        other = rng.integers(30, 226, size=3)
        t = np.linspace(0, 1, width if rng.random() < 0.5 else height)
        ramp = base + (other - base) * t[:, None]
        img = (
            np.broadcast_to(ramp[None], (height, width, 3))
            if len(t) == width
            else np.broadcast_to(ramp[:, None], (height, width, 3))
        ).copy()
    else:
        period = int(rng.integers(6, 24))
        stripes = (np.arange(width)[None, :] + np.arange(height)[:, None] * rng.choice([0, 1])) // period % 2
        img = base + stripes[..., None] * rng.integers(-40, 41, size=3)
    img = np.clip(img + rng.normal(0, rng.uniform(4, 20), size=(height, width, 3)), 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):  # clutter: thin lines and small blobs
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        p1 = (int(rng.integers(width)), int(rng.integers(height)))
        if rng.random() < 0.6:
            p2 = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.line(img, p1, p2, color, int(rng.integers(1, 3)))
        else:
            cv2.circle(img, p1, int(rng.integers(1, 4)), color, -1)
    return img


def _object_colour(rng, img, x, y, w, h, hue):
    """Three objects in four take their class's hue (jittered), the others any colour: colour
    is a hint, never enough (the shape decides). Always one that stands out from the background."""
    under = img[y : y + h, x : x + w].reshape(-1, 3).mean(0)
    for _ in range(20):
        if rng.random() < 0.75:
            r, g, b = colorsys.hsv_to_rgb(
                (hue + rng.uniform(-0.06, 0.06)) % 1.0, rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)
            )
            colour = np.array([b, g, r]) * 255
        else:
            colour = rng.integers(0, 256, size=3)
        if np.abs(colour - under).sum() > 150:
            break
    return tuple(int(c) for c in colour)


def _covered(old, new):
    """The fraction of box `old` that box `new` covers."""
    ox, oy, ow, oh = old
    nx, ny, nw, nh = new
    iw = max(0, min(ox + ow, nx + nw) - max(ox, nx))
    ih = max(0, min(oy + oh, ny + nh) - max(oy, ny))
    return iw * ih / (ow * oh)


def make_image(rng, our_indices, shapes, negative_rate=0.1, max_covered=0.25):
    """One image and its boxes [(x, y, w, h, class_index), ...], drawing our classes only.

    shapes[k] is the shape of our_indices[k], whose hue is class_style's. A later object may cover
    at most max_covered of an earlier one's box (it is drawn on top; both keep their full box, as
    a labeller would)."""
    height, width = (int(v) for v in rng.integers(96, 225, size=2))
    img = _background(rng, height, width)
    hues = [(index * 0.61803398875) % 1.0 for index in our_indices]  # class_style's hues
    boxes = []
    if rng.random() < negative_rate:
        return img, boxes
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(len(our_indices)))
        for _attempt in range(10):
            w = int(rng.integers(max(16, width // 6), width // 2))
            h = min(int(w * rng.uniform(0.75, 1.33)), height - 2)
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            if all(_covered(b[:4], (x, y, w, h)) <= max_covered for b in boxes):
                break
        else:
            continue
        colour = _object_colour(rng, img, x, y, w, h, hues[k])
        draw_shape(img, shapes[k], colour, x, y, w, h)
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


def make_sample_dataset(exp, counts=(64, 16, 16), seed=0, force=False, draw=None):
    """Write train/val/test images and COCO files under exp.data_dir; return the paths written.
    Refuses when a split already holds annotations or images (real labels must never be replaced
    by synthetic ones by accident), unless force. draw: names of the classes to draw objects of
    (default: all of ours; e.g. only the new classes of a model that keeps old ones)."""
    if any(not isinstance(n, int) or n < 0 for n in counts) or min(counts[:2]) < 1:
        raise UserError(f"image counts {tuple(counts)}: train and val need at least 1 image, test 0 or more")
    found = existing_data(exp)
    if found and not force:
        raise UserError(
            f"{relative(found[0])}: the dataset already holds data ({len(found)} annotation files "
            "and image folders); sample-data would replace it: pass --force to do that anyway"
        )
    rng = np.random.default_rng(seed)
    # Our classes: all of them (fresh), those after COCO's 80 (keep_coco), or the renamed COCO
    # slots (replace); COCO's own classes get no synthetic objects.
    if exp.class_mode == "keep_coco":
        our_indices = list(range(80, len(exp.class_names)))
    elif exp.class_mode == "replace":
        our_indices = [i for i, name in enumerate(exp.class_names) if name not in COCO_CLASS_NAMES]
    else:
        our_indices = list(range(len(exp.class_names)))
    shapes = class_shapes([exp.class_names[i] for i in our_indices])
    if draw is not None:
        shapes = [shape for i, shape in zip(our_indices, shapes) if exp.class_names[i] in draw]
        our_indices = [i for i in our_indices if exp.class_names[i] in draw]
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
            img, boxes = make_image(rng, our_indices, shapes)
            name = f"{split}_{n:05d}.jpg"
            ok, encoded = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            write_atomic(folder / name, encoded.tobytes())
            images.append({"id": image_id, "file_name": name, "height": img.shape[0], "width": img.shape[1]})
            for x, y, w, h, k in boxes:
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": cat_ids[k],
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
                ann_id += 1
            image_id += 1
        path = annotation_path(exp, split)
        write_json(path, {"images": images, "annotations": annotations, "categories": categories})
        written.append(Path(path))
    return written
