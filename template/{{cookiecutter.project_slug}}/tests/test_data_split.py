"""invoke split: stratified, deterministic, group-aware; K folds; hardlinked layout."""

import json
import os
from collections import Counter

import pytest

from yft.data.split import split_dataset
from yft.project import UserError


def dataset(tmp_path, n=200):
    """n images: class 3 is rare (every 20th image), 'vidK_t...' names in groups of 5 frames."""
    images = tmp_path / "all"
    images.mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": i, "name": f"c{i}"} for i in (1, 2, 3)]}
    for i in range(n):
        name = f"vid{i // 5:03d}_t{i % 5:02d}.jpg"
        (images / name).write_bytes(b"\xff\xd8 fake jpeg " + name.encode())
        coco["images"].append({"id": i + 1, "file_name": name, "width": 10, "height": 10})
        labels = [] if i % 10 == 9 else [1 + i % 2] + ([3] if i % 20 == 0 else [])
        for c in labels:
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": i + 1,
                    "category_id": c,
                    "bbox": [1, 1, 2, 2],
                    "area": 4,
                    "iscrowd": 0,
                }
            )
    ann = tmp_path / "all.json"
    ann.write_text(json.dumps(coco))
    return ann, images


def load(out, split):
    return json.loads((out / "annotations" / f"instances_{split}2017.json").read_text())


def test_stratified_grouped_and_deterministic(tmp_path):
    ann, images = dataset(tmp_path)
    out = tmp_path / "data"
    written, lines = split_dataset(ann, images, out, (0.6, 0.2, 0.2), seed=3, group_by=r"^(vid\d+)_t")
    parts = {s: load(out, s) for s in ("train", "val", "test")}
    assert sum(len(p["images"]) for p in parts.values()) == 200
    for s, p in parts.items():
        rare = Counter(a["category_id"] for a in p["annotations"])[3]
        assert rare >= 1, f"{s} lacks the rare class"
        negatives = len(p["images"]) - len({a["image_id"] for a in p["annotations"]})
        assert negatives >= 2
        for image in p["images"]:  # hardlinked, not copied
            assert (
                os.stat(out / f"{s}2017" / image["file_name"]).st_ino
                == os.stat(images / image["file_name"]).st_ino
            )
    videos = {s: {i["file_name"][:6] for i in p["images"]} for s, p in parts.items()}
    assert not (videos["train"] & videos["val"]) and not (videos["train"] & videos["test"])
    assert 100 <= len(parts["train"]["images"]) <= 140
    assert any(line.startswith("c3") for line in lines)

    with pytest.raises(UserError, match="already holds files; pass --force"):
        split_dataset(ann, images, out, (0.6, 0.2, 0.2), seed=3)
    split_dataset(ann, images, out, (0.6, 0.2, 0.2), seed=3, group_by=r"^(vid\d+)_t", force=True)
    assert load(out, "val") == parts["val"]  # same seed, same split
    split_dataset(ann, images, out, (0.6, 0.2, 0.2), seed=4, group_by=r"^(vid\d+)_t", force=True)
    assert load(out, "val") != parts["val"]


def test_kfold_and_symlinks(tmp_path):
    ann, images = dataset(tmp_path, 60)
    out = tmp_path / "data"
    split_dataset(ann, images, out, kfold=3, seed=0, symlink=True)
    vals = [
        json.loads((out / "folds" / f"fold_{k}" / "annotations" / "instances_val2017.json").read_text())
        for k in range(3)
    ]
    names = [{i["file_name"] for i in v["images"]} for v in vals]
    assert sum(map(len, names)) == 60 and not (names[0] & names[1])
    fold0 = out / "folds" / "fold_0" / "val2017"
    assert all((fold0 / n).is_symlink() for n in names[0])


def test_bad_fractions_and_regex(tmp_path):
    ann, images = dataset(tmp_path, 10)
    with pytest.raises(UserError, match="add up to 1"):
        split_dataset(ann, images, tmp_path / "o", (0.8, 0.3, 0.1))
    with pytest.raises(UserError, match="not a regular expression"):
        split_dataset(ann, images, tmp_path / "o", group_by="(")
    assert not (tmp_path / "o").exists()
