"""Predict on an image or a folder and draw boxes with this project's class names."""

import colorsys
from pathlib import Path

import cv2

from yft.data.coco_io import write_atomic
from yft.inference import decode, letterbox
from yft.project import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def color(index):
    """A distinct BGR colour per class (any number of classes)."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.61803398875) % 1.0, 0.8, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def draw(img, detections, class_names):
    """Boxes with 'name score' labels on a copy of a BGR image."""
    out = img.copy()
    thickness = max(1, round(max(img.shape[:2]) / 400))
    for x1, y1, x2, y2, score, cls in detections.tolist():
        c = color(int(cls))
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(out, p1, p2, c, thickness)
        label = f"{class_names[int(cls)]} {score:.2f}"
        (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        top = max(p1[1], h + base + 1)
        cv2.rectangle(out, (p1[0], top - h - base - 1), (p1[0] + w + 2, top), c, -1)
        cv2.putText(out, label, (p1[0] + 1, top - base), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def list_images(source):
    """Image files of a file, a folder or a glob pattern, sorted."""
    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        return sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    matches = sorted(p for p in Path().glob(str(source)) if p.suffix.lower() in IMAGE_SUFFIXES)
    if not matches:
        raise UserError(f"{source}: no such image, folder or pattern")
    return matches


def predict(backend, exp, source, out_dir, conf=None):
    """Detect on every image of `source`; write annotated copies into out_dir.

    A file that cannot be read is reported and skipped. Returns (written paths, skipped paths).
    """
    conf = exp.predict_conf if conf is None else conf
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for path in list_images(source):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            skipped.append(path)
            continue
        tensor, ratio = letterbox(img, exp.test_size)
        dets = decode(backend(tensor[None]), [ratio], exp.num_classes, conf, exp.nmsthre)[0]
        ok, encoded = cv2.imencode(".png", draw(img, dets, exp.class_names))
        target = out_dir / f"{path.stem}.png"
        write_atomic(target, encoded.tobytes())
        written.append((target, dets))
    return written, skipped
