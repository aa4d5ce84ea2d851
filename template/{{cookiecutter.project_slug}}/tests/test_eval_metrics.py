"""Our metrics equal pycocotools' on the same detections, and the edge cases give honest numbers."""

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yft.evaluate import analysis
from yft.evaluate.coco_metrics import SUMMARY_KEYS, coco_metrics
from yft.evaluate.engine import available_engines, run_cocoeval
from yft.evaluate.matching import accumulate, ap_from_precision, flatten, match_dataset
from yft.evaluate.report import analyse


def synthetic(n_images=40, n_classes=3, seed=0, crowd_rate=0.08):
    """Random boxes, jittered copies as detections (some with the wrong class), and noise."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"})
        boxes = []
        for _ in range(rng.integers(0, 7)):
            w, h = rng.uniform(4, 300, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            c = int(rng.integers(1, n_classes + 1))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": c,
                    "bbox": [x, y, w, h],
                    "area": w * h * rng.uniform(0.5, 1),
                    "iscrowd": int(rng.random() < crowd_rate),
                }
            )
            boxes.append((x, y, w, h, c))
        for _ in range(rng.integers(0, 25)):
            if boxes and rng.random() < 0.6:
                x, y, w, h, c = boxes[rng.integers(len(boxes))]
                x, y = x + rng.normal(0, w * 0.1), y + rng.normal(0, h * 0.1)
                w, h = w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)
                if rng.random() < 0.2:
                    c = int(rng.integers(1, n_classes + 1))
            else:
                w, h = rng.uniform(4, 300, 2)
                x, y, c = (
                    rng.uniform(0, 640 - w),
                    rng.uniform(0, 480 - h),
                    int(rng.integers(1, n_classes + 1)),
                )
            dets.append(
                {
                    "image_id": i,
                    "category_id": c,
                    "bbox": [round(float(v), 2) for v in (x, y, w, h)],
                    "score": round(float(rng.random()), 2),
                }
            )  # 2 decimals: many ties
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, n_classes + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def reference(dataset, dets):
    """pycocotools itself: (stats, precision array)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats, ev.eval["precision"]


@pytest.fixture(scope="module")
def data():
    dataset, dets = synthetic()
    return dataset, dets, reference(dataset, dets)


@pytest.mark.parametrize("engine", available_engines())
def test_every_engine_gives_pycocotools_numbers(data, engine):
    dataset, dets, (stats, precision) = data
    ev = run_cocoeval(dataset, dets, engine)
    assert np.array_equal(np.asarray(ev.stats), stats)  # all 12, bit for bit
    np.testing.assert_allclose(np.asarray(ev.eval["precision"]), precision, rtol=0, atol=1e-12)


def test_fast_engine_is_installed():
    assert available_engines()[0] in ("faster", "yolox")


def test_coco_metrics_per_class_matches_pycocotools(data):
    dataset, dets, (stats, precision) = data
    before = copy.deepcopy(dets)
    m = coco_metrics(dataset, dets, ["c1", "c2", "c3"], [1, 2, 3])
    assert dets == before  # the caller's detections are untouched
    assert [m[k] for k in SUMMARY_KEYS] == pytest.approx(list(stats), abs=0)
    for k, name in enumerate(["c1", "c2", "c3"]):
        p = precision[:, :, k, 0, -1]
        assert m["per_class"][name]["AP50_95"] == pytest.approx(np.mean(p[p > -1]), abs=1e-12)
        assert m["per_class"][name]["AP50"] == pytest.approx(np.mean(p[0]), abs=1e-12)
        assert m["per_class"][name]["AP75"] == pytest.approx(np.mean(p[5]), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_own_matching_reproduces_pycocotools_exactly(seed):
    dataset, dets = synthetic(seed=seed, crowd_rate=0.15)
    stats, precision = reference(dataset, dets)
    mine = accumulate(flatten(match_dataset(dataset, dets, [1, 2, 3]), 3))
    assert np.array_equal(mine, precision[:, :, :, 0, -1])
    map50_95, map50, _, _ = ap_from_precision(mine)
    assert (map50_95, map50) == (stats[0], stats[1])


def test_bootstrap_weights_of_one_change_nothing_and_zero_weights_drop_images(data):
    dataset, dets, _ = data
    flat = flatten(match_dataset(dataset, dets, [1, 2, 3]), 3)
    assert np.array_equal(accumulate(flat, np.ones(40)), accumulate(flat))
    half = {
        "images": dataset["images"][:20],
        "categories": dataset["categories"],
        "annotations": [a for a in dataset["annotations"] if a["image_id"] <= 20],
    }
    sub = accumulate(flatten(match_dataset(half, [d for d in dets if d["image_id"] <= 20], [1, 2, 3]), 3))
    np.testing.assert_allclose(accumulate(flat, np.r_[np.ones(20), np.zeros(20)]), sub, atol=1e-12)


# ---------------------------------------------------------------- edge cases


def tiny(annotations, classes=("a",)):
    return {
        "images": [
            {"id": 1, "width": 200, "height": 200, "file_name": "1.jpg"},
            {"id": 2, "width": 200, "height": 200, "file_name": "2.jpg"},
        ],
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(classes)],
    }


def box(id_, image, cls, bbox, crowd=0):
    return {
        "id": id_,
        "image_id": image,
        "category_id": cls,
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "iscrowd": crowd,
    }


