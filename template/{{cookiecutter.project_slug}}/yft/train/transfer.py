"""Transfer learning: what is trainable when, and how pretrained weights map onto our head.

Strategies (exp.strategy, or `invoke train --strategy`):
  full         every layer trains (best with plenty of data).
  head         backbone and neck frozen, BatchNorm statistics too; only the head trains
               (little data, or a quick first look).
  progressive  the head first, then the neck and the backbone stages from the top down, each at
               the epoch given in exp.progressive_schedule (a common middle ground).
"""

from tqdm import tqdm

from yft.project import UserError

# Units a strategy can freeze, from the head down to the stem.
UNITS = ("head", "neck", "dark5", "dark4", "dark3", "dark2", "stem")
STRATEGIES = ("full", "head", "progressive")


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
    if exp.strategy == "progressive":
        unfreeze_at = dict(exp.progressive_schedule)
        unknown = set(unfreeze_at) - set(UNITS[1:])
        if unknown:
            raise UserError(f"progressive_schedule names unknown parts {sorted(unknown)}; "
                            f"use {', '.join(UNITS[1:])}")
        return [unit for unit in UNITS[1:] if epoch < unfreeze_at.get(unit, 0)]
    raise UserError(f"strategy {exp.strategy!r}: use one of {', '.join(STRATEGIES)}")


def apply_freeze(model, units):
    """Freeze `units` (no gradients) and unfreeze the rest; return the frozen modules, whose
    BatchNorm layers the trainer keeps in eval mode so their statistics stay pretrained."""
    frozen = []
    for unit in UNITS:
        for module in unit_modules(model, unit):
            for param in module.parameters():
                param.requires_grad = unit not in units
            if unit in units:
                frozen.append(module)
    return frozen


def describe_trainable(model, units):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    training = [u for u in UNITS if u not in units]
    return (f"trainable: {', '.join(training)} ({trainable / 1e6:.2f}M of {total / 1e6:.2f}M parameters)"
            + (f"; frozen: {', '.join(units)}" if units else ""))


def class_row_map(exp, checkpoint_classes):
    """For the class-prediction layers: {our row: checkpoint row} to copy from a checkpoint
    whose head has `checkpoint_classes` outputs.

    keep_coco: an 80-class COCO checkpoint fills rows 0..79; our new rows keep their fresh init.
    Same number of classes: all rows copy (plain loading does that already).
    """
    if exp.class_mode == "keep_coco" and checkpoint_classes == 80:
        return {row: row for row in range(80)}
    return {}


def graft_class_rows(model, weights, row_map):
    """Copy rows of the checkpoint's cls_preds tensors into ours (head surgery); return names done."""
    done = []
    if not row_map:
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
    """Load a checkpoint for finetuning: matching tensors, plus head surgery in keep_coco mode."""
    from yft.train.checkpoint import load_weights, model_weights

    weights = model_weights(state)
    report = load_weights(model, weights)
    grafted = graft_class_rows(model, weights, class_row_map(exp, checkpoint_classes(weights)))
    if grafted:
        report.skipped = [s for s in report.skipped if s[0] not in grafted]
        report.loaded += grafted
        log(f"head surgery: COCO's 80 class rows copied into {len(grafted)} class-prediction "
            f"tensors; rows for our {exp.num_classes - 80} classes start fresh")
    return report
