"""Split one COCO file into train/val/test (or K folds), stratified over classes and aware of
groups, and lay the images out in the COCO folders YOLOX reads.

Stratification is iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011) over
groups of images: the rarest class is placed first, each group goes to the split that still
wants most of that class, so every split gets its share of every class even when images carry
several classes. Groups come from `--group-by REGEX` on the file name (its first capture group,
or the whole match): frames of one video or one capture session stay in one split. Negatives
(images without boxes) are spread in proportion. The same seed gives the same split.
"""

import os
import shutil
from collections import Counter
from pathlib import Path

from yft.data.assign import assign, subset
from yft.data.formats.coco import load_coco
from yft.io import write_json
from yft.project import UserError

SPLITS = ("train", "val", "test")


def _link(src, dst, symlink):
    dst.parent.mkdir(parents=True, exist_ok=True)
    if symlink:
        os.symlink(os.path.abspath(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _check_empty(folder, force):
    if folder.is_dir() and any(p.name != ".gitkeep" for p in folder.iterdir()) and not force:
        raise UserError(f"{folder}: already holds files; pass --force to replace this split")


def lay_out(out, parts, images, names, symlink=False, force=False):
    """Write image folders and annotation files for {split: coco}; all or nothing."""
    out = Path(out)
    for split in parts:
        _check_empty(out / names[split][0], force)
    for coco in parts.values():
        for image in coco["images"]:
            if not (Path(images) / image["file_name"]).is_file():
                raise UserError(f"{Path(images) / image['file_name']}: image not found")
    out.mkdir(parents=True, exist_ok=True)
    staging = out / ".split-staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for split, coco in parts.items():
            for image in coco["images"]:
                _link(
                    Path(images) / image["file_name"], staging / names[split][0] / image["file_name"], symlink
                )
            (staging / names[split][0] / ".gitkeep").touch()
        for split in parts:  # swap the staged folders in
            folder, old = out / names[split][0], out / f".old-{names[split][0]}"
            if folder.exists():
                os.replace(folder, old)
            os.replace(staging / names[split][0], folder)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = []
    for split, coco in parts.items():
        path = out / "annotations" / names[split][1]
        write_json(path, coco)
        written.append(path)
    return written


def class_table(parts, categories):
    """Per-split class counts as printable lines."""
    names = {c["id"]: c["name"] for c in categories}
    width = max([len(n) for n in names.values()] + [8])
    lines = ["class".ljust(width) + "".join(f"{s:>9}" for s in parts)]
    counts = {s: Counter(a["category_id"] for a in c["annotations"]) for s, c in parts.items()}
    for cid, name in names.items():
        if any(counts[s][cid] for s in parts):
            lines.append(name.ljust(width) + "".join(f"{counts[s][cid]:>9}" for s in parts))
    lines.append("images".ljust(width) + "".join(f"{len(c['images']):>9}" for c in parts.values()))
    negatives = {
        s: len(c["images"]) - len({a["image_id"] for a in c["annotations"]}) for s, c in parts.items()
    }
    lines.append("negatives".ljust(width) + "".join(f"{negatives[s]:>9}" for s in parts))
    return lines


def split_dataset(
    ann,
    images,
    out,
    ratios=(0.8, 0.1, 0.1),
    seed=0,
    group_by=None,
    kfold=0,
    symlink=False,
    force=False,
    folder_names=None,
    by_time=False,
    time_from=None,
    time_format=None,
    gap=None,
    strict=False,
):
    """Split `ann` (a COCO file over the images in `images`) into out/train2017 ... or K folds;
    by capture time with by_time (see yft.data.timesplit). Returns (written paths, printable lines)."""
    coco = load_coco(ann)
    if not Path(images).is_dir():
        raise UserError(f"{images}: image folder not found")
    folder_names = folder_names or {s: (f"{s}2017", f"instances_{s}2017.json") for s in SPLITS}
    by_time = by_time or bool(time_from)
    if by_time and kfold:
        raise UserError("--by-time and --kfold cannot be combined: a time split has one train/val/test order")
    if kfold:
        if kfold < 2:
            raise UserError(f"--kfold {kfold}: needs at least 2 folds")
        per_image = assign(coco, [1.0 / kfold] * kfold, seed, group_by)
        written, lines = [], []
        for k in range(kfold):
            parts = {
                "train": subset(coco, [n for n, f in enumerate(per_image) if f != k]),
                "val": subset(coco, [n for n, f in enumerate(per_image) if f == k]),
            }
            written += lay_out(Path(out) / "folds" / f"fold_{k}", parts, images, folder_names, symlink, force)
            lines += [f"fold {k}:"] + class_table(parts, coco["categories"])
        return written, lines
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise UserError(f"--train/--val/--test {tuple(ratios)}: fractions must be >= 0 and add up to 1")
    lines = []
    if by_time:
        from yft.data import timesplit

        per_image, times, lines = timesplit.time_assign(
            coco, images, ratios, seed, group_by, time_from, time_format, gap, strict
        )
        coco = timesplit.stamp(coco, times)  # COCO's date_captured, for `invoke stats`
    else:
        per_image = assign(coco, list(ratios), seed, group_by)
    parts = {
        s: subset(coco, [n for n, f in enumerate(per_image) if f == i])
        for i, s in enumerate(SPLITS)
        if ratios[i] > 0
    }
    written = lay_out(out, parts, images, folder_names, symlink, force)
    lines += class_table(parts, coco["categories"])
    if by_time:
        lines += ["capture time per split:"] + timesplit.range_lines(parts)
    return written, lines
