"""benchmarks/gpu_check.py in its CPU form: the script itself works, so the one run on a GPU
machine (15 minutes in all) is spent measuring, not debugging. The GPU claims are not tested here."""

import importlib.util
import json
import subprocess
import sys

import pytest

from helpers import TEMPLATE_ROOT as ROOT, render_copier

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_table_is_parsed_from_train_step_output():
    gpu_check = load_script()
    out = (
        "yolox_s 640px, batch 64 ...\n"
        "targets/img | official ms | batched ms | official img/s | batched img/s | step ratio | "
        "loss ms official | loss ms batched | loss ratio | peak MiB official | peak MiB batched | peak ratio\n"
        "10 | 332.0 | 110.5 | 192.8 | 579.2 | 3 | 200.1 | 20.3 | 9.86 | 9000.0 | 8800.0 | 0.978\n"
        "a warning line | with | bars\n"
    )
    rows = gpu_check.parse_step_table(out)
    assert len(rows) == 1
    assert rows[0]["targets"] == 10 and rows[0]["step_ratio"] == 3 and rows[0]["peak_ratio"] == 0.978


def test_unknown_step_is_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--steps", "warp", "--project", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "unknown step(s) warp" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.e2e
@pytest.mark.xdist_group("e2e")
@pytest.mark.usefixtures("yolox_stack")
def test_cpu_form_runs_every_step(tmp_path):
    project = render_copier(
        tmp_path / "proj",
        {"model": "yolox_nano", "input_size": 96, "class_names": ["circle", "square", "triangle"]},
    )
    out = tmp_path / "out"
    # The fast-loss tests run in the project's own suite already; here the script's other steps.
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--project",
            str(project),
            "--out",
            str(out),
            "--steps",
            "environment,step_speed,learning,onnx_export",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    steps = results["steps"]
    assert results["tiny"] is True
    assert steps["environment"]["result"]["device"] == "cpu"
    assert steps["fast_loss_tests"]["status"] == "skipped"
    rows = steps["step_speed"]["result"]["default"]["rows"]
    assert [r["targets"] for r in rows] == [1, 10] and all(r["official_ms"] > 0 for r in rows)
    learning = steps["learning"]["result"]
    assert 0 <= learning["ours"]["mAP50_95"] <= 1 and learning["ours"]["wall_s"] > 0
    assert "CUDA-only" in learning["official"]["reason"]
    assert "onnxruntime vs torch" in steps["onnx_export"]["result"]["parity"]
    table = (out / "results.md").read_text()
    assert "| ours |" in table and "## Training step (default)" in table
