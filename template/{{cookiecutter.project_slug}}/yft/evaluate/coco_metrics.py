"""COCO detection metrics (pycocotools) with per-class AP and honest undefined values.

pycocotools reports -1 where a metric is undefined (no ground truth of that size or class);
here such a value is None in the results and a note says why, instead of a puzzling -1.
"""

import contextlib
import copy
import io

import numpy as np

SUMMARY_KEYS = ("mAP50_95", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large",
                "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


def _defined(value):
    return None if value is None or value < 0 else float(value)


def coco_metrics(coco_gt, detections, class_names, category_ids):
    """Evaluate COCO-format detections against a pycocotools COCO object.

    detections: [{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]
    Returns {summary keys..., "per_class": {name: {...}}, "notes": [...]}.
    """
    from pycocotools.cocoeval import COCOeval

    notes = []
    num_gt = {cid: len(coco_gt.getAnnIds(catIds=[cid], iscrowd=False)) for cid in category_ids}
    result = {key: None for key in SUMMARY_KEYS}
    per_class = {name: {"AP50_95": None, "AP50": None, "num_gt": num_gt[cid]}
                 for name, cid in zip(class_names, category_ids)}
    result["per_class"] = per_class
    if not coco_gt.getAnnIds():
        notes.append("the split has no ground-truth boxes: AP and AR are undefined")
        result["notes"] = notes
        return result
    if not detections:
        notes.append("the model made no detections: every AP and AR is 0")
        for key in SUMMARY_KEYS:
            result[key] = 0.0
        for name, cid in zip(class_names, category_ids):
            if num_gt[cid]:
                per_class[name].update(AP50_95=0.0, AP50=0.0)
        result["notes"] = notes
        return result

    with contextlib.redirect_stdout(io.StringIO()):
        # loadRes adds fields to the dicts it is given; keep the caller's list intact.
        coco_dt = coco_gt.loadRes(copy.deepcopy(detections))
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    for key, value in zip(SUMMARY_KEYS, evaluator.stats):
        result[key] = _defined(value)
    undefined = [key for key in SUMMARY_KEYS if result[key] is None]
    if undefined:
        notes.append(f"undefined (no ground truth in that range): {', '.join(undefined)}")

    precision = evaluator.eval["precision"]  # [iou, recall, class, area, max_dets]
    cat_index = {cid: k for k, cid in enumerate(evaluator.params.catIds)}
    for name, cid in zip(class_names, category_ids):
        k = cat_index.get(cid)
        if k is None or not num_gt[cid]:
            continue
        all_iou = precision[:, :, k, 0, -1]
        at_50 = precision[0, :, k, 0, -1]
        per_class[name]["AP50_95"] = float(np.mean(all_iou[all_iou > -1])) if (all_iou > -1).any() else None
        per_class[name]["AP50"] = float(np.mean(at_50[at_50 > -1])) if (at_50 > -1).any() else None
    missing = [name for name, cid in zip(class_names, category_ids) if not num_gt[cid]]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        notes.append(f"{len(missing)} classes have no ground truth in this split, AP undefined: {shown}")
    result["notes"] = notes
    return result


def to_coco_results(detections_per_image, image_ids, category_ids):
    """(N, 6) arrays [x1, y1, x2, y2, score, class] per image -> COCO result dicts."""
    results = []
    for det, image_id in zip(detections_per_image, image_ids):
        for x1, y1, x2, y2, score, cls in det.tolist():
            results.append({"image_id": int(image_id), "category_id": int(category_ids[int(cls)]),
                            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                            "score": round(score, 5)})
    return results
