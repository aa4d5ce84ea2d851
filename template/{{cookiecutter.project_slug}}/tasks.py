"""Tasks for this YOLOX finetuning project. `invoke --list` shows them, `invoke <task> --help`
explains one. Each task only parses options and calls the project's `yft` package; invoke
collects every @task in this file, grouped below by stage (setup, data, train, evaluate, deploy)."""

import functools
import sys

from invoke import Exit, task

from yft.cli import install as _typed_options

_typed_options()  # --help names every option's value type; `--conf abc` is one line, exit 1


def friendly(func):
    """Check numeric options (yft.cli.RULES); turn yft.project.UserError, and an OS error on a
    named file (unwritable output, a path under a file), into a one-line message and exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from yft.cli import check_options
        from yft.project import UserError

        try:
            check_options(func, kwargs)
            return func(*args, **kwargs)
        except UserError as err:
            # raised in a data-loader worker, torch re-raises it with the worker's traceback
            message = str(err).strip().splitlines()[-1].split("UserError: ", 1)[-1]
            raise Exit(f"error: {message}", code=1) from None
        except OSError as err:
            if err.filename is None:
                raise
            raise Exit(f"error: {err.filename}: {err.strerror or err}", code=1) from None

    return wrapper


# ---------------------------------------------------------------- setup


def _exp(exp=None, overrides=()):
    from yft.project import load_exp

    return load_exp(exp, overrides)


@task(
    help={
        "dry_run": "Print the pip commands without running them",
        "extras": "Comma-separated pyproject extras to install too (default: dev)",
        "torch": "Which torch build when torch is installed: auto (CUDA where nvidia-smi finds "
        "a GPU, else CPU-only), cpu or cuda",
        "torch_index": "Install torch and torchvision from this package index URL instead",
        "constraints": "A pip constraints file of exact versions, e.g. constraints.txt "
        "(the known-good versions CI uses)",
    }
)
@friendly
def setup(c, extras="dev", torch="auto", torch_index=None, constraints=None, dry_run=False):
    """Install torch, yolox 0.3.0 (no compiler needed) and this project; check the versions."""
    from yft.setup_env import setup as run_setup

    run_setup(
        [e for e in extras.split(",") if e],
        torch=torch,
        torch_index=torch_index,
        constraints=constraints,
        dry_run=dry_run,
    )


# ---------------------------------------------------------------- data


@task(
    name="sample-data",
    help={
        "exp": "Exp file (default: [tool.yft] exp in pyproject.toml)",
        "train": "Training images",
        "val": "Validation images",
        "test": "Test images (0: no test split)",
        "seed": "Random seed",
        "force": "Replace annotations and images the splits already hold",
    },
)
@friendly
def sample_data(c, exp=None, train=64, val=16, test=16, seed=0, force=False):
    """Write a small synthetic dataset labelled with this project's class names.

    It refuses to replace a dataset that is already there, unless --force."""
    from yft.data.sample import make_sample_dataset
    from yft.project import relative

    for path in make_sample_dataset(_exp(exp), (train, val, test), seed, force):
        print(f"wrote {relative(path)}")


@task(
    name="convert",
    iterable=["src", "map_", "images"],
    help={
        "from_": "FORMAT: yolo, voc, labelme, cvat, labelstudio or coco",
        "src": "PATH: the labels: a folder (yolo, voc, labelme; or an export's root folder), or a file "
        "(cvat, labelstudio, coco); repeat to merge several COCO files (or give their folder)",
        "images": "DIR: the image folder (sizes from image headers; images without labels become "
        "negatives); default: --src for yolo and labelme; for coco, once or once per --src",
        "out": "FILE: the COCO .json to write (a new FOLDER with --to yolo); a JSON report is written "
        "beside it (<out>.report.json)",
        "to": "coco (default) or yolo (from a COCO file)",
        "map_": "OLD=NEW: rename a source class (repeatable; several olds may merge into one; "
        "'=NEW' names a blank label)",
        "names": "FILE: YOLO class names (classes.txt / obj.names / data.yaml), when the export has none",
        "drop_unknown": "Drop boxes of classes the Exp does not have (counted) instead of failing",
        "difficult": "keep|drop: VOC difficult objects kept (as an attribute) or dropped (counted)",
        "voc_convention": "edge|devkit: VOC xmin is the left edge (default; CVAT, Roboflow, labelme2voc) "
        "or the VOC devkit's 1-based pixel (x = xmin - 1, w = xmax - xmin + 1)",
        "rotated": "error|enclose: a rotated box (CVAT, Label Studio) is an error (default) or becomes "
        "the axis-aligned box around it (counted)",
        "annotation": "first|last|all|ANNOTATOR: which Label Studio annotation of a task (id or e-mail); "
        "the others are counted",
        "predictions": "Label Studio: use a task's prediction when it has no annotation",
        "subset": "NAME|all: the subset of a CVAT project export, or all (one COCO file per subset)",
        "skip_missing_images": "Leave out labels whose image is missing (counted) instead of failing",
        "require_labels": "Fail on an image without a label file instead of keeping it as a negative",
        "strict": "Fail when any annotation is not converted (the summary's table)",
        "force": "Replace --out (and its report) when it exists; a --to yolo folder is never replaced (give a new one)",
        "exp": "FILE: the Exp (its class names and ids)",
    },
)
@friendly
def convert(
    c,
    from_=None,
    src=None,
    out=None,
    images=None,
    to="coco",
    map_=None,
    names=None,
    drop_unknown=False,
    difficult="keep",
    voc_convention="edge",
    rotated="error",
    annotation="first",
    predictions=False,
    subset=None,
    skip_missing_images=False,
    require_labels=False,
    strict=False,
    force=False,
    exp=None,
):
    """Convert YOLO / VOC / LabelMe / CVAT / Label Studio / COCO labels to this project's COCO."""
    from yft.data.convert import convert as run_convert, format_summary
    from yft.project import UserError

    if not from_ or not out:
        raise UserError("convert needs --from FORMAT, --src LABELS and --out FILE (see --help)")
    e = _exp(exp)
    print(
        format_summary(
            run_convert(
                from_,
                src,
                images,
                out,
                e.class_names,
                e.category_ids(),
                map_ or (),
                drop_unknown,
                require_labels,
                difficult,
                to,
                strict=strict,
                force=force,
                skip_missing_images=skip_missing_images,
                names=names,
                rotated=rotated,
                annotation=annotation,
                predictions=predictions,
                subset=subset,
                voc_convention=voc_convention,
            )
        )
    )