def full_metrics(dataset, dets, names):
    ids = [c["id"] for c in dataset["categories"]]
    metrics = {
        "num_images": 2,
        "num_detections": len(dets),
        "split": "val",
        "backend": "torch",
        **coco_metrics(dataset, dets, names, ids),
    }
    return analyse(metrics, dets, dataset, names, ids)[0]


def test_single_class_without_large_boxes_is_undefined_not_minus_one():  # YOLOX issue #35
    dataset = tiny([box(1, 1, 1, [10, 10, 20, 20]), box(2, 2, 1, [50, 50, 40, 40])])
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    m = full_metrics(dataset, dets, ["a"])
    stats, _ = reference(dataset, dets)
    assert stats[5] == -1 and m["mAP_large"] is None
    assert m["mAP50"] == pytest.approx(stats[1])
    assert any("mAP_large" in note for note in m["notes"])
    op = m["operating_point"]["iou50"]
    assert (op["conf"], op["precision"], op["recall"], op["tp"], op["fn"]) == (0.9, 1.0, 0.5, 1, 1)
    assert m["errors"]["false_negatives"]["medium"] == 1


def test_no_detections_at_all():
    m = full_metrics(tiny([box(1, 1, 1, [10, 10, 20, 20])]), [], ["a"])
    assert m["mAP50_95"] == 0.0 and m["mAP_medium"] is None and m["suggested_conf"] is None
    assert m["operating_point"]["iou50"]["recall"] == 0.0
    assert m["operating_point"]["iou50"]["precision"] is None
    assert m["confusion_matrix"]["matrix"] == [[0, 1], [0, 0]]  # one box missed
    assert any("no detections" in note for note in m["notes"])


def test_empty_ground_truth():
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    m = full_metrics(tiny([]), dets, ["a"])
    assert m["mAP50_95"] is None and m["per_class"]["a"]["AP50"] is None
    assert m["operating_point"]["iou50"]["recall"] is None
    assert m["errors"]["false_positives"]["background"] == 1
    assert any("no ground-truth" in note for note in m["notes"])


def test_only_crowd_boxes():
    dataset = tiny([box(1, 1, 1, [10, 10, 50, 50], crowd=1)])
    dets = [{"image_id": 1, "category_id": 1, "bbox": [12, 12, 20, 20], "score": 0.8}]
    m = full_metrics(dataset, dets, ["a"])
    assert m["mAP50_95"] is None and m["per_class"]["a"]["num_gt"] == 0
    assert any("only crowd" in note for note in m["notes"])
    assert m["errors"]["false_positives"]["total"] == 0  # inside a crowd region: ignored


def test_error_kinds_and_confusion_matrix():
    dataset = tiny(
        [
            box(1, 1, 1, [0, 0, 40, 40]),
            box(2, 1, 2, [100, 100, 40, 40]),
            box(3, 2, 1, [0, 0, 100, 100]),
            box(4, 2, 2, [150, 150, 10, 10]),
        ],
        ("a", "b"),
    )
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 40], "score": 0.9},  # TP a
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 40, 40], "score": 0.8},  # duplicate
        {"image_id": 1, "category_id": 1, "bbox": [100, 100, 40, 40], "score": 0.7},  # b seen as a
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 30, 30], "score": 0.6},  # IoU 0.09: background
        {"image_id": 2, "category_id": 2, "bbox": [60, 160, 20, 20], "score": 0.5},  # background
    ]
    m = analyse(
        {"notes": [], "per_class": {"a": {"num_gt": 2}, "b": {"num_gt": 2}}},
        dets,
        dataset,
        ["a", "b"],
        [1, 2],
        conf=0.5,
    )[0]
    fp = m["errors"]["false_positives"]
    assert fp == {"localization": 0, "wrong_class": 1, "duplicate": 1, "background": 2, "total": 4}
    fn = m["errors"]["false_negatives"]
    assert fn == {"total": 3, "small": 1, "medium": 1, "large": 1, "detected_as_other_class": 1}
    assert m["confusion_matrix"]["labels"] == ["a", "b", "background"]
    assert m["confusion_matrix"]["matrix"] == [[1, 0, 1], [1, 0, 1], [2, 1, 0]]
    assert m["worst_images"][0]["image_id"] == 2  # 2 false positives + 2 missed


def test_localisation_error():
    dataset = tiny([box(1, 1, 1, [0, 0, 100, 100])])
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 100], "score": 0.9}]  # IoU 0.4
    m = analyse({"notes": [], "per_class": {"a": {"num_gt": 1}}}, dets, dataset, ["a"], [1])[0]
    assert m["errors"]["false_positives"]["localization"] == 1


def test_keep_coco_reports_old_and_new_classes_separately():
    per_class = {
        f"coco{i}": {"AP50_95": 0.5 if i < 2 else None, "AP50": 0.8 if i < 2 else None} for i in range(80)
    }
    per_class["drone"] = {"AP50_95": 0.2, "AP50": 0.4}
    groups = analysis.class_groups(per_class, "keep_coco")
    assert groups["coco"] == {"num_classes": 80, "classes_with_gt": 2, "mAP50_95": 0.5, "mAP50": 0.8}
    assert groups["new"]["mAP50_95"] == 0.2
    assert analysis.class_groups(per_class, "fresh") is None
