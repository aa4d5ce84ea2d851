"""Checkpoints: plain dicts written atomically and read back safely.

Reading never runs code from a pickle: `torch.load(weights_only=True)` with an allow-list of
the numpy scalar types YOLOX's own Trainer stores (its `best_ap` is a numpy float64), nothing
else. Before unpickling, the CRC-32 of every record in the zip archive is checked, so a
bit-flipped or truncated copy is refused instead of predicting garbage. Our own checkpoints hold
only tensors, numbers, strings and lists, plus the class names they were trained for.
"""

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from yft.io import write_atomic
from yft.project import UserError


def save_checkpoint(path, state):
    """Write a checkpoint atomically (a crash never leaves half a file)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def _numpy_scalar_globals():
    """What unpickling a numpy scalar needs: numpy's scalar constructor (under its numpy 1 and
    numpy 2 module names, as files from either carry one of them) and the dtypes of numbers."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    dtypes = [
        getattr(np.dtypes, name)
        for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType")
        if hasattr(getattr(np, "dtypes", None), name)
    ]
    return [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *dtypes,
    ]


def verify_archive(path):
    """Raise UserError when a record of the checkpoint's zip archive fails its CRC check.

    torch.save writes a zip (since torch 1.6) with a CRC-32 per record, which torch.load does
    not check. Files in torch's legacy format carry no checksums; they are left to torch.load.
    """
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise UserError(f"{path}: damaged checkpoint archive ({err}); restore it from a backup") from None
    if bad is not None:
        raise UserError(
            f"{path}: damaged checkpoint: record {bad} fails its CRC check (a bit flip or "
            "a broken copy); restore it from a backup or train again"
        )


def _one_line(err):
    """The cause in torch's many-line load errors ('Unsupported operand 123' of a JSON file, not
    its closing advice, which the one-line error of the tasks would keep)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else "unreadable")[:200]


def load_checkpoint(path):
    """Load a checkpoint dict safely (see the module docstring); the message names the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    verify_archive(path)
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for bad files
        needed = re.search(r"GLOBAL ([\w.]+)", str(err))
        if needed:
            raise UserError(
                f"{path}: refused: it stores a {needed.group(1)} object, and loading it would need full "
                "unpickling, which can run any code. Only tensors, numbers, strings and numpy scalars "
                "are loaded; if you trust the file, re-save just its weights with "
                "torch.save({'model': state_dict}, path)"
            ) from None
        raise UserError(
            f"{path}: not a loadable checkpoint ({type(err).__name__}: {_one_line(err)})"
        ) from None
    if not isinstance(state, dict):
        raise UserError(
            f"{path}: holds a {type(state).__name__}, not a checkpoint (a dict of "
            "weights, or a dict with the weights under 'model')"
        )
    weights = model_weights(state)
    odd = next((k for k, v in weights.items() if not torch.is_tensor(v)), None)
    if odd is not None or not weights:
        raise UserError(
            f"{path}: no model weights in it (expected tensors under 'model'"
            + (f"; {odd!r} is a {type(weights[odd]).__name__})" if odd is not None else ")")
        )
    return state


def stored_class_names(state):
    """The class names a checkpoint was trained for, or None (YOLOX's files do not store them)."""
    names = state.get("class_names") if isinstance(state, dict) else None
    return [str(n) for n in names] if isinstance(names, (list, tuple)) else None


def class_names_difference(stored, ours):
    """None when equal, else one short phrase saying where the two lists of names differ."""
    stored, ours = list(stored), list(ours)
    if stored == ours:
        return None
    for k, (a, b) in enumerate(zip(stored, ours)):
        if a != b:
            return (
                f"class {k} is {a!r} in the checkpoint but {b!r} in the Exp "
                f"({len(stored)} vs {len(ours)} classes)"
            )
    extra = stored[len(ours) :] or ours[len(stored) :]
    side = "checkpoint" if len(stored) > len(ours) else "Exp"
    return f"the {side} has {len(extra)} more classes ({', '.join(map(repr, extra[:3]))}...)"


def check_class_names(state, exp, path, purpose):
    """Refuse a checkpoint trained for other classes than the Exp's (eval, predict, export,
    resume): a model of other classes would run fine and print wrong labels."""
    stored = stored_class_names(state)
    difference = stored is not None and class_names_difference(stored, exp.class_names)
    if difference:
        raise UserError(
            f"{path}: trained for other classes: {difference}; {purpose} needs the "
            "checkpoint of this Exp's classes (to start from it instead, use invoke train --ckpt)"
        )


@dataclass
class LoadReport:
    loaded: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (name, checkpoint shape, model shape)
    missing: list = field(default_factory=list)  # in the model, not in the checkpoint
    unexpected: list = field(default_factory=list)  # in the checkpoint, not in the model
    kept_rows: list = field(default_factory=list)  # our classes whose class rows came from it (by name)

    def summary(self):
        text = (
            f"loaded {len(self.loaded)} tensors, skipped {len(self.skipped)} (shape or classes differ), "
            f"missing {len(self.missing)}, unused {len(self.unexpected)}"
        )
        details = [
            f"  skipped {name}: checkpoint {tuple(a)} vs model {tuple(b)}" for name, a, b in self.skipped
        ]
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