@task(
    help={
        "fix": "Write <name>.fixed.json next to each annotation file (originals untouched)",
        "ann": "Check this COCO file instead of the Exp's splits (needs --images)",
        "images": "Image folder of --ann",
        "report": "JSON report path (default: runs/data/validation.json)",
        "exp": "Exp file",
    }
)
@friendly
def validate(c, fix=False, ann=None, images=None, report=None, exp=None):
    """Decode every image, check every box, id, file name and cross-split duplicate."""
    from yft.data.validate import validate as run_validate
    from yft.project import UserError, relative

    result, fixed, path = run_validate(_exp(exp), ann, images, fix, report)
    print(result.text())
    for out, changes in fixed:
        print(
            f"wrote {relative(out)}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in changes.items())
        )
    if path:
        print(f"report: {relative(path)}")
    if result.errors:
        raise UserError(f"{len(result.errors)} errors in the dataset (listed above)")


@task(
    auto_shortflags=False,
    help={
        "ann": "The COCO file to split (e.g. the output of `invoke convert`)",
        "images": "The folder its file names are relative to",
        "train": "Fraction for train",
        "val": "Fraction for val",
        "test": "Fraction for test",
        "seed": "Random seed (same seed, same split)",
        "group_by": "Regex on file names; images with the same match (or first group) stay in "
        "one split, e.g. '^(.+)_t[0-9]' for extract-frames output",
        "kfold": "Write K stratified folds to <data>/folds/fold_k/ instead",
        "by_time": "Oldest images to train, newest to val/test, by EXIF DateTimeOriginal "
        "(or --time-from); a --group-by group stays in one split",
        "time_from": "Regex on file names whose first group (or match) is the capture time, "
        "e.g. '(\\d{8}_\\d{6})' with --time-format %Y%m%d_%H%M%S (implies --by-time)",
        "time_format": "strptime format of the --time-from text (default: 20240131[1530[00]], "
        "Unix seconds/ms, or ISO 8601)",
        "gap": "Buffer between splits, e.g. 7d, 12h, 30m: earlier images closer than this to the "
        "next split are left out (counted)",
        "strict": "With --by-time: refuse images without a capture time (default: the normal "
        "stratified rule places them, counted)",
        "symlink": "Symlink images instead of hardlinking (or copying)",
        "force": "Replace split folders that already hold images",
        "out": "Dataset folder (default: the Exp's data_dir)",
        "exp": "Exp file",
    },
)
@friendly
def split(
    c,
    ann=None,
    images=None,
    train=0.8,
    val=0.1,
    test=0.1,
    seed=0,
    group_by=None,
    kfold=0,
    by_time=False,
    time_from=None,
    time_format=None,
    gap=None,
    strict=False,
    symlink=False,
    force=False,
    out=None,
    exp=None,
):
    """Stratified, group-aware train/val/test split (or K folds, or by capture time with --by-time)."""
    from yft.data.split import split_dataset
    from yft.project import UserError, relative

    if not ann or not images:
        raise UserError("split needs --ann FILE and --images DIR (see --help)")
    written, lines = split_dataset(
        ann,
        images,
        out or _exp(exp).data_dir,
        (train, val, test),
        seed,
        group_by,
        kfold,
        symlink,
        force,
        by_time=by_time,
        time_from=time_from,
        time_format=time_format,
        gap=gap,
        strict=strict,
    )
    print("\n".join(lines))
    for path in written:
        print(f"wrote {relative(path)}")


