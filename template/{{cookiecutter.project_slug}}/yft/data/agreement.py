"""Agreement between two annotators who labelled the same images.

Boxes of A and B are matched greedily by IoU (>= 0.5 by default), per class: precision, recall
and F1 of B against A (A is the reference), and the mean IoU of matched boxes. A second matching
that ignores the class gives the class confusion between the two annotators and Cohen's kappa of
the class labels of matched boxes. Images are ranked by F1 to find where they disagree most.
The finetuning guide asks for 10% of the images to be labelled by both: `overlap_sample` draws
that sample.
"""

import random
from collections import Counter, defaultdict

from yft.data.formats.coco import load_coco
from yft.io import list_images
from yft.project import UserError


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def match(boxes_a, boxes_b, threshold):
    """Greedy one-to-one matching by IoU: [(index a, index b, iou)], highest IoU first."""
    pairs = sorted(
        ((iou(a, b), i, j) for i, a in enumerate(boxes_a) for j, b in enumerate(boxes_b)), reverse=True
    )
    used_a, used_b, out = set(), set(), []
    for value, i, j in pairs:
        if value < threshold:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i), used_b.add(j), out.append((i, j, value))
    return out


def cohen_kappa(pairs):
    """Cohen's kappa of [(label a, label b)]; 1.0 when both always agree on one label."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    ca, cb = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def _boxes(coco, path):
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_name = {}
    for image in coco["images"]:
        if image["file_name"] in by_name:
            raise UserError(f"{path}: image {image['file_name']!r} listed twice")
        by_name[image["file_name"]] = image["id"]
    boxes = defaultdict(list)
    for a in coco["annotations"]:
        if a["category_id"] not in names:
            raise UserError(f"{path}: annotation {a.get('id')} has unknown category_id {a['category_id']}")
        boxes[a["image_id"]].append((names[a["category_id"]], a["bbox"]))
    return by_name, boxes


def agreement(path_a, path_b, threshold=0.5, worst=10):
    """Agreement of B with A on the images both labelled (matched by file name)."""
    coco_a, coco_b = load_coco(path_a), load_coco(path_b)
    names_a, boxes_a = _boxes(coco_a, path_a)
    names_b, boxes_b = _boxes(coco_b, path_b)
    common = sorted(set(names_a) & set(names_b))
    if not common:
        raise UserError(f"{path_b}: no image file names in common with {path_a}")
    tp, n_a, n_b, ious = Counter(), Counter(), Counter(), []
    confusion, label_pairs, per_image = Counter(), [], []
    for name in common:
        a, b = boxes_a.get(names_a[name], []), boxes_b.get(names_b[name], [])
        image_tp = 0
        for cls in {c for c, _ in a} | {c for c, _ in b}:
            ba = [box for c, box in a if c == cls]
            bb = [box for c, box in b if c == cls]
            matched = match(ba, bb, threshold)
            tp[cls] += len(matched)
            n_a[cls] += len(ba)
            n_b[cls] += len(bb)
            ious.extend(v for _, _, v in matched)
            image_tp += len(matched)
        agnostic = match([box for _, box in a], [box for _, box in b], threshold)
        for i, j, _ in agnostic:
            confusion[(a[i][0], b[j][0])] += 1
            label_pairs.append((a[i][0], b[j][0]))
        for i in set(range(len(a))) - {i for i, _, _ in agnostic}:
            confusion[(a[i][0], "(missed by B)")] += 1
        for j in set(range(len(b))) - {j for _, j, _ in agnostic}:
            confusion[("(extra in B)", b[j][0])] += 1
        f1 = 1.0 if not a and not b else 2 * image_tp / (len(a) + len(b))
        per_image.append({"file_name": name, "f1": round(f1, 3), "boxes_a": len(a), "boxes_b": len(b)})

    def prf(t, na, nb):
        p = t / nb if nb else (1.0 if not na else 0.0)
        r = t / na if na else (1.0 if not nb else 0.0)
        return {
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "boxes_a": na,
            "boxes_b": nb,
        }

    kappa = cohen_kappa(label_pairs)
    return {
        "images": len(common),
        "only_in_a": len(set(names_a) - set(names_b)),
        "only_in_b": len(set(names_b) - set(names_a)),
        "iou_threshold": threshold,
        "overall": prf(sum(tp.values()), sum(n_a.values()), sum(n_b.values())),
        "per_class": {c: prf(tp[c], n_a[c], n_b[c]) for c in sorted(n_a.keys() | n_b.keys())},
        "mean_iou": round(sum(ious) / len(ious), 4) if ious else None,
        "cohen_kappa": round(kappa, 4) if kappa is not None else None,
        "confusion": [{"a": a, "b": b, "count": n} for (a, b), n in sorted(confusion.items())],
        "worst_images": sorted(per_image, key=lambda r: (r["f1"], r["file_name"]))[:worst],
    }


def format_agreement(r):
    o = r["overall"]
    lines = [
        f"{r['images']} images labelled by both (only A: {r['only_in_a']}, only B: {r['only_in_b']})",
        f"B against A at IoU {r['iou_threshold']}: precision {o['precision']:.3f}, recall "
        f"{o['recall']:.3f}, F1 {o['f1']:.3f}; mean IoU of matches {r['mean_iou']}; "
        f"Cohen's kappa of class labels {r['cohen_kappa']}",
    ]
    for cls, v in r["per_class"].items():
        lines.append(
            f"  {cls}: P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f} "
            f"(A {v['boxes_a']}, B {v['boxes_b']})"
        )
    off = [c for c in r["confusion"] if c["a"] != c["b"]]
    if off:
        lines.append(
            "disagreements (A -> B): " + ", ".join(f"{c['a']} -> {c['b']} x{c['count']}" for c in off)
        )
    lines.append(
        "lowest agreement: " + ", ".join(f"{w['file_name']} (F1 {w['f1']})" for w in r["worst_images"][:5])
    )
    return "\n".join(lines)


def overlap_sample(images, fraction=0.1, seed=0):
    """A seeded random `fraction` of the images under a folder (at least one), sorted."""
    if not 0 < fraction <= 1:
        raise UserError(f"--fraction {fraction}: expected a value in (0, 1]")
    files = list_images(images, relative=True)
    if not files:
        raise UserError(f"{images}: no images found")
    count = max(1, round(len(files) * fraction))
    return sorted(random.Random(seed).sample(files, count))
