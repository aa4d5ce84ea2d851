"""`invoke export-trt`: what can be tested without TensorRT (calibration batches from images,
the sidecar, the error path: one message, the ONNX model kept, no engine file) and, where
TensorRT and an NVIDIA GPU exist, the engine itself."""

import importlib.util
import json

import cv2
import numpy as np
import pytest
import torch

from yft.deploy import trt
from yft.deploy.cli import run_export_trt
from yft.inference import letterbox, read_sidecar
from yft.project import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
needs_trt = pytest.mark.skipif(
    not HAVE_TRT,
    reason="needs TensorRT and an NVIDIA GPU (install: "
    "pip install tensorrt-cu12 --extra-index-url https://pypi.nvidia.com)",
)


def test_calibration_batches_are_letterboxed_images_in_full_batches(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(7):
        path = tmp_path / f"img{i}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 255, (40 + 10 * i, 60, 3), dtype=np.uint8))
        files.append(path)
    files[3].write_bytes(b"broken")
    batches = trt.CalibrationBatches(files, (64, 64), 3)
    got = list(batches)
    assert [b.shape for b in got] == [(3, 3, 64, 64), (3, 3, 64, 64)]  # 6 readable, no partial batch
    assert all(b.dtype == np.float32 and b.flags["C_CONTIGUOUS"] for b in got)
    assert batches.skipped == [files[3]]
    expected = letterbox(cv2.imread(str(files[4])), (64, 64))[0]
    np.testing.assert_array_equal(got[1][0], expected)  # file order, broken one skipped
    assert trt.CalibrationBatches(files[:2], (64, 64), 8).batch_size == 2  # fewer images than a batch


def test_calibration_files_come_from_the_validation_split(deploy_setup):
    exp, _ = deploy_setup
    files = trt.calibration_files(exp, 3)
    assert len(files) == 3 and all(f.parent.name == exp.val_name for f in files)


def test_sidecar_carries_what_a_deployment_needs(deploy_setup, deploy_onnx, tmp_path):
    exp, _ = deploy_setup
    info = trt.sidecar(
        exp, deploy_onnx, "int8", (1, 4, 16), "10.9.0", "NVIDIA H100 (compute capability 9.0)", 64
    )
    path = trt.write_sidecar(tmp_path / "best.engine", info)
    assert path.name == "best.engine.json"
    saved = read_sidecar(tmp_path / "best.engine")
    assert saved["class_names"] == list(exp.class_names) and saved["input_size"] == list(exp.test_size)
    assert saved["precision"] == "int8" and saved["tensorrt_version"] == "10.9.0" and "H100" in saved["gpu"]
    assert (
        saved["batch"] == {"min": 1, "opt": 4, "max": 16} and saved["decode"] is True and saved["nms"] is None
    )
    assert len(saved["onnx_sha256"]) == 64 and "letterboxed" in saved["preprocessing"]
    with pytest.raises(UserError, match="sidecar is missing"):
        read_sidecar(tmp_path / "other.engine")


def test_missing_requirements_are_named_with_the_install_hint(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    missing = trt.missing_requirements()
    assert len(missing) == 2
    assert "pip install tensorrt-cu12 --extra-index-url https://pypi.nvidia.com" in missing[0]
    assert "NVIDIA GPU" in missing[1]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert len(trt.missing_requirements()) == 1  # TensorRT there, still no GPU


@pytest.mark.skipif(HAVE_TRT, reason="this machine can build engines")
def test_export_trt_without_tensorrt_keeps_the_onnx_and_writes_no_engine(deploy_setup, deploy_onnx, tmp_path):
    exp, _ = deploy_setup
    onnx_path = tmp_path / "best.onnx"
    onnx_path.write_bytes(deploy_onnx.read_bytes())
    with pytest.raises(UserError) as err:
        run_export_trt(exp, torch.device("cpu"), None, onnx_path, None, fp16=True)
    message = str(err.value)
    assert "\n" not in message and "cannot build a TensorRT engine" in message
    assert (
        "pip install tensorrt-cu12 --extra-index-url https://pypi.nvidia.com" in message
        or "NVIDIA GPU" in message
    )
    assert "the ONNX model is ready at" in message and "best.onnx" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.onnx"]  # no engine, no partial file


@pytest.mark.skipif(HAVE_TRT, reason="this machine can build engines")
def test_export_trt_without_tensorrt_writes_nothing_next_to_the_checkpoint(
    deploy_setup, deploy_onnx, tmp_path
):
    """It used to rewrite best.onnx with a TensorRT-only NMS graph first, then fail: `predict
    --backend onnx` was broken afterwards."""
    exp, ckpt = deploy_setup
    (tmp_path / "best.pth").write_bytes(ckpt.read_bytes())
    (tmp_path / "best.onnx").write_bytes(deploy_onnx.read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(UserError, match="cannot build a TensorRT engine"):
        run_export_trt(exp, torch.device("cpu"), tmp_path / "best.pth", None, None, nms="trt")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_tensorrt_graph_has_its_own_name():
    from yft.deploy.cli import trt_onnx_path

    assert trt_onnx_path("runs/x/train2/best.pth").name == "best.trt.onnx"


def test_export_trt_refuses_an_onnx_of_other_classes(deploy_setup, deploy_onnx, tmp_path):
    import copy

    exp, _ = deploy_setup
    other = copy.copy(exp)
    other.class_names = tuple(f"x{i}" for i in range(len(exp.class_names)))
    with pytest.raises(UserError, match="class names are not this Exp's"):
        run_export_trt(other, torch.device("cpu"), None, deploy_onnx, None)
    with pytest.raises(UserError, match="ONNX model not found"):
        run_export_trt(exp, torch.device("cpu"), None, tmp_path / "none.onnx", None)


@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime(deploy_setup, deploy_onnx, tmp_path, precision):
    from yft.inference import OnnxBackend, TrtBackend

    exp, _ = deploy_setup
    onnx_path = tmp_path / "best.onnx"
    onnx_path.write_bytes(deploy_onnx.read_bytes())
    engine, info = run_export_trt(
        exp,
        torch.device("cuda"),
        None,
        onnx_path,
        None,
        fp16=precision == "fp16",
        int8=precision == "int8",
        calib_images=4,
        min_batch=1,
        opt_batch=2,
        max_batch=4,
    )
    assert engine.is_file() and info["precision"] == precision and info["val_mAP50_95"] is not None
    assert json.loads((tmp_path / "best.engine.json").read_text())["class_names"] == list(exp.class_names)
    if precision == "int8":
        assert (tmp_path / "best.calib").is_file()
    assert (tmp_path / "trt_timing.cache").is_file()
    images = np.random.default_rng(0).uniform(0, 255, (3, 3, *exp.test_size)).astype(np.float32)
    want, got = OnnxBackend(onnx_path)(images), TrtBackend(engine)(images)
    tolerance = {"fp32": 1e-3, "fp16": 2e-2, "int8": 1e-1}[precision]
    assert (got[..., 4:] - want[..., 4:]).abs().max() < tolerance
