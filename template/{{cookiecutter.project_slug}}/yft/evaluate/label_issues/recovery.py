"""Measuring the finder against known errors: inject label errors into a clean COCO file (seeded)
and score how many of them the ranked issues recover. Used by the tests and by
benchmarks/label_issues_bench.py; useful to check the method on your own clean subset too."""

import copy

import numpy as np

from yft.evaluate.label_issues.scoring import iou_xyxy

KINDS = ("missing", "wrong_class", "misplaced", "spurious")


def inject_errors(coco, fraction, seed=0):
    """A copy of `coco` with about `fraction` of its boxes given each kind of error, and the list
    of what was done: {kind, image_id, annotation_id, box (x1, y1, x2, y2) of the original}.
      missing      the box is deleted
      wrong_class  the box gets another category
      misplaced    the box is shifted by half its size and rescaled
      spurious     a new box of a random category on an empty stretch of the image
    """
    rng = np.random.default_rng(seed)
    coco = copy.deepcopy(coco)
    anns = coco["annotations"]
    cat_ids = [c["id"] for c in coco["categories"]]
    size = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    count = max(1, int(round(fraction * len(anns))))
    chosen = rng.permutation(len(anns))[: 3 * count]
    injected, deleted = [], set()
    for kind, picks in zip(KINDS[:3], np.array_split(chosen, 3)):
        for n in picks:
            ann = anns[int(n)]
            x, y, w, h = ann["bbox"]
            record = {
                "kind": kind,
                "image_id": ann["image_id"],
                "annotation_id": ann["id"],
                "box": [x, y, x + w, y + h],
            }
            if kind == "missing":
                deleted.add(ann["id"])
                record["annotation_id"] = None
            elif kind == "wrong_class":
                ann["category_id"] = int(rng.choice([c for c in cat_ids if c != ann["category_id"]]))
            else:
                W, H = size[ann["image_id"]]
                nw, nh = w * rng.uniform(0.6, 1.5), h * rng.uniform(0.6, 1.5)
                nx = float(np.clip(x + rng.choice([-1, 1]) * 0.5 * w, 0, max(W - nw, 0)))
                ny = float(np.clip(y + rng.choice([-1, 1]) * 0.5 * h, 0, max(H - nh, 0)))
                ann["bbox"], ann["area"] = [nx, ny, nw, nh], nw * nh
            injected.append(record)
    coco["annotations"] = [a for a in anns if a["id"] not in deleted]
    next_id = max((a["id"] for a in anns), default=0) + 1
    images = coco["images"]
    for _ in range(count):
        im = images[int(rng.integers(len(images)))]
        W, H = im["width"], im["height"]
        w, h = W * rng.uniform(0.1, 0.25), H * rng.uniform(0.1, 0.25)
        x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
        coco["annotations"].append(
            {
                "id": next_id,
                "image_id": im["id"],
                "category_id": int(rng.choice(cat_ids)),
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
            }
        )
        injected.append(
            {"kind": "spurious", "image_id": im["id"], "annotation_id": next_id, "box": [x, y, x + w, y + h]}
        )
        next_id += 1
    return coco, injected


def is_hit(row, error):
    """Does a ranked row point at an injected error? Label errors: the same annotation; a deleted
    box: a suggested box on the same image overlapping it (IoU >= 0.5)."""
    if row["image_id"] != error["image_id"]:
        return False
    if error["annotation_id"] is not None:
        return row["annotation_id"] == error["annotation_id"]
    return row["suggested_box"] is not None and iou_xyxy([row["suggested_box"]], [error["box"]])[0, 0] >= 0.5


def recovery(ranked, injected):
    """Precision and recall at N = the number injected, over a ranking (most suspicious first),
    overall and per kind (recall of that kind's errors within the top N; a row counts once)."""
    n = len(injected)
    top = ranked[:n]
    found = [any(is_hit(row, e) for row in top) for e in injected]
    useful = sum(any(is_hit(row, e) for e in injected) for row in top)
    per_kind = {}
    for kind in KINDS:
        flags = [f for f, e in zip(found, injected) if e["kind"] == kind]
        per_kind[kind] = {"injected": len(flags), "recall": sum(flags) / len(flags) if flags else None}
    return {
        "n": n,
        "precision_at_n": useful / max(len(top), 1),
        "recall_at_n": sum(found) / max(n, 1),
        "per_kind": per_kind,
    }
