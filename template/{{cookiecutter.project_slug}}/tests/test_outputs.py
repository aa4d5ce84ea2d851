"""No task writes over an earlier result (yft/runs.py output_dir): a rerun gets the next numbered
folder and leaves the first byte-identical; a named --output that holds results needs --force; the
readers (report, release) find the newest."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from yft.data.coco_io import image_dir
from yft.project import UserError
from yft.runs import check_name, output_dir, output_file, runs_root

CPU = torch.device("cpu")


def snapshot(folder):
    """Every file under folder with its bytes (what a rerun must leave as it was)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rerun_numbers_and_a_named_output_needs_force(tmp_path, capsys):
    default = tmp_path / "runs" / "eval_val_torch"
    assert output_dir(default) == default and default.is_dir()
    assert output_dir(default) == default  # still empty (a run that failed): used again
    (default / "metrics.json").write_text("first")
    second = output_dir(default)
    assert second.name == "eval_val_torch2" and "writing to" in capsys.readouterr().out
    (second / "metrics.json").write_text("second")
    assert output_dir(default).name == "eval_val_torch3"
    assert output_dir(default, force=True) == default  # --force: the default folder itself
    assert (default / "metrics.json").read_text() == "first"  # choosing a folder deletes nothing

    named = tmp_path / "mine"
    (named / "ranking.csv").parent.mkdir()
    (named / "ranking.csv").write_text("kept")
    with pytest.raises(UserError, match="already holds results.*--force"):
        output_dir(None, named)
    assert output_dir(None, named, force=True) == named and (named / "ranking.csv").read_text() == "kept"
    with pytest.raises(UserError, match="cannot write here"):
        output_dir(None, named / "ranking.csv")
    # a resume cache alone is not a result: a killed label-issues run continues in place
    cache = tmp_path / "label_issues"
    (cache / "folds").mkdir(parents=True)
    assert output_dir(cache, keep={"folds"}) == cache


def test_output_file_numbers_its_folder_and_refuses_an_existing_file(tmp_path):
    default = tmp_path / "bench" / "bench.json"
    first = output_file(default)
    assert first == default
    first.write_text("{}")
    assert output_file(default) == tmp_path / "bench2" / "bench.json"
    with pytest.raises(UserError, match="exists; pass --force"):
        output_file(None, first)
    assert output_file(None, first, force=True) == first
    with pytest.raises(UserError, match="names a folder"):
        output_file(None, tmp_path)


def test_run_names_cannot_take_a_task_folder():
    for name in ("mine2", "bench3", "label_issues2", "eval_val_torch", "predictions"):
        with pytest.raises(UserError):
            check_name(name)
    assert check_name("mine_cars") == "mine_cars"


@pytest.fixture(scope="module")
def model(make_detecting_checkpoint, tmp_path_factory):
    """(exp, checkpoint) of a model that detects plenty, in this module's own project folder."""
    exp, ckpt = make_detecting_checkpoint(
        tmp_path_factory.mktemp("outputs"), (4, 3, 3), seed=5, test_conf=0.3
    )
    run = runs_root(exp) / "train"  # where `invoke train` puts it: the report looks beside the run
    run.mkdir(parents=True)
    return exp, Path(shutil.copy(ckpt, run / "best.pth"))


def rerun(task, first):
    """Run task twice: the second result goes elsewhere and the first folder is left as it was."""
    before = snapshot(first)
    assert before, f"{first} is empty"
    second = task()
    assert second != first and second.name == first.name + "2"
    assert snapshot(first) == before
    return second


