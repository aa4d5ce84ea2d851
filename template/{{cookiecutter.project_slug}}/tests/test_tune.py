"""invoke tune: search space checks, pruning in the real training loop, and the command itself
(SQLite study killed mid-trial, resumed with the same command, best settings replayed by
`invoke train --from-trial`). Budgets are tiny: 64 px inputs, 2 epochs of 2 iterations."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from synthetic_models import boxy_class, boxy_model

from yft.data.sample import make_sample_dataset
from yft.project import ROOT, UserError, load_exp
from yft.train import tune_space
from yft.train.tune import TrialReport, tune, tune_root
from yft.train.tune_report import summarize

optuna = pytest.importorskip("optuna")

TINY = [
    "pretrained=none",
    "input_size=64,64",
    "test_size=64,64",
    "no_aug_epochs=1",
    "data_num_workers=0",
    "tracker=none",
    "multiscale=false",
    "batch_size=4",
]


def space_error(exp, space):
    with pytest.raises(UserError) as info:
        tune_space.validate_space(exp, space, "space.yaml")
    return str(info.value)


def test_space_checks(exp, tmp_path):
    checked = tune_space.validate_space(exp, tune_space.exp_space(exp))
    assert {"basic_lr_per_img", "strategy", "input_size", "ema", "mosaic_scale"} <= set(checked)
    assert all(s % 32 == 0 for s in checked["input_size"]["choices"])
    assert ("mixup_prob" in checked) == exp.enable_mixup

    assert "'learning_rate' is not an Exp setting" in space_error(
        exp, {"learning_rate": {"low": 0, "high": 1}}
    )
    assert "empty range" in space_error(exp, {"mosaic_prob": {"low": 0.5, "high": 0.5}})
    assert "empty choices" in space_error(exp, {"strategy": {"choices": []}})
    assert "log range needs low > 0" in space_error(exp, {"weight_decay": {"low": 0, "high": 1, "log": True}})
    assert "multiples of 32" in space_error(exp, {"input_size": {"choices": [320, 100]}})
    assert "'sideways' is not one of" in space_error(exp, {"strategy": {"choices": ["full", "sideways"]}})
    assert "must be too" in space_error(exp, {"warmup_epochs": {"low": 0.5, "high": 3}})
    assert "expected a bool" in space_error(
        exp, {"ema": {"choices": [1, 0]}}
    ) or "expected true or false" in space_error(exp, {"ema": {"choices": [1, 0]}})

    bad = tmp_path / "space.yaml"
    bad.write_text("basic_lr_per_img: {low: 1.0e-5, high: 1.0e-3\nema: [\n")
    with pytest.raises(UserError, match=r"space.yaml: line \d+, column \d+: not valid YAML"):
        tune_space.load_space_file(bad)

    # Exp entries replace or remove defaults; a trial's params round-trip to Exp values.
    exp.tune_space = {"ema": None, "input_size": {"choices": [320, 416]}}
    space = tune_space.exp_space(exp)
    assert "ema" not in space and space["input_size"] == {"choices": [320, 416]}
    params = {"input_size": 416, "mosaic_scale": "0.1,2.0", "strategy": "head"}
    assert tune_space.exp_block(exp, params) == [
        "self.input_size = (416, 416)",
        "self.mosaic_scale = (0.1, 2.0)",
        "self.strategy = 'head'",
    ]


def test_bad_storage_starts_nothing(exp, tmp_path):
    import socket

    make_sample_dataset(exp, counts=(2, 2, 0), seed=0)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=r"^--storage postgresql://yft:\*\*\*@127.0.0.1:\d+/db: "):
        tune(
            exp.exp_file,
            torch.device("cpu"),
            2,
            1,
            1,
            storage=f"postgresql://yft:secret@127.0.0.1:{port}/db",
            overrides=[f"data_dir={exp.data_dir}", f"output_dir={exp.output_dir}", "pretrained=none"],
        )
    with pytest.raises(UserError, match="--metric mAP: use one of"):
        tune(exp.exp_file, torch.device("cpu"), metric="mAP", overrides=[f"output_dir={exp.output_dir}"])
    assert not Path(exp.output_dir).exists()


def test_trial_report_prunes_through_the_hook():
    """The hook reports each validation and stops the run when Optuna's pruner says so."""
    from types import SimpleNamespace

    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    )
    for values, expect_pruned in (([0.5, 0.6], None), ([0.1, 0.2], 1)):
        trial = study.ask()
        hook = TrialReport(trial, "mAP50")
        hook.trainer = SimpleNamespace(should_stop=False, metrics=None, epoch=0)
        for epoch, value in enumerate(values):
            hook.trainer.epoch, hook.trainer.metrics = epoch, {"epoch": epoch + 1, "mAP50": value}
            hook.after_epoch()
            if hook.trainer.should_stop:
                break
        assert hook.pruned_at == expect_pruned and hook.trainer.should_stop == bool(expect_pruned)
        assert hook.best == max(values[: epoch + 1])
        study.tell(trial, hook.best)


def boxy_checkpoint(root):
    """(exp, checkpoint): synthetic_models.boxy_model on sample data of its one class, so val mAP
    at score threshold 0.01 is small but above zero (no training needed), and 0 at 0.99 (scores
    stay near 0.44)."""
    exp = load_exp(None, [f"data_dir={root / 'data'}", f"output_dir={root / 'runs'}", "data_num_workers=0"])
    make_sample_dataset(exp, counts=(4, 6, 0), seed=4, draw=(boxy_class(exp),))
    ckpt = root / "boxy.pth"
    torch.save({"model": boxy_model(exp).state_dict(), "class_names": list(exp.class_names)}, ckpt)
    return exp, ckpt


