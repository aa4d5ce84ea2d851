"""Optimiser and learning-rate schedule for finetuning.

Parameters fall into three parts of the network, each with its own LR multiplier
(exp.backbone_lr_mult, exp.neck_lr_mult, exp.head_lr_mult): the CSPDarknet backbone, the
PAFPN neck, and the detection head. Within each part, conv/linear weights get weight decay;
BatchNorm parameters and biases do not. Frozen parameters stay in the optimiser (they get
no gradient, so SGD skips them) so that progressive unfreezing needs no new optimiser.
"""

import math

import torch
import torch.nn as nn

PARTS = ("backbone", "neck", "head")


def part_of(name):
    """'backbone.backbone.dark2...' -> backbone, 'backbone.C3_p4...' -> neck, 'head...' -> head."""
    if name.startswith("backbone.backbone."):
        return "backbone"
    return "neck" if name.startswith("backbone.") else "head"


def build_optimizer(model, exp, device=None):
    """SGD (Nesterov) with six groups: {backbone, neck, head} x {decay, no decay}; the fused
    kernel on CUDA, the foreach one elsewhere (one launch per group, not per tensor)."""
    groups = {(part, decay): [] for part in PARTS for decay in (True, False)}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            decay = name == "weight" and not isinstance(module, nn.modules.batchnorm._BatchNorm)
            groups[(part_of(full), decay)].append(param)
    param_groups = [
        {
            "params": params,
            "weight_decay": exp.weight_decay if decay else 0.0,
            "lr_mult": getattr(exp, f"{part}_lr_mult"),
            "name": f"{part}{'' if decay else '_no_decay'}",
        }
        for (part, decay), params in groups.items()
        if params
    ]
    fused = device is not None and device.type == "cuda"
    return torch.optim.SGD(
        param_groups,
        lr=exp.warmup_lr,
        momentum=exp.momentum,
        nesterov=True,
        **({"fused": True} if fused else {"foreach": True}),
    )


def set_lr(optimizer, base_lr):
    """Give each group base_lr times its part's multiplier."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr * group.get("lr_mult", 1.0)


class LRSchedule:
    """Base LR per iteration: warmup, then cosine (YOLOX's yoloxwarmcos) or step decay.

    Warmup lasts exp.warmup_iters iterations when set, else exp.warmup_epochs epochs, rising
    quadratically from exp.warmup_lr as YOLOX does. Cosine decays to base * min_lr_ratio and
    stays there for the no-augmentation epochs; "step" multiplies by exp.lr_step_gamma at each
    epoch in exp.lr_step_epochs. `scale` multiplies everything (reduce-on-plateau lowers it).
    """

    def __init__(self, exp, base_lr, iters_per_epoch):
        self.exp, self.base_lr, self.iters_per_epoch = exp, base_lr, iters_per_epoch
        self.total = exp.max_epoch * iters_per_epoch
        warmup = exp.warmup_iters if exp.warmup_iters else exp.warmup_epochs * iters_per_epoch
        self.warmup = min(int(warmup), self.total)
        self.no_aug = exp.no_aug_epochs * iters_per_epoch
        self.scale = 1.0

    def __call__(self, iteration):
        exp, lr = self.exp, self.base_lr
        if self.warmup and iteration < self.warmup:
            return self.scale * ((lr - exp.warmup_lr) * (iteration / self.warmup) ** 2 + exp.warmup_lr)
        if exp.scheduler == "step":
            epoch = iteration // self.iters_per_epoch
            drops = sum(epoch >= e for e in exp.lr_step_epochs)
            return self.scale * lr * exp.lr_step_gamma**drops
        min_lr = lr * exp.min_lr_ratio
        cosine_end = self.total - self.no_aug
        if iteration >= cosine_end:
            return self.scale * min_lr
        progress = (iteration - self.warmup) / max(1, cosine_end - self.warmup)
        return self.scale * (min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress)))
