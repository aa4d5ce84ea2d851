"""Which labels are probably wrong: cleanlab's object-detection scores, sorted into issue types.

cleanlab (`cleanlab.object_detection.rank`, Tkachenko et al., "ObjectLab", 2023) scores every
label box and every confident unlabelled prediction from out-of-sample predictions, each score in
0..1, low meaning "probably a label issue":
  swap score (per label)        the label's class against overlapping predictions of other classes
  badloc score (per label)      the label's box against the predictions of its class
  overlooked score (per pred)   a confident prediction that no label covers
We keep those scores as they are (issue score = 1 - cleanlab score, so higher ranks first) and
add the one thing cleanlab leaves implicit, the *type* of each issue and a suggestion, from the
predictions that overlap each label (thresholds below, documented because they are ours):
  wrong_class  a prediction of another class (score >= EVIDENCE) covers the label (IoU >= 0.5)
               and beats every same-class prediction there; suggestion: that class
  misplaced    the best same-class prediction (score >= EVIDENCE) overlaps the label only
               partly (0.1 <= IoU < MISPLACED_IOU); suggestion: that box
  spurious     no prediction of any class (score >= SUPPORT) touches the label (IoU >= 0.1)
  missing      a prediction (score >= MISSING_CONF) that no label overlaps; suggestion: that box
A label with none of these is "ok"; it still carries its score, so every label can be ranked.
"""

import numpy as np

EVIDENCE = 0.3  # a prediction this confident counts as evidence against a label
SUPPORT = 0.1  # a label with no prediction this confident anywhere near it is unsupported
MISSING_CONF = 0.5  # a prediction this confident with no label is a missing-box candidate
MISPLACED_IOU = 0.6  # below this IoU with its best same-class prediction a label is misplaced
ISSUE_TYPES = ("missing", "wrong_class", "misplaced", "spurious")


def iou_xyxy(a, b):
    """IoU matrix (len(a), len(b)) of (x1, y1, x2, y2) boxes."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def cleanlab_inputs(images, num_classes):
    """cleanlab's (labels, predictions) lists from our per-image dicts, and per image the order
    in which cleanlab flattens the predictions (class by class), so its per-prediction scores
    map back to our rows."""
    labels, predictions, orders = [], [], []
    for image in images:
        boxes = np.asarray(image["label_boxes"], float).reshape(-1, 4)
        labels.append({"bboxes": boxes, "labels": np.asarray(image["label_classes"], int)})
        preds = np.asarray(image["predictions"], float).reshape(-1, 6)
        per_class, order = [], []
        for k in range(num_classes):
            rows = np.flatnonzero(preds[:, 5].astype(int) == k)
            per_class.append(preds[rows][:, :5].astype(np.float32).reshape(-1, 5))
            order += rows.tolist()
        holder = np.empty(num_classes, dtype=object)  # cleanlab's layout: one (M, 5) array per class
        holder[:] = per_class
        predictions.append(holder)
        orders.append(order)
    return labels, predictions, orders


def cleanlab_scores(images, num_classes):
    """Per image: swap and badloc scores per label, overlooked score per prediction (NaN where
    cleanlab does not score the box), and cleanlab's image label-quality score."""
    from cleanlab.object_detection import rank

    labels, predictions, orders = cleanlab_inputs(images, num_classes)
    swap = rank.compute_swap_box_scores(labels=labels, predictions=predictions)
    badloc = rank.compute_badloc_box_scores(
        labels=labels, predictions=predictions, low_probability_threshold=SUPPORT
    )
    overlooked = rank.compute_overlooked_box_scores(
        labels=labels, predictions=predictions, high_probability_threshold=MISSING_CONF
    )
    image_scores = rank.get_label_quality_scores(labels, predictions, verbose=False)
    out = []
    for n, order in enumerate(orders):
        per_pred = np.full(len(order), np.nan)
        per_pred[np.asarray(order, int)] = overlooked[n] if len(order) else per_pred
        out.append(
            {
                "swap": np.asarray(swap[n], float),
                "badloc": np.asarray(badloc[n], float),
                "overlooked": per_pred,
                "image": float(image_scores[n]),
            }
        )
    return out


def _score(value):
    """cleanlab score -> issue score (higher = more likely an issue); unscored boxes are fine."""
    return 0.0 if value is None or np.isnan(value) else float(1.0 - value)


