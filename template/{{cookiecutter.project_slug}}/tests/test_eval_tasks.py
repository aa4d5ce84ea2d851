"""The evaluate tasks on a real (untrained) model and a small synthetic dataset:
eval run folder, compare, robustness, mine, drift."""

import csv
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from yft.data.coco_io import image_dir
from yft.evaluate.cli import run_eval
from yft.evaluate.compare import compare
from yft.evaluate.drift import drift
from yft.evaluate.mine import mine
from yft.evaluate.robustness import CORRUPTIONS, corrupt, robustness
from yft.project import UserError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def eval_run(eval_setup, tmp_path_factory):
    exp, ckpt = eval_setup
    out = tmp_path_factory.mktemp("eval_run")
    metrics = run_eval(exp, CPU, ckpt, "val", "torch", 4, out=out, progress=False)
    return exp, ckpt, out, metrics


def test_eval_writes_one_complete_run_folder(eval_run):
    exp, _, out, m = eval_run
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    for key in (
        "mAP50_95",
        "mAP50",
        "mAP75",
        "mAP_small",
        "AR100",
        "per_class",
        "operating_point",
        "suggested_conf",
        "errors",
        "confusion_matrix",
        "worst_images",
        "speed",
        "notes",
        "engine",
    ):
        assert key in m
    for name in m["files"].values():
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    assert (
        "![confusion matrix](confusion_matrix.png)" in report and "Suggested deployment threshold" in report
    )
    assert m["speed"]["latency_ms_batch1"] > 0 and m["speed"]["peak_memory_mb"] > 0
    # the confusion matrix accounts for every box and every detection above the threshold
    matrix = np.array(m["confusion_matrix"]["matrix"])
    assert matrix[:-1].sum() == sum(row["num_gt"] for row in m["per_class"].values())
    dets = json.loads((out / "detections.json").read_text())
    conf = m["errors"]["conf"]
    per_image_class = {}
    for d in dets:  # COCO keeps the 100 best detections per image and class
        if d["score"] >= conf:
            key = (d["image_id"], d["category_id"])
            per_image_class[key] = per_image_class.get(key, 0) + 1
    assert matrix[:, :-1].sum() == sum(min(n, 100) for n in per_image_class.values())
    assert m["errors"]["false_positives"]["total"] == matrix[-1, :-1].sum() + (
        matrix[:-1, :-1].sum() - np.trace(matrix[:-1, :-1])
    )
    with open(out / "confusion_matrix.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == m["confusion_matrix"]["labels"] and rows[0][-1] == "background"
    if len(exp.class_names) <= 30:  # more classes: only those that occur are shown
        assert rows[0][1:-1] == list(exp.class_names)


def test_trt_backend_is_a_clear_user_error(eval_setup):
    exp, ckpt = eval_setup
    with pytest.raises(UserError):
        run_eval(exp, CPU, ckpt, "val", "trt", 4, progress=False)
    with pytest.raises(UserError, match="--split"):
        run_eval(exp, CPU, ckpt, "train", "torch", 4, progress=False)


def test_compare_same_model_is_no_difference(eval_run, tmp_path):
    exp, ckpt, out, m = eval_run
    result, folder = compare(exp, CPU, out, ckpt, split="val", samples=200, out=tmp_path, progress=False)
    assert result["mAP50_95"]["delta"] == 0.0 and result["verdict"] == "no significant difference"
    assert result["a"]["mAP50_95"] == pytest.approx(m["mAP50_95"], abs=1e-12)  # same numbers as eval
    assert (folder / "compare.md").is_file() and (folder / "compare.json").is_file()
    with pytest.raises(UserError, match="val split, not test"):
        compare(exp, CPU, out, ckpt, split="test", samples=200, out=tmp_path / "test", progress=False)


def test_compare_detects_a_clearly_better_model(eval_setup, tmp_path):
    from yft.data.precheck import check_split
    from yft.evaluate.compare import _interval, flatten, match_dataset, paired_bootstrap, verdict

    exp, _ = eval_setup
    dataset = check_split(exp, "val")
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in dataset["annotations"]
    ]
    half = perfect[::2]
    flats = [flatten(match_dataset(dataset, d, exp.category_ids()), exp.num_classes) for d in (half, perfect)]
    (a, b), diffs, _, _ = paired_bootstrap(*flats, samples=200)
    stat = _interval(b[0] - a[0], diffs)
    assert b[0] == 1.0 and stat["delta"] > 0 and stat["ci95"][0] > 0
    assert verdict(stat) == "B better, significant"


