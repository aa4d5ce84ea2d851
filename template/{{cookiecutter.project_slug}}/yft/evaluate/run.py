"""Evaluate a model on a split: detections, COCO metrics, speed, and a metrics.json.

metrics.json keys (stable; new keys may be added, none renamed). Fractions in 0..1; None
(JSON null) where a number is undefined, with a line in `notes` saying why:
  schema, split, backend, checkpoint, engine, num_images, num_detections,
  mAP50_95, mAP50, mAP75, mAP_small, mAP_medium, mAP_large,
  AR1, AR10, AR100, AR_small, AR_medium, AR_large     pycocotools' 12 numbers
  per_class: {class name: {AP50_95, AP50, AP75, num_gt, precision, recall}}
      (precision and recall at suggested_conf, IoU 0.5)
  speed: {images_per_s, ms_per_image, batch_size, latency_ms_batch1, device,
          peak_memory_mb, peak_memory_kind}   (model + decoding; data loading excluded;
          peak memory: "cuda_allocated" on CUDA, else "process_rss" of the whole process)
  notes: [human-readable remarks]
`invoke eval` adds (yft/evaluate/report.py):
  operating_point: {iou50, iou75: {conf, precision, recall, f1, tp, fp, fn}} at the F1-best
      confidence, all classes pooled
  suggested_conf: operating_point.iou50.conf, a deployment threshold
  errors: {conf, iou, false_positives: {total, localization, wrong_class, duplicate, background},
           false_negatives: {total, small, medium, large, detected_as_other_class}}
  confusion_matrix: {conf, iou, labels (classes + "background"), matrix, rows: "true",
                     columns: "predicted"}
  worst_images: [{image_id, file_name, false_positives, false_negatives}]
  class_groups: {coco, new: {num_classes, classes_with_gt, mAP50_95, mAP50}} in keep_coco
      class mode, else None
  files: {report, confusion_png, confusion_csv, pr_curves, gallery, detections} (names in the folder)
"""

import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from yft.data.loaders import build_eval_loader
from yft.evaluate.coco_metrics import coco_metrics, to_coco_results
from yft.io import write_json
from yft.train import distributed


def detect_split(backend, loader, exp, progress=True):
    """Run a backend over an eval loader; return (COCO results, seconds spent in the model)."""
    category_ids = exp.category_ids()
    results, seconds = [], 0.0
    for images, _, info, ids in tqdm(loader, desc="eval", leave=False, disable=not progress):
        heights, widths = info[0].tolist(), info[1].tolist()
        ratios = [min(exp.test_size[0] / h, exp.test_size[1] / w) for h, w in zip(heights, widths)]
        start = time.perf_counter()
        if backend.nms_in_graph:
            backend(images)  # says why such a model cannot be evaluated
        dets = backend.detect_raw(images, ratios, exp.test_conf, exp.nmsthre)
        seconds += time.perf_counter() - start
        results += to_coco_results(dets, ids.flatten().tolist(), category_ids)
    return results, seconds


def evaluate_backend(backend, exp, split, device, batch_size=8, progress=True, engine="auto", sharded=False):
    """COCO metrics for a backend on a split (a dict with the keys documented above).

    sharded: under torch.distributed (training's validation), every rank detects on its share of
    the images (every world-th one), rank 0 gathers the detections, puts them in file order and
    scores them; every rank returns those metrics (the detections only on rank 0, else None).
    """
    from yft.evaluate.engine import pick_engine

    rank, world = (distributed.rank(), distributed.world_size()) if sharded else (0, 1)
    loader = build_eval_loader(exp, split, batch_size, device, rank=rank, world_size=world)
    dataset = loader.dataset.dataset if world > 1 else loader.dataset
    cuda = device is not None and getattr(device, "type", str(device)) == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    results, seconds = detect_split(backend, loader, exp, progress)
    if world > 1:
        shares = distributed.gather_objects((results, seconds, peak_memory(device if cuda else None)))
        if rank != 0:
            return distributed.broadcast_object(None), None
        # The order one process would have produced (file order), so ties between equal scores
        # are broken as in `invoke eval`.
        order = {image_id: i for i, image_id in enumerate(dataset.ids)}
        results = sorted((r for share in shares for r in share[0]), key=lambda r: order[r["image_id"]])
        seconds = max(share[1] for share in shares)  # the ranks run side by side
        memory = max((share[2] for share in shares), key=lambda m: m["peak_memory_mb"] or 0)
    else:
        memory = peak_memory(device if cuda else None)
    engine = pick_engine(engine)
    metrics = coco_metrics(dataset.coco, results, exp.class_names, exp.category_ids(), engine)
    n = len(dataset)
    speed = {
        "images_per_s": round(n / seconds, 2) if seconds else None,
        "ms_per_image": round(1000 * seconds / n, 2) if n else None,
        "batch_size": batch_size,
        "device": str(device),
        **memory,
    }
    metrics = {
        "schema": 2,
        "split": split,
        "backend": backend.name,
        "engine": engine,
        "num_images": n,
        "num_detections": len(results),
        **metrics,
        "speed": speed,
    }
    if world > 1:
        distributed.broadcast_object(metrics)
    return metrics, results


def peak_memory(cuda_device=None):
    """Peak memory in MB: CUDA memory allocated by torch, else the process's peak resident size."""
    if cuda_device is not None:
        return {
            "peak_memory_mb": round(torch.cuda.max_memory_allocated(cuda_device) / 2**20, 1),
            "peak_memory_kind": "cuda_allocated",
        }
    try:
        import resource
    except ImportError:  # Windows
        return {"peak_memory_mb": None, "peak_memory_kind": None}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    rss = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    return {"peak_memory_mb": round(rss, 1), "peak_memory_kind": "process_rss"}


def latency_batch1(backend, exp, split, device, repeats=20, warmup=2):
    """Median milliseconds for one image (model + decoding), the first images of the split."""
    loader = build_eval_loader(exp, split, 1, device)
    times = []
    for i, (images, _, info, _) in enumerate(loader):
        if i >= repeats + warmup:
            break
        ratio = [min(exp.test_size[0] / info[0].item(), exp.test_size[1] / info[1].item())]
        if device is not None and getattr(device, "type", "") == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        backend.detect_raw(images, ratio, exp.test_conf, exp.nmsthre)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 2) if times else None


def write_report(metrics, results, out_dir):
    """metrics.json and detections.json (COCO results format) into out_dir."""
    write_json(out_dir / "detections.json", results)
    write_json(out_dir / "metrics.json", metrics, indent=2)  # last: its presence means complete
    return out_dir / "metrics.json"


def format_table(metrics):
    """A short text table: the headline numbers and AP per class."""

    def pct(value):
        return "   n/a" if value is None else f"{100 * value:6.2f}"

    lines = [
        f"mAP50:95 {pct(metrics['mAP50_95'])}   mAP50 {pct(metrics['mAP50'])}   "
        f"mAP75 {pct(metrics['mAP75'])}   ({metrics['num_images']} images, "
        f"{metrics['split']} split)",
        f"{'class':<24} {'AP50:95':>8} {'AP50':>7} {'boxes':>6}",
    ]
    for name, row in metrics["per_class"].items():
        if row["num_gt"] or row["AP50"] is not None:
            lines.append(f"{name[:24]:<24} {pct(row['AP50_95']):>8} {pct(row['AP50']):>7} {row['num_gt']:>6}")
    lines += [f"note: {note}" for note in metrics["notes"]]
    return "\n".join(lines)
