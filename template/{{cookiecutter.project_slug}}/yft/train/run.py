"""Train a YOLOX model from the project's Exp, on whatever device is there.

    invoke train                       # all epochs of the Exp, best device found
    invoke train --device cpu --smoke  # a few iterations at a tiny size: does everything run?
    invoke train --ckpt yolox_s.pth    # start from pretrained weights (the 80-class head is skipped)
    invoke train --resume              # continue runs/<exp>/train/last.pth

The learning rate follows the linear scaling rule: lr = exp.basic_lr_per_img * batch size,
warmed up over exp.warmup_epochs, then cosine-decayed (YOLOX's yoloxwarmcos schedule).
"""

import random
import time

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from yft.device import describe
from yft.data.coco_io import check_split
from yft.data.loaders import build_train_loader
from yft.evaluate.run import evaluate_backend
from yft.inference import TorchBackend
from yft.project import UserError, relative, run_dir
from yft.train import hooks
from yft.train.checkpoint import load_checkpoint, load_weights
from yft.train.trainer import Trainer

# A smoke run proves the whole pipeline runs, not that it learns: tiny inputs, few steps.
SMOKE_SETTINGS = {"input_size": (128, 128), "test_size": (128, 128), "max_epoch": 2,
                  "warmup_epochs": 1, "no_aug_epochs": 1, "multiscale": False,
                  "data_num_workers": 0}
SMOKE_ITERS_PER_EPOCH = 3


def build_optimizer(model, exp):
    """SGD with Nesterov momentum; weight decay on conv/linear weights only (not BN, not biases)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if name == "weight" and not isinstance(module, nn.modules.batchnorm._BatchNorm):
                decay.append(param)
            else:
                no_decay.append(param)
    return torch.optim.SGD([{"params": no_decay, "weight_decay": 0.0},
                            {"params": decay, "weight_decay": exp.weight_decay}],
                           lr=exp.warmup_lr, momentum=exp.momentum, nesterov=True)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(exp, device, ckpt=None, resume=False, smoke=False, batch_size=None, amp=None,
          out_dir=None, progress=True):
    """Train and return the run folder (last.pth, best.pth, history.json, metrics).

    progress=False drops the progress bars and keeps one summary line per epoch.
    """
    if smoke:
        for key, value in SMOKE_SETTINGS.items():
            setattr(exp, key, value)
    batch_size = int(batch_size or exp.batch_size)
    out_dir = out_dir or run_dir(exp, "smoke" if smoke else "train")
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = exp.seed if exp.seed is not None else random.randrange(2**31)
    seed_everything(seed)
    amp_dtype = {None: None, "fp16": torch.float16, "bf16": torch.bfloat16}[amp]
    if amp_dtype is torch.float16 and device.type != "cuda":
        raise UserError("--amp fp16 needs a CUDA GPU; use --amp bf16 or no --amp on this device")
    tqdm.write(f"device {describe(device)}, batch {batch_size}, {exp.max_epoch} epochs, "
               f"input {exp.input_size[0]}x{exp.input_size[1]}, seed {seed}")

    tqdm.write("loading data")
    check_split(exp, "train")
    check_split(exp, "val")  # fail now, not after the first epoch
    loader = build_train_loader(exp, batch_size, device, seed=seed)
    iters_per_epoch = SMOKE_ITERS_PER_EPOCH if smoke else len(loader)

    tqdm.write(f"creating model {exp.model_name} with {exp.num_classes} classes")
    model = exp.get_model()
    start_epoch, iteration, best_ap, state = 0, 0, 0.0, None
    if resume:
        resume_path = out_dir / "last.pth" if resume is True else resume
        state = load_checkpoint(resume_path)
        load_weights(model, {"model": state["train_model"]})
        start_epoch, iteration, best_ap = state["epoch"], state["iteration"], state["best_ap"]
        tqdm.write(f"resuming {relative(resume_path)} at epoch {start_epoch + 1}")
    elif ckpt:
        report = load_weights(model, load_checkpoint(ckpt))
        tqdm.write(f"weights from {ckpt}: {report.summary()}")
        if not report.loaded:
            raise UserError(f"{ckpt}: no tensor matched the model (is it a {exp.model_name} checkpoint?)")
    model.to(device)

    optimizer = build_optimizer(model, exp)
    scheduler = exp.get_lr_scheduler(exp.basic_lr_per_img * batch_size, iters_per_epoch)
    ema = None
    if exp.ema:
        from yolox.utils import ModelEMA
        ema = ModelEMA(model, exp.ema_decay)
    trainer = Trainer(exp, model, optimizer, scheduler, loader, device, iters_per_epoch,
                      ema=ema, amp_dtype=amp_dtype)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        trainer.scaler.load_state_dict(state["scaler"])
        if ema is not None:
            load_weights(ema.ema, state)
            ema.updates = state["ema_updates"]
        trainer.start_epoch, trainer.iter, trainer.best_ap = start_epoch, iteration, best_ap
    trainer.lr = scheduler.update_lr(trainer.iter)
    for group in optimizer.param_groups:
        group["lr"] = trainer.lr

    def validate(eval_model):
        metrics, _ = evaluate_backend(TorchBackend(eval_model, device), exp, "val", device,
                                      batch_size=batch_size, progress=False)
        return metrics

    trainer.register_hooks([
        hooks.NoAugTail(),
        hooks.Multiscale(seed) if exp.multiscale else None,
        hooks.Checkpointer(out_dir),
        hooks.Evaluator(validate, out_dir),  # after the Checkpointer: best.pth copies last.pth
        hooks.Tracker(exp.tracker, out_dir) if exp.tracker != "none" else None,
        hooks.Progress(bars=progress),
    ])
    tqdm.write(f"training: {iters_per_epoch} iterations per epoch, output in {relative(out_dir)}")
    started = time.perf_counter()
    trainer.train()
    minutes = (time.perf_counter() - started) / 60
    best = "n/a" if not trainer.metrics else f"{100 * trainer.best_ap:.2f}"
    tqdm.write(f"done in {minutes:.1f} min; best val mAP50:95 {best}; "
               f"checkpoints {relative(out_dir / 'best.pth')}, {relative(out_dir / 'last.pth')}")
    return out_dir
