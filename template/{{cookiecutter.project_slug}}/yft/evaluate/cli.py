"""The evaluate tasks: `invoke eval`, `robustness`, `compare`, `mine`, `drift`."""

from pathlib import Path

from yft.evaluate import run_files
from yft.evaluate.html_report import write_html_report
from yft.evaluate.run import evaluate_backend, format_table, latency_batch1, write_report
from yft.inference import make_backend
from yft.project import UserError, relative
from yft.runs import output_dir


def check_split(split):
    if split not in ("val", "test"):
        raise UserError(f"--split {split}: use val or test")


def run_eval(
    exp,
    device,
    ckpt,
    split,
    backend_name,
    batch_size,
    out=None,
    conf=None,
    engine="auto",
    analysis=True,
    progress=True,
    html=True,
    force=False,
):
    """Evaluate a checkpoint (or ONNX model) on a split; write one eval folder (a new one on a
    rerun, yft.runs.output_dir):
    metrics.json, detections.json, report.md and (with analysis) the figures; then (html) the
    run's HTML report (yft/evaluate/html_report.py)."""
    from yft.data.coco_io import image_dir
    from yft.data.precheck import check_split as check_files
    from yft.evaluate import report

    check_split(split)
    backend, path = make_backend(exp, ckpt, backend_name, device)  # "train first" before "no data"
    dataset = check_files(exp, split)
    # claimed before minutes of work; an earlier eval's folder is never written over without force
    out = output_dir(path.parent / f"eval_{split}_{backend_name}", out, force)
    metrics, results = evaluate_backend(backend, exp, split, device, batch_size, progress, engine)
    metrics["checkpoint"] = relative(path)
    metrics["speed"]["latency_ms_batch1"] = latency_batch1(backend, exp, split, device)
    if analysis:
        metrics, matches, precision = report.analyse(
            metrics, results, dataset, exp.class_names, exp.category_ids(), exp.class_mode, conf
        )
        report.write_figures(metrics, matches, precision, exp.class_names, image_dir(exp, split), out)
        metrics["files"] = dict(report.FILES)
        if metrics["mAP50"] is None:
            metrics["files"].pop("pr_curves")
    from yft.io import write_atomic

    write_atomic(
        out / report.FILES["report"], report.markdown(metrics, f"Evaluation: {exp.exp_name}").encode("utf-8")
    )
    write_report(metrics, results, out)
    print(format_table(metrics))
    op = metrics.get("operating_point", {}).get("iou50")
    if op and op["conf"] is not None:
        print(
            f"F1-best at IoU 0.5: conf {op['conf']}  precision {op['precision']:.3f}  "
            f"recall {op['recall']:.3f}  F1 {op['f1']:.3f}"
        )
    print(f"metrics written to {relative(out / 'metrics.json')}, report {relative(out / 'report.md')}")
    if html:
        print_report(*write_html_report(exp, path.parent, out, split, matches if analysis else None))
    return metrics


def print_report(path, notes):
    for note in notes:
        print(f"report note: {note}")
    print(f"HTML report: {relative(path)} ({path.stat().st_size / 2**20:.1f} MB)")


def resolve_run(exp, run=None):
    """A run folder from --run: a folder path, or a run name under runs/<exp>/ (default: the
    latest run, yft.runs.resolve_run)."""
    from yft.runs import resolve_run as named_run

    if run and Path(run).is_dir():
        if not run_files.looks_like_run(Path(run)):
            raise UserError(
                f"--run {run}: not a run folder (no checkpoint, training log or eval folder in it)"
            )
        return Path(run)
    if run and ("/" in str(run) or "\\" in str(run)):
        raise UserError(f"--run {run}: no such folder")
    return named_run(exp, run or None)


def run_report(exp, run=None, split="val", eval_dir=None):
    """`invoke report`: write the run's report.html (report_test.html for the test split)."""
    check_split(split)
    if eval_dir and not (Path(eval_dir) / "metrics.json").is_file():
        raise UserError(f"{eval_dir}: not an `invoke eval` folder (no metrics.json)")
    path, notes = write_html_report(exp, resolve_run(exp, run), eval_dir, split)
    print_report(path, notes)
    return path


def finish_training(exp, device, run, batch_size=8, progress=False):
    """After `invoke train`: evaluate best.pth on val with the full analysis and write the
    run's HTML report (the final validation the report is built from)."""
    ckpt = Path(run) / "best.pth"
    if not ckpt.is_file():
        print(f"no {relative(ckpt)}: no evaluation and no HTML report")
        return None
    print("final validation of best.pth with the error analysis, for the report")
    return run_eval(exp, device, ckpt, "val", "torch", batch_size, progress=progress)


def parse_ints(text, option):
    try:
        return tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise UserError(f"{option} {text}: expected comma-separated integers, e.g. 1,3,5") from None


def parse_names(text):
    return [v.strip() for v in str(text).split(",") if v.strip()]
