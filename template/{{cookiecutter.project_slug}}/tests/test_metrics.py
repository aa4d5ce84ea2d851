import contextlib
import io

import numpy as np
from pycocotools.coco import COCO

from yft.evaluate.coco_metrics import coco_metrics, to_coco_results

NAMES, IDS = ["a", "b"], [1, 2]


def gt(annotations):
    data = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


BOXES = [
    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
    {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 40, 20], "area": 800, "iscrowd": 0},
]


def test_perfect_detections_score_one_and_unlabelled_class_is_undefined():
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9} for a in BOXES]
    m = coco_metrics(gt(BOXES), dets, NAMES, IDS)
    assert m["mAP50_95"] == 1.0 and m["mAP50"] == 1.0
    assert m["per_class"]["a"] == {"AP50_95": 1.0, "AP50": 1.0, "AP75": 1.0, "num_gt": 2}
    assert m["per_class"]["b"]["AP50_95"] is None  # no ground truth: undefined, not -1
    assert m["mAP_large"] is None  # no large boxes
    assert any("no ground truth" in note for note in m["notes"])


def test_wrong_class_scores_zero():
    dets = [{"image_id": 1, "category_id": 2, "bbox": BOXES[0]["bbox"], "score": 0.9}]
    m = coco_metrics(gt(BOXES), dets, NAMES, IDS)
    assert m["mAP50"] == 0.0


def test_no_detections_and_no_ground_truth_are_explained():
    m = coco_metrics(gt(BOXES), [], NAMES, IDS)
    assert m["mAP50_95"] == 0.0 and "no detections" in m["notes"][0]
    m = coco_metrics(gt([]), [], NAMES, IDS)
    assert m["mAP50_95"] is None and "no ground-truth" in m["notes"][0]


def test_coco_results_convert_corners_to_xywh():
    det = np.array([[10, 20, 40, 60, 0.5, 1]], np.float32)
    (res,) = to_coco_results([det], [7], IDS)
    assert res == {"image_id": 7, "category_id": 2, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.5}