@task(
    help={
        "ann": "One COCO file instead of the Exp's splits",
        "out": "Folder for stats.json and the PNG plots (default: runs/data/stats)",
        "exp": "Exp file",
    }
)
@friendly
def stats(c, ann=None, out=None, exp=None):
    """Per split: images, boxes, class counts, imbalance, size buckets, negatives; PNG plots."""
    from yft.data.stats import dataset_stats, format_stats
    from yft.project import ROOT, relative

    e = _exp(exp)
    result, paths = dataset_stats(e, ann, out or ROOT / e.output_dir / "data" / "stats")
    print(format_stats(result))
    for path in paths:
        print(f"wrote {relative(path)}")


@task(
    name="show-labels",
    help={
        "number": "Number of images (-n 16)",
        "split": "train, val or test",
        "seed": "Which random images",
        "out": "PNG path (default: runs/data/labels_<split>.png)",
        "ann": "A COCO file instead of the split's",
        "images": "Its image folder",
        "exp": "Exp file",
    },
)
@friendly
def show_labels(c, number=16, split="train", seed=0, out=None, ann=None, images=None, exp=None):
    """A grid of images with their boxes and class names, for eyeballing labels."""
    from yft.data.stats import show_labels as draw
    from yft.project import ROOT, relative

    e = _exp(exp)
    path, count = draw(
        e, out or ROOT / e.output_dir / "data" / f"labels_{split}.png", number, split, seed, ann, images
    )
    print(f"wrote {relative(path)} ({count} images)")


@task(
    name="extract-frames",
    help={
        "video": "Video file",
        "out": "Folder for the JPEG frames",
        "every": "Keep one frame every N (see --unit)",
        "unit": "seconds (default) or frames",
        "max_bits": "Skip a frame whose perceptual hash is within this many "
        "bits of the last one kept (0: keep all)",
    },
)
@friendly
def extract_frames(c, video=None, out=None, every=1.0, unit="seconds", max_bits=4):
    """Video frames to JPEG, near-duplicates skipped, named <video>_t<seconds>s.jpg."""
    from yft.data.frames import GROUP_BY, extract_frames as run_extract
    from yft.project import UserError, relative

    if not video or not out:
        raise UserError("extract-frames needs --video FILE and --out DIR (see --help)")
    written, skipped = run_extract(video, out, every, unit, max_bits if max_bits > 0 else -1)
    print(
        f"wrote {len(written)} frames to {relative(out)}, skipped {skipped} near-duplicates; "
        f"split them with --group-by '{GROUP_BY}'"
    )


@task(
    help={
        "a": "COCO file of annotator A, the reference (-a A.json)",
        "b": "COCO file of annotator B (-b B.json)",
        "iou": "IoU for two boxes to match",
        "out": "Also write the full result as JSON here",
    }
)
@friendly
def agreement(c, a=None, b=None, iou=0.5, out=None):
    """Inter-annotator agreement: P/R/F1 of B vs A, mean IoU, class confusion, Cohen's kappa."""
    from yft.data.agreement import agreement as run_agreement, format_agreement
    from yft.io import write_json
    from yft.project import UserError

    if not a or not b:
        raise UserError("agreement needs --a A.json and --b B.json (see --help)")
    result = run_agreement(a, b, iou)
    print(format_agreement(result))
    if out:
        write_json(out, result, indent=1)


@task(
    name="overlap-sample",
    help={
        "images": "Image folder",
        "fraction": "Share to label twice",
        "seed": "Random seed",
        "out": "Text file: one image path a line",
    },
)
@friendly
def overlap_sample(c, images=None, fraction=0.1, seed=0, out=None):
    """Draw the images both annotators label (the guide asks for 10%) for `invoke agreement`."""
    from yft.data.agreement import overlap_sample as draw
    from yft.io import write_atomic
    from yft.project import UserError

    if not images or not out:
        raise UserError("overlap-sample needs --images DIR and --out FILE (see --help)")
    names = draw(images, fraction, seed)
    write_atomic(out, "".join(n + "\n" for n in names).encode("utf-8"))
    print(f"wrote {out}: {len(names)} images to label by both annotators")


# ---------------------------------------------------------------- train


