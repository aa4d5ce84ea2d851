"""Evaluate a model on a split: detections, COCO metrics, speed, and a metrics.json.

metrics.json keys (stable; new keys may be added, none renamed):
  schema, split, backend, checkpoint, num_images, num_detections,
  mAP50_95, mAP50, mAP75, mAP_small, mAP_medium, mAP_large,
  AR1, AR10, AR100, AR_small, AR_medium, AR_large   (None where undefined, see notes)
  per_class: {class name: {AP50_95, AP50, num_gt}}
  speed: {images_per_s, ms_per_image}   (model + decoding, data loading excluded)
  notes: [human-readable remarks]
"""

import time

from tqdm import tqdm

from yft.data.coco_io import write_json
from yft.data.loaders import build_eval_loader
from yft.evaluate.coco_metrics import coco_metrics, to_coco_results
from yft.inference import decode


def detect_split(backend, loader, exp, progress=True):
    """Run a backend over an eval loader; return (COCO results, seconds spent in the model)."""
    category_ids = exp.category_ids()
    results, seconds = [], 0.0
    for images, _, info, ids in tqdm(loader, desc="eval", leave=False, disable=not progress):
        heights, widths = info[0].tolist(), info[1].tolist()
        ratios = [min(exp.test_size[0] / h, exp.test_size[1] / w) for h, w in zip(heights, widths)]
        start = time.perf_counter()
        raw = backend(images)
        dets = decode(raw, ratios, exp.num_classes, exp.test_conf, exp.nmsthre)
        seconds += time.perf_counter() - start
        results += to_coco_results(dets, ids.flatten().tolist(), category_ids)
    return results, seconds


def evaluate_backend(backend, exp, split, device, batch_size=8, progress=True):
    """COCO metrics for a backend on a split (a dict with the keys documented above)."""
    loader = build_eval_loader(exp, split, batch_size, device)
    results, seconds = detect_split(backend, loader, exp, progress)
    metrics = coco_metrics(loader.dataset.coco, results, exp.class_names, exp.category_ids())
    n = len(loader.dataset)
    speed = {"images_per_s": round(n / seconds, 2) if seconds else None,
             "ms_per_image": round(1000 * seconds / n, 2) if n else None}
    return {"schema": 1, "split": split, "backend": backend.name, "num_images": n,
            "num_detections": len(results), **metrics, "speed": speed}, results


def write_report(metrics, results, out_dir):
    """metrics.json and detections.json (COCO results format) into out_dir."""
    write_json(out_dir / "metrics.json", metrics, indent=2)
    write_json(out_dir / "detections.json", results)
    return out_dir / "metrics.json"


def format_table(metrics):
    """A short text table: the headline numbers and AP per class."""
    def pct(value):
        return "   n/a" if value is None else f"{100 * value:6.2f}"

    lines = [f"mAP50:95 {pct(metrics['mAP50_95'])}   mAP50 {pct(metrics['mAP50'])}   "
             f"mAP75 {pct(metrics['mAP75'])}   ({metrics['num_images']} images, "
             f"{metrics['split']} split)", f"{'class':<24} {'AP50:95':>8} {'AP50':>7} {'boxes':>6}"]
    for name, row in metrics["per_class"].items():
        if row["num_gt"] or row["AP50"] is not None:
            lines.append(f"{name[:24]:<24} {pct(row['AP50_95']):>8} {pct(row['AP50']):>7} {row['num_gt']:>6}")
    lines += [f"note: {note}" for note in metrics["notes"]]
    return "\n".join(lines)