def test_corruptions_change_pixels_deterministically():
    img = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    for name in CORRUPTIONS:
        out = corrupt(img, name, 3, seed=1)
        assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
        assert np.array_equal(out, corrupt(img, name, 3, seed=1))
    assert corrupt(img, "low_light", 5).mean() < corrupt(img, "low_light", 1).mean()
    with pytest.raises(UserError):
        corrupt(img, "fog", 1)


def test_robustness_table(eval_run, tmp_path):
    exp, ckpt, _, m = eval_run
    result, folder = robustness(exp, CPU, ckpt, "val", ["low_light"], (1, 5), 4, out=tmp_path, progress=False)
    assert result["clean"]["mAP50_95"] == pytest.approx(m["mAP50_95"])  # same pipeline as eval
    assert set(result["corruptions"]) == {"low_light"}
    assert set(result["corruptions"]["low_light"]) == {"1", "5"}
    assert (folder / "robustness.png").is_file() and (folder / "robustness.md").is_file()


def test_mine_ranks_and_writes_importable_preannotations(eval_setup, tmp_path):
    exp, ckpt = eval_setup
    folder = image_dir(exp, "test")
    info, rows = mine(exp, CPU, folder, ckpt, top=3, conf=0.05, out=tmp_path, progress=False)
    assert len(rows) == 4 and info["top"] == 3
    u = [r["uncertainty"] for r in rows]
    assert u == sorted(u, reverse=True) and all(0 <= v <= 1 for v in u)
    coco = json.loads((tmp_path / "preannotations_coco.json").read_text())
    assert len(coco["images"]) == 3 and [c["name"] for c in coco["categories"]] == list(exp.class_names)
    assert all(a["category_id"] in exp.category_ids() for a in coco["annotations"])
    tasks = json.loads((tmp_path / "label_studio_tasks.json").read_text())
    assert len(tasks) == 3
    for task in tasks:
        for r in task["predictions"][0]["result"]:
            assert r["value"]["rectanglelabels"][0] in exp.class_names
            assert 0 <= r["value"]["x"] <= 100 and 0 <= r["value"]["x"] + r["value"]["width"] <= 100 + 1e-9
    assert (tmp_path / "top_uncertain.png").is_file()
    assert len((tmp_path / "ranking.csv").read_text().splitlines()) == 5
    summary = json.loads((tmp_path / "mine.json").read_text())  # what the run's HTML report shows
    assert summary["top"] == 3 and summary["num_images"] == 4 and summary["checkpoint"].endswith("best.pth")
    with pytest.raises(UserError, match="no images"):
        mine(exp, CPU, _empty(tmp_path), ckpt, out=tmp_path, progress=False)


def _empty(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_drift_flags_dark_images_not_the_training_images(eval_setup, tmp_path):
    exp, ckpt = eval_setup
    same, dark = tmp_path / "same", tmp_path / "dark"
    shutil.copytree(image_dir(exp, "train"), same)
    dark.mkdir()
    for path in sorted(same.iterdir()):
        cv2.imwrite(str(dark / path.name), (cv2.imread(str(path)) * 0.3).astype(np.uint8))
    result, _ = drift(exp, CPU, same, ckpt, permutations=100, out=tmp_path / "a", progress=False)
    assert not result["drift"] and result["drift_score"] <= result["threshold"]
    result, folder = drift(exp, CPU, dark, ckpt, permutations=100, out=tmp_path / "b", progress=False)
    assert result["drift"] and "brightness" in result["shifted_statistics"]
    assert len(result["most_atypical"]) == 8 and (folder / "most_atypical.png").is_file()
