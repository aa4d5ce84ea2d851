"""What a run folder holds, gathered for the HTML report: the settings it was started with,
training history, the other evaluate tasks' results that belong to it, exports and releases.

Only reads files other tasks wrote; nothing is recomputed. A result "belongs" to a run when
the checkpoint it records lies inside the run folder, so results are found wherever the tasks
put them (beside the run or inside it).
"""

import base64
import csv
from pathlib import Path

from yft.data.coco_io import read_json
from yft.project import ROOT, UserError

# The evaluate tasks' result files, and the figure each one writes beside it.
EXTRA_RESULTS = {
    "robustness": ("robustness.json", "robustness.png"),
    "compare": ("compare.json", "per_class_delta.png"),
    "drift": ("drift.json", "most_atypical.png"),
    "mine": ("mine.json", "top_uncertain.png"),
}


def data_uri(path, mime=None):
    """A file as a data: URI (None when it is missing), so the report needs no files beside it."""
    path = Path(path)
    if not path.is_file():
        return None
    mime = mime or {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}[path.suffix.lower()]
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def project_path(text):
    """A path as the tasks record it (relative to the project root, or absolute)."""
    path = Path(text)
    return (path if path.is_absolute() else ROOT / path).resolve()


def inside(text, folder):
    if not text:
        return False
    try:
        project_path(text).relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def load_optional(path):
    """A JSON file, or None when it is missing; a damaged one is a UserError naming it."""
    return read_json(path) if Path(path).is_file() else None


def looks_like_run(folder):
    """A folder that training or evaluation wrote to (the report goes into it)."""
    marks = ("run.json", "epochs.csv", "last.pth", "best.pth", "best.onnx")
    return any((folder / m).is_file() for m in marks) or any(folder.glob("eval_*/metrics.json"))


def settings(exp, run):
    """(record, note): run.json as train wrote it, else the current Exp's non-default settings."""
    record = load_optional(run / "run.json")
    if record is not None:
        return record, None
    return (
        {"settings": exp.non_default_settings(), "weights": None},
        "this run has no run.json (trained before the report existed): the settings shown are "
        "the current Exp's, which may differ from what the run used",
    )


def training(run):
    """Per-epoch rows (epoch, losses, lr, val mAP where validated) from epochs.csv, else
    history.json; [] when the run did not train here."""
    path = run / "epochs.csv"
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [{k: _number(v) for k, v in row.items()} for row in rows]
    return load_optional(run / "history.json") or []


def _number(text):
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def newest_eval(run, split):
    """The run's newest `invoke eval` folder for a split (eval_<split>_<backend>), or None."""
    found = [p.parent for p in run.glob(f"eval_{split}_*/metrics.json")]
    return max(found, key=lambda p: (p / "metrics.json").stat().st_mtime) if found else None


def extras(run):
    """{task: [result dicts with 'folder' and 'figure' added]} of the evaluate tasks whose
    recorded checkpoint (or compared model) lies in this run, newest first."""
    out = {}
    for task, (name, figure) in EXTRA_RESULTS.items():
        files = {p.resolve() for p in list(run.glob(f"*/{name}")) + list(run.parent.glob(f"*/{name}"))}
        found = []
        for path in files:
            result = load_optional(path)
            if not isinstance(result, dict):
                raise UserError(f"{path}: not a {task} result (expected a JSON object)")
            models = [result.get("checkpoint")]
            if task == "compare":
                models = [result.get("a", {}).get("source"), result.get("b", {}).get("source")]
            if any(inside(m, run) for m in models):
                result = dict(result, folder=path.parent, figure=data_uri(path.parent / figure))
                found.append((path.stat().st_mtime, result))
        if found:
            out[task] = [r for _, r in sorted(found, key=lambda x: -x[0])]
    return out


def exports(run):
    """Files that deploy the run: ONNX models, TensorRT engines and their JSON sidecars."""
    files = []
    for pattern in ("*.onnx", "*.engine", "*.plan", "*.onnx.parity.json", "*.engine.json"):
        files += sorted(run.glob(pattern))
    return [{"path": p, "size_mb": round(p.stat().st_size / 2**20, 2)} for p in files]


def releases(run):
    """Release folders (`invoke release`) made from a checkpoint of this run."""
    found = []
    for checks in sorted(run.parent.glob("release/*/checks.json")) + sorted(
        run.glob("release/*/checks.json")
    ):
        record = load_optional(checks)
        if isinstance(record, dict) and inside(record.get("checkpoint"), run):
            found.append(
                {
                    "path": checks.parent,
                    "version": record.get("version", checks.parent.name),
                    "checks": record.get("checks", []),
                }
            )
    return found
