"""Per-image matching of detections to ground truth, exactly as pycocotools does it.

The summary numbers come from the fast engine (engine.py); the analyses (precision/recall/F1
at a confidence, confusion matrix, error breakdown, worst images, paired bootstrap) need to
know *which* detection matched *which* box, which the C++ engines do not expose. This module
repeats pycocotools' `evaluateImg` for the "all" area range and 100 detections per image and
class (greedy in score order, best IoU wins, crowd boxes absorb detections without counting),
so `accumulate()` of its output reproduces pycocotools' AP per class (tests check equality);
with per-image weights it gives the AP of a bootstrap resample without re-running matching.
"""

from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = 100
SMALL, MEDIUM = 32**2, 96**2  # COCO's size buckets (area in pixels)


@dataclass
class ImageMatch:
    """One image: its boxes (COCO x, y, w, h), detections best score first, and the matches."""

    image_id: int
    file_name: str
    gt_boxes: np.ndarray  # (G, 4)
    gt_cls: np.ndarray  # (G,) class index
    gt_crowd: np.ndarray  # (G,) bool
    gt_area: np.ndarray  # (G,) the annotation's area (COCO size buckets use it)
    det_boxes: np.ndarray  # (D, 4)
    det_cls: np.ndarray  # (D,)
    det_score: np.ndarray  # (D,)
    det_kept: np.ndarray = field(default=None)  # (D,) within the 100 best of its class (COCO's maxDets)
    det_gt: np.ndarray = field(default=None)  # (D, T) index of the matched box per IoU threshold, -1: none
    det_ignored: np.ndarray = field(default=None)  # (D, T) matched a crowd box: neither TP nor FP

    @property
    def det_tp(self):
        return (self.det_gt >= 0) & ~self.det_ignored


def as_boxes(boxes):
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def xywh_to_xyxy(boxes):
    boxes = as_boxes(boxes)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def box_iou(dets, gts, crowd=None):
    """IoU (D, G) of COCO (x, y, w, h) boxes, computed as pycocotools' bbIou does, operation for
    operation (so ties and thresholds fall the same way); crowd boxes: intersection / det area."""
    if not len(dets) or not len(gts):
        return np.zeros((len(dets), len(gts)))
    d, g = dets[:, None, :], gts[None, :, :]
    iw = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    ih = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    inter = iw * ih
    area_d, area_g = dets[:, 2] * dets[:, 3], gts[:, 2] * gts[:, 3]
    union = area_d[:, None] + area_g[None, :] - inter
    if crowd is not None:
        union = np.where(np.asarray(crowd, bool)[None, :], area_d[:, None], union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((iw > 0) & (ih > 0) & (union > 0), inter / union, 0.0)


def _match_class(ious, crowd, thresholds):
    """pycocotools' greedy matching for one image and class, dets sorted by score.

    ious (D, G) with G sorted non-crowd first. Returns (gt index or -1, ignored) as (D, T).
    """
    num_t, (num_d, num_g) = len(thresholds), ious.shape
    det_gt = np.full((num_d, num_t), -1, np.int64)
    ignored = np.zeros((num_d, num_t), bool)
    if not num_g:
        return det_gt, ignored
    taken = np.zeros((num_t, num_g), bool)
    limits = np.minimum(thresholds, 1 - 1e-10)[:, None]
    regular = ~crowd
    reverse = np.arange(num_g)[::-1]
    for d in range(num_d):
        row = ious[d][None, :]
        ok = (row >= limits) & (~taken | crowd[None, :])
        for candidates in (ok & regular[None, :], ok & crowd[None, :]):
            todo = (det_gt[d] < 0) & candidates.any(axis=1)
            if not todo.any():
                continue
            # the best IoU wins; on a tie pycocotools keeps the later box
            scores = np.where(candidates, row, -1.0)[:, reverse]
            best = reverse[np.argmax(scores, axis=1)]
            det_gt[d, todo] = best[todo]
            ignored[d, todo] = crowd[best[todo]]
            taken[np.nonzero(todo)[0], best[todo]] = True
    return det_gt, ignored


def match_image(match, num_classes, thresholds=IOU_THRESHOLDS):
    """Fill det_kept, det_gt, det_ignored of an ImageMatch (class by class, as COCO)."""
    num_d = len(match.det_score)
    match.det_kept = np.zeros(num_d, bool)
    match.det_gt = np.full((num_d, len(thresholds)), -1, np.int64)
    match.det_ignored = np.zeros((num_d, len(thresholds)), bool)
    for k in np.union1d(np.unique(match.det_cls), np.unique(match.gt_cls)).astype(int):
        dets = np.nonzero(match.det_cls == k)[0]
        if not len(dets):
            continue
        dets = dets[np.argsort(-match.det_score[dets], kind="mergesort")][:MAX_DETS]
        match.det_kept[dets] = True
        gts = np.nonzero(match.gt_cls == k)[0]
        gts = gts[np.argsort(match.gt_crowd[gts], kind="mergesort")]  # non-crowd first
        crowd = match.gt_crowd[gts]
        ious = box_iou(match.det_boxes[dets], match.gt_boxes[gts], crowd)
        det_gt, ignored = _match_class(ious, crowd, thresholds)
        if len(gts):
            match.det_gt[dets] = np.where(det_gt >= 0, gts[np.maximum(det_gt, 0)], -1)
        match.det_ignored[dets] = ignored
    return match


def match_dataset(dataset, detections, category_ids):
    """Match COCO result dicts against a COCO dataset dict; a list of ImageMatch in image-id order.

    Detections of unknown categories are dropped (pycocotools ignores them too).
    """
    index = {cid: k for k, cid in enumerate(category_ids)}
    images = sorted(dataset["images"], key=lambda im: im["id"])
    gt_by_image = {im["id"]: [] for im in images}
    for ann in dataset["annotations"]:
        if ann["category_id"] in index and ann["image_id"] in gt_by_image:
            gt_by_image[ann["image_id"]].append(ann)
    det_by_image = {im["id"]: [] for im in images}
    for det in detections:
        if det["category_id"] in index and det["image_id"] in det_by_image:
            det_by_image[det["image_id"]].append(det)
    matches = []
    for im in images:
        gts, dets = gt_by_image[im["id"]], det_by_image[im["id"]]
        scores = np.array([d["score"] for d in dets], np.float64)
        order = np.argsort(-scores, kind="mergesort")
        dets = [dets[i] for i in order]
        match = ImageMatch(
            image_id=im["id"],
            file_name=im.get("file_name", ""),
            gt_boxes=as_boxes([a["bbox"] for a in gts]),
            gt_cls=np.array([index[a["category_id"]] for a in gts], np.int64),
            gt_crowd=np.array([bool(a.get("iscrowd", 0)) for a in gts], bool),
            gt_area=np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in gts], np.float64),
            det_boxes=as_boxes([d["bbox"] for d in dets]),
            det_cls=np.array([index[d["category_id"]] for d in dets], np.int64),
            det_score=scores[order],
        )
        matches.append(match_image(match, len(category_ids)))
    return matches


