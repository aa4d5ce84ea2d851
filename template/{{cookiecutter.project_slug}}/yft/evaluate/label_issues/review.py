"""What `invoke label-issues` writes: the ranked table, a contact sheet, and files to re-review the
flagged images in the annotation tool (none of them touches the dataset).

  issues.csv / issues.json       every suspected issue, most suspicious first
  contact_sheet.png              the top issues: the label (left) beside the suggestion (right)
  review/<split>/labelstudio_tasks.json
                                 Label Studio tasks of the flagged images: the current labels as
                                 the annotation, the suggestions as a prediction to accept or not
  review/<split>/cvat_annotations.xml
                                 CVAT for images 1.1: the current labels of the flagged images, each
                                 with a `yft_issue` attribute saying what looks wrong
  suggested/instances_<split>.json  (--apply-suggestions only) a new COCO file with the
                                 suggestions applied, and a count of each change
"""

import csv
import io
from xml.sax.saxutils import quoteattr

import cv2
import numpy as np

from yft.io import write_json, write_png, write_text

CSV_FIELDS = (
    "rank",
    "type",
    "score",
    "split",
    "file_name",
    "image_id",
    "annotation_id",
    "class",
    "box",
    "suggested_class",
    "suggested_box",
    "confidence",
)


def issue_rows(rows):
    return [r for r in rows if r["type"] != "ok"]


def write_table(out, rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    write_text(out / "issues.csv", buf.getvalue())
    write_json(out / "issues.json", rows, indent=1)


def _draw(img, box, color, text):
    if box is None:
        return
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(img, (x1, y1), (x2, y2), color, 2)
    cv2.putText(img, text, (x1 + 2, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)


def contact_sheet(out, rows, images_by_id, top=24, tile=200):
    """A grid of the top issues, each as two tiles: the label as it is, and the suggestion."""
    tiles = []
    for row in rows[:top]:
        img = cv2.imread(images_by_id[(row["split"], row["image_id"])]["path"])
        if img is None:
            continue
        left, right = img.copy(), img.copy()
        _draw(left, row["box"], (0, 0, 255), f"{row['class']}")
        suggested_box = row["suggested_box"] or (row["box"] if row["suggested_class"] else None)
        _draw(right, suggested_box, (0, 200, 0), row["suggested_class"] or row["class"] or "")
        if row["type"] == "spurious":
            cv2.putText(
                right, "remove?", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1, cv2.LINE_AA
            )
        pair = []
        for part in (left, right):
            scale = tile / max(part.shape[:2])
            part = cv2.resize(part, (max(1, int(part.shape[1] * scale)), max(1, int(part.shape[0] * scale))))
            canvas = np.full((tile + 18, tile, 3), 255, np.uint8)
            canvas[: part.shape[0], : part.shape[1]] = part
            pair.append(canvas)
        caption = f"#{row['rank']} {row['type']} {row['score']:.2f}"
        cv2.putText(
            pair[0], caption, (2, tile + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA
        )
        tiles.append(np.concatenate([pair[0], np.full((tile + 18, 4, 3), 255, np.uint8), pair[1]], axis=1))
    if not tiles:
        return None
    cols = 3
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % cols)
    grid = [
        np.concatenate(
            [np.pad(t, ((4, 4), (4, 4), (0, 0)), constant_values=200) for t in tiles[i : i + cols]], axis=1
        )
        for i in range(0, len(tiles), cols)
    ]
    write_png(out / "contact_sheet.png", np.concatenate(grid, axis=0))
    return out / "contact_sheet.png"


def _ls_rect(box, label, width, height, region_id):
    x1, y1, x2, y2 = box
    return {
        "id": region_id,
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "x": 100 * x1 / width,
            "y": 100 * y1 / height,
            "width": 100 * (x2 - x1) / width,
            "height": 100 * (y2 - y1) / height,
            "rotation": 0,
            "rectanglelabels": [label],
        },
    }


def labelstudio_tasks(images, rows, class_names):
    """Label Studio JSON tasks, one per flagged image (paths as local-files references relative to
    the split's image folder)."""
    by_image = {}
    for row in rows:
        by_image.setdefault((row["split"], row["image_id"]), []).append(row)
    tasks = []
    for im in images:
        flagged = by_image.get((im["split"], im["image_id"]))
        if not flagged:
            continue
        w, h = im["width"], im["height"]
        current = [
            _ls_rect(b, class_names[k], w, h, f"label-{aid}")
            for aid, b, k in zip(im["label_ids"], im["label_boxes"], im["label_classes"])
        ]
        suggested = []
        for row in flagged:
            if row["suggested_box"] or row["suggested_class"]:
                box = row["suggested_box"] or row["box"]
                label = row["suggested_class"] or row["class"]
                region = _ls_rect(box, label, w, h, f"suggestion-{row['rank']}")
                region["meta"] = {"text": [f"{row['type']} (score {row['score']:.2f})"]}
                suggested.append(region)
        tasks.append(
            {
                "id": len(tasks) + 1,
                "data": {"image": f"/data/local-files/?d={im['file_name']}", "yft_image_id": im["image_id"]},
                "annotations": [{"id": len(tasks) + 1, "result": current, "was_cancelled": False}],
                "predictions": [
                    {
                        "model_version": "yft label-issues",
                        "result": suggested,
                        "score": max((r["score"] for r in flagged), default=0.0),
                    }
                ],
            }
        )
    return tasks


def cvat_xml(images, rows, class_names):
    """CVAT for images 1.1 XML of the flagged images' current labels, each box with `yft_issue`."""
    issue_of = {
        r["annotation_id"]: f"{r['type']} ({r['score']:.2f})" for r in rows if r["annotation_id"] is not None
    }
    missing = {}
    for r in rows:
        if r["annotation_id"] is None:
            missing.setdefault((r["split"], r["image_id"]), []).append(r)
    flagged = {(r["split"], r["image_id"]) for r in rows}
    labels = "".join(
        f"<label><name>{_esc(n)}</name><type>rectangle</type><attributes><attribute>"
        "<name>yft_issue</name><mutable>True</mutable><input_type>text</input_type>"
        "<default_value></default_value><values></values></attribute></attributes></label>"
        for n in class_names
    )
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n',
        f"  <meta><task><name>yft label-issues</name><labels>{labels}</labels></task></meta>\n",
    ]
    for n, im in enumerate(i for i in images if (i["split"], i["image_id"]) in flagged):
        notes = "; ".join(
            f"missing {r['suggested_class']} at {r['suggested_box']}"
            for r in missing.get((im["split"], im["image_id"]), [])
        )
        parts.append(
            f'  <image id="{n}" name={quoteattr(im["file_name"])} width="{im["width"]}" '
            f'height="{im["height"]}">\n'
        )
        for aid, (x1, y1, x2, y2), k in zip(im["label_ids"], im["label_boxes"], im["label_classes"]):
            issue = issue_of.get(aid, "")
            parts.append(
                f'    <box label={quoteattr(class_names[k])} source="manual" occluded="0" '
                f'xtl="{x1:.2f}" ytl="{y1:.2f}" xbr="{x2:.2f}" ybr="{y2:.2f}" z_order="0">'
                f'<attribute name="yft_issue">{_esc(issue)}</attribute></box>\n'
            )
        if notes:  # a missing box is a suggestion, not a label: it stays out of the boxes
            parts.append(f"    <!-- {_esc(notes).replace('--', '- -')} -->\n")
        parts.append("  </image>\n")
    parts.append("</annotations>\n")
    return "".join(parts)


