"""The full evaluation of one run: analyses added to metrics.json, figures, and report.md."""

from pathlib import Path

import cv2
import numpy as np

from yft.evaluate import analysis, plots
from yft.evaluate.matching import RECALL_THRESHOLDS, accumulate, flatten, match_dataset, xywh_to_xyxy
from yft.io import write_atomic, write_png

FILES = {
    "report": "report.md",
    "confusion_png": "confusion_matrix.png",
    "confusion_csv": "confusion_matrix.csv",
    "pr_curves": "pr_curves.png",
    "gallery": "worst_images.png",
    "detections": "detections.json",
}


def analyse(metrics, results, dataset, class_names, category_ids, class_mode="fresh", conf=None):
    """Add operating points, per-class P/R, errors, confusion matrix, worst images and class
    groups to `metrics` (in place). Returns (metrics, matches, precision (T, R, K))."""
    matches = match_dataset(dataset, results, category_ids)
    num_classes = len(class_names)
    precision = accumulate(flatten(matches, num_classes))
    points = {
        "iou50": analysis.operating_point(matches, analysis.T50),
        "iou75": analysis.operating_point(matches, analysis.T75),
    }
    suggested = points["iou50"]["conf"]
    conf = suggested if conf is None else conf
    metrics["operating_point"] = points
    metrics["suggested_conf"] = suggested
    notes = metrics.setdefault("notes", [])
    if suggested is None:
        notes.append(
            "no F1-best confidence (no detections or no ground truth): the error analysis "
            "uses every detection"
        )
    used_conf = 0.0 if conf is None else conf
    for row, name in zip(analysis.per_class_at(matches, num_classes, used_conf), class_names):
        metrics["per_class"][name].update(row)
    errors = analysis.error_analysis(matches, num_classes, used_conf)
    metrics["errors"] = {
        "conf": used_conf,
        "iou": 0.5,
        "false_positives": errors["false_positives"],
        "false_negatives": errors["false_negatives"],
    }
    labels, matrix = _compact_confusion(errors["matrix"], class_names)
    metrics["confusion_matrix"] = {
        "conf": used_conf,
        "iou": 0.5,
        "labels": labels,
        "matrix": matrix.tolist(),
        "rows": "true",
        "columns": "predicted",
    }
    metrics["worst_images"] = analysis.worst_images(errors["per_image"])
    metrics["class_groups"] = analysis.class_groups(metrics["per_class"], class_mode)
    return metrics, matches, precision


def _compact_confusion(matrix, class_names, limit=30):
    """All classes plus background; beyond `limit` classes only those that occur."""
    labels = list(class_names) + ["background"]
    if len(class_names) <= limit:
        return labels, matrix
    used = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    used[-1] = True
    keep = np.nonzero(used)[0]
    return [labels[i] for i in keep], matrix[np.ix_(keep, keep)]


def write_figures(metrics, matches, precision, class_names, image_dir, out_dir):
    """confusion_matrix.png/.csv, pr_curves.png, worst_images.png into out_dir."""
    out_dir = Path(out_dir)
    cm = metrics["confusion_matrix"]
    csv = ["true\\predicted," + ",".join(_csv_cell(x) for x in cm["labels"])]
    csv += [
        _csv_cell(label) + "," + ",".join(str(v) for v in row)
        for label, row in zip(cm["labels"], cm["matrix"])
    ]
    write_atomic(out_dir / FILES["confusion_csv"], ("\n".join(csv) + "\n").encode("utf-8"))
    plots.confusion_png(np.array(cm["matrix"]), cm["labels"], out_dir / FILES["confusion_png"])

    curves = []
    for k, name in enumerate(class_names):
        if precision[0, 0, k] < 0:
            continue  # no ground truth: no curve
        curves.append(
            (
                name,
                RECALL_THRESHOLDS,
                precision[0, :, k],
                precision[5, :, k],
                float(precision[0, :, k].mean()),
            )
        )
    curves.sort(key=lambda c: -metrics["per_class"][c[0]]["num_gt"])
    if curves:
        plots.pr_curves_png(curves, out_dir / FILES["pr_curves"])
    write_png(
        out_dir / FILES["gallery"],
        gallery(metrics["worst_images"], matches, class_names, image_dir, metrics["errors"]["conf"]),
    )
    return out_dir


