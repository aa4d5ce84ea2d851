"""The demo's finetuning over several seeds: how much its val mAP50 moves from run to run.

    python benchmarks/demo_seeds.py                   # seeds 0,1,2 in a temporary demo project
    python benchmarks/demo_seeds.py --seeds 0,1,2,3,4 --scratch --out demo_seeds.json
    python benchmarks/demo_seeds.py --epochs 60 --base BASE.pth  # another budget, a given base

Renders the demo project (the answers and settings of `invoke demo`, from tasks.py), takes the
demo's base model from the weights cache (or trains it, as the demo does), then for each seed
runs exactly the demo's `invoke train --ckpt BASE` with `--set seed=N` and `invoke eval` on its
best.pth. --scratch also trains each seed from random weights with the same settings (the same
lr and warmup, through the scratch_* values), which shows what the base model is worth.
Prints one row per run and the mean, min and max; --out writes them as JSON.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from invoke import Context

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tasks  # noqa: E402  (the template's tasks.py: the demo's recipe lives there)


def scratch_settings():
    """The demo's finetuning settings moved onto the from-scratch profile's names."""
    renamed = {"basic_lr_per_img": "scratch_basic_lr_per_img", "warmup_epochs": "scratch_warmup_epochs"}
    return [
        renamed.get(s.split("=")[0], s.split("=")[0]) + "=" + s.split("=", 1)[1]
        for s in tasks.DEMO_TRAIN_SETTINGS
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (INT,INT,...)")
    p.add_argument("--scratch", action="store_true", help="also train each seed from random weights")
    p.add_argument("--out", help="write the rows as JSON to this file")
    p.add_argument("--epochs", type=int, help="finetuning epochs (default: the demo's)")
    p.add_argument("--set", action="append", default=[], help="another Exp setting for every run (KEY=VALUE)")
    p.add_argument("--train-images", type=int, default=None, help="training images (default: the demo's)")
    p.add_argument(
        "--base", help="a base checkpoint to finetune (default: the demo's, cached or trained now)"
    )
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    c = Context()
    py = f'"{sys.executable}" -m invoke'
    rows = []
    with tempfile.TemporaryDirectory(prefix="yft-demo-seeds-") as tmp:
        epochs = args.epochs or tasks.DEMO_ANSWERS["epochs"]
        project = tasks.render_project(Path(tmp) / "demo", tasks.DEMO_ANSWERS | {"epochs": epochs})
        base = Path(args.base).resolve() if args.base else tasks.demo_base(c, py)
        with c.cd(str(project)):
            c.run(f"{py} sample-data --train {args.train_images or tasks.DEMO_TRAIN_IMAGES}", echo=True)
            runs = [("finetuned", f"--ckpt {base}", tasks.DEMO_TRAIN_SETTINGS)]
            if args.scratch:
                runs.append(("scratch", "--from-scratch", scratch_settings()))
            for seed in seeds:
                for kind, start, settings in runs:
                    name = f"{kind}-seed{seed}"
                    sets = " ".join(f"--set {s}" for s in settings + args.set + [f"seed={seed}"])
                    started = time.perf_counter()
                    c.run(
                        f"{py} train --device cpu --quiet --name {name} {start} {sets}", echo=True, hide="out"
                    )
                    minutes = (time.perf_counter() - started) / 60
                    run = project / "runs" / "shapes_demo_yolox_nano" / name
                    c.run(f"{py} eval --device cpu --ckpt {run / 'best.pth'}", hide="out")
                    metrics = json.loads((run / "eval_val_torch" / "metrics.json").read_text())
                    rows.append(
                        {
                            "kind": kind,
                            "seed": seed,
                            "epochs": epochs,
                            "mAP50": metrics["mAP50"],
                            "mAP50_95": metrics["mAP50_95"],
                            "train_minutes": round(minutes, 2),
                        }
                    )
                    print(
                        f"{kind:<10} seed {seed}: val mAP50 {metrics['mAP50']:.3f}, "
                        f"mAP50:95 {metrics['mAP50_95']:.3f}, trained in {minutes:.1f} min",
                        flush=True,
                    )
    for kind in dict.fromkeys(r["kind"] for r in rows):
        values = [r["mAP50"] for r in rows if r["kind"] == kind]
        print(
            f"{kind}: val mAP50 over seeds {seeds}: mean {statistics.mean(values):.3f}, "
            f"min {min(values):.3f}, max {max(values):.3f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
