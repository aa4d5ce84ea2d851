"""Error analysis on matched detections (matching.py): operating point, confusion, errors.

All of it at one confidence threshold, the F1-best one at IoU 0.5 unless given: what a
deployment would see. Everything returns plain dicts/lists ready for metrics.json.
"""

import numpy as np

from yft.evaluate.matching import IOU_THRESHOLDS, MEDIUM, SMALL, box_iou

T50, T75 = 0, int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))


def _round(value, digits=4):
    return None if value is None else round(float(value), digits)


def operating_point(matches, t_index):
    """Precision, recall and F1 (all classes pooled) at the confidence that maximises F1.

    Returns {"conf", "precision", "recall", "f1", "tp", "fp", "fn"}; None where undefined.
    """
    num_gt = int(sum((~m.gt_crowd).sum() for m in matches))
    scores, tps = [], []
    for m in matches:
        keep = m.det_kept & ~m.det_ignored[:, t_index]
        scores.append(m.det_score[keep])
        tps.append(m.det_tp[keep, t_index])
    scores = np.concatenate(scores) if scores else np.zeros(0)
    tps = np.concatenate(tps) if tps else np.zeros(0, bool)
    if not num_gt:
        fp = int(len(scores))
        return {
            "conf": None,
            "precision": None if not fp else 0.0,
            "recall": None,
            "f1": None,
            "tp": 0,
            "fp": fp,
            "fn": 0,
        }
    if not len(scores):
        return {"conf": None, "precision": None, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": num_gt}
    order = np.argsort(-scores, kind="mergesort")
    scores, tps = scores[order], tps[order]
    tp = np.cumsum(tps)
    fp = np.cumsum(~tps)
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]  # a threshold keeps whole ties
    tp, fp, s = tp[last_of_tie], fp[last_of_tie], scores[last_of_tie]
    precision = tp / (tp + fp)
    recall = tp / num_gt
    with np.errstate(invalid="ignore"):
        f1 = np.where(tp > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1))
    if f1[best] == 0:  # no detection is correct: no threshold is better than another
        return {
            "conf": None,
            "precision": 0.0,
            "recall": 0.0,
            "f1": 0.0,
            "tp": 0,
            "fp": int(fp[-1]),
            "fn": num_gt,
        }
    return {
        "conf": _round(s[best]),
        "precision": _round(precision[best]),
        "recall": _round(recall[best]),
        "f1": _round(f1[best]),
        "tp": int(tp[best]),
        "fp": int(fp[best]),
        "fn": int(num_gt - tp[best]),
    }


def per_class_at(matches, num_classes, conf, t_index=T50):
    """Per class (precision, recall) at a confidence, IoU 0.5; None where undefined."""
    tp = np.zeros(num_classes, np.int64)
    fp = np.zeros(num_classes, np.int64)
    gt = np.zeros(num_classes, np.int64)
    for m in matches:
        gt += np.bincount(m.gt_cls[~m.gt_crowd], minlength=num_classes)
        keep = m.det_kept & ~m.det_ignored[:, t_index] & (m.det_score >= conf)
        tp += np.bincount(m.det_cls[keep & m.det_tp[:, t_index]], minlength=num_classes)
        fp += np.bincount(m.det_cls[keep & ~m.det_tp[:, t_index]], minlength=num_classes)
    rows = []
    for k in range(num_classes):
        p = tp[k] / (tp[k] + fp[k]) if tp[k] + fp[k] else None
        r = tp[k] / gt[k] if gt[k] else None
        rows.append({"precision": _round(p), "recall": _round(r)})
    return rows


