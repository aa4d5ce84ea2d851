"""Dataset statistics and pictures for eyeballing labels.

Per split: images, boxes, boxes per image, class counts, the imbalance ratio (largest class over
smallest; the finetuning guide's rule is to stay under 10:1), COCO's small / medium / large
buckets (box area under 32x32, under 96x96, above), box aspect ratios and the share of negatives.
Plots: a class histogram, box-size distribution and box-centre heatmap (PNG), and `show_labels`
draws a grid of images with their boxes and class names.
"""

import math
import random
from collections import Counter
from pathlib import Path

import numpy as np

from yft.data.coco_io import annotation_path, image_dir
from yft.data.formats.coco import load_coco
from yft.io import write_figure, write_json, write_png
from yft.project import UserError

IMBALANCE_LIMIT = 10.0


def split_stats(coco):
    names = {c["id"]: c["name"] for c in coco["categories"]}
    counts = Counter(a["category_id"] for a in coco["annotations"])
    areas = [a["bbox"][2] * a["bbox"][3] for a in coco["annotations"]]
    aspects = [a["bbox"][2] / a["bbox"][3] for a in coco["annotations"] if a["bbox"][3] > 0]
    images = len(coco["images"])
    annotated = len({a["image_id"] for a in coco["annotations"]})
    present = [counts[c] for c in names if counts[c]]
    missing = [names[c] for c in names if not counts[c]]
    ratio = max(present) / min(present) if present else 0.0
    quant = (
        (lambda v: {f"p{q}": round(float(np.percentile(v, q)), 3) for q in (5, 50, 95)})
        if aspects
        else (lambda v: {})
    )
    return {
        "images": images,
        "boxes": len(areas),
        "boxes_per_image": round(len(areas) / images, 3) if images else 0.0,
        "classes": {names[c]: counts[c] for c in names},
        "missing_classes": missing,
        "imbalance_ratio": round(ratio, 2),
        "sizes": {
            "small": sum(a < 32**2 for a in areas),
            "medium": sum(32**2 <= a < 96**2 for a in areas),
            "large": sum(a >= 96**2 for a in areas),
        },
        "aspect_ratio_w_over_h": quant(aspects),
        "negatives": images - annotated,
        "negative_share": round((images - annotated) / images, 3) if images else 0.0,
        "time_range": _time_range(coco),
    }


def _time_range(coco):
    """First and last COCO `date_captured` (written by `split --by-time`), or None."""
    from yft.data.timesplit import time_range

    found = time_range(coco)
    if not found:
        return None
    first, last, timed = found
    return {"first": first.isoformat(sep=" "), "last": last.isoformat(sep=" "), "timed_images": timed}


def warnings_for(split, s):
    out = []
    if s["imbalance_ratio"] > IMBALANCE_LIMIT:
        out.append(
            f"warning: {split}: class imbalance {s['imbalance_ratio']:.1f}:1 is above "
            f"{IMBALANCE_LIMIT:.0f}:1 (oversample the rare classes or label more of them)"
        )
    if s["missing_classes"]:
        out.append(f"warning: {split}: no boxes of {', '.join(s['missing_classes'])}")
    return out


def format_stats(stats):
    lines = []
    for split, s in stats.items():
        sizes = s["sizes"]
        lines.append(
            f"{split}: {s['images']} images, {s['boxes']} boxes, {s['boxes_per_image']} per image, "
            f"negatives {s['negatives']} ({s['negative_share']:.0%}), "
            f"small/medium/large {sizes['small']}/{sizes['medium']}/{sizes['large']}, "
            f"imbalance {s['imbalance_ratio']}:1"
        )
        lines.append("  " + ", ".join(f"{k} {v}" for k, v in s["classes"].items()))
        if s.get("time_range"):
            t = s["time_range"]
            lines.append(f"  captured {t['first']} .. {t['last']} ({t['timed_images']} timed images)")
        if s["aspect_ratio_w_over_h"]:
            a = s["aspect_ratio_w_over_h"]
            lines.append(f"  aspect w/h p5 {a['p5']} median {a['p50']} p95 {a['p95']}")
        lines.extend(warnings_for(split, s))
    return "\n".join(lines)


