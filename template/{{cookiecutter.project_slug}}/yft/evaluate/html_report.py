"""One self-contained HTML page per run: `invoke report` -> runs/<exp>/<run>/report.html.

Built from what the other tasks wrote (run.json, epochs.csv, the eval folder's metrics.json,
detections.json and figures, robustness/compare/drift/mine results, exports): numbers are
taken as they are, not recomputed. The only new work is the image browser, which needs to
know which detection matched which box: the eval's own matching (matching.py) is re-run on
its detections.json. Images and figures are embedded (data: URIs), so the file opens
anywhere without a server or the internet; the page's JavaScript is plain and inlined.
"""

import base64
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from yft.data.coco_io import image_dir, read_json
from yft.evaluate import run_files
from yft.evaluate.analysis import T50
from yft.evaluate.matching import match_dataset
from yft.io import write_atomic
from yft.project import UserError, relative

ASSETS = Path(__file__).with_name("report_assets")


def report_name(split):
    return "report.html" if split == "val" else f"report_{split}.html"


def write_html_report(exp, run, eval_dir=None, split="val", matches=None):
    """Write the run's report and return (path, notes). eval_dir: the eval folder to show
    (default: the run's newest eval of `split`); matches: the eval's matching, when the caller
    has it (saves matching again)."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"{run}: run folder not found (train first, or pass --run)")
    eval_dir = Path(eval_dir) if eval_dir else run_files.newest_eval(run, split)
    target = (run if eval_dir is None or _inside(eval_dir, run) else eval_dir) / report_name(split)
    context = gather(exp, run, eval_dir, split, matches, target.parent)
    write_atomic(target, render(context).encode("utf-8"))
    return target, context["notes"]


def _inside(path, folder):
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def gather(exp, run, eval_dir, split, matches, base):
    """Everything the template shows, as plain values (paths made relative to `base`)."""
    from yft.deploy.release import data_stats

    def link(path):
        return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()

    notes = []
    record, note = run_files.settings(exp, run)
    notes += [note] if note else []
    context = {
        "title": f"{exp.exp_name} / {run.name}",
        "run": relative(run),
        "split": split,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "record": record,
        "class_mode": exp.class_mode,
        "num_classes": len(exp.class_names),
        "splits": data_stats(exp),
        "training": run_files.training(run),
        "curves": run_files.data_uri(run / "training_curves.png"),
        "pretrained": [p.name for p in sorted(run.glob("pretrained_*"))],
        "notes": notes,
    }
    context["split_classes"] = list(
        dict.fromkeys(c for s in context["splits"].values() for c in s["boxes_per_class"])
    )
    context["best_epoch"] = _best_epoch(context["training"])
    if not context["training"]:
        notes.append("no training log in this run folder (epochs.csv): no training curves")
    context["metrics"], context["figures"], context["browser"] = None, {}, None
    if eval_dir is None:
        notes.append(
            f"no evaluation of the {split} split in this run yet: run `invoke eval"
            f"{' --split ' + split if split != 'val' else ''}` for metrics and the image browser"
        )
    else:
        metrics = read_json(eval_dir / "metrics.json")
        context["metrics"], context["eval_dir"] = metrics, link(eval_dir)
        context["rows"] = _class_rows(metrics)
        context["figures"] = {
            key: run_files.data_uri(eval_dir / name)
            for key, name in (("confusion", "confusion_matrix.png"), ("pr", "pr_curves.png"))
        }
        context["confusion_csv"] = (
            link(eval_dir / "confusion_matrix.csv") if (eval_dir / "confusion_matrix.csv").is_file() else None
        )
        if not metrics.get("num_detections"):
            notes.append(
                f"the model made no detections on the {metrics.get('split', split)} split "
                f"(score threshold test_conf {exp.test_conf}): AP, precision-recall curves and "
                "the operating point are undefined; every box counts as missed"
            )
        context["browser"] = browser_data(exp, eval_dir, metrics, matches, notes)
    context["extras"] = run_files.extras(run)
    for results in context["extras"].values():
        for r in results:
            r["folder"] = link(r["folder"])
    context["exports"] = [dict(e, href=link(e["path"]), name=e["path"].name) for e in run_files.exports(run)]
    context["releases"] = [dict(r, href=link(r["path"])) for r in run_files.releases(run)]
    return context


def _best_epoch(rows):
    scored = [r for r in rows if isinstance(r.get("mAP50_95"), (int, float))]
    return max(scored, key=lambda r: r["mAP50_95"])["epoch"] if scored else None


def _class_rows(metrics):
    """Per-class table rows: every class with boxes or detections (keep-COCO's 80 idle classes
    would bury the few that matter), most boxes first."""
    rows = [
        dict(row, name=name)
        for name, row in metrics["per_class"].items()
        if row.get("num_gt") or row.get("AP50") is not None or row.get("precision") is not None
    ]
    return sorted(rows, key=lambda r: -(r.get("num_gt") or 0))


def browser_data(exp, eval_dir, metrics, matches, notes):
    """Per image: an embedded JPEG, its boxes and its detections with their match at IoU 0.5,
    so the page can recount false positives and missed boxes at any confidence."""
    split = metrics.get("split", "val")
    folder = image_dir(exp, split)
    if matches is None:
        from yft.data.coco_io import annotation_path

        dataset = read_json(annotation_path(exp, split))
        detections = read_json(eval_dir / "detections.json")
        known = {im["id"] for im in dataset.get("images", [])}
        stale = sum(d.get("image_id") not in known for d in detections)
        if stale:
            notes.append(
                f"{stale} detections in {relative(eval_dir / 'detections.json')} are for images no "
                f"longer in the {split} split (re-run `invoke eval`); the browser leaves them out"
            )
        matches = match_dataset(dataset, detections, exp.category_ids())
    conf = metrics.get("errors", {}).get("conf") or 0.0
    images = [_image_entry(m) for m in matches]
    ranked = sorted(range(len(images)), key=lambda i: (-_errors_at(images[i], conf), images[i]["id"]))
    keep = ranked[: exp.report_max_images]
    if len(keep) < len(images):
        notes.append(
            f"image browser: {len(keep)} of {len(images)} {split} images, those with the most errors "
            f"at confidence {conf} (raise report_max_images in the Exp to show more)"
        )
    unreadable, shown = [], []
    for i in sorted(keep, key=lambda i: images[i]["id"]):
        entry, thumb = images[i], _thumbnail(folder / images[i]["file"], exp.report_image_size)
        if thumb is None:
            unreadable.append(entry["file"])
            continue
        entry["src"], entry["w"], entry["h"] = thumb
        shown.append(entry)
    if unreadable:
        notes.append(
            f"image browser: {len(unreadable)} images could not be read and are left out "
            f"(first: {unreadable[0]})"
        )
    counts = np.zeros(len(exp.class_names), np.int64)
    for m in matches:
        counts += np.bincount(m.gt_cls, minlength=len(exp.class_names))
        counts += np.bincount(m.det_cls[m.det_kept], minlength=len(exp.class_names))
    classes = [{"index": k, "name": exp.class_names[k]} for k in np.nonzero(counts)[0].tolist()]
    suggested = metrics.get("suggested_conf")
    return {
        "images": shown,
        "class_names": list(exp.class_names),
        "classes": classes,
        "conf": suggested if suggested is not None else conf,
        "min_conf": exp.test_conf,
    }


def _image_entry(m):
    """Boxes as [x, y, w, h, class, crowd] and detections (the 100 per class COCO keeps) as
    [x, y, w, h, class, score, state, box index], state 1 correct, 0 false positive, 2 matched a
    crowd box (neither), at IoU 0.5. Correctness does not depend on the threshold: COCO matches
    in score order, so a detection's match is decided before any lower-scoring one is seen."""
    gts = [[*np.round(b, 1).tolist(), int(c), int(w)] for b, c, w in zip(m.gt_boxes, m.gt_cls, m.gt_crowd)]
    dets = []
    for d in np.nonzero(m.det_kept)[0]:
        state = 2 if m.det_ignored[d, T50] else int(m.det_gt[d, T50] >= 0)
        dets.append(
            [
                *np.round(m.det_boxes[d], 1).tolist(),
                int(m.det_cls[d]),
                float(m.det_score[d]),  # as in detections.json (5 decimals): rounding again
                # would move scores across the threshold and the page would count other errors
                state,
                int(m.det_gt[d, T50]),
            ]
        )
    return {"id": int(m.image_id), "file": m.file_name, "gt": gts, "det": dets}


