"""`invoke mine`: which unlabelled images to label next (active learning by uncertainty).

Per image, three signals, each in 0..1 (1 = most uncertain):
  low_confidence   1 - the best detection score (an image the model finds nothing sure in)
  class_margin     1 - the smallest margin between the two most probable classes among
                   confident anchors (the model hesitates between classes)
  flip_disagreement  1 - how well the detections on the image and on its mirror image agree
                   (mean IoU of class-aware greedy matches over the larger detection count)
uncertainty = their mean; images are ranked by it. Outputs: ranking.csv, a contact sheet of the
top images with their predicted boxes, and pre-annotations for the top images: COCO JSON
(CVAT: "Import dataset", COCO 1.0) and Label Studio tasks with predictions (JSON import).
"""

import csv
import io
from pathlib import Path

import cv2
import numpy as np
import torch

from yft.evaluate.matching import box_iou
from yft.inference import decode, letterbox
from yft.io import IMAGE_SUFFIXES, list_images as find_images, write_atomic, write_json, write_png
from yft.project import UserError, relative, run_dir
from yft.runs import output_dir


def list_images(folder):
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of images")
    files = find_images(folder)
    if not files:
        raise UserError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_images(files):
    for path in files:
        img = cv2.imread(str(path))
        if img is None:
            raise UserError(f"{path}: cannot read the image")
        yield path, img


def _xywh(dets):
    return np.concatenate([dets[:, :2], dets[:, 2:4] - dets[:, :2]], axis=1).astype(np.float64)


def flip_agreement(dets, flipped, width, conf):
    """Mean IoU of class-aware greedy matches between detections on the image and on its
    mirror (boxes mapped back), over the larger count; 1 when neither finds anything."""
    a = dets[dets[:, 4] >= conf]
    b = flipped[flipped[:, 4] >= conf].copy()
    if not len(a) and not len(b):
        return 1.0
    if not len(a) or not len(b):
        return 0.0
    b[:, [0, 2]] = width - b[:, [2, 0]]
    ious = box_iou(_xywh(a), _xywh(b))
    ious[a[:, 5][:, None] != b[:, 5][None, :]] = 0
    total, used = 0.0, set()
    for i in np.argsort(-a[:, 4]):
        j = next((j for j in np.argsort(-ious[i]) if j not in used and ious[i, j] > 0), None)
        if j is not None:
            used.add(j)
            total += ious[i, j]
    return float(total / max(len(a), len(b)))


def class_margin(raw, min_conf=0.1):
    """Smallest (top-1 - top-2) class probability among anchors with obj * cls >= min_conf."""
    obj, cls = raw[:, 4], raw[:, 5:]
    if cls.shape[1] < 2:
        return 1.0
    top2 = torch.topk(cls, 2, dim=1).values
    confident = obj * top2[:, 0] >= min_conf
    if not confident.any():
        return 1.0
    return float((top2[confident, 0] - top2[confident, 1]).min())


def score_images(backend, exp, files, conf, progress=True):
    """Uncertainty rows (sorted, most uncertain first) and detections per file."""
    from tqdm import tqdm

    rows, detections = [], {}
    for path, img in tqdm(
        read_images(files), total=len(files), desc="mine", leave=False, disable=not progress
    ):
        views = [img, np.ascontiguousarray(img[:, ::-1])]
        prepared = [letterbox(v, exp.test_size) for v in views]
        raw = backend(torch.from_numpy(np.stack([p[0] for p in prepared])))
        dets, flipped = decode(
            raw.clone(), [p[1] for p in prepared], exp.num_classes, exp.test_conf, exp.nmsthre
        )
        h, w = img.shape[:2]
        for d in (dets, flipped):  # boxes may stick out of the image; annotation tools refuse that
            d[:, [0, 2]] = d[:, [0, 2]].clip(0, w)
            d[:, [1, 3]] = d[:, [1, 3]].clip(0, h)
        top = float(dets[0, 4]) if len(dets) else 0.0
        signals = {
            "low_confidence": 1 - top,
            "class_margin": 1 - class_margin(raw[0].float()),
            "flip_disagreement": 1 - flip_agreement(dets, flipped, img.shape[1], conf),
        }
        rows.append(
            {
                "file": str(path),
                "uncertainty": float(np.mean(list(signals.values()))),
                **{k: round(v, 4) for k, v in signals.items()},
                "top_score": round(top, 4),
                "detections": int((dets[:, 4] >= conf).sum()),
                "width": img.shape[1],
                "height": img.shape[0],
            }
        )
        detections[str(path)] = dets[dets[:, 4] >= conf]
    rows.sort(key=lambda r: -r["uncertainty"])
    for rank, row in enumerate(rows, 1):
        row["uncertainty"] = round(row["uncertainty"], 4)
        row["rank"] = rank
    return rows, detections


