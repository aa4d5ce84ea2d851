"""`invoke label-issues` against known label errors, and against two simple baselines, in one run.

    python benchmarks/label_issues_bench.py --base BASE.pth       # K-fold, 3 folds finetuned from BASE
    python benchmarks/label_issues_bench.py --ckpt MODEL.pth --val 48 --test 48   # one model, val+test

Renders a sample project, makes its synthetic dataset, injects label errors into every split
(a --fraction of the boxes each deleted, given a wrong class, shifted, plus as many invented
boxes; seeded), runs `invoke label-issues` on it, and reports precision and recall at N (N = the
number injected) overall and per kind for three rankings of the same candidates:
  ours        cleanlab's scores sorted into issue types (yft.evaluate.label_issues.scoring)
  confidence  1 - the confidence of the best same-class prediction on each label; unlabelled
              predictions by their confidence (no cleanlab)
  random      a seeded shuffle
All three rank the same out-of-sample predictions (the task's label_issues/predictions.json).
Without --base or --ckpt the folds train from scratch, which on a CPU budget gives a model too
weak for any ranking to work (the task warns): the figures then say little.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=96)
    ap.add_argument("--val", type=int, default=24)
    ap.add_argument("--test", type=int, default=0)
    ap.add_argument("--fraction", type=float, default=0.05, help="share of boxes per kind of error")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--size", type=int, default=160, help="input size (px)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dest", type=Path, help="project folder (default: a temporary one)")
    ap.add_argument(
        "--ckpt", help="score val/test with this model (trained on the sample train split) instead of folds"
    )
    ap.add_argument("--base", help="weights the folds start from (default: --from-scratch)")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from tasks import render_project

    dest = args.dest or Path(tempfile.mkdtemp(prefix="yft-li-")) / "proj"
    project = render_project(
        dest,
        {"model": "yolox_nano", "input_size": args.size, "class_names": ["circle", "square", "triangle"]},
    )
    py = [sys.executable, "-m", "invoke"]
    subprocess.run(
        py
        + [
            "sample-data",
            "--train",
            str(args.train),
            "--val",
            str(args.val),
            "--test",
            str(args.test),
            "--seed",
            str(args.seed),
        ],
        cwd=project,
        check=True,
    )
    sys.path.insert(0, str(project))
    from yft.data.coco_io import annotation_path, read_json
    from yft.evaluate.label_issues.recovery import inject_errors, recovery
    from yft.evaluate.label_issues.scoring import confidence_baseline
    from yft.io import write_json
    from yft.project import load_exp

    exp = load_exp()
    # With --ckpt the model saw the train split: only val and test are scored (and corrupted).
    counts = (("train", args.train), ("val", args.val), ("test", args.test))
    splits = [s for s, c in counts if c and not (args.ckpt and s == "train")]
    injected = []
    for n, split in enumerate(splits):
        path = annotation_path(exp, split)
        noisy, errors = inject_errors(read_json(path), args.fraction, args.seed + n)
        write_json(path, noisy)
        injected += [{**e, "split": split} for e in errors]
    if args.ckpt:
        settings = ["--ckpt", str(Path(args.ckpt).resolve()), "--splits", ",".join(splits)]
    else:
        settings = ["--folds", str(args.folds), "--epochs", str(args.epochs)]
        settings += ["--base", str(Path(args.base).resolve())] if args.base else ["--from-scratch"]
    subprocess.run(py + ["label-issues", "--device", "cpu", *settings], cwd=project, check=True)
    out = project / "runs" / exp.exp_name / "label_issues"
    scores = json.loads((out / "label_scores.json").read_text())
    issues = json.loads((out / "issues.json").read_text())
    ours = issues + [r for r in scores["labels"] if r["type"] == "ok"]  # issues first, then the rest

    # The baselines rank the same candidates from the same out-of-sample predictions.
    from yft.evaluate.label_issues.predictions import attach, labelled_images

    images = attach(labelled_images(exp, splits), json.loads((out / "predictions.json").read_text()))
    baseline = confidence_baseline(images, list(exp.class_names))
    shuffled = [baseline[i] for i in np.random.default_rng(args.seed).permutation(len(baseline))]

    # Image ids are unique across the sample data's splits, so (image id, annotation id) is a key.
    results = {
        name: recovery(ranking, injected)
        for name, ranking in (("ours", ours), ("confidence", baseline), ("random", shuffled))
    }
    source = f"--ckpt {args.ckpt}" if args.ckpt else f"{args.folds} folds x {args.epochs} epochs"
    print(
        f"\n{len(injected)} injected errors ({args.fraction:.0%} of boxes per kind), {source}, "
        f"yolox-nano {args.size}px"
    )
    print("| ranking | precision@N | recall@N | missing | wrong class | misplaced | spurious |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        kinds = " | ".join(
            f"{r['per_kind'][k]['recall']:.2f}" for k in ("missing", "wrong_class", "misplaced", "spurious")
        )
        print(f"| {name} | {r['precision_at_n']:.2f} | {r['recall_at_n']:.2f} | {kinds} |")
    (out / "benchmark.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
