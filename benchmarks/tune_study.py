"""A small `invoke tune` study against the project's defaults, on the synthetic sample data.

Renders a project (yolox_nano, 160 px, three shapes), writes sample data, trains once with the
Exp's defaults and runs a study with the same per-trial budget (same epochs, same data order),
then evaluates both on the held-out test split (the study chose on val). Prints a table and
writes tune_study.json. CPU is enough; it takes about (trials + 1) x one short run.

There are no pretrained weights offline, so these runs train from scratch: the space (SPACE,
or --space FILE) leaves out the transfer strategy (freezing a random backbone only hurts) and
mixup (off for yolox_nano) and lets the LR reach from-scratch values.

    python benchmarks/tune_study.py --trials 8 --epochs 10
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPACE = """\
basic_lr_per_img: {low: 1.0e-5, high: 2.5e-3, log: true}
warmup_epochs: {low: 0, high: 3}
weight_decay: {low: 1.0e-5, high: 1.0e-3, log: true}
mosaic_prob: {low: 0.0, high: 1.0}
mosaic_scale: {choices: [[0.5, 1.5], [0.1, 2.0]]}
input_size: {choices: [128, 160, 192]}
ema: {choices: [true, false]}
"""


def invoke(project, *args):
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    if result.returncode:
        raise SystemExit(f"invoke {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout, time.perf_counter() - started


def test_map(project, ckpt):
    out, _ = invoke(
        project,
        "eval",
        "--split=test",
        f"--ckpt={ckpt}",
        "--device=cpu",
        f"--output={Path(ckpt).parent / 'eval_test_bench'}",
    )
    metrics = json.loads((Path(ckpt).parent / "eval_test_bench" / "metrics.json").read_text())
    return metrics["mAP50_95"], metrics["mAP50"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--space", default=None, help="search space YAML (default: SPACE above)")
    parser.add_argument("--train-images", type=int, default=96)
    parser.add_argument("--val-images", type=int, default=32)
    parser.add_argument("--test-images", type=int, default=32)
    parser.add_argument("--dest", default=None, help="project folder (default: a temporary one)")
    parser.add_argument("--out", default="tune_study.json")
    args = parser.parse_args()

    from tasks import render_project

    project = Path(args.dest or tempfile.mkdtemp(prefix="yft-tune-bench-")) / "project"
    render_project(
        project,
        {
            "project_name": "Tune Bench",
            "class_names": ["circle", "square", "triangle"],
            "model": "yolox_nano",
            "input_size": 160,
            "batch_size": 8,
            "tracker": "none",
        },
    )
    invoke(
        project,
        "sample-data",
        f"--train={args.train_images}",
        f"--val={args.val_images}",
        f"--test={args.test_images}",
    )
    # The budget, the same for the default run and every trial; seed 0 is what trials use too.
    budget = [
        f"--set=max_epoch={args.epochs}",
        "--set=no_aug_epochs=3",
        "--set=seed=0",
        "--set=data_num_workers=0",
    ]

    out, baseline_s = invoke(project, "train", "--device=cpu", "--quiet", "--name=defaults", *budget)
    run = next(p for p in (project / "runs").glob("*/defaults"))
    history = json.loads((run / "history.json").read_text())
    baseline_val = max(h["mAP50_95"] or 0.0 for h in history)
    baseline_test = test_map(project, run / "best.pth")

    space = project / "space.yaml"
    space.write_text(Path(args.space).read_text() if args.space else SPACE)
    tune_out, tune_s = invoke(
        project,
        "tune",
        "--device=cpu",
        f"--trials={args.trials}",
        f"--space={space}",
        f"--epochs={args.epochs}",
        "--seed=0",
        *budget[1:],
    )
    best = json.loads(next((project / "runs").glob("*/tune/default/best.json")).read_text())
    best_test = test_map(project, Path(best["run_dir"]) / "best.pth")
    pruned = len(re.findall(r"^trial \d+ pruned", tune_out, re.M))

    result = {
        "trials": args.trials,
        "epochs_per_trial": args.epochs,
        "pruned": pruned,
        "defaults": {
            "val_mAP50_95": baseline_val,
            "test_mAP50_95": baseline_test[0],
            "test_mAP50": baseline_test[1],
            "seconds": round(baseline_s),
        },
        "best_trial": {
            "trial": best["trial"],
            "val_mAP50_95": best["value"],
            "test_mAP50_95": best_test[0],
            "test_mAP50": best_test[1],
            "overrides": best["overrides"],
        },
        "study_seconds": round(tune_s),
        "project": str(project),
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(tune_out[-4000:])
    print(f"{'':22}{'val mAP50:95':>14}{'test mAP50:95':>15}{'test mAP50':>12}")
    print(
        f"{'Exp defaults':22}{100 * baseline_val:14.2f}{100 * baseline_test[0]:15.2f}{100 * baseline_test[1]:12.2f}"
    )
    print(
        f"{'best of ' + str(args.trials) + ' trials':22}{100 * best['value']:14.2f}{100 * best_test[0]:15.2f}"
        f"{100 * best_test[1]:12.2f}"
    )
    print(
        f"best trial {best['trial']}: {' '.join(best['overrides'])}; {pruned} trials pruned; "
        f"study {tune_s / 60:.1f} min, one default run {baseline_s / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