@task(
    iterable=["set_"],
    auto_shortflags=False,
    help={  # 15 options: invoke runs out of letters
        "exp": "Exp file (default: [tool.yft] exp in pyproject.toml)",
        "device": "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps",
        "ckpt": "FILE: start from these weights instead of the Exp's pretrained (default: the official "
        "COCO weights, downloaded once); classes are matched by name, the others start fresh",
        "from_scratch": "Random weights and the from-scratch learning rate and warmup (scratch_* in the Exp)",
        "resume": "Continue exactly from the latest run's last.pth (or --name's run)",
        "name": "Run folder under runs/<exp>/ (default: the next of train, train2, ...; `latest` points to it)",
        "smoke": "A few iterations at a tiny size: checks that everything runs",
        "batch_size": "Total batch size over all devices (default: the Exp's batch_size)",
        "amp": "Mixed precision: fp16 (CUDA) or bf16",
        "strategy": "full, head (backbone and neck frozen), progressive, or classes (only the class predictions train) (default: the Exp's)",
        "devices": "Processes (GPUs) on this machine; more than 1 runs DDP through torchrun",
        "nnodes": "Machines taking part (multi-node DDP)",
        "node_rank": "This machine's rank among the nodes (0 on the master)",
        "master_addr": "Address of the rank-0 machine",
        "master_port": "Port on the rank-0 machine",
        "set_": "Override an Exp setting for this run, e.g. --set max_epoch=20 (repeatable)",
        "from_trial": "Train with the settings of this `invoke tune` trial (--set still wins)",
        "study": "The study of --from-trial (default: default)",
        "storage": "The study's database URL (default: its SQLite file in runs/<exp>/tune/)",
        "quiet": "No progress bars",
        "report": "At the end, evaluate best.pth on val and write the run's report.html (default); "
        "--no-report skips both",
    },
)
@friendly
def train(
    c,
    exp=None,
    device="auto",
    ckpt=None,
    resume=False,
    smoke=False,
    name=None,
    batch_size=0,
    amp=None,
    strategy=None,
    devices=1,
    nnodes=1,
    node_rank=0,
    master_addr="127.0.0.1",
    master_port=29500,
    set_=None,
    from_trial=-1,
    study="default",
    storage=None,
    quiet=False,
    report=True,
    from_scratch=False,
):
    """Finetune the Exp's model from COCO weights (or --ckpt, or --from-scratch); each run gets its
    own folder runs/<exp>/train, train2, ... with checkpoints, logs and (after a final evaluation)
    report.html."""
    from yft.device import pick_device
    from yft.evaluate.cli import finish_training

    if from_trial >= 0:
        from yft.train.tune import trial_overrides

        found = trial_overrides(_exp(exp, set_ or ()), from_trial, study, storage)
        print(f"settings of trial {from_trial} (study {study}): {' '.join(found)}")
        set_ = found + list(set_ or ())
    if devices > 1 or nnodes > 1:
        from yft.train.cli import launch

        argv = [f"--device={device}"] + [f"--set={s}" for s in set_ or ()]
        argv += [
            f"--{k}={v}"
            for k, v in (
                ("exp", exp),
                ("ckpt", ckpt),
                ("batch-size", batch_size),
                ("amp", amp),
                ("strategy", strategy),
                ("name", name),
            )
            if v
        ]
        argv += [
            flag
            for flag, on in (
                ("--resume", resume),
                ("--smoke", smoke),
                ("--quiet", quiet),
                ("--from-scratch", from_scratch),
            )
            if on
        ]
        code = launch(argv, devices, nnodes, node_rank, master_addr, master_port)
        if code:
            raise Exit(f"error: distributed training failed (exit code {code})", code=code)
        if report and node_rank == 0:
            from yft.runs import resolve_run

            e = _exp(exp, set_ or ())
            finish_training(e, pick_device(device), resolve_run(e, name, smoke=smoke), batch_size or 8)
        return
    from yft.train.run import train as run_train

    e = _exp(exp, set_ or ())
    out = run_train(
        e,
        pick_device(device),
        ckpt=ckpt,
        resume=resume,
        smoke=smoke,
        name=name,
        from_scratch=from_scratch,
        batch_size=batch_size or None,
        amp=amp,
        strategy=strategy,
        progress=False if quiet else None,
    )
    if report:
        finish_training(e, pick_device(device), out, batch_size or 8)


