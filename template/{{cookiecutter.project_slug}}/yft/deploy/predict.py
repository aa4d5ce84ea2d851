"""Predict on images (a file, a folder, a glob) or a video and draw boxes with this project's
class names; optionally a COCO-results JSON of every detection.

Images are read as 8-bit BGR whatever they are on disk: grayscale is repeated to three
channels, 16-bit is scaled to 8-bit, an alpha channel is dropped, EXIF orientation applied.
A file that cannot be read (empty, corrupted, not an image) is reported and skipped.
A folder is read with its subfolders; the outputs keep the source's relative paths, so two
`dup.jpg` in different subfolders (or `a.jpg` beside `a.png`) never overwrite each other.
"""

import os
from pathlib import Path

import cv2
import numpy as np

from yft.data.sample import class_style
from yft.inference import letterbox
from yft.io import IMAGE_SUFFIXES, atomic_path, ensure_dir, write_png
from yft.project import UserError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def color(index):
    """A distinct BGR colour per class (any number of classes), as in sample data and show-labels."""
    return class_style(index)[1]


def draw(img, detections, class_names):
    """Boxes with 'name score' labels on a copy of a BGR image."""
    out = img.copy()
    thickness = max(1, round(max(img.shape[:2]) / 400))
    scale = max(0.4, max(img.shape[:2]) / 1600)
    for x1, y1, x2, y2, score, cls in detections.tolist():
        c = color(int(cls))
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(out, p1, p2, c, thickness)
        label = f"{class_names[int(cls)]} {score:.2f}"
        (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(p1[1], h + base + 1)
        cv2.rectangle(out, (p1[0], top - h - base - 1), (p1[0] + w + 2, top), c, -1)
        cv2.putText(
            out, label, (p1[0] + 1, top - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
        )
    return out


def is_video(path):
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def list_sources(source, skip=None):
    """Image and video files of a file, a folder (with its subfolders, hidden ones and `skip`
    left out) or a glob pattern, sorted."""
    source = Path(source)
    wanted = set(IMAGE_SUFFIXES) | VIDEO_SUFFIXES
    if source.is_file():
        return [source]
    if source.is_dir():
        skip = os.path.realpath(skip) if skip is not None else None
        found = []
        for top, dirs, files in os.walk(source):
            dirs[:] = [
                d for d in dirs if not d.startswith(".") and os.path.realpath(os.path.join(top, d)) != skip
            ]  # not our own outputs
            found += [Path(top) / n for n in files if Path(n).suffix.lower() in wanted]
        return sorted(p for p in found if p.is_file())
    if source.is_absolute():
        matches = Path(source.anchor).glob(str(source.relative_to(source.anchor)))
    else:
        matches = Path().glob(str(source))
    matches = sorted(p for p in matches if p.suffix.lower() in wanted and p.is_file())
    if not matches:
        raise UserError(f"{source}: no such image, video, folder or pattern")
    return matches


list_images = list_sources  # the older name


def output_names(paths, source):
    """{path: its name in the output folder without suffix ('sub/a'), and the name the COCO rows
    give it ('sub/a.jpg')}: paths relative to the folder (or the glob's common folder); where two
    would share an output ('a.jpg', 'a.png'), each keeps its own suffix ('a.jpg.png')."""
    source = Path(source)
    if source.is_dir():
        base = source
    elif len(paths) == 1:
        base = paths[0].parent
    else:
        base = Path(os.path.commonpath([os.path.abspath(p.parent) for p in paths]))
    rels = {p: Path(os.path.relpath(os.path.abspath(p), os.path.abspath(base))).as_posix() for p in paths}
    out = {p: (os.path.splitext(r)[0], ".mp4" if is_video(p) else ".png") for p, r in rels.items()}
    taken = {}
    for stem, suffix in out.values():
        taken[stem + suffix] = taken.get(stem + suffix, 0) + 1
    return {
        p: ((stem if taken[stem + suffix] == 1 else rels[p]) + suffix, rels[p])
        for p, (stem, suffix) in out.items()
    }


def image_problem(path):
    """Why `path` will not be read as an image, from its header, or None: an empty file, or more
    pixels than decoders accept (one such file used to abort the whole run)."""
    from yft.io import MAX_PIXELS, ImageProblem, image_size

    try:
        width, height = image_size(path)
    except ImageProblem as err:
        return str(err) if "empty" in str(err) else None  # let the decoder have the last word
    if width * height > MAX_PIXELS:
        return f"{width}x{height} pixels, above the decoders' limit of 2^30"
    return None


def read_image(path):
    """An 8-bit BGR image, or None if the file cannot be decoded."""
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)  # grayscale -> BGR, 16-bit -> 8-bit, alpha dropped
    except cv2.error:  # e.g. a header above OpenCV's pixel limit
        return None
    if img is None or img.size == 0 or min(img.shape[:2]) < 1:
        return None
    return img


class Detector:
    """Preprocess, run a backend, map boxes back to the original image."""

    def __init__(self, backend, exp, conf, nms):
        self.backend, self.exp, self.conf, self.nms = backend, exp, conf, nms

    def __call__(self, img):
        tensor, ratio = letterbox(img, self.exp.test_size)
        dets = self.backend.detect(tensor[None], [ratio], self.conf, self.nms)[0]
        h, w = img.shape[:2]
        if len(dets):  # boxes may reach past the border of the image: clip them to it
            dets[:, [0, 2]] = dets[:, [0, 2]].clip(0, w)
            dets[:, [1, 3]] = dets[:, [1, 3]].clip(0, h)
        return dets


def coco_rows(dets, image_id, file_name, category_ids):
    return [
        {
            "image_id": image_id,
            "file_name": file_name,
            "category_id": int(category_ids[int(c)]),
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "score": round(s, 5),
        }
        for x1, y1, x2, y2, s, c in dets.tolist()
    ]


def predict_video(detector, path, target, class_names):
    """Annotate every frame of a video into target (.mp4, written atomically).
    Returns per-frame detections, or None when the video cannot be read."""
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read()
    if not ok or frame is None:
        capture.release()
        return None
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    h, w = frame.shape[:2]
    frames = []
    try:
        with atomic_path(target) as tmp:  # keeps the .mp4 suffix: VideoWriter picks the container from it
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            try:
                while ok:
                    dets = detector(frame)
                    frames.append(dets)
                    writer.write(draw(frame, dets, class_names))
                    ok, frame = capture.read()
            finally:
                writer.release()
    finally:
        capture.release()
    return frames


def predict(backend, exp, source, out_dir, conf=None, nms=None, on_result=None):
    """Detect on every image or video of `source`; write annotated copies into out_dir.

    Returns (written, skipped, rows): written = [(output path, detections)] (a video's
    detections are the concatenation of its frames'), skipped = [(path, reason)], rows = COCO
    result dicts with image_id (running number of the image or frame) and file_name.
    on_result(target, dets) is called after each file, for progress output.
    """
    conf = exp.predict_conf if conf is None else conf
    nms = exp.nmsthre if nms is None else nms
    out_dir = ensure_dir(out_dir)
    detector = Detector(backend, exp, conf, nms)
    category_ids = exp.category_ids()
    written, skipped, rows, next_id = [], [], [], 0
    paths = list_sources(source, skip=out_dir)
    names = output_names(paths, source)
    for path in paths:
        target, name = out_dir / names[path][0], names[path][1]
        if is_video(path):
            frames = predict_video(detector, path, target, exp.class_names)
            if frames is None:
                skipped.append((path, "not a readable video"))
                continue
            for k, dets in enumerate(frames):
                rows += coco_rows(dets, next_id + k, f"{name}#{k}", category_ids)
            next_id += len(frames)
            dets = np.concatenate(frames) if frames else np.zeros((0, 6), np.float32)
        else:
            problem = image_problem(path)
            img = None if problem else read_image(path)
            if img is None:
                skipped.append((path, problem or "not a readable image (corrupted or unsupported)"))
                continue
            dets = detector(img)
            target = write_png(target, draw(img, dets, exp.class_names))
            rows += coco_rows(dets, next_id, name, category_ids)
            next_id += 1
        written.append((target, dets))
        if on_result:
            on_result(target, dets)
    return written, skipped, rows
