"""`invoke release`: the deployment checklist as a gate. Every check runs; misses are listed
and nothing is written; on success a versioned folder with weights, ONNX, metrics and a model card."""

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from yft.deploy.release import release
from yft.project import UserError

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


@pytest.fixture
def run(deploy_setup, deploy_onnx, tmp_path):
    """A copy of the shared run (checkpoint + ONNX) and an Exp whose runs go to tmp_path."""
    exp, ckpt = deploy_setup
    exp = copy.copy(exp)
    exp.output_dir = str(tmp_path / "runs")
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(ckpt, folder / "best.pth")
    shutil.copy(deploy_onnx, folder / "best.onnx")
    shutil.copy(str(deploy_onnx) + ".parity.json", folder / "best.onnx.parity.json")
    exp.release_min_map, exp.release_max_latency_ms, exp.release_max_model_mb = 0.0, 1e6, 1e3
    exp.release_latency_backend, exp.release_latency_batch = "onnx", 2
    return exp, folder / "best.pth"


def test_every_miss_is_listed_and_nothing_is_written(run, capsys):
    exp, ckpt = run
    exp.release_min_map, exp.release_max_latency_ms, exp.release_max_model_mb = 0.99, 1e-3, 1e-3
    exp.release_require_robustness = True
    with pytest.raises(UserError, match=r"4 of 4 checks missed \(accuracy, speed, size, robustness\)"):
        release(exp, CPU, ckpt)
    out = capsys.readouterr().out
    assert (
        "FAIL  accuracy" in out
        and "minimum 0.99" in out
        and "FAIL  speed" in out
        and "FAIL  robustness" in out
    )
    assert not (ckpt.parent.parent / "runs").exists()


def test_release_folder_with_model_card(run):
    exp, ckpt = run
    exp.release_require_robustness = False
    final = release(exp, CPU, ckpt)
    assert final.name == "v1"
    assert sorted(p.name for p in final.iterdir()) == [
        "MODEL_CARD.md",
        "checks.json",
        "metrics.json",
        "model.onnx",
        "model.onnx.parity.json",
        "weights.pth",
    ]
    card = (final / "MODEL_CARD.md").read_text()
    for name in exp.class_names:
        assert f"`{name}`" in card
    assert "## Known limits" in card and "No robustness run was found" in card
    assert "| test | 3 |" in card and "onnx at batch 2" in card
    checks = json.loads((final / "checks.json").read_text())
    assert [c["name"] for c in checks["checks"]] == ["accuracy", "speed", "size", "robustness"]
    assert all(c["ok"] for c in checks["checks"])
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["speed_release"]["batch_size"] == 2

    robustness = (
        Path(exp.output_dir) / exp.exp_name / "robustness_test" / "robustness.json"
    )  # `invoke robustness`
    robustness.parent.mkdir(parents=True)
    robustness.write_text("{}")
    exp.release_require_robustness = True
    second = release(exp, CPU, ckpt)
    assert second.name == "v2" and "No robustness run" not in (second / "MODEL_CARD.md").read_text()
    with pytest.raises(UserError, match="already exists"):
        release(exp, CPU, ckpt, version="v2")
    assert not [p for p in final.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