@task(
    iterable=["set_"],
    help={
        "exp": "Exp file",
        "trials": "finished trials the study should hold (a rerun resumes to it)",
        "epochs": "epochs per trial (the trial budget; sets max_epoch)",
        "iters": "at most this many iterations per epoch (0: the whole training set)",
        "study": "Study name (default: default); its trials go to runs/<exp>/tune/<study>/",
        "storage": "Database URL shared by workers, e.g. postgresql://user:pass@host/db "
        "(default: sqlite file runs/<exp>/tune/<study>.db)",
        "space": "YAML file with the search space (replaces the Exp's tune_space), e.g. "
        "'basic_lr_per_img: {low: 1.0e-5, high: 1.0e-3, log: true}'",
        "metric": "Objective: mAP50_95 (default), mAP50 or mAP75 on val",
        "pruner": "median (default), hyperband or none: stops hopeless trials after a validation",
        "seed": "sampler seed (give each parallel worker its own)",
        "ckpt": "Start every trial from these weights (default: as `invoke train`, the Exp's pretrained)",
        "from_scratch": "Trials train from random weights with the from-scratch profile (scratch_* in the Exp)",
        "device": "auto, cpu, cuda, cuda:1 (one worker per GPU: run one tune per device)",
        "batch_size": "batch size (default: the Exp's)",
        "timeout": "Stop starting trials after this many seconds (0: no limit)",
        "set_": "Exp setting for every trial, e.g. --set no_aug_epochs=1 (repeatable)",
        "verbose": "Show each trial's training output (else it goes to the trial's tune_trial.log)",
    },
)
@friendly
def tune(
    c,
    exp=None,
    trials=20,
    epochs=10,
    iters=0,
    study="default",
    storage=None,
    space=None,
    metric="mAP50_95",
    pruner="median",
    seed=-1,
    ckpt=None,
    device="auto",
    batch_size=0,
    timeout=0,
    set_=None,
    verbose=False,
    from_scratch=False,
):
    """Hyperparameter search (Optuna): trials are normal runs; best settings, table and plots."""
    from yft.device import pick_device
    from yft.train.tune import tune as run_tune
    from yft.train.tune_report import summarize

    result, url, out = run_tune(
        exp,
        pick_device(device),
        trials,
        epochs,
        iters,
        study,
        storage,
        space,
        metric,
        pruner,
        None if seed < 0 else seed,
        ckpt,
        batch_size or None,
        set_ or (),
        timeout or None,
        verbose,
        from_scratch,
    )
    summarize(result, _exp(exp, set_ or ()), url, out, metric)


@task(
    name="download-weights",
    help={
        "model": "yolox_nano, yolox_tiny, yolox_s, yolox_m, yolox_l or yolox_x (default: the Exp's)",
        "cache": "Folder for weights (default: $YFT_WEIGHTS or ~/.cache/yft/weights)",
        "url": "Download from this URL instead of YOLOX's GitHub release",
        "sha256": "Expected sha256 (default: the one recorded at the first download)",
    },
)
@friendly
def download_weights(c, model=None, cache=None, url=None, sha256=None):
    """Fetch official COCO-pretrained YOLOX weights (resumable, checksummed) into a cache."""
    from yft.train.weights import download_weights as fetch

    path = fetch(model or _exp().model_name, cache, url, sha256)
    print(f"{path}\nfinetune from it with: invoke train --ckpt {path}")


@task(
    help={
        "exp": "Exp file",
        "ckpt": "Weights you will start from",
        "device": "auto, cpu, cuda, mps",
        "batch_size": "Batch size to check (default: the Exp's)",
    }
)
@friendly
def check(c, exp=None, ckpt=None, device="auto", batch_size=0):
    """The pre-training checklist: data, classes, device and memory, weights, an augmented batch PNG."""
    from yft.device import pick_device
    from yft.train.check import run_checks

    if not run_checks(_exp(exp), pick_device(device), ckpt, batch_size or None):
        raise Exit("error: the checklist found problems (see above)", code=1)


# ---------------------------------------------------------------- evaluate

# One rule for every task's results (yft/runs.py output_dir): a rerun never writes over them.
OUTPUT = (
    "DIR: output folder (default: {}; a rerun writes to a new numbered folder, ...2, ...3); "
    "one that already holds results needs --force"
)
FORCE = (
    "Write into the output folder even if it holds an earlier result (same-named files replaced, "
    "nothing else deleted)"
)


@task(
    name="eval",
    iterable=["set_"],
    help={
        "exp": "Exp file",
        "ckpt": "Checkpoint (default: runs/<exp>/latest/best.pth)",
        "split": "val or test",
        "device": "auto, cpu, cuda, mps",
        "backend": "torch, onnx (an .onnx file as --ckpt) or trt",
        "batch_size": "Images per batch",
        "conf": "Confidence for the error analysis (default: the F1-best one)",
        "output": "DIR: the eval folder (default: eval_<split>_<backend> next to the checkpoint; a rerun "
        "writes eval_<split>_<backend>2, ...); an existing one that holds results needs --force",
        "set_": "Override an Exp setting, e.g. --set test_conf=0.001",
        "force": FORCE,
    },
)
@friendly
def evaluate(
    c,
    exp=None,
    ckpt=None,
    split="val",
    device="auto",
    backend="torch",
    batch_size=8,
    conf=-1.0,
    output=None,
    set_=None,
    force=False,
):
    """COCO metrics (pycocotools' numbers), per-class AP, P/R/F1, confusion matrix, PR curves,
    error breakdown, worst images, speed: metrics.json + report.md in one run folder."""
    from yft.device import pick_device
    from yft.evaluate.cli import run_eval

    run_eval(
        _exp(exp, set_ or ()),
        pick_device(device),
        ckpt,
        split,
        backend,
        batch_size,
        out=output,
        conf=None if conf < 0 else conf,
        force=force,
    )