def _esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_review(out, images, rows, class_names):
    """review/<split>/labelstudio_tasks.json and cvat_annotations.xml; returns the paths written."""
    written = []
    for split in sorted({r["split"] for r in rows}):
        in_split = [im for im in images if im["split"] == split]
        split_rows = [r for r in rows if r["split"] == split]
        folder = out / "review" / split
        write_json(
            folder / "labelstudio_tasks.json", labelstudio_tasks(in_split, split_rows, class_names), indent=1
        )
        write_text(folder / "cvat_annotations.xml", cvat_xml(in_split, split_rows, class_names))
        written += [folder / "labelstudio_tasks.json", folder / "cvat_annotations.xml"]
    return written


def apply_suggestions(coco, rows, class_names, category_ids, min_score):
    """A new COCO dict with the suggestions of issues scoring >= min_score applied, and the counts:
    wrong class -> relabelled, misplaced -> box replaced, missing -> box added, spurious -> removed."""
    coco = {**coco, "annotations": [dict(a) for a in coco["annotations"]]}
    by_id = {a["id"]: a for a in coco["annotations"]}
    counts = {"relabelled": 0, "moved": 0, "added": 0, "removed": 0}
    removed = set()
    next_id = max(by_id, default=0) + 1
    for row in rows:
        if row["score"] < min_score:
            continue
        ann = by_id.get(row["annotation_id"])
        if row["type"] == "wrong_class" and ann is not None:
            ann["category_id"] = category_ids[class_names.index(row["suggested_class"])]
            counts["relabelled"] += 1
        elif row["type"] == "misplaced" and ann is not None:
            x1, y1, x2, y2 = row["suggested_box"]
            ann["bbox"], ann["area"] = [x1, y1, x2 - x1, y2 - y1], (x2 - x1) * (y2 - y1)
            counts["moved"] += 1
        elif row["type"] == "spurious" and ann is not None:
            removed.add(ann["id"])
            counts["removed"] += 1
        elif row["type"] == "missing":
            x1, y1, x2, y2 = row["suggested_box"]
            coco["annotations"].append(
                {
                    "id": next_id,
                    "image_id": row["image_id"],
                    "iscrowd": 0,
                    "category_id": category_ids[class_names.index(row["suggested_class"])],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "attributes": {"yft_suggestion_rank": row["rank"]},
                }
            )
            next_id += 1
            counts["added"] += 1
    coco["annotations"] = [a for a in coco["annotations"] if a["id"] not in removed]
    return coco, counts