def test_pruning_in_real_trials(tmp_path):
    """Three trials through the real loop: two keep score 0.01 (some boxes match), the third
    asks for score 0.99 (no box), scores below the median at its second validation and is pruned."""
    exp, ckpt = boxy_checkpoint(tmp_path)
    overrides = [
        *TINY,
        f"data_dir={exp.data_dir}",
        f"output_dir={exp.output_dir}",
        "basic_lr_per_img=1e-12",
        "strategy=head",
        "ema=false",
    ]
    space = tmp_path / "space.yaml"
    space.write_text("test_conf: {low: 0.01, high: 0.99}\n")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="p", storage=storage, direction="maximize")
    for conf in (0.01, 0.01, 0.99):
        study.enqueue_trial({"test_conf": conf})
    torch.set_num_threads(1)
    study, _, out = tune(
        exp.exp_file,
        torch.device("cpu"),
        n_trials=3,
        epochs=2,
        iters=1,
        study_name="p",
        storage=storage,
        space_file=space,
        ckpt=ckpt,
        overrides=overrides,
    )
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"], [
        (t.state, t.intermediate_values) for t in study.trials
    ]
    first, _, pruned = study.trials
    assert first.value > 0, "the boxy model should match some objects at score 0.01"
    assert pruned.intermediate_values[2] < first.intermediate_values[2]
    history = json.loads((out / "trial_0002" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]  # stopped after the validation that pruned it
    # the replay hint starts from the same weights as the trials
    summarize(study, exp, storage, out, "mAP50_95")
    assert re.search(
        rf"invoke train --from-trial [01] --ckpt \S*{ckpt.name} --study p\n",
        (out / "best_exp.py").read_text(),
    )


def run_tune(args, project_env, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "tune", *args],
        cwd=ROOT,
        env=project_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


@pytest.fixture
def project_env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


@pytest.mark.slow
def test_tune_command_resumes_after_kill(tmp_path, project_env):
    exp = load_exp(None, [f"data_dir={tmp_path / 'data'}", f"output_dir={tmp_path / 'runs'}"])
    make_sample_dataset(exp, counts=(8, 4, 0), seed=5)
    sets = [f"--set={s}" for s in TINY + [f"data_dir={exp.data_dir}", f"output_dir={exp.output_dir}"]]
    args = ["--trials=2", "--epochs=2", "--iters=2", "--seed=1", "--device=cpu", *sets]
    out = tune_root(exp) / "default"

    first = run_tune(args, project_env, start_new_session=True)
    deadline = time.time() + 300
    while not (out / "trial_0001").is_dir() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.poll() is None, first.stdout.read()
    os.killpg(first.pid, signal.SIGKILL)  # mid-trial 1: its row stays RUNNING in the database
    first.wait()

    second = run_tune(args, project_env)
    text, _ = second.communicate(timeout=600)
    assert second.returncode == 0, text
    assert "trials 1 were left running by a killed worker" in text
    study = optuna.load_study(study_name="default", storage=f"sqlite:///{tune_root(exp) / 'default.db'}")
    trials = study.trials
    assert [t.number for t in trials] == list(range(len(trials)))
    assert trials[1].state.name == "FAIL"
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 2 and trials[0] in done
    retry = trials[2]
    assert retry.params == trials[1].params and retry.state.name in ("COMPLETE", "PRUNED")
    run_dirs = [t.user_attrs["run_dir"] for t in done]
    assert len(set(run_dirs)) == 2
    for t in done:  # each trial's value is the best val mAP its own run recorded
        history = json.loads((Path(t.user_attrs["run_dir"]) / "history.json").read_text())
        assert (Path(t.user_attrs["run_dir"]) / "last.pth").is_file()
        if t.state.name == "COMPLETE":
            assert t.value == pytest.approx(max(h["mAP50_95"] or 0.0 for h in history))
    lines = [line for line in text.splitlines() if line.startswith("trial ")]
    assert len(lines) == 1 and all(
        " best " in line and " eta " in line and "2/2 done" in line for line in lines
    )

    best = json.loads((out / "best.json").read_text())
    assert best["value"] == max(t.value for t in done if t.state.name == "COMPLETE")
    block = (out / "best_exp.py").read_text()
    assert f"self.strategy = {best['params']['strategy']!r}" in block
    for name in ("optimization_history", "parallel_coordinate", "param_importances"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"

    # A rerun of a finished study trains nothing more; train --from-trial replays the settings.
    again, _, _ = tune(
        None, torch.device("cpu"), n_trials=2, epochs=2, iters=2, overrides=[s[6:] for s in sets]
    )
    assert len(again.trials) == len(trials)
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "train",
            f"--from-trial={best['trial']}",
            "--smoke",
            "--device=cpu",
            "--quiet",
            *sets,
        ],
        cwd=ROOT,
        env=project_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert train.returncode == 0, train.stdout + train.stderr
    assert (
        f"settings of trial {best['trial']} (study default): " + " ".join(best["overrides"]) in train.stdout
    )
    assert f"strategy {best['params']['strategy']}" in train.stdout