@task(
    help={
        "run": "Run folder, or a run name under runs/<exp>/ (default: the latest run)",
        "split": "val (report.html) or test (report_test.html): the evaluation shown",
        "eval_dir": "The `invoke eval` folder to show (default: the run's newest eval of the split)",
        "exp": "Exp file",
    }
)
@friendly
def report(c, run=None, split="val", eval_dir=None, exp=None):
    """One self-contained HTML page for a run: settings, data, training curves, metrics, operating
    point, confusion matrix, PR curves, errors, an image browser, robustness/compare/drift/mine
    results and exports. Opens in any browser, no server or internet needed."""
    from yft.evaluate.cli import run_report

    run_report(_exp(exp), run, split, eval_dir)


@task(
    help={
        "exp": "Exp file",
        "ckpt": "Checkpoint (default: best.pth)",
        "split": "val or test",
        "corruptions": "Comma-separated subset of gaussian_blur, motion_blur, gaussian_noise, "
        "brightness, contrast, jpeg, low_light (default: all)",
        "severities": "Comma-separated severities 1..5 (default: 1,3,5)",
        "device": "auto, cpu, cuda, mps",
        "batch_size": "Images per batch",
        "output": OUTPUT.format("runs/<exp>/robustness_<split>"),
        "force": FORCE,
    }
)
@friendly
def robustness(
    c,
    exp=None,
    ckpt=None,
    split="val",
    corruptions="",
    severities="1,3,5",
    device="auto",
    batch_size=8,
    output=None,
    force=False,
):
    """mAP under blur, noise, brightness/contrast, JPEG and low light; drop relative to clean."""
    from yft.device import pick_device
    from yft.evaluate.cli import parse_ints, parse_names
    from yft.evaluate.robustness import robustness as run, table_text
    from yft.project import relative

    result, out = run(
        _exp(exp),
        pick_device(device),
        ckpt,
        split,
        parse_names(corruptions) or None,
        parse_ints(severities, "--severities"),
        batch_size,
        out=output,
        force=force,
    )
    print(table_text(result) + f"\nwritten to {relative(out)}")


@task(
    positional=[],
    help={
        "a": "Model A: an `invoke eval` run folder, a checkpoint or an .onnx file (required)",
        "b": "Model B: the same kinds (required)",
        "exp": "Exp file",
        "split": "val or test (default test)",
        "samples": "Bootstrap samples",
        "seed": "Random seed",
        "device": "auto, cpu, cuda, mps",
        "batch_size": "Images per batch",
        "output": OUTPUT.format("runs/<exp>/compare_<split>"),
        "force": FORCE,
    },
)
@friendly
def compare(
    c,
    a=None,
    b=None,
    exp=None,
    split="test",
    samples=1000,
    seed=0,
    device="auto",
    batch_size=8,
    output=None,
    force=False,
):
    """A/B: mAP difference with a 95% interval and p-value (paired bootstrap over images)."""
    if not a or not b:
        raise Exit("error: compare needs --a and --b (run folders or checkpoints)", code=1)
    from yft.device import pick_device
    from yft.evaluate.compare import compare as run, summary_line
    from yft.project import relative

    result, out = run(
        _exp(exp), pick_device(device), a, b, split, batch_size, samples, seed, out=output, force=force
    )
    print(summary_line(result) + f"\nwritten to {relative(out)}")


@task(
    positional=[],
    help={
        "images": "Folder of unlabelled images (required)",
        "exp": "Exp file",
        "ckpt": "Checkpoint (default: best.pth)",
        "top": "How many images to pick",
        "conf": "Score threshold for pre-annotations (default: the Exp's predict_conf)",
        "device": "auto, cpu, cuda, mps",
        "output": OUTPUT.format("runs/<exp>/mine"),
        "force": FORCE,
    },
)
@friendly
def mine(c, images=None, exp=None, ckpt=None, top=50, conf=-1.0, device="auto", output=None, force=False):
    """Active learning: rank unlabelled images by uncertainty; list, sheet, pre-annotations."""
    if not images:
        raise Exit("error: mine needs --images DIR", code=1)
    from yft.device import pick_device
    from yft.evaluate.mine import mine as run
    from yft.project import relative

    info, rows = run(
        _exp(exp), pick_device(device), images, ckpt, top, None if conf < 0 else conf, out=output, force=force
    )
    for row in rows[:5]:
        print(f"{row['uncertainty']:.3f}  {row['file']}")
    print(
        f"{info['num_images']} images ranked; top {info['top']} with pre-annotations in {relative(info['out'])}"
    )


