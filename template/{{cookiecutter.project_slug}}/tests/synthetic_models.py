"""Shared by the tests and tests/ddp_worker.py (which torchrun starts as a script): the settings
of tiny training runs, and untrained models with a known behaviour for tests that need
detections that match without training."""

import math

import torch

from yft.exp import COCO_CLASS_NAMES

# Fast, deterministic CPU runs: 64 px, two epochs (the second without mosaic), seeded.
TINY_SETTINGS = {
    "input_size": (64, 64),
    "test_size": (64, 64),
    "max_epoch": 2,
    "warmup_epochs": 1,
    "no_aug_epochs": 1,
    "multiscale": False,
    "tracker": "none",
    "seed": 3,
    "early_stop_patience": 0,
    "ckpt_interval": 0,
}


def tiny(exp, **settings):
    """exp with TINY_SETTINGS and then `settings` applied; returns it."""
    for key, value in (TINY_SETTINGS | settings).items():
        setattr(exp, key, value)
    return exp


def own_classes(exp):
    """Indices of the classes the sample data can draw: all of them (fresh), or those that are
    not COCO's (keep_coco, replace)."""
    return [
        i
        for i, name in enumerate(exp.class_names)
        if exp.class_mode == "fresh" or name not in COCO_CLASS_NAMES
    ]


def boxy_class(exp):
    """The class every anchor of boxy_model predicts: draw sample data of this class only and
    some boxes match whatever the project's class names."""
    return exp.class_names[own_classes(exp)[0]]


def boxy_model(exp, seed=0):
    """An untrained model whose biases put a box of about the sample objects' size on every anchor
    (3, 2.5 and 2 strides a side at the three levels), objectness ~0.88 and 0.5 for each of our
    classes, next to nothing for COCO's others: scores near 0.44, and the tie between our classes
    goes to the lowest index (boxy_class)."""
    torch.manual_seed(seed)
    model = exp.get_model()
    ours = own_classes(exp)
    with torch.no_grad():
        for level, (obj, cls, reg) in enumerate(
            zip(model.head.obj_preds, model.head.cls_preds, model.head.reg_preds)
        ):
            obj.bias.fill_(2.0)
            cls.bias.fill_(-6.0)
            cls.bias[ours] = 0.0
            reg.bias[2:4].fill_(math.log((3.0, 2.5, 2.0)[level]))
    return model