def classify_label(j, image, ious, swap, badloc):
    """(issue type or "ok", issue score, suggestion dict) for label j of an image."""
    preds = np.asarray(image["predictions"], float).reshape(-1, 6)
    cls = int(image["label_classes"][j])
    overlaps = ious[:, j] if len(preds) else np.zeros(0)
    same = (preds[:, 5].astype(int) == cls) if len(preds) else np.zeros(0, bool)
    strong = preds[:, 4] >= EVIDENCE if len(preds) else np.zeros(0, bool)
    covering_same = same & strong & (overlaps >= 0.5)
    best_same_score = preds[covering_same, 4].max() if covering_same.any() else 0.0
    rivals = (
        np.flatnonzero(~same & strong & (overlaps >= 0.5) & (preds[:, 4] > best_same_score))
        if len(preds)
        else []
    )
    if len(rivals):
        r = rivals[np.argmax(preds[rivals, 4])]
        return (
            "wrong_class",
            _score(swap[j]) or float(preds[r, 4]),
            {"class_index": int(preds[r, 5]), "confidence": float(preds[r, 4])},
        )
    candidates = np.flatnonzero(same & strong) if len(preds) else []
    if len(candidates):
        b = candidates[np.argmax(overlaps[candidates])]
        if 0.1 <= overlaps[b] < MISPLACED_IOU:
            return (
                "misplaced",
                _score(badloc[j]),
                {
                    "box": [float(v) for v in preds[b, :4]],
                    "iou": float(overlaps[b]),
                    "confidence": float(preds[b, 4]),
                },
            )
    supported = len(preds) and ((preds[:, 4] >= SUPPORT) & (overlaps >= 0.1)).any()
    if not supported:
        return "spurious", _score(badloc[j]) or 1.0, {}
    return "ok", _score(min(swap[j], badloc[j])), {}


def find_issues(images, class_names):
    """Every label and every confident unlabelled prediction as a row, ranked by issue score.

    images: [{"image_id", "file_name", "split", "width", "height", "label_ids", "label_boxes"
    (x1, y1, x2, y2), "label_classes" (class indices), "predictions" (N, 6) x1 y1 x2 y2 score
    class}]. Returns (rows, image_scores): rows sorted most suspicious first, each with
    image, annotation id (None for missing boxes), type ("ok" or an issue), score, the label's
    box and class, and the suggestion.
    """
    scores = cleanlab_scores(images, len(class_names))
    rows, image_scores = [], {}
    for image, sc in zip(images, scores):
        image_scores[(image["split"], image["image_id"])] = sc["image"]
        preds = np.asarray(image["predictions"], float).reshape(-1, 6)
        ious = iou_xyxy(preds[:, :4], image["label_boxes"])
        base = {"image_id": image["image_id"], "file_name": image["file_name"], "split": image["split"]}
        for j, ann_id in enumerate(image["label_ids"]):
            kind, score, suggestion = classify_label(j, image, ious, sc["swap"], sc["badloc"])
            box = [round(float(v), 2) for v in image["label_boxes"][j]]
            cls = int(image["label_classes"][j])
            rows.append(
                {
                    **base,
                    "annotation_id": ann_id,
                    "type": kind,
                    "score": round(score, 4),
                    "box": box,
                    "class": class_names[cls],
                    **_suggestion(suggestion, class_names),
                }
            )
        for i in range(len(preds)):
            unlabelled = not ious.shape[1] or ious[i].max() <= 0.0
            if preds[i, 4] >= MISSING_CONF and unlabelled:
                score = _score(sc["overlooked"][i]) or float(preds[i, 4])
                box = [round(float(v), 2) for v in preds[i, :4]]
                rows.append(
                    {
                        **base,
                        "annotation_id": None,
                        "type": "missing",
                        "score": round(score, 4),
                        "box": None,
                        "class": None,
                        "suggested_box": box,
                        "suggested_class": class_names[int(preds[i, 5])],
                        "confidence": round(float(preds[i, 4]), 4),
                    }
                )
    rows.sort(key=lambda r: (r["type"] == "ok", -r["score"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows, image_scores


def _suggestion(suggestion, class_names):
    out = {"suggested_box": None, "suggested_class": None, "confidence": suggestion.get("confidence")}
    if "class_index" in suggestion:
        out["suggested_class"] = class_names[suggestion["class_index"]]
    if "box" in suggestion:
        out["suggested_box"] = [round(v, 2) for v in suggestion["box"]]
    return out


def confidence_baseline(images, class_names):
    """The simple baseline the benchmark compares with: every label scored by 1 - the confidence
    of the best same-class prediction covering it (IoU >= 0.5), every unlabelled prediction by its
    confidence; same candidates as `find_issues`, no cleanlab."""
    rows = []
    for image in images:
        preds = np.asarray(image["predictions"], float).reshape(-1, 6)
        ious = iou_xyxy(preds[:, :4], image["label_boxes"])
        for j, ann_id in enumerate(image["label_ids"]):
            same = (
                (preds[:, 5].astype(int) == int(image["label_classes"][j])) & (ious[:, j] >= 0.5)
                if len(preds)
                else np.zeros(0, bool)
            )
            best = preds[same, 4].max() if same.any() else 0.0
            rows.append(
                {
                    "image_id": image["image_id"],
                    "annotation_id": ann_id,
                    "score": 1 - best,
                    "suggested_box": None,
                }
            )
        for i in range(len(preds)):
            if preds[i, 4] >= MISSING_CONF and (not ious.shape[1] or ious[i].max() <= 0.0):
                rows.append(
                    {
                        "image_id": image["image_id"],
                        "annotation_id": None,
                        "score": float(preds[i, 4]),
                        "suggested_box": [float(v) for v in preds[i, :4]],
                    }
                )
    rows.sort(key=lambda r: -r["score"])
    return rows