@task(
    positional=[],
    help={
        "images": "Folder of new images (required)",
        "exp": "Exp file",
        "ckpt": "Checkpoint (default: best.pth)",
        "max_images": "At most this many images from each side",
        "permutations": "Permutation-test rounds",
        "device": "auto, cpu, cuda, mps",
        "output": OUTPUT.format("runs/<exp>/drift"),
        "force": FORCE,
    },
)
@friendly
def drift(
    c,
    images=None,
    exp=None,
    ckpt=None,
    max_images=500,
    permutations=200,
    device="auto",
    output=None,
    force=False,
):
    """Data drift: new images vs the training set (image statistics, backbone embeddings)."""
    if not images:
        raise Exit("error: drift needs --images DIR", code=1)
    from yft.device import pick_device
    from yft.evaluate.drift import drift as run
    from yft.project import relative

    result, out = run(
        _exp(exp), pick_device(device), images, ckpt, max_images, permutations, out=output, force=force
    )
    print(
        f"{result['verdict']}: score {result['drift_score']:.5f} (threshold {result['threshold']:.5f}, "
        f"p={result['p_value']})\nwritten to {relative(out)}"
    )


@task(
    name="label-issues",
    positional=[],
    auto_shortflags=False,
    help={
        "exp": "Exp file",
        "device": "auto, cpu, cuda, mps",
        "ckpt": "FILE: predict with this model instead of K-fold training (it must not have seen the "
        "images: by default only val and test are scored)",
        "splits": "TEXT: comma-separated splits to score (default: train,val,test; with --ckpt val,test)",
        "folds": "K of the K-fold out-of-sample predictions (default 3)",
        "epochs": "training epochs per fold (default 10)",
        "base": "FILE: weights each fold's finetune starts from (default: as `invoke train`, the Exp's pretrained)",
        "from_scratch": "Folds train from random weights with the from-scratch profile (no pretrained weights)",
        "group_by": "REGEX: images whose names share the match stay in one fold (e.g. '^(.*)_frame')",
        "seed": "fold assignment seed",
        "top": "issues on the contact sheet",
        "output": "DIR: output folder (default runs/<exp>/label_issues; a rerun writes label_issues2, ... "
        "and reuses the K-fold predictions in label_issues/folds/); one that holds results needs --force",
        "force": FORCE,
        "apply_suggestions": "Also write suggested/instances_*.json with the suggestions applied",
        "min_score": "Only suggestions scoring at least this are applied (0..1)",
    },
)
@friendly
def label_issues(
    c,
    exp=None,
    device="auto",
    ckpt=None,
    splits=None,
    folds=3,
    epochs=10,
    base=None,
    from_scratch=False,
    group_by=None,
    seed=0,
    top=24,
    output=None,
    apply_suggestions=False,
    min_score=0.5,
    force=False,
):
    """Rank the labels that are probably wrong (missing, wrong class, misplaced, spurious boxes)
    from out-of-sample predictions scored with cleanlab; files to re-review them in Label Studio
    or CVAT. The dataset is never modified."""
    from yft.device import pick_device
    from yft.evaluate.label_issues.cli import label_issues as run, parse_splits

    run(
        _exp(exp),
        pick_device(device),
        ckpt=ckpt,
        splits=parse_splits(splits) if splits else None,
        folds=folds,
        epochs=epochs,
        seed=seed,
        group_by=group_by,
        out=output,
        top=top,
        apply_suggestions=apply_suggestions,
        min_score=min_score,
        train_kwargs={"ckpt": base, "from_scratch": from_scratch},
        force=force,
    )


# ---------------------------------------------------------------- deploy


@task(
    name="export-onnx",
    help={
        "exp": "Exp file",
        "ckpt": "Checkpoint (default: runs/<exp>/latest/best.pth)",
        "output": "ONNX path (default: next to the checkpoint)",
        "opset": "ONNX opset, 11-23 (default: the Exp's onnx_opset)",
        "dynamic_batch": "Dynamic batch dimension (default); --no-dynamic-batch fixes it at 1",
        "decode": "Decode boxes in the graph (default); --no-decode keeps YOLOX's raw head outputs",
        "nms": "Add NMS to the graph: onnx (NonMaxSuppression, any runtime) or trt (EfficientNMS_TRT)",
        "force": "Replace an existing model at the output path (only once the new one passed its check)",
    },
)
@friendly
def export_onnx(
    c, exp=None, ckpt=None, output=None, opset=0, dynamic_batch=True, decode=True, nms=None, force=False
):
    """Export to ONNX; check it against torch (outputs and mAP on validation images)."""
    from yft.deploy.cli import run_export_onnx

    run_export_onnx(_exp(exp), ckpt, output, opset or None, dynamic_batch, decode, nms, force)


