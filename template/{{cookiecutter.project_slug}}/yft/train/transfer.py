"""Transfer learning: what is trainable when, and how pretrained weights map onto our head.

Strategies (exp.strategy, or `invoke train --strategy`):
  full         every layer trains (best with plenty of data).
  head         backbone and neck frozen, BatchNorm statistics too; only the head trains
               (little data, or a quick first look).
  progressive  the head first, then the neck and the backbone stages from the top down, each at
               the epoch given in exp.progressive_schedule (a common middle ground).
  classes      only the class-prediction layers train, everything else (objectness, boxes,
               features) stays the checkpoint's: adding classes to a model whose old classes
               must keep their accuracy while the new data does not show them (keep-COCO style;
               with freeze_unseen_classes the old classes' rows stay as they were).
"""

import torch.nn as nn
from tqdm import tqdm

from yft.project import UserError

# Units a strategy can freeze, from the head down to the stem.
UNITS = ("head", "neck", "dark5", "dark4", "dark3", "dark2", "stem")
STRATEGIES = ("full", "head", "progressive", "classes")


def unit_modules(model, unit):
    """The modules of one unit of a YOLOX model."""
    if unit == "head":
        return [model.head]
    pafpn = model.backbone
    if unit == "neck":
        return [module for name, module in pafpn.named_children() if name != "backbone"]
    return [getattr(pafpn.backbone, unit)]


def frozen_units(exp, epoch):
    """The units frozen at `epoch` (0-based) under exp.strategy."""
    if exp.strategy == "full":
        return []
    if exp.strategy == "head":
        return list(UNITS[1:])
    if exp.strategy == "classes":
        return list(UNITS)
    if exp.strategy == "progressive":
        unfreeze_at = dict(exp.progressive_schedule)
        unknown = set(unfreeze_at) - set(UNITS[1:])
        if unknown:
            raise UserError(
                f"progressive_schedule names unknown parts {sorted(unknown)}; use {', '.join(UNITS[1:])}"
            )
        return [unit for unit in UNITS[1:] if epoch < unfreeze_at.get(unit, 0)]
    raise UserError(f"strategy {exp.strategy!r}: use one of {', '.join(STRATEGIES)}")


def apply_freeze(model, units, class_preds=False):
    """Freeze `units` (no gradients) and unfreeze the rest; return the frozen modules, whose
    BatchNorm layers the trainer keeps in eval mode so their statistics stay pretrained."""
    frozen = []
    for unit in UNITS:
        for module in unit_modules(model, unit):
            for param in module.parameters():
                param.requires_grad = unit not in units
            if unit in units and unit == "head":  # the head's forward computes the losses in
                frozen += [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]  # train mode
            elif unit in units:
                frozen.append(module)
    if class_preds:  # strategy "classes": in a frozen head, the class predictions still train
        for param in model.head.cls_preds.parameters():
            param.requires_grad = True
    return frozen


def describe_trainable(model, units):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    training = [u for u in UNITS if u not in units]
    return f"trainable: {', '.join(training)} ({trainable / 1e6:.2f}M of {total / 1e6:.2f}M parameters)" + (
        f"; frozen: {', '.join(units)}" if units else ""
    )


def checkpoint_class_names(exp, state, rows):
    """The names of a checkpoint's class outputs: stored in it (ours), else the Exp's
    pretrained_classes when their number matches its rows (COCO's 80 for official weights)."""
    from yft.train.checkpoint import stored_class_names

    names = stored_class_names(state)
    if names is None and rows == len(exp.pretrained_classes):
        names = list(exp.pretrained_classes)
    return names if names is not None and len(names) == rows else None


def class_row_map(exp, names, rows):
    """{our row: checkpoint row} for the class-prediction layers (head surgery), or None when
    the checkpoint's classes are unknown (then tensors of equal shape load as they are).

    Our classes take the rows of the checkpoint's classes of the same name, wherever they are
    (keep_coco: COCO's 80 rows come first); the others keep their fresh initialisation, so a
    checkpoint of other classes never passes its class weights off as ours. Replace mode keeps
    all 80 COCO rows in place: a renamed slot starts from its COCO class.
    """
    if exp.class_mode == "replace" and rows == 80:
        return {row: row for row in range(80)}
    if names is None:
        return None
    index = {name: row for row, name in enumerate(names)}
    return {ours: index[name] for ours, name in enumerate(exp.class_names) if name in index}


def graft_class_rows(model, weights, row_map):
    """Copy rows of the checkpoint's cls_preds tensors into ours (head surgery); rows not in
    row_map keep the model's fresh initialisation. Returns the tensor names done."""
    done = []
    if not row_map:  # no class in common: the class layers start fresh
        return done
    own = model.state_dict()
    for name, tensor in weights.items():
        if ".cls_preds." in name and name in own and own[name].shape[1:] == tensor.shape[1:]:
            target = own[name].clone()
            for ours, theirs in row_map.items():
                target[ours] = tensor[theirs]
            own[name].copy_(target)
            done.append(name)
    return done


def checkpoint_classes(weights):
    """Number of classes of a YOLOX checkpoint (rows of its first class-prediction layer)."""
    tensor = weights.get("head.cls_preds.0.weight")
    return None if tensor is None else int(tensor.shape[0])


def load_pretrained(model, exp, state, log=tqdm.write):
    """Load a checkpoint for finetuning: every tensor that fits, and the class rows of the
    classes it shares with the Exp by name (head surgery). Logs how the classes map."""
    from yft.train.checkpoint import load_weights, model_weights

    weights = model_weights(state)
    rows = checkpoint_classes(weights)
    row_map = class_row_map(exp, checkpoint_class_names(exp, state, rows), rows)
    if row_map is None:  # classes unknown: what fits loads as it is
        if rows is not None:
            log(
                f"classes: the checkpoint's {rows} class outputs are not named (it stores no "
                "class_names and pretrained_classes has another count): class layers of the same "
                "shape load as they are"
            )
        return load_weights(model, weights)
    surgery = {k: v for k, v in weights.items() if ".cls_preds." in k}
    report = load_weights(model, {k: v for k, v in weights.items() if k not in surgery})
    grafted = graft_class_rows(model, surgery, row_map)
    report.loaded += grafted
    report.skipped += [
        (k, v.shape, model.state_dict()[k].shape)
        for k, v in surgery.items()
        if k not in grafted and k in model.state_dict()
    ]
    report.unexpected += [k for k in surgery if k not in model.state_dict()]
    report.missing = [k for k in report.missing if k not in surgery]
    report.kept_rows = sorted(row_map)
    names = list(exp.class_names)
    kept = [names[ours] for ours in sorted(row_map)]
    new = [name for k, name in enumerate(names) if k not in row_map]
    moved = sum(ours != theirs for ours, theirs in row_map.items())
    log(
        f"classes: {len(kept)} of our {len(names)} start from the checkpoint's class weights"
        + (f" ({_few(kept)})" if kept else "")
        + (f"; {len(new)} start fresh ({_few(new)})" if new else "")
        + (f"; {moved} rows moved to our order" if moved else "")
    )
    return report


def _few(names, limit=5):
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