def test_eval_rerun_keeps_the_first_and_the_report_shows_the_newest(model):
    from yft.evaluate import run_files
    from yft.evaluate.cli import run_eval

    exp, ckpt = model
    run_eval(exp, CPU, ckpt, "val", "torch", 4, progress=False, analysis=False, html=False)
    first = ckpt.parent / "eval_val_torch"
    rerun(
        lambda: (
            run_eval(exp, CPU, ckpt, "val", "torch", 4, progress=False, analysis=False, html=False)
            and ckpt.parent / "eval_val_torch2"
        ),
        first,
    )
    assert run_files.newest_eval(ckpt.parent, "val").name == "eval_val_torch2"
    with pytest.raises(UserError, match="already holds results"):
        run_eval(exp, CPU, ckpt, "val", "torch", 4, out=first, progress=False, analysis=False, html=False)


def test_robustness_compare_mine_drift_reruns_keep_the_first(model, tmp_path):
    from yft.deploy.release import robustness_report
    from yft.evaluate import run_files
    from yft.evaluate.compare import compare
    from yft.evaluate.drift import drift
    from yft.evaluate.mine import mine
    from yft.evaluate.robustness import robustness

    exp, ckpt = model
    root = runs_root(exp)
    kw = {"progress": False}

    def robust():
        return robustness(exp, CPU, ckpt, "val", ["low_light"], (1,), 4, **kw)[1]

    assert robust() == root / "robustness_val"
    newest = rerun(robust, root / "robustness_val")
    assert robustness_report(exp, ckpt) == newest / "robustness.json"  # what release reads

    def comp():
        return compare(exp, CPU, ckpt, ckpt, split="val", samples=100, **kw)[1]

    rerun(comp, comp())
    test_images = tmp_path / "new"
    shutil.copytree(image_dir(exp, "test"), test_images)

    def mined():
        return mine(exp, CPU, test_images, ckpt, top=2, **kw)[0]["out"]

    rerun(mined, mined())

    def drifted():
        return drift(exp, CPU, test_images, ckpt, permutations=20, **kw)[1]

    rerun(drifted, drifted())
    extras = run_files.extras(ckpt.parent)  # the HTML report lists the newest first
    for task in ("robustness", "compare", "mine", "drift"):
        assert extras[task][0]["folder"].name.endswith("2"), task
        assert len(extras[task]) == 2, task


def test_predict_and_bench_reruns_keep_the_first(model, tmp_path):
    from yft.deploy.cli import run_bench, run_predict

    exp, ckpt = model
    image = sorted(image_dir(exp, "val").iterdir())[0]
    run_predict(exp, CPU, str(image), ckpt, "torch", 0.1, None, save_json=True)
    first = ckpt.parent / "predictions"
    assert (first / "predictions.json").is_file()
    rerun(
        lambda: (
            run_predict(exp, CPU, str(image), ckpt, "torch", 0.1, None, save_json=True)
            and ckpt.parent / "predictions2"
        ),
        first,
    )
    with pytest.raises(UserError, match="already holds results"):
        run_predict(exp, CPU, str(image), ckpt, "torch", 0.1, str(first))

    def bench():
        run_bench(exp, CPU, ckpt, "torch", "1", min_time=0.01)
        return max(runs_root(exp).glob("bench*"), key=lambda p: p.stat().st_mtime_ns)

    rerun(bench, bench())
    named = tmp_path / "b.json"
    run_bench(exp, CPU, ckpt, "torch", "1", str(named), min_time=0.01)
    stamp = named.read_bytes()
    with pytest.raises(UserError, match="exists; pass --force"):
        run_bench(exp, CPU, ckpt, "torch", "1", str(named), min_time=0.01)
    assert named.read_bytes() == stamp
    run_bench(exp, CPU, ckpt, "torch", "1", str(named), min_time=0.01, force=True)


def test_label_issues_rerun_keeps_the_first(model):
    from yft.evaluate.label_issues.cli import label_issues

    exp, ckpt = model

    def run():
        return label_issues(exp, CPU, ckpt=ckpt, log=lambda *_: None)[1]

    first = run()
    assert first == runs_root(exp) / "label_issues"
    rerun(run, first)
    with pytest.raises(UserError, match="already holds results"):
        label_issues(exp, CPU, ckpt=ckpt, out=first, log=lambda *_: None)
    assert os.path.isdir(first)