@task(
    name="export-trt",
    help={
        "exp": "Exp file",
        "ckpt": "Checkpoint to export (default: best.pth)",
        "onnx": "Build from this ONNX model instead of exporting the checkpoint to <ckpt>.trt.onnx",
        "output": "Engine path (default: <ckpt>.engine, or <onnx>.engine with --onnx)",
        "fp16": "Allow FP16 kernels",
        "int8": "INT8, calibrated on validation images",
        "calib_images": "Validation images for INT8 calibration",
        "min_batch": "Smallest batch the engine accepts",
        "opt_batch": "Batch size it is tuned for",
        "max_batch": "Largest batch it accepts",
        "workspace": "Builder workspace in GB",
        "nms": "Put EfficientNMS in the engine (--nms trt)",
        "device": "cuda device, e.g. cuda:1",
        "force": "Replace an existing engine at the output path",
    },
)
@friendly
def export_trt(
    c,
    exp=None,
    ckpt=None,
    onnx=None,
    output=None,
    fp16=False,
    int8=False,
    calib_images=200,
    min_batch=1,
    opt_batch=1,
    max_batch=8,
    workspace=4.0,
    nms=None,
    device="cuda",
    force=False,
):
    """Build a TensorRT engine (+ JSON sidecar) from the ONNX model and report its val mAP."""
    import torch

    from yft.deploy.cli import run_export_trt

    run_export_trt(
        _exp(exp),
        torch.device(device),
        ckpt,
        onnx,
        output,
        fp16,
        int8,
        calib_images,
        min_batch,
        opt_batch,
        max_batch,
        workspace,
        nms,
        force,
    )


@task(
    help={
        "source": "Image, folder, glob pattern (quoted) or video",
        "exp": "Exp file",
        "ckpt": "Checkpoint, .onnx or .engine (default: the run's best.*)",
        "backend": "torch, onnx or trt",
        "conf": "Score threshold (default: the Exp's predict_conf)",
        "nms": "NMS IoU threshold (default: the Exp's nmsthre)",
        "save_json": "Also write predictions.json (COCO results format)",
        "output": OUTPUT.format("predictions/ next to the checkpoint") + " (annotated images, "
        "videos, predictions.json)",
        "device": "auto, cpu, cuda, mps",
        "force": FORCE,
    }
)
@friendly
def predict(
    c,
    source=None,
    exp=None,
    ckpt=None,
    backend="torch",
    conf=-1.0,
    nms=-1.0,
    save_json=False,
    output=None,
    device="auto",
    force=False,
):
    """Draw detections with this project's class names on images or a video."""
    from yft.deploy.cli import run_predict
    from yft.device import pick_device

    if not source:
        raise Exit("error: --source is required: an image, a folder, a glob pattern or a video", code=1)
    run_predict(
        _exp(exp),
        pick_device(device),
        source,
        ckpt,
        backend,
        None if conf < 0 else conf,
        output,
        None if nms < 0 else nms,
        save_json,
        force,
    )


@task(
    help={
        "exp": "Exp file",
        "ckpt": "Checkpoint; the .onnx and .engine next to it are used",
        "backends": "Comma-separated: torch,onnx,trt",
        "batch_sizes": "Comma-separated, e.g. 1,8,32",
        "output": "FILE: the JSON (default: runs/<exp>/bench/bench.json; a rerun writes bench2/bench.json, "
        "...); an existing file needs --force",
        "min_time": "Seconds to measure each row (at least 5 batches)",
        "device": "auto, cpu, cuda, mps",
        "force": "Replace an existing --output file (or the default bench.json instead of numbering)",
    }
)
@friendly
def bench(
    c,
    exp=None,
    ckpt=None,
    backends="torch,onnx,trt",
    batch_sizes="1,8,32",
    output=None,
    min_time=1.0,
    device="auto",
    force=False,
):
    """Latency p50/p95, throughput and peak memory per backend and batch size, end to end."""
    from yft.deploy.cli import run_bench
    from yft.device import pick_device

    run_bench(_exp(exp), pick_device(device), ckpt, backends, batch_sizes, output, min_time, force)


@task(
    help={
        "exp": "Exp file",
        "ckpt": "Checkpoint (default: best.pth; its .onnx/.engine are released too)",
        "version": "Release name (default: v1, v2, ...)",
        "device": "auto, cpu, cuda, mps",
    }
)
@friendly
def release(c, exp=None, ckpt=None, version=None, device="auto"):
    """Check the Exp's release thresholds; if all pass, write runs/<exp>/release/<version>/."""
    from yft.deploy.cli import run_release
    from yft.device import pick_device

    run_release(_exp(exp), pick_device(device), ckpt, version)


# ---------------------------------------------------------------- project


@task(help={"args": "Extra pytest arguments"})
def test(c, args=""):
    """Run this project's own tests."""
    c.run(f"{sys.executable} -m pytest {args}", pty=False)
