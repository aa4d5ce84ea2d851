"""COCO detection metrics (pycocotools' numbers, fastest engine) with per-class AP and honest
undefined values.

pycocotools reports -1 where a metric is undefined (no ground truth of that size or class);
here such a value is None in the results and a note says why, instead of a puzzling -1
(YOLOX issue #35: a single-class set without large objects printed AP -1).
"""

import numpy as np

from yft.evaluate.engine import gt_dict, run_cocoeval

SUMMARY_KEYS = (
    "mAP50_95",
    "mAP50",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


def _defined(value):
    return None if value is None or value < 0 else float(value)


def coco_metrics(coco_gt, detections, class_names, category_ids, engine="auto"):
    """Evaluate COCO-format detections against ground truth (a COCO dict or pycocotools COCO).

    detections: [{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]
    engine: "auto", "faster", "yolox" or "pycocotools" (engine.py; all give the same numbers).
    Returns {summary keys..., "per_class": {name: {AP50_95, AP50, AP75, num_gt}}, "notes": [...]}.
    """
    dataset = gt_dict(coco_gt)
    notes = []
    num_gt = dict.fromkeys(category_ids, 0)
    for ann in dataset["annotations"]:
        if not ann.get("iscrowd", 0) and ann["category_id"] in num_gt:
            num_gt[ann["category_id"]] += 1
    result = dict.fromkeys(SUMMARY_KEYS)
    per_class = {
        name: {"AP50_95": None, "AP50": None, "AP75": None, "num_gt": num_gt[cid]}
        for name, cid in zip(class_names, category_ids)
    }
    result["per_class"] = per_class
    if not any(num_gt.values()):
        crowd_only = any(ann.get("iscrowd", 0) for ann in dataset["annotations"])
        notes.append(
            "the split has no ground-truth boxes"
            + (" (only crowd regions)" if crowd_only else "")
            + ": AP and AR are undefined"
        )
        result["notes"] = notes
        return result
    if not detections:
        notes.append("the model made no detections: every AP and AR is 0")
        for key in SUMMARY_KEYS:
            result[key] = 0.0
        for name, cid in zip(class_names, category_ids):
            if num_gt[cid]:
                per_class[name].update(AP50_95=0.0, AP50=0.0, AP75=0.0)
        _undefined_sizes(result, dataset, notes)
        result["notes"] = notes
        return result

    evaluator = run_cocoeval(dataset, detections, engine)
    for key, value in zip(SUMMARY_KEYS, evaluator.stats):
        result[key] = _defined(value)
    undefined = [key for key in SUMMARY_KEYS if result[key] is None]
    if undefined:
        notes.append(f"undefined (no ground truth in that range): {', '.join(undefined)}")

    precision = np.asarray(evaluator.eval["precision"])  # [iou, recall, class, area, max_dets]
    cat_index = {cid: k for k, cid in enumerate(evaluator.params.catIds)}
    for name, cid in zip(class_names, category_ids):
        k = cat_index.get(cid)
        if k is None or not num_gt[cid]:
            continue
        all_iou = precision[:, :, k, 0, -1]
        at_50, at_75 = precision[0, :, k, 0, -1], precision[5, :, k, 0, -1]
        per_class[name]["AP50_95"] = float(np.mean(all_iou[all_iou > -1])) if (all_iou > -1).any() else None
        per_class[name]["AP50"] = float(np.mean(at_50[at_50 > -1])) if (at_50 > -1).any() else None
        per_class[name]["AP75"] = float(np.mean(at_75[at_75 > -1])) if (at_75 > -1).any() else None
    missing = [name for name, cid in zip(class_names, category_ids) if not num_gt[cid]]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        notes.append(f"{len(missing)} classes have no ground truth in this split, AP undefined: {shown}")
    result["notes"] = notes
    return result


def _undefined_sizes(result, dataset, notes):
    """Without detections every AP is 0, except for size buckets with no ground truth."""
    areas = [ann.get("area", 0) for ann in dataset["annotations"] if not ann.get("iscrowd", 0)]
    buckets = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, 1e10)}
    empty = [size for size, (lo, hi) in buckets.items() if not any(lo <= a <= hi for a in areas)]
    for size in empty:
        result[f"mAP_{size}"] = result[f"AR_{size}"] = None
    if empty:
        keys = ", ".join(f"mAP_{s}, AR_{s}" for s in empty)
        notes.append(f"undefined (no ground truth in that range): {keys}")


def to_coco_results(detections_per_image, image_ids, category_ids):
    """(N, 6) arrays [x1, y1, x2, y2, score, class] per image -> COCO result dicts."""
    results = []
    for det, image_id in zip(detections_per_image, image_ids):
        for x1, y1, x2, y2, score, cls in det.tolist():
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category_ids[int(cls)]),
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": round(score, 5),
                }
            )
    return results
