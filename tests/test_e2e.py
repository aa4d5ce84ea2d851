"""The mission's core test: a generated project goes through its whole life cycle on CPU.

Render, `invoke setup`, sample data, smoke-train, evaluate, export ONNX (onnxruntime checked
against torch), predict, and the project's own test suite. Also the failure paths a new user
meets first: no data yet, no checkpoint yet.
"""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from helpers import TEMPLATE_ROOT as ROOT, render_copier
from stack import invoke

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e"), pytest.mark.usefixtures("yolox_stack")]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "proj"
    render_copier(
        root,
        {
            "project_name": "Hard Hat Finder",
            "dataset_name": "hats",
            "class_names": ["hard hat", "vest", 'person "worker"'],
            "model": "yolox_nano",
            "input_size": 128,
            "tracker": "tensorboard",
        },
    )
    invoke(root, "setup")
    return root


def test_first_errors_are_one_line_and_nonzero(project):
    result = invoke(project, "train", "--smoke", "--device", "cpu", check=False)
    assert result.returncode == 1
    assert "instances_train2017.json: annotation file not found" in result.stderr
    assert "Traceback" not in result.stderr
    result = invoke(project, "eval", check=False)
    assert result.returncode == 1 and "run `invoke train` first" in result.stderr
    result = invoke(project, "train", "--set", "max_epochs=3", check=False)
    assert result.returncode == 1 and "no setting named 'max_epochs'" in result.stderr


