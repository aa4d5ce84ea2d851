"""mAP of any backend on (part of) a split, through `backend.detect`, so models with NMS inside
(ONNX NonMaxSuppression, TensorRT EfficientNMS) are measured the same way as torch."""

import contextlib
import io

import torch

from yft.data.loaders import build_eval_loader
from yft.evaluate.coco_metrics import coco_metrics, to_coco_results


def split_map(backend, exp, split="val", limit=0, batch_size=8):
    """COCO metrics of `backend` on the first `limit` images of a split (0: all of them).

    Returns coco_metrics' dict plus num_images and the COCO results ("results")."""
    loader = build_eval_loader(exp, split, batch_size, torch.device("cpu"))
    category_ids = exp.category_ids()
    results, seen = [], []
    for images, _, info, ids in loader:
        if limit and len(seen) >= limit:
            break
        heights, widths = info[0].tolist(), info[1].tolist()
        ratios = [min(exp.test_size[0] / h, exp.test_size[1] / w) for h, w in zip(heights, widths)]
        dets = backend.detect(images.numpy(), ratios, exp.test_conf, exp.nmsthre)
        image_ids = ids.flatten().tolist()
        results += to_coco_results(dets, image_ids, category_ids)
        seen += image_ids
    seen = set(seen)
    gt = loader.dataset.coco.dataset
    subset = {
        **gt,
        "images": [im for im in gt["images"] if im["id"] in seen],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in seen],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = coco_metrics(subset, results, exp.class_names, category_ids)
    metrics["num_images"] = len(seen)
    metrics["results"] = results
    return metrics
