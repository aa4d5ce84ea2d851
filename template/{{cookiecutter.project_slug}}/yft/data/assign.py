"""Assigning images to splits or folds: stratified by class, groups (--group-by) kept whole.

Pure functions over COCO dicts, shared by `invoke split` (random and k-fold), the time-aware split
(yft.data.timesplit) and label-issues' folds, so each of them imports this and none imports another.
"""

import random
import re
from collections import Counter

from yft.project import UserError


def groups_of(coco, group_by=None):
    """{group key: [image index, ...]} in file-name order."""
    pattern = None
    if group_by:
        try:
            pattern = re.compile(group_by)
        except re.error as err:
            raise UserError(f"--group-by {group_by!r}: not a regular expression ({err})") from None
    groups = {}
    for n, image in enumerate(coco["images"]):
        name = image["file_name"]
        key = name
        if pattern:
            match = pattern.search(name)
            if match:
                key = "group:" + (match.group(1) if pattern.groups else match.group(0))
        groups.setdefault(key, []).append(n)
    return groups


def stratify(group_labels, group_sizes, ratios, seed):
    """Fold index for each group. group_labels: [Counter(label -> images with it)]."""
    rng = random.Random(seed)
    order = list(range(len(group_labels)))
    rng.shuffle(order)
    totals = Counter()
    for labels in group_labels:
        totals.update(labels)
    total_images = sum(group_sizes)
    want = [{label: r * count for label, count in totals.items()} for r in ratios]
    want_images = [r * total_images for r in ratios]
    fold = [None] * len(group_labels)
    remaining = {label: [g for g in order if group_labels[g].get(label)] for label in totals}

    def place(g, label):
        best = max(
            range(len(ratios)),
            key=lambda f: (want[f].get(label, 0) if label is not None else 0, want_images[f], rng.random()),
        )
        fold[g] = best
        for lab, count in group_labels[g].items():
            want[best][lab] -= count
        want_images[best] -= group_sizes[g]

    while True:
        open_labels = {lab: [g for g in groups if fold[g] is None] for lab, groups in remaining.items()}
        open_labels = {lab: gs for lab, gs in open_labels.items() if gs}
        if not open_labels:
            break
        label = min(open_labels, key=lambda lab: (len(open_labels[lab]), str(lab)))
        for g in open_labels[label]:
            place(g, label)
        remaining = open_labels
    for g in order:  # negatives (groups without boxes)
        if fold[g] is None:
            place(g, None)
    return fold


def assign(coco, ratios, seed, group_by=None):
    """Fold index for every image of a COCO file."""
    groups = groups_of(coco, group_by)
    labels_of = {}
    for ann in coco["annotations"]:
        labels_of.setdefault(ann["image_id"], set()).add(ann["category_id"])
    keys = list(groups)
    group_labels, sizes = [], []
    for key in keys:
        labels = Counter()
        for n in groups[key]:
            labels.update(labels_of.get(coco["images"][n]["id"], ()))
        group_labels.append(labels)
        sizes.append(len(groups[key]))
    folds = stratify(group_labels, sizes, ratios, seed)
    per_image = [None] * len(coco["images"])
    for key, fold in zip(keys, folds):
        for n in groups[key]:
            per_image[n] = fold
    return per_image


def subset(coco, indices):
    """A COCO dict with only these images (ids kept: they stay unique across the splits)."""
    images = [coco["images"][n] for n in indices]
    ids = {i["id"] for i in images}
    return {
        "images": images,
        "annotations": [a for a in coco["annotations"] if a["image_id"] in ids],
        "categories": coco["categories"],
    }