def test_life_cycle(project):
    invoke(project, "sample-data", "--train", "24", "--val", "8", "--test", "4")
    train = invoke(project, "train", "--smoke", "--device", "cpu", "--quiet")
    run = project / "runs" / "hats_yolox_nano" / "smoke"
    assert (run / "last.pth").is_file() and (run / "best.pth").is_file()
    assert (run / "tensorboard").is_dir()
    assert "best val mAP50:95" in train.stdout
    # train ends with a full evaluation of best.pth and the run's HTML report
    assert "HTML report: runs/hats_yolox_nano/smoke/report.html" in train.stdout
    assert (run / "report.html").stat().st_size > 0 and (run / "eval_val_torch" / "metrics.json").is_file()

    ckpt = run / "best.pth"
    first_eval = (run / "eval_val_torch" / "metrics.json").read_bytes()
    evaluation = invoke(project, "eval", "--ckpt", str(ckpt), "--device", "cpu")
    # train's own evaluation is kept as it was; the rerun gets the next numbered folder
    assert (run / "eval_val_torch" / "metrics.json").read_bytes() == first_eval
    assert "writing to runs/hats_yolox_nano/smoke/eval_val_torch2" in evaluation.stdout
    metrics = json.loads((run / "eval_val_torch2" / "metrics.json").read_text())
    for key in ("mAP50_95", "mAP50", "mAP75", "per_class", "speed", "notes", "num_images"):
        assert key in metrics
    assert metrics["num_images"] == 8
    assert list(metrics["per_class"]) == ["hard hat", "vest", 'person "worker"']
    assert "mAP50:95" in evaluation.stdout

    export = invoke(project, "export-onnx", "--ckpt", str(ckpt))
    assert (run / "best.onnx").is_file() and "onnxruntime vs torch" in export.stdout
    meta = subprocess.run(
        [
            sys.executable,
            "-c",
            "import onnx,sys; m=onnx.load(sys.argv[1]); "
            "print(dict((p.key, p.value) for p in m.metadata_props)['class_names'])",
            str(run / "best.onnx"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(meta) == ["hard hat", "vest", 'person "worker"']
    report = invoke(project, "report", "--run", "smoke")
    assert "HTML report: runs/hats_yolox_nano/smoke/report.html" in report.stdout
    assert '<a href="best.onnx">best.onnx</a>' in (run / "report.html").read_text(encoding="utf-8")

    image = project / "datasets" / "hats" / "val2017" / "val_00000.jpg"
    invoke(project, "predict", "--source", str(image), "--ckpt", str(ckpt), "--conf", "0")
    assert (run / "predictions" / "val_00000.png").stat().st_size > 0
    invoke(
        project,
        "predict",
        "--source",
        str(image),
        "--ckpt",
        str(run / "best.onnx"),
        "--backend",
        "onnx",
        "--output",
        str(project / "onnx-pred"),
    )
    assert (project / "onnx-pred" / "val_00000.png").is_file()


# The project tests' artefacts (the HTML report's browser screenshot) land here.
TEST_OUTPUT = {**os.environ, "YFT_TEST_OUTPUT": str(ROOT / "test-output")}


def test_project_own_tests_pass(project):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=900,
        env=TEST_OUTPUT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_keep_coco_project_own_tests_pass(tmp_path):
    root = render_copier(
        tmp_path / "coco",
        {
            "class_mode": "keep_coco",
            "model": "yolox_tiny",
            "class_names": "drone, quadcopter",
            "input_size": 128,
        },
    )
    invoke(root, "setup")
    # The slow training-engine runs are the same code in both class modes: once is enough.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
        env=TEST_OUTPUT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ddp_two_processes_agree_on_weights(project):
    """`invoke train --devices 2` runs torchrun with gloo on CPU; both ranks end with the same weights."""
    invoke(
        project, "sample-data", "--train", "24", "--val", "8", "--test", "4", "--force"
    )  # after test_life_cycle's
    result = invoke(
        project,
        "train",
        "--devices",
        "2",
        "--smoke",
        "--device",
        "cpu",
        "--quiet",
        "--batch-size",
        "4",
        "--set",
        "output_dir=runs-ddp",
    )
    output = result.stdout + result.stderr
    assert "torch.distributed.run --nproc_per_node=2" in output
    assert "DDP check: 2 ranks agree on the weights (max difference 0)" in output
    assert (project / "runs-ddp" / "hats_yolox_nano" / "smoke" / "last.pth").is_file()


def test_demo_learns(tmp_path):
    """The README's demo on a clean machine (an empty weights cache): it trains its base model on
    other shapes, caches it, finetunes it onto the sample classes and must reach val mAP50 >= 0.8;
    its prediction picture shows objects found."""
    env = dict(os.environ, YFT_WEIGHTS=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "demo", "--dest", str(tmp_path / "demo")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = tmp_path / "demo" / "runs" / "shapes_demo_yolox_nano" / "train"
    metrics = json.loads((run / "eval_val_torch" / "metrics.json").read_text())
    print(f"demo: val mAP50 {metrics['mAP50']:.3f}, mAP50:95 {metrics['mAP50_95']:.3f}")
    assert metrics["mAP50"] >= 0.8
    assert len(list((tmp_path / "cache" / "demo").glob("shapes_base_*.pth"))) == 1  # the base is cached
    # The finetuning run says where its weights came from: the base model, by --ckpt.
    assert re.search(
        r"^weights: \S*shapes_base_\w+\.pth \(--ckpt, sha256 [0-9a-f]{12}\)", result.stdout, re.M
    )
    assert "hyperparameters: finetune profile" in result.stdout
    # A picture per test image, and objects found on most of those that hold any.
    test = json.loads(
        (
            tmp_path / "demo" / "datasets" / "shapes_demo" / "annotations" / "instances_test2017.json"
        ).read_text()
    )
    boxes = Counter(a["image_id"] for a in test["annotations"])
    with_objects = [Path(im["file_name"]).stem for im in test["images"] if boxes[im["id"]]]
    drawn = {m[1]: int(m[2]) for m in re.finditer(r"predictions/(\S+)\.png: (\d+) detections", result.stdout)}
    assert sorted(drawn) == sorted(Path(im["file_name"]).stem for im in test["images"]), result.stdout[-2000:]
    assert sum(drawn[stem] > 0 for stem in with_objects) >= 0.75 * len(with_objects), drawn
    for path in ("best.pth", "best.onnx", f"predictions/{with_objects[0]}.png", "training_curves.png"):
        assert (run / path).is_file(), path
    assert "demo done in" in result.stdout and "val mAP50" in result.stdout
