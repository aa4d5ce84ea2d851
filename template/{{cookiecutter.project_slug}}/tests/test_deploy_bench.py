"""`invoke bench`: rows per backend and batch size, table and JSON, a backend that cannot run
here skipped with its reason. No speed is asserted here (see benchmarks/ at the template's top)."""

import json

import pytest
import torch

from yft.deploy.bench import PeakRss
from yft.deploy.cli import run_bench
from yft.project import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_rows_table_and_json(deploy_setup, deploy_onnx, tmp_path, capsys):
    import shutil

    exp, ckpt = deploy_setup
    shutil.copy(ckpt, tmp_path / "best.pth")
    shutil.copy(deploy_onnx, tmp_path / "best.onnx")  # bench uses the files next to the checkpoint
    rows, skipped = run_bench(
        exp,
        torch.device("cpu"),
        tmp_path / "best.pth",
        "torch,onnx,trt",
        "1,2",
        tmp_path / "bench.json",
        min_time=0.0,
    )
    assert [(r["backend"], r["batch_size"]) for r in rows] == [
        ("torch", 1),
        ("torch", 2),
        ("onnx", 1),
        ("onnx", 2),
    ]
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p95_ms"] and r["images_per_s"] > 0 and r["iterations"] >= 5
        assert r["peak_mem_mb"] >= 0
    assert [r["speedup_vs_torch"] for r in rows[:2]] == [1.0, 1.0]
    assert skipped[0][0] == "trt" and "best.engine: no TensorRT engine" in skipped[0][1]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["rows"] == rows and report["skipped"][0]["backend"] == "trt"
    assert report["input_size"] == list(exp.test_size)
    out = capsys.readouterr().out
    assert "p50 ms" in out and "trt      skipped" in out


def test_bad_lists_and_nothing_to_run_are_errors(deploy_setup, tmp_path):
    exp, ckpt = deploy_setup
    with pytest.raises(UserError, match="--batch-sizes 1,x"):
        run_bench(exp, torch.device("cpu"), ckpt, "torch", "1,x", tmp_path / "b.json")
    with pytest.raises(UserError, match="--backends tvm"):
        run_bench(exp, torch.device("cpu"), ckpt, "tvm", "1", tmp_path / "b.json")
    with pytest.raises(UserError, match="no backend to benchmark"):
        run_bench(exp, torch.device("cpu"), ckpt, "trt", "1", tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()


def test_peak_rss_sees_an_allocation():
    import numpy as np

    with PeakRss() as rss:
        block = np.ones(64 * 2**20, np.uint8)  # 64 MB, touched
        block.sum()
    assert rss.peak >= 48 * 2**20
