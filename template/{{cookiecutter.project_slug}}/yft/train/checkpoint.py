"""Checkpoints as plain dicts that `torch.load(weights_only=True)` accepts.

YOLOX's own trainer stores `best_ap` as a numpy float, which torch >= 2.6 refuses to load by
default; everything here is a tensor, a number, a string or a list of those.
"""

import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from yft.io import write_atomic
from yft.project import UserError


def save_checkpoint(path, state):
    """Write a checkpoint atomically (a crash never leaves half a file)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path):
    """Load a checkpoint dict safely; the message names the file on failure."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad files
        raise UserError(f"{path}: not a loadable checkpoint ({type(err).__name__}: {err})") from None


@dataclass
class LoadReport:
    loaded: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (name, checkpoint shape, model shape)
    missing: list = field(default_factory=list)  # in the model, not in the checkpoint
    unexpected: list = field(default_factory=list)  # in the checkpoint, not in the model

    def summary(self):
        text = (f"loaded {len(self.loaded)} tensors, skipped {len(self.skipped)} (shape differs), "
                f"missing {len(self.missing)}, unused {len(self.unexpected)}")
        details = [f"  skipped {name}: checkpoint {tuple(a)} vs model {tuple(b)}"
                   for name, a, b in self.skipped]
        details += [f"  missing {name}" for name in self.missing[:20]]
        return "\n".join([text] + details)


def model_weights(state):
    """The inference weights in a checkpoint: ours and YOLOX's keep them under 'model'."""
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        return state["model"]
    return state


def load_weights(model, state):
    """Copy matching tensors into `model`; report what was loaded, skipped or missing.

    Shapes that differ (e.g. the 80-class head of a COCO checkpoint) are skipped, not fatal.
    """
    weights = model_weights(state)
    own = model.state_dict()
    report = LoadReport()
    to_load = {}
    for name, tensor in weights.items():
        if name not in own:
            report.unexpected.append(name)
        elif own[name].shape != tensor.shape:
            report.skipped.append((name, tensor.shape, own[name].shape))
        else:
            to_load[name] = tensor
            report.loaded.append(name)
    report.missing = [name for name in own if name not in weights]
    model.load_state_dict(to_load, strict=False)
    return report