def _csv_cell(text):
    text = str(text)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def gallery(worst, matches, class_names, image_dir, conf, size=256):
    """The worst images with ground truth (green), correct detections (blue), false positives
    (red) and missed boxes (orange)."""
    by_id = {m.image_id: m for m in matches}
    tiles = []
    for row in worst:
        m = by_id[row["image_id"]]
        img = cv2.imread(str(Path(image_dir) / m.file_name))
        if img is None:
            img = np.full((size, size, 3), 200, np.uint8)
        tile, scale, dx, dy = plots.fit_tile(img, size)
        T50 = analysis.T50
        matched = {int(g) for g in m.det_gt[:, T50][m.det_score >= conf] if g >= 0}
        for g, box in enumerate(xywh_to_xyxy(m.gt_boxes)):
            color = plots.GT_COLOR if g in matched or m.gt_crowd[g] else plots.FN_COLOR
            plots.draw_box(tile, box, scale, dx, dy, color)
        for d, box in enumerate(xywh_to_xyxy(m.det_boxes)):
            if m.det_score[d] < conf or not m.det_kept[d]:
                continue
            color = plots.TP_COLOR if m.det_tp[d, T50] else plots.FP_COLOR
            plots.draw_box(
                tile, box, scale, dx, dy, color, f"{class_names[m.det_cls[d]][:12]} {m.det_score[d]:.2f}"
            )
        tiles.append(
            plots.caption(tile, f"{m.file_name}  FP {row['false_positives']} FN {row['false_negatives']}")
        )
    return plots.contact_sheet(tiles)


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.1f}"


def markdown(metrics, title="Evaluation"):
    """report.md: headline numbers, per-class table, operating point, errors, figures."""
    m = metrics
    lines = [
        f"# {title}",
        "",
        f"Checkpoint `{m.get('checkpoint', '?')}`, {m['split']} split ({m['num_images']} images, "
        f"{m['num_detections']} detections), backend {m['backend']}.",
        "",
        "| mAP50:95 | mAP50 | mAP75 | small | medium | large | AR1 | AR10 | AR100 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        "| "
        + " | ".join(
            _pct(m[k])
            for k in (
                "mAP50_95",
                "mAP50",
                "mAP75",
                "mAP_small",
                "mAP_medium",
                "mAP_large",
                "AR1",
                "AR10",
                "AR100",
            )
        )
        + " |",
        "",
    ]
    op = m.get("operating_point")
    if op:
        lines += [
            "## Operating point",
            "",
            "| IoU | confidence | precision | recall | F1 |",
            "| --- | --- | --- | --- | --- |",
        ]
        for key, label in (("iou50", "0.50"), ("iou75", "0.75")):
            p = op[key]
            lines.append(
                f"| {label} | {p['conf'] if p['conf'] is not None else 'n/a'} | {_pct(p['precision'])} | "
                f"{_pct(p['recall'])} | {_pct(p['f1'])} |"
            )
        lines += [
            "",
            f"Suggested deployment threshold (F1-best at IoU 0.5): **{m.get('suggested_conf')}**",
            "",
        ]
    lines += [
        "## Per class",
        "",
        "| class | boxes | AP50:95 | AP50 | AP75 | precision | recall |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in m["per_class"].items():
        if row["num_gt"] or row.get("precision") is not None:
            lines.append(
                f"| {name} | {row['num_gt']} | {_pct(row['AP50_95'])} | {_pct(row['AP50'])} | "
                f"{_pct(row.get('AP75'))} | {_pct(row.get('precision'))} | {_pct(row.get('recall'))} |"
            )
    if m.get("class_groups"):
        lines += ["", "| classes | with boxes | mAP50:95 | mAP50 |", "| --- | --- | --- | --- |"]
        for name, g in m["class_groups"].items():
            lines.append(
                f"| {name} | {g['classes_with_gt']} of {g['num_classes']} | {_pct(g['mAP50_95'])} | "
                f"{_pct(g['mAP50'])} |"
            )
    if "errors" in m:
        fp, fn = m["errors"]["false_positives"], m["errors"]["false_negatives"]
        lines += [
            "",
            f"## Errors (confidence >= {m['errors']['conf']}, IoU 0.5)",
            "",
            "| false positives | localization | wrong class | duplicate | background |",
            "| --- | --- | --- | --- | --- |",
            f"| {fp['total']} | {fp['localization']} | {fp['wrong_class']} | {fp['duplicate']} | {fp['background']} |",
            "",
            "| missed boxes | small | medium | large | found as another class |",
            "| --- | --- | --- | --- | --- |",
            f"| {fn['total']} | {fn['small']} | {fn['medium']} | {fn['large']} | {fn['detected_as_other_class']} |",
            "",
            f"![confusion matrix]({FILES['confusion_png']})",
            "",
            f"Counts in [{FILES['confusion_csv']}]({FILES['confusion_csv']}) (rows true, columns predicted).",
            "",
        ]
        lines += (
            [f"![precision-recall curves]({FILES['pr_curves']})", ""] if m.get("mAP50") is not None else []
        )
        lines += [
            "## Worst images",
            "",
            "Green: ground truth found; orange: missed; blue: correct detection; red: false positive.",
            "",
            f"![worst images]({FILES['gallery']})",
            "",
        ]
    speed = m.get("speed", {})
    if speed:
        lines += [
            "## Speed",
            "",
            "| " + " | ".join(speed) + " |",
            "| " + " | ".join("---" for _ in speed) + " |",
            "| " + " | ".join(str(v) for v in speed.values()) + " |",
            "",
        ]
    if m.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in m["notes"]] + [""]
    return "\n".join(lines)