def _classify_image(m, conf):
    """One image at a confidence, IoU 0.5: confusion pairs (true, predicted), -1 = background;
    the kind of each false positive {det: kind}; the missed boxes; those covered by another class."""
    keep = np.nonzero(m.det_kept & (m.det_score >= conf) & ~m.det_ignored[:, T50])[0]
    regular = np.nonzero(~m.gt_crowd)[0]
    ious = box_iou(m.det_boxes[keep], m.gt_boxes[regular])  # (kept dets, regular boxes)
    matched = {int(g) for g in m.det_gt[keep, T50] if g >= 0}
    missed = [int(g) for g in regular if g not in matched]
    pairs, kinds, other_class = [], {}, set()
    for row, d in enumerate(keep):  # best score first
        g = int(m.det_gt[d, T50])
        if g >= 0:
            pairs.append((int(m.gt_cls[g]), int(m.det_cls[d])))
            continue
        same = m.gt_cls[regular] == m.det_cls[d]
        overlap = ious[row]
        if (same & (overlap >= 0.5)).any():
            kinds[int(d)] = "duplicate"  # its box was already taken by a higher-scoring detection
        elif (~same & (overlap >= 0.5)).any():
            kinds[int(d)] = "wrong_class"
        elif (same & (overlap >= 0.1)).any():
            kinds[int(d)] = "localization"
        else:
            kinds[int(d)] = "background"
        true = -1
        if kinds[int(d)] == "wrong_class":
            # the confusion matrix pairs it with the missed box of another class it covers best
            free = [
                (overlap[j], int(g))
                for j, g in enumerate(regular)
                if int(g) in missed and int(g) not in other_class and not same[j] and overlap[j] >= 0.5
            ]
            if free:
                true = max(free)[1]
                other_class.add(true)
        pairs.append((int(m.gt_cls[true]) if true >= 0 else -1, int(m.det_cls[d])))
    pairs += [(int(m.gt_cls[g]), -1) for g in missed if g not in other_class]
    return pairs, kinds, missed, other_class


def error_analysis(matches, num_classes, conf):
    """Confusion matrix, false-positive kinds, false negatives by size, and a per-image error count.

    The confusion matrix has rows = true class, columns = predicted class, the last row and
    column being background (a detection of nothing / a box nobody found).
    """
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    fp = {"localization": 0, "wrong_class": 0, "duplicate": 0, "background": 0}
    fn = {"total": 0, "small": 0, "medium": 0, "large": 0, "detected_as_other_class": 0}
    per_image = []
    for m in matches:
        pairs, kinds, missed, other_class = _classify_image(m, conf)
        for true, pred in pairs:
            matrix[true, pred] += 1  # -1 indexes the background row/column
        for kind in kinds.values():
            fp[kind] += 1
        for g in missed:
            fn["total"] += 1
            area = m.gt_area[g]
            fn["small" if area < SMALL else "medium" if area < MEDIUM else "large"] += 1
            fn["detected_as_other_class"] += int(g in other_class)
        per_image.append(
            {
                "image_id": int(m.image_id),
                "file_name": m.file_name,
                "false_positives": len(kinds),
                "false_negatives": len(missed),
            }
        )
    fp["total"] = sum(fp.values())
    return {"matrix": matrix, "false_positives": fp, "false_negatives": fn, "per_image": per_image}


def worst_images(per_image, count=12):
    """The images with the most errors (false positives + false negatives), worst first."""
    ranked = sorted(per_image, key=lambda r: (-(r["false_positives"] + r["false_negatives"]), r["image_id"]))
    return [r for r in ranked[:count] if r["false_positives"] + r["false_negatives"] > 0]


def class_groups(per_class_ap, class_mode, num_coco=80):
    """In keep_coco mode: mean AP over COCO's classes and over ours (classes with ground truth)."""
    if class_mode != "keep_coco":
        return None
    rows = list(per_class_ap.values())
    groups = {}
    for name, part in (("coco", rows[:num_coco]), ("new", rows[num_coco:])):
        with_gt = [r for r in part if r["AP50_95"] is not None]
        groups[name] = {
            "num_classes": len(part),
            "classes_with_gt": len(with_gt),
            "mAP50_95": _round(np.mean([r["AP50_95"] for r in with_gt])) if with_gt else None,
            "mAP50": _round(np.mean([r["AP50"] for r in with_gt])) if with_gt else None,
        }
    return groups