def coco_preannotations(rows, detections, exp, root):
    images, annotations = [], []
    for i, row in enumerate(rows, 1):
        images.append(
            {"id": i, "file_name": _rel(row["file"], root), "width": row["width"], "height": row["height"]}
        )
        for x1, y1, x2, y2, score, cls in detections[row["file"]].tolist():
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": exp.category_ids()[int(cls)],
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "area": round((x2 - x1) * (y2 - y1), 2),
                    "iscrowd": 0,
                    "score": round(score, 4),
                }
            )
    categories = [{"id": cid, "name": name} for cid, name in zip(exp.category_ids(), exp.class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def label_studio_tasks(rows, detections, exp, root, url_prefix="/data/local-files/?d="):
    """Label Studio tasks with predictions (RectangleLabels, from_name "label", to_name "image")."""
    tasks = []
    for row in rows:
        w, h = row["width"], row["height"]
        result = []
        for k, (x1, y1, x2, y2, score, cls) in enumerate(detections[row["file"]].tolist()):
            result.append(
                {
                    "id": f"r{k}",
                    "type": "rectanglelabels",
                    "from_name": "label",
                    "to_name": "image",
                    "original_width": w,
                    "original_height": h,
                    "score": round(score, 4),
                    "value": {
                        "x": 100 * x1 / w,
                        "y": 100 * y1 / h,
                        "width": 100 * (x2 - x1) / w,
                        "height": 100 * (y2 - y1) / h,
                        "rotation": 0,
                        "rectanglelabels": [exp.class_names[int(cls)]],
                    },
                }
            )
        tasks.append(
            {
                "data": {"image": url_prefix + _rel(row["file"], root)},
                "predictions": [
                    {"model_version": "yft", "score": round(1 - row["uncertainty"], 4), "result": result}
                ],
            }
        )
    return tasks


def _rel(path, root):
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def sheet(rows, detections, exp, size=256, columns=4):
    from yft.evaluate import plots

    tiles = []
    for row in rows:
        tile, scale, dx, dy = plots.fit_tile(cv2.imread(row["file"]), size)
        for x1, y1, x2, y2, score, cls in detections[row["file"]].tolist():
            plots.draw_box(
                tile,
                (x1, y1, x2, y2),
                scale,
                dx,
                dy,
                plots.TP_COLOR,
                f"{exp.class_names[int(cls)][:12]} {score:.2f}",
            )
        tiles.append(
            plots.caption(tile, f"#{row['rank']} u={row['uncertainty']:.2f} {Path(row['file']).name}")
        )
    return plots.contact_sheet(tiles, columns)


def mine(
    exp,
    device,
    images,
    ckpt=None,
    top=50,
    conf=None,
    backend_name="torch",
    out=None,
    progress=True,
    force=False,
):
    """Rank the images of a folder by uncertainty; write the ranking, a sheet and pre-annotations."""
    from yft.inference import make_backend

    if top < 1:
        raise UserError(f"--top {top}: must be at least 1")
    files = list_images(images)
    backend, path = make_backend(exp, ckpt, backend_name, device)
    conf = exp.predict_conf if conf is None else conf
    out = output_dir(run_dir(exp, "mine"), out, force)  # before scoring every image
    rows, detections = score_images(backend, exp, files, conf, progress)
    fields = [
        "rank",
        "file",
        "uncertainty",
        "low_confidence",
        "class_margin",
        "flip_disagreement",
        "top_score",
        "detections",
        "width",
        "height",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "ranking.csv", buffer.getvalue().encode("utf-8"))
    chosen = rows[:top]
    write_png(out / "top_uncertain.png", sheet(chosen[:24], detections, exp))
    root = Path(images)
    write_json(out / "preannotations_coco.json", coco_preannotations(chosen, detections, exp, root), indent=1)
    write_json(out / "label_studio_tasks.json", label_studio_tasks(chosen, detections, exp, root), indent=1)
    info = {
        "checkpoint": relative(path),
        "images": relative(root),
        "num_images": len(rows),
        "top": len(chosen),
        "conf": conf,
    }
    write_json(out / "mine.json", info, indent=1)  # what the run's HTML report shows
    return dict(info, out=out), rows
