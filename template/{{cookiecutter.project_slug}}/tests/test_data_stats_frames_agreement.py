"""invoke stats / show-labels, extract-frames and agreement on small real data."""

import json
import re

import cv2
import numpy as np
import pytest

from yft.data.agreement import agreement, cohen_kappa, overlap_sample
from yft.data.coco_io import annotation_path
from yft.data.frames import GROUP_BY, extract_frames
from yft.data.stats import dataset_stats, format_stats, show_labels
from yft.project import UserError


def test_stats_plots_and_label_grid(sample_exp, tmp_path):
    stats, paths = dataset_stats(sample_exp, out=tmp_path / "stats")
    train = stats["train"]
    coco = json.loads(annotation_path(sample_exp, "train").read_text())
    assert train["images"] == 12 and train["boxes"] == len(coco["annotations"])
    assert sum(train["classes"].values()) == train["boxes"] == sum(train["sizes"].values())
    assert list(train["classes"]) == list(sample_exp.class_names)
    for path in paths[1:]:
        assert cv2.imread(str(path)) is not None
    grid, count = show_labels(sample_exp, tmp_path / "grid.png", 4, "val")
    assert count == 4 and cv2.imread(str(grid)).shape == (512, 512, 3)


def test_imbalance_warning(tmp_path):
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "annotations": [
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": 1 if k < 22 else 2,
                "bbox": [0, 0, 10, 10],
                "area": 100,
                "iscrowd": 0,
            }
            for k in range(24)
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
    }
    (tmp_path / "x.json").write_text(json.dumps(coco))
    stats, _ = dataset_stats(None, tmp_path / "x.json")
    assert stats["x"]["imbalance_ratio"] == 11.0
    text = format_stats(stats)
    assert "class imbalance 11.0:1 is above 10:1" in text and "no boxes of c" in text


def test_extract_frames(tmp_path):
    video = tmp_path / "gate 3.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    scenes = [rng.integers(0, 255, (48, 64, 3), np.uint8) for _ in range(3)]
    for k in range(30):  # 3 s: a scene per second, static within it
        writer.write(scenes[k // 10])
    writer.release()
    written, skipped = extract_frames(video, tmp_path / "frames", every=0.5)
    assert [p.name for p in written] == [
        "gate 3_t000000.000s.jpg",
        "gate 3_t000001.000s.jpg",
        "gate 3_t000002.000s.jpg",
    ]
    assert skipped == 3
    assert all(re.match(GROUP_BY, p.name).group(1) == "gate 3" for p in written)
    everything, _ = extract_frames(video, tmp_path / "all", every=5, unit="frames", max_bits=-1)
    assert len(everything) == 6
    (tmp_path / "bad.avi").write_text("not a video")
    with pytest.raises(UserError, match="bad.avi: "):
        extract_frames(tmp_path / "bad.avi", tmp_path / "x")


def coco(boxes):
    """boxes: {file_name: [(class, x, y, w, h)]}"""
    names = ["cat", "dog"]
    out = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
    }
    for k, (name, items) in enumerate(boxes.items(), 1):
        out["images"].append({"id": k, "file_name": name, "width": 100, "height": 100})
        for c, *bbox in items:
            out["annotations"].append(
                {
                    "id": len(out["annotations"]) + 1,
                    "image_id": k,
                    "category_id": names.index(c) + 1,
                    "bbox": bbox,
                    "area": 1,
                    "iscrowd": 0,
                }
            )
    return out


def test_agreement(tmp_path):
    a = coco(
        {
            "1.jpg": [("cat", 0, 0, 10, 10), ("dog", 50, 50, 20, 20)],
            "2.jpg": [("cat", 0, 0, 10, 10)],
            "3.jpg": [],
            "only_a.jpg": [("cat", 0, 0, 5, 5)],
        }
    )
    b = coco(
        {
            "1.jpg": [("cat", 1, 0, 10, 10), ("dog", 50, 50, 20, 20), ("dog", 80, 80, 5, 5)],
            "2.jpg": [("dog", 0, 0, 10, 10)],
            "3.jpg": [],
        }
    )
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    r = agreement(tmp_path / "a.json", tmp_path / "b.json")
    assert r["images"] == 3 and r["only_in_a"] == 1
    assert r["overall"] == {"precision": 0.5, "recall": 0.6667, "f1": 0.5714, "boxes_a": 3, "boxes_b": 4}
    assert r["mean_iou"] == pytest.approx((90 / 110 + 1) / 2, abs=1e-4)
    confusion = {(c["a"], c["b"]): c["count"] for c in r["confusion"]}
    assert confusion[("cat", "dog")] == 1 and confusion[("(extra in B)", "dog")] == 1
    assert r["worst_images"][0]["file_name"] == "2.jpg"
    assert r["cohen_kappa"] == pytest.approx(cohen_kappa([("cat", "cat"), ("dog", "dog"), ("cat", "dog")]))
    assert cohen_kappa([("x", "x"), ("y", "y")]) == 1.0


def test_overlap_sample(tmp_path):
    for k in range(30):
        (tmp_path / f"{k:02d}.jpg").write_bytes(b"x")
    sample = overlap_sample(tmp_path, 0.1, seed=1)
    assert len(sample) == 3 and sample == overlap_sample(tmp_path, 0.1, seed=1)