def _errors_at(entry, conf):
    """False positives + missed boxes of an image at a confidence (the page counts the same way)."""
    above = [d for d in entry["det"] if d[5] >= conf]
    found = {d[7] for d in above if d[6] == 1}
    fp = sum(d[6] == 0 for d in above)
    missed = sum(1 for g, box in enumerate(entry["gt"]) if not box[5] and g not in found)
    return fp + missed


def _thumbnail(path, size):
    """(JPEG data URI at most `size` px on its long side, width, height), None if unreadable.
    Boxes stay in original pixels: the page scales them with the image."""
    img = cv2.imread(str(path))
    if img is None:
        return None
    h, w = img.shape[:2]
    scale = min(1.0, size / max(h, w))
    if scale < 1:
        img = cv2.resize(
            img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 82])
    if not ok:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii"), w, h


def render(context):
    """The page: a Jinja2 template with [[ ]] / [% %] delimiters (this project's files are
    themselves rendered by copier/cookiecutter, which own the usual ones), autoescaped; data for the
    script goes through `tojson`, which escapes <, > and & so no class name can end the script."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ASSETS)),
        autoescape=True,
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["show"] = lambda v: json.dumps(v, ensure_ascii=False)  # as text: autoescaped after
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.1f}"
    env.filters["num"] = lambda v, digits=4: (
        "n/a" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else str(v))
    )
    page = env.get_template("report.html")
    return page.render(
        **context,
        css=(ASSETS / "report.css").read_text(encoding="utf-8"),
        script=(ASSETS / "report.js").read_text(encoding="utf-8"),
    )
