"""`invoke label-issues`: out-of-sample predictions -> cleanlab scores -> ranked issues and
re-review files in runs/<exp>/label_issues/ (or --output). Never modifies the dataset.

A rerun writes its results to label_issues2/, ... (yft.runs.output_dir); the K-fold predictions
are a resume cache that every rerun reuses: runs/<exp>/label_issues/folds/ (or <--output>/folds/)."""

from collections import Counter
from pathlib import Path

from yft.data.coco_io import annotation_path, read_json
from yft.evaluate.label_issues import predictions as oos, review
from yft.evaluate.label_issues.scoring import ISSUE_TYPES, find_issues
from yft.io import write_json
from yft.project import UserError, relative
from yft.runs import output_dir, runs_root

SPLITS = ("train", "val", "test")


def parse_splits(text):
    splits = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise UserError(f"--splits {text!r}: use a comma-separated subset of {', '.join(SPLITS)}")
    return splits


def label_issues(
    exp,
    device,
    ckpt=None,
    splits=None,
    folds=3,
    epochs=10,
    seed=0,
    group_by=None,
    out=None,
    top=24,
    apply_suggestions=False,
    min_score=0.5,
    train_kwargs=None,
    log=print,
    force=False,
):
    """Run the whole job; returns (issue rows, output folder). train_kwargs go to each fold's
    `yft.train.run.train` (e.g. ckpt: the weights the folds start from)."""
    # folds/ alone (a killed run) is continued in place; results of a finished run are never
    # written over without force: the rerun gets label_issues2/, ... and reads the same folds/
    cache = Path(out) if out else runs_root(exp) / "label_issues"
    if ckpt:
        # A model scores only images it did not train on: by default the val and test splits.
        splits = splits or ["val", "test"]
        if not Path(ckpt).is_file():
            raise UserError(f"{ckpt}: checkpoint not found")
    splits = splits or list(SPLITS)
    images = oos.labelled_images(exp, splits)
    if not ckpt:  # too few images, a cache of other settings: one line before any folder is made
        oos.fold_assignment(exp, images, folds, seed, group_by)
        oos.check_cache(cache / "folds", images, folds, epochs, seed, group_by, train_kwargs)
    out = output_dir(cache, out, force, log, keep={"folds"})
    log(
        f"{len(images)} labelled images in {', '.join(sorted({im['split'] for im in images}))}; "
        + (f"predicting with {relative(ckpt)}" if ckpt else f"{folds}-fold out-of-sample predictions")
    )
    if ckpt:
        preds = oos.checkpoint_predictions(exp, images, ckpt, device)
    else:
        preds = oos.kfold_predictions(
            exp, images, cache, device, folds, epochs, seed, group_by, train_kwargs, log
        )
    oos.attach(images, preds)
    # Every image's out-of-sample predictions, in label_scores.json's image order: what the
    # ranking was computed from (the benchmark ranks the same predictions with its baselines).
    write_json(out / "predictions.json", [im["predictions"].round(2).tolist() for im in images])
    rows, image_scores = find_issues(images, list(exp.class_names))
    issues = review.issue_rows(rows)
    review.write_table(out, issues)
    write_json(
        out / "label_scores.json",
        {
            "labels": [r for r in rows if r["annotation_id"] is not None],
            "images": [
                {
                    "split": im["split"],
                    "image_id": im["image_id"],
                    "file_name": im["file_name"],
                    "cleanlab_label_quality": image_scores[(im["split"], im["image_id"])],
                }
                for im in images
            ],
        },
        indent=1,
    )
    by_id = {(im["split"], im["image_id"]): im for im in images}
    sheet = review.contact_sheet(out, issues, by_id, top=top)
    written = review.write_review(out, images, issues, list(exp.class_names))
    counts = Counter(r["type"] for r in issues)
    labels = sum(len(im["label_ids"]) for im in images)
    agree = sum(r["type"] == "ok" for r in rows if r["annotation_id"] is not None)
    if labels and agree < 0.5 * labels:
        # A model that finds little flags nearly every label: say so rather than let the ranking
        # look like a verdict on the labels.
        log(
            f"warning: the out-of-sample model agrees with only {agree} of {labels} labels; the issues below "
            "mostly say the model is weak: train the folds longer (--epochs), start them from pretrained "
            "weights, or pass a better --ckpt"
        )
    log(
        "issues found: "
        + ", ".join(f"{t} {counts.get(t, 0)}" for t in ISSUE_TYPES)
        + f" (of {labels} labels)"
    )
    for path in [out / "issues.csv", out / "issues.json", sheet, *written]:
        if path:
            log(f"wrote {relative(path)}")
    if apply_suggestions:
        for split in sorted({im["split"] for im in images}):
            coco = read_json(annotation_path(exp, split))
            new, changes = review.apply_suggestions(
                coco,
                [r for r in issues if r["split"] == split],
                list(exp.class_names),
                exp.category_ids(),
                min_score,
            )
            target = out / "suggested" / annotation_path(exp, split).name
            write_json(target, new)
            log(
                f"wrote {relative(target)} (score >= {min_score}): "
                + ", ".join(f"{k} {v}" for k, v in changes.items())
                + "; the dataset itself is unchanged"
            )
    return issues, out
