"""`invoke check`: the finetuning guide's pre-training checklist, run before spending GPU hours.

1. dataset paths and annotation files load; every split has images; class names match the Exp
2. device, and a memory estimate (one real training step on CUDA; parameters elsewhere)
3. starting weights present and matching the model (or a warning: training from scratch)
4. train_batch.png: one augmented training batch with boxes and class names, to eyeball
"""

import cv2
import numpy as np
import torch

from yft.data.precheck import check_split
from yft.device import describe
from yft.io import write_png
from yft.project import UserError, relative, run_dir


def _report(ok, label, detail):
    print(f"[{'ok' if ok is True else 'warn' if ok is None else 'FAIL'}] {label}: {detail}")
    return ok is not False


def run_checks(exp, device, ckpt=None, batch_size=None):
    """Print the checklist; return False if anything failed (warnings pass)."""
    batch_size = batch_size or exp.batch_size
    good = True
    for split in ("train", "val", "test"):
        try:
            coco = check_split(exp, split)
        except UserError as err:
            good &= _report(None if split == "test" else False, f"{split} split", str(err))
            continue
        negatives = len(coco["images"]) - len({a["image_id"] for a in coco["annotations"]})
        good &= _report(
            True,
            f"{split} split",
            f"{len(coco['images'])} images, "
            f"{len(coco['annotations'])} boxes, {negatives} negatives; classes match the Exp",
        )

    model = exp.get_model()
    params = sum(p.numel() for p in model.parameters())
    good &= _report(True, "device", f"{describe(device)}; {exp.model_name}: {params / 1e6:.2f}M parameters")
    good &= _report(True, "memory", memory_estimate(model, exp, device, batch_size))

    good &= check_weights(model, exp, ckpt)
    if good:
        try:
            path = save_batch_png(exp, run_dir(exp, "check") / "train_batch.png")
            _report(True, "augmented batch", f"{relative(path)} (look at it: boxes on objects? names right?)")
        except UserError as err:
            good &= _report(False, "augmented batch", str(err))
    return good


def memory_estimate(model, exp, device, batch_size):
    """Peak memory of one forward/backward step at the training input size (CUDA), or a rough
    figure from parameters and optimizer state elsewhere."""
    weights_mb = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    if device.type != "cuda":
        return (
            f"weights + gradients + momentum + EMA ~ {4 * weights_mb:.0f} MB; activations grow "
            f"with batch {batch_size} and input {exp.input_size[0]} px"
        )
    model = model.to(device).train()
    torch.cuda.reset_peak_memory_stats(device)
    images = torch.rand(batch_size, 3, *exp.input_size, device=device) * 255
    targets = torch.zeros(batch_size, 120, 5, device=device)
    targets[:, 0] = torch.tensor([0, exp.input_size[1] / 2, exp.input_size[0] / 2, 32, 32], device=device)
    try:
        model(images, targets)["total_loss"].backward()
    except torch.OutOfMemoryError:
        return f"OUT OF MEMORY at batch {batch_size}: use a smaller --batch-size with --set accumulate=N"
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    return f"one step at batch {batch_size}: {peak:.1f} GiB of {total:.1f} GiB"


def check_weights(model, exp, ckpt):
    from yft.train.checkpoint import load_checkpoint
    from yft.train.transfer import load_pretrained
    from yft.train.weights import default_cache

    if not ckpt and exp.pretrained is None:
        return _report(
            None,
            "weights",
            "none (pretrained is None): training from scratch with the "
            "scratch profile; COCO-pretrained weights are the better start on small datasets",
        )
    if not ckpt and exp.pretrained == "auto":
        ckpt = default_cache() / f"{exp.model_name}.pth"
        if not ckpt.is_file():
            return _report(
                None,
                "weights",
                f"{ckpt} not downloaded yet: `invoke train` fetches it "
                "(or run `invoke download-weights` now)",
            )
    notes = []
    report = load_pretrained(model, exp, load_checkpoint(ckpt or exp.pretrained), log=notes.append)
    ok = bool(report.loaded) and not report.missing
    return _report(
        ok,
        "weights",
        f"{ckpt or exp.pretrained}: {report.summary().splitlines()[0]}"
        + "".join(f"; {note}" for note in notes),
    )


def save_batch_png(exp, target, count=8):
    """Draw one augmented training batch (as the model sees it) with boxes and class names."""
    from yft.data.loaders import build_train_loader

    saved = exp.data_num_workers
    exp.data_num_workers = 0
    try:
        loader = build_train_loader(exp, count, torch.device("cpu"), seed=0)
        images, targets, _, _ = next(iter(loader))
    finally:
        exp.data_num_workers = saved
    tiles = []
    for img, labels in zip(images.numpy(), targets.numpy()):
        tile = np.ascontiguousarray(img.transpose(1, 2, 0).clip(0, 255).astype(np.uint8))
        for cls, cx, cy, w, h in labels[labels[:, 3] > 0]:
            p1, p2 = (int(cx - w / 2), int(cy - h / 2)), (int(cx + w / 2), int(cy + h / 2))
            cv2.rectangle(tile, p1, p2, (0, 255, 0), 1)
            cv2.putText(
                tile,
                exp.class_names[int(cls)],
                (p1[0], max(10, p1[1] - 2)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35,
                (0, 255, 0),
                1,
                cv2.LINE_AA,
            )
        tiles.append(tile)
    while len(tiles) % 4:
        tiles.append(np.full_like(tiles[0], 114))
    grid = np.vstack([np.hstack(tiles[i : i + 4]) for i in range(0, len(tiles), 4)])
    return write_png(target, grid)
