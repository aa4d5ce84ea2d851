"""The life cycle on CPU: smoke-train, evaluate, export ONNX (checked against torch), predict."""

import json

import torch

from yft.deploy.cli import run_export_onnx, run_predict
from yft.evaluate.cli import run_eval
from yft.train.checkpoint import load_checkpoint
from yft.train.run import train


def test_smoke_train_eval_export_predict(sample_exp, tmp_path):
    device = torch.device("cpu")
    sample_exp.tracker = "none"
    out = train(sample_exp, device, smoke=True, batch_size=4, progress=False)
    for name in ("last.pth", "best.pth", "history.json"):
        assert (out / name).is_file()
    state = load_checkpoint(out / "last.pth")  # weights_only=True must accept it
    assert state["epoch"] == sample_exp.max_epoch and state["class_names"] == list(sample_exp.class_names)
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]

    metrics = run_eval(sample_exp, device, out / "best.pth", "val", "torch", 4)
    saved = json.loads((out / "eval_val_torch" / "metrics.json").read_text())
    assert saved["num_images"] == 6 and set(saved["per_class"]) == set(sample_exp.class_names)
    assert saved["mAP50_95"] == metrics["mAP50_95"]

    onnx_path, (box_diff, score_diff) = run_export_onnx(sample_exp, out / "best.pth", None, None, True)
    assert onnx_path.is_file() and score_diff < 1e-4
    onnx_metrics = run_eval(sample_exp, device, onnx_path, "val", "onnx", 4)
    assert abs(onnx_metrics["mAP50_95"] - metrics["mAP50_95"]) < 1e-3

    images = tmp_path / "data" / "test2017"
    (images / "broken.jpg").write_bytes(b"not an image")
    written, skipped = run_predict(
        sample_exp, device, images, out / "best.pth", "torch", 0.0, tmp_path / "pred"
    )
    assert len(written) == 4 and [p.name for p in skipped] == ["broken.jpg"]
    assert all(target.suffix == ".png" and target.stat().st_size > 0 for target, _ in written)
