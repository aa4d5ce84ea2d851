"""A kill at any point of an epoch's end loses no log row or validation and duplicates none."""

import csv
import json

import pytest
import torch
from synthetic_models import tiny

from yft.train import hooks
from yft.train.checkpoint import load_checkpoint
from yft.train.run import train

CPU = torch.device("cpu")
# One validation and one log row per step, deterministic: every row and validation can be compared.
SETTINGS = {"deterministic": True, "eval_interval": 1, "log_interval": 1}


def run(exp, out, **kwargs):
    tiny(exp, **SETTINGS)
    return train(exp, CPU, batch_size=4, progress=False, max_iters_per_epoch=2, out_dir=out, **kwargs)


def logs(out):
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    epochs = list(csv.DictReader((out / "epochs.csv").open()))
    history = json.loads((out / "history.json").read_text())
    return (
        [(r["type"], r["epoch"], r["iteration"]) for r in rows],
        [r["epoch"] for r in epochs],
        [h["epoch"] for h in history],
    )


def kill_on(monkeypatch, name, when):
    real = getattr(hooks, name)
    calls = []

    def dying(*args):
        calls.append(args)
        if when(len(calls), args):
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(hooks, name, dying)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, request):
    from yft.data.sample import make_sample_dataset
    from yft.project import load_exp

    root = tmp_path_factory.mktemp("straight")
    exp = load_exp()
    exp.data_dir, exp.output_dir, exp.data_num_workers = str(root / "data"), str(root / "runs"), 0
    exp.pretrained = None  # random weights: no download in tests
    make_sample_dataset(exp, counts=(8, 4, 0), seed=1)
    out = run(exp, root / "run")
    return exp, logs(out)


def test_kill_while_writing_a_checkpoint(straight, tmp_path, monkeypatch):
    exp, want = straight
    # killed while writing epoch 2's checkpoint, after its log rows
    kill_on(monkeypatch, "save_checkpoint", lambda n, args: n == 2)
    with pytest.raises(KeyboardInterrupt):
        run(exp, tmp_path)
    monkeypatch.undo()
    run(exp, tmp_path, resume=True)
    assert logs(tmp_path) == want  # each step, epoch row and validation exactly once


def test_kill_between_last_and_best(straight, tmp_path, monkeypatch):
    exp, want = straight
    kill_on(monkeypatch, "copy_atomic", lambda n, args: args[1].name == "best.pth" and n > 1)
    with pytest.raises(KeyboardInterrupt):
        run(exp, tmp_path)
    assert load_checkpoint(tmp_path / "best.pth")["epoch"] == 1
    monkeypatch.undo()
    run(exp, tmp_path, resume=True)
    assert load_checkpoint(tmp_path / "best.pth")["epoch"] == 2 and logs(tmp_path) == want
