"""Out-of-sample predictions for every labelled image: a model never scores a box it trained on.

Two ways, as cleanlab's method requires:
  K-fold (default)  the labelled images are split into K stratified, group-aware folds (the same
                    assignment as `invoke split --kfold`); for each fold a short finetune on the
                    other folds predicts the held-out one. Each fold's predictions are saved as
                    soon as they exist, so a killed run continues with the folds it has.
  --ckpt MODEL      a model that did not see the images predicts them (e.g. the val and test
                    splits, scored with the model trained on train).
"""

import copy
import os
from pathlib import Path

import numpy as np

from yft.data.assign import assign
from yft.data.coco_io import annotation_path, image_dir, read_json
from yft.io import write_json
from yft.project import UserError, relative

PRED_CONF = 0.05  # keep low-confidence predictions too: cleanlab weighs them
MAX_PER_IMAGE = 100


def labelled_images(exp, splits):
    """Every image of the given splits with its labels as class indices and (x1, y1, x2, y2) boxes."""
    index_of = {cid: k for k, cid in enumerate(exp.category_ids())}
    images = []
    for split in splits:
        path = annotation_path(exp, split)
        if not path.is_file():
            continue
        coco = read_json(path)
        by_image = {}
        for ann in coco.get("annotations", []):
            by_image.setdefault(ann["image_id"], []).append(ann)
        for img in coco.get("images", []):
            anns = [a for a in by_image.get(img["id"], []) if a["category_id"] in index_of]
            unknown = len(by_image.get(img["id"], [])) - len(anns)
            if unknown:
                raise UserError(
                    f"{relative(path)}: image {img['file_name']} has {unknown} box(es) of categories "
                    "the Exp does not have (run `invoke validate`)"
                )
            images.append(
                {
                    "image_id": img["id"],
                    "file_name": img["file_name"],
                    "split": split,
                    "path": str(image_dir(exp, split) / img["file_name"]),
                    "width": img["width"],
                    "height": img["height"],
                    "label_ids": [a["id"] for a in anns],
                    "label_boxes": [
                        [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                        for a in anns
                    ],
                    "label_classes": [index_of[a["category_id"]] for a in anns],
                }
            )
    if not images:
        raise UserError(f"no labelled images in the {', '.join(splits)} split(s) of {relative(exp.data_dir)}")
    return images


def fold_assignment(exp, images, folds, seed, group_by=None):
    """Fold index per image: stratified by class, groups (--group-by) never split across folds."""
    if folds < 2:
        raise UserError(
            f"--folds {folds}: needs at least 2 folds (or --ckpt with a model that did not see the images)"
        )
    if len(images) < 2 * folds:
        raise UserError(
            f"{len(images)} labelled images are too few for {folds} folds (each fold needs at "
            "least 2 images to hold out and the rest to train on): use fewer --folds"
        )
    cat_ids = exp.category_ids()
    coco = {
        "images": [{"id": n, "file_name": f"{im['split']}/{im['file_name']}"} for n, im in enumerate(images)],
        "annotations": [
            {"image_id": n, "category_id": cat_ids[k]}
            for n, im in enumerate(images)
            for k in im["label_classes"]
        ],
    }
    return assign(coco, [1.0 / folds] * folds, seed, group_by)


def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        try:
            os.symlink(os.path.abspath(src), dst)
        except OSError:  # no symlinks (some Windows setups): a hard link, else a copy
            import shutil

            shutil.copy2(src, dst)


def write_fold_dataset(exp, images, held_out, root):
    """The fold's dataset under root: train = the other folds, val = this one. Images are linked
    under unique names (two splits may hold the same file name); the COCO files reference them."""
    cat_ids = exp.category_ids()
    categories = [{"id": cid, "name": name} for cid, name in zip(cat_ids, exp.class_names)]
    for split, members in (
        ("train", [n for n in range(len(images)) if n not in held_out]),
        ("val", sorted(held_out)),
    ):
        coco_images, annotations = [], []
        for n in members:
            im = images[n]
            name = f"{n:06d}{Path(im['file_name']).suffix.lower()}"
            _link(im["path"], root / f"{split}2017" / name)
            coco_images.append({"id": n + 1, "file_name": name, "width": im["width"], "height": im["height"]})
            for box, k in zip(im["label_boxes"], im["label_classes"]):
                w, h = box[2] - box[0], box[3] - box[1]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": n + 1,
                        "category_id": cat_ids[k],
                        "bbox": [box[0], box[1], w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
        write_json(
            root / "annotations" / f"instances_{split}2017.json",
            {"images": coco_images, "annotations": annotations, "categories": categories},
        )


def predict_split(exp, ckpt, split, device):
    """{image id: (N, 6) predictions} for a split of the Exp's dataset, with the model in ckpt."""
    from yft.data.loaders import build_eval_loader
    from yft.inference import TorchBackend, decode, load_model

    backend = TorchBackend(load_model(exp, ckpt), device)
    out = {}
    for images, _, info, ids in build_eval_loader(exp, split, 8, device):
        heights, widths = info[0].tolist(), info[1].tolist()
        ratios = [min(exp.test_size[0] / h, exp.test_size[1] / w) for h, w in zip(heights, widths)]
        for image_id, dets in zip(
            ids.flatten().tolist(), decode(backend(images), ratios, exp.num_classes, PRED_CONF, exp.nmsthre)
        ):
            out[int(image_id)] = dets[:MAX_PER_IMAGE]
    return out


def kfold_predictions(
    exp, images, out, device, folds, epochs, seed=0, group_by=None, train_kwargs=None, log=print
):
    """Out-of-sample predictions for every image (list of (N, 6) arrays, in `images` order)."""
    from yft.train.run import train

    per_image = fold_assignment(exp, images, folds, seed, group_by)
    predictions = [None] * len(images)
    for k in range(folds):
        held_out = {n for n, f in enumerate(per_image) if f == k}
        fold_dir = out / "folds" / f"fold_{k}"
        saved = fold_dir / "predictions.json"
        if saved.is_file():  # resume: this fold finished in an earlier run
            log(f"fold {k + 1}/{folds}: {len(held_out)} images, predictions from {relative(saved)}")
            data = read_json(saved)
            for n in held_out:
                predictions[n] = np.asarray(data[str(n)], np.float32).reshape(-1, 6)
            continue
        log(
            f"fold {k + 1}/{folds}: training on {len(images) - len(held_out)} images for {epochs} epoch(s), "
            f"predicting {len(held_out)}"
        )
        fold_exp = copy.deepcopy(exp)
        fold_exp.data_dir = str(fold_dir / "data")
        fold_exp.train_ann, fold_exp.val_ann = "instances_train2017.json", "instances_val2017.json"
        fold_exp.train_name, fold_exp.val_name = "train2017", "val2017"
        fold_exp.max_epoch = epochs
        fold_exp.no_aug_epochs = min(fold_exp.no_aug_epochs, max(epochs // 4, 0))
        fold_exp.warmup_epochs = min(fold_exp.warmup_epochs, max(epochs // 4, 0))
        write_fold_dataset(fold_exp, images, held_out, fold_dir / "data")
        run = train(fold_exp, device, out_dir=fold_dir / "run", progress=False, **(train_kwargs or {}))
        ckpt = next((run / n for n in ("best.pth", "last.pth") if (run / n).is_file()), None)
        if ckpt is None:
            raise UserError(f"fold {k}: training wrote no checkpoint in {relative(run)}")
        preds = predict_split(fold_exp, ckpt, "val", device)
        for n in held_out:
            predictions[n] = preds.get(n + 1, np.zeros((0, 6), np.float32))
        write_json(saved, {str(n): predictions[n].tolist() for n in held_out})
    return predictions


def check_cache(folder, images, folds, epochs, seed, group_by, train_kwargs):
    """folds/ is reused by every rerun: only while it was made from the same images, labels and
    fold settings (folds/settings.json); a UserError naming what changed otherwise."""
    import hashlib
    import json

    data = [
        [
            im["split"],
            im["image_id"],
            im["file_name"],
            np.asarray(im["label_boxes"]).round(2).tolist(),
            list(map(int, im["label_classes"])),
        ]
        for im in images
    ]
    key = {
        "folds": folds,
        "epochs": epochs,
        "seed": seed,
        "group_by": group_by,
        "start": {k: str(v) for k, v in sorted((train_kwargs or {}).items())},
        "images": hashlib.sha256(json.dumps(data).encode("utf-8")).hexdigest(),
    }
    path = folder / "settings.json"
    if path.is_file():
        old = read_json(path)
        changed = [k for k in key if old.get(k) != key[k]]
        if changed:
            what = ", ".join(
                "the labelled images" if k == "images" else f"{k} {old.get(k)!r} -> {key[k]!r}"
                for k in changed
            )
            raise UserError(
                f"{relative(folder)}: these K-fold predictions were made with other settings ({what}); "
                "delete the folder to retrain the folds, or pass another --output"
            )
    elif any(folder.glob("fold_*/predictions.json")):
        raise UserError(
            f"{relative(folder)}: K-fold predictions without settings.json (from an older yft); "
            "delete the folder to retrain the folds, or pass another --output"
        )
    else:
        write_json(path, key, indent=1)  # the first run's settings: what later runs must match


def checkpoint_predictions(exp, images, ckpt, device):
    """Predictions of one model (that did not train on these images) for every image."""
    predictions = []
    by_split = {}
    for split in sorted({im["split"] for im in images}):
        by_split[split] = predict_split(exp, ckpt, split, device)
    for im in images:
        predictions.append(by_split[im["split"]].get(im["image_id"], np.zeros((0, 6), np.float32)))
    return predictions


def attach(images, predictions):
    for im, preds in zip(images, predictions):
        im["predictions"] = np.asarray(preds, np.float32).reshape(-1, 6)
    return images