@dataclass
class Flat:
    """All kept detections of a dataset, per class, with their image index (for accumulate)."""

    per_class: list  # k -> (image index (D,), score (D,), tp (D, T), ignored (D, T))
    num_gt: np.ndarray  # (images, classes) non-crowd boxes


def flatten(matches, num_classes):
    num_gt = np.zeros((len(matches), num_classes), np.int64)
    parts = [[] for _ in range(num_classes)]
    for i, m in enumerate(matches):
        regular = ~m.gt_crowd
        if regular.any():
            num_gt[i] += np.bincount(m.gt_cls[regular], minlength=num_classes)
        if not m.det_kept.any():
            continue
        tp, ig = m.det_tp, m.det_ignored
        for k in np.unique(m.det_cls[m.det_kept]):
            sel = m.det_kept & (m.det_cls == k)
            parts[k].append((np.full(sel.sum(), i), m.det_score[sel], tp[sel], ig[sel]))
    per_class = []
    num_t = len(IOU_THRESHOLDS)
    for k in range(num_classes):
        if parts[k]:
            per_class.append(tuple(np.concatenate([p[j] for p in parts[k]]) for j in range(4)))
        else:
            per_class.append(
                (np.zeros(0, np.int64), np.zeros(0), np.zeros((0, num_t), bool), np.zeros((0, num_t), bool))
            )
    return Flat(per_class, num_gt)


def accumulate(flat, weights=None):
    """pycocotools' accumulate (area all, 100 dets): precision (T, R, K), -1 where a class has no
    ground truth. weights: per-image multiplicities (a bootstrap resample), default all 1."""
    num_t, num_r, num_k = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), flat.num_gt.shape[1]
    precision = -np.ones((num_t, num_r, num_k))
    w_img = np.ones(flat.num_gt.shape[0]) if weights is None else np.asarray(weights, np.float64)
    npig_all = (flat.num_gt * w_img[:, None]).sum(axis=0)
    for k in range(num_k):
        npig = npig_all[k]
        if npig == 0:
            continue
        image, score, tp, ig = flat.per_class[k]
        w = w_img[image]
        if weights is not None:
            keep = w > 0
            image, score, tp, ig, w = image[keep], score[keep], tp[keep], ig[keep], w[keep]
        order = np.argsort(-score, kind="mergesort")
        tp, ig, w = tp[order].T, ig[order].T, w[order]
        tps = np.cumsum(np.where(tp & ~ig, w, 0.0), axis=1)
        fps = np.cumsum(np.where(~tp & ~ig, w, 0.0), axis=1)
        q = np.zeros((num_t, num_r))
        if tps.shape[1]:
            rc = tps / npig
            pr = tps / (fps + tps + np.spacing(1))
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            for t in range(num_t):
                inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                valid = inds < len(pr[t])
                q[t, valid] = pr[t][inds[valid]]
        precision[:, :, k] = q
    return precision


def ap_from_precision(precision):
    """(mAP50:95, mAP50, per-class AP50:95 (K,), per-class AP50 (K,)); None/NaN where undefined."""
    defined = precision[0, 0, :] > -1
    per50_95 = np.full(precision.shape[2], np.nan)
    per50 = np.full(precision.shape[2], np.nan)
    for k in np.nonzero(defined)[0]:  # the same element order and sums as pycocotools
        s = precision[:, :, k]
        per50_95[k] = np.mean(s[s > -1])
        per50[k] = np.mean(s[0][s[0] > -1])
    if not defined.any():
        return None, None, per50_95, per50
    return (
        float(np.mean(precision[precision > -1])),
        float(np.mean(precision[0][precision[0] > -1])),
        per50_95,
        per50,
    )