def plot(cocos, out):
    """class_histogram.png, box_sizes.png, box_centres.png in `out`; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    paths = []
    first = next(iter(cocos.values()))
    names = [c["name"] for c in first["categories"]]
    ids = [c["id"] for c in first["categories"]]
    shown = [
        i
        for i, cid in enumerate(ids)
        if any(any(a["category_id"] == cid for a in c["annotations"]) for c in cocos.values())
    ] or list(range(len(ids)))
    fig, ax = plt.subplots(figsize=(max(6, len(shown) * 0.5), 4))
    width = 0.8 / len(cocos)
    for k, (split, coco) in enumerate(cocos.items()):
        counts = Counter(a["category_id"] for a in coco["annotations"])
        ax.bar(np.arange(len(shown)) + k * width, [counts[ids[i]] for i in shown], width, label=split)
    ax.set_xticks(np.arange(len(shown)) + width * (len(cocos) - 1) / 2)
    ax.set_xticklabels([names[i] for i in shown], rotation=45, ha="right")
    ax.set_ylabel("boxes"), ax.legend(), ax.set_title("boxes per class")
    paths.append(write_figure(out / "class_histogram.png", fig))

    fig, ax = plt.subplots(figsize=(6, 4))
    for split, coco in cocos.items():
        sides = [math.sqrt(max(a["bbox"][2] * a["bbox"][3], 0)) for a in coco["annotations"]]
        if sides:
            ax.hist(sides, bins=40, alpha=0.5, label=split)
    for edge in (32, 96):
        ax.axvline(edge, color="k", linestyle="--", linewidth=0.8)
    ax.set_xlabel("sqrt(box area) px (COCO small < 32 < medium < 96 < large)"), ax.legend()
    paths.append(write_figure(out / "box_sizes.png", fig))

    fig, ax = plt.subplots(figsize=(5, 5))
    xs, ys = [], []
    for coco in cocos.values():
        sizes = {i["id"]: (i["width"], i["height"]) for i in coco["images"]}
        for a in coco["annotations"]:
            w, h = sizes[a["image_id"]]
            x, y, bw, bh = a["bbox"]
            xs.append((x + bw / 2) / w), ys.append((y + bh / 2) / h)
    ax.hist2d(xs or [0.5], ys or [0.5], bins=20, range=[[0, 1], [0, 1]], cmap="viridis")
    ax.invert_yaxis(), ax.set_title("box centres (fraction of image)")
    paths.append(write_figure(out / "box_centres.png", fig))
    return paths


def load_splits(exp, ann=None):
    if ann:
        return {Path(ann).stem: load_coco(ann)}
    cocos = {
        s: load_coco(annotation_path(exp, s))
        for s in ("train", "val", "test")
        if annotation_path(exp, s).is_file()
    }
    if not cocos:
        raise UserError(f"{annotation_path(exp, 'train')}: no annotation files (convert or split first)")
    return cocos


def dataset_stats(exp, ann=None, out=None):
    """Stats for every split; writes stats.json and the plots into `out`."""
    cocos = load_splits(exp, ann)
    stats = {split: split_stats(coco) for split, coco in cocos.items()}
    paths = []
    if out:
        write_json(Path(out) / "stats.json", stats, indent=1)
        paths = [Path(out) / "stats.json"] + plot(cocos, out)
    return stats, paths


def show_labels(exp, out, n=16, split="train", seed=0, ann=None, images=None, cell=256):
    """A grid PNG of `n` random images of a split with their boxes and class names."""
    import cv2

    from yft.data.sample import class_style

    coco = load_coco(ann) if ann else load_coco(annotation_path(exp, split))
    folder = Path(images) if images else image_dir(exp, split)
    if not coco["images"]:
        raise UserError("no images to show")
    picked = random.Random(seed).sample(coco["images"], min(n, len(coco["images"])))
    names = {c["id"]: c["name"] for c in coco["categories"]}
    order = {c["id"]: k for k, c in enumerate(coco["categories"])}
    boxes = {}
    for a in coco["annotations"]:
        boxes.setdefault(a["image_id"], []).append(a)
    cols = math.ceil(math.sqrt(len(picked)))
    rows = math.ceil(len(picked) / cols)
    grid = np.full((rows * cell, cols * cell, 3), 40, np.uint8)
    for k, image in enumerate(picked):
        img = cv2.imread(str(folder / image["file_name"]))
        if img is None:
            raise UserError(f"{folder / image['file_name']}: cannot read the image (run invoke validate)")
        scale = cell / max(img.shape[:2])
        img = cv2.resize(img, (max(1, int(img.shape[1] * scale)), max(1, int(img.shape[0] * scale))))
        for a in boxes.get(image["id"], []):
            x, y, w, h = (v * scale for v in a["bbox"])
            color = class_style(order.get(a["category_id"], 0))[1]
            cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), color, 2)
            cv2.putText(
                img,
                names.get(a["category_id"], "?"),
                (int(x) + 2, max(10, int(y) - 3)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                color,
                1,
                cv2.LINE_AA,
            )
        r, c = divmod(k, cols)
        grid[r * cell : r * cell + img.shape[0], c * cell : c * cell + img.shape[1]] = img
    return write_png(out, grid), len(picked)
