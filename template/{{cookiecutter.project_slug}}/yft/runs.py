"""Training run folders: every `invoke train` gets its own, nothing of an earlier run is touched.

    runs/<exp>/train, train2, train3, ...   one folder per run (or --name NAME)
    runs/<exp>/latest                       points to the newest `invoke train` run
    runs/<exp>/smoke, smoke2, ...           `--smoke` runs (never `latest`: they are checks)

`resolve_run(exp)` is the one way every other task finds "the run" (eval, export, predict, bench,
release, ...): the named one, else the one `latest` points to.

The other tasks' results follow one rule too (`output_dir`, `output_file`), as Ultralytics does:

    default folder        a rerun writes to the next numbered sibling (eval_val_torch2, mine2, ...)
                          and says so; the readers (report, release) take the newest by time
    --output PATH         must not hold an earlier result: refused unless --force
    --force               write into the folder (default or --output) even if it holds one;
                          files of the same name are replaced, nothing else is deleted
"""

import os
import re
from pathlib import Path

from yft.io import temp_name, write_text
from yft.project import ROOT, UserError, relative

POINTER = "latest"
# Other tasks' output folders under runs/<exp>/ and the pointer itself: not usable as run names.
RESERVED = {POINTER, "bench", "check", "drift", "label_issues", "mine", "release", "tune"}
# ... and their numbered reruns (bench2, mine3, ...)
_RESERVED_NUMBERED = re.compile(r"^(bench|drift|label_issues|mine|predictions)([2-9]|[1-9][0-9]+)?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def runs_root(exp):
    """runs/<exp name>/: the home of this Exp's runs and of the other tasks' outputs."""
    return ROOT / exp.output_dir / exp.exp_name


def check_name(name):
    """A run name is one plain folder name (letters, digits, . _ -), not another task's folder."""
    if (
        not _NAME.match(name)
        or name in RESERVED
        or _RESERVED_NUMBERED.match(name)
        or name.startswith(("robustness_", "compare_", "eval_"))
    ):
        raise UserError(
            f"--name {name!r}: use letters, digits, '.', '_' or '-' (at most 100), "
            f"not one of {', '.join(sorted(RESERVED))}"
        )
    return name


def numbered(root, base):
    """Existing folders base, base2, base3, ... in run order."""
    found = []
    for path in root.glob(f"{base}*") if root.is_dir() else ():
        tail = path.name[len(base) :]
        if path.is_dir() and not path.is_symlink() and (tail == "" or (tail.isdigit() and int(tail) >= 2)):
            found.append((int(tail or 1), path))
    return [path for _, path in sorted(found)]


def new_run(exp, name=None, smoke=False):
    """Create the folder of a new run and return it: --name NAME (refused if it already holds
    files), else the next free train/trainN (smokeN for --smoke). `latest` then points to it."""
    root = runs_root(exp)
    root.mkdir(parents=True, exist_ok=True)
    if name:
        folder = root / check_name(name)
        if folder.is_dir() and any(folder.iterdir()):
            raise UserError(
                f"{relative(folder)}: a run of that name exists; continue it with "
                f"`invoke train --resume --name {name}` or pick another --name"
            )
        folder.mkdir(exist_ok=True)
    else:
        base = "smoke" if smoke else "train"
        existing = numbered(root, base)
        number = int(existing[-1].name[len(base) :] or 1) + 1 if existing else 1
        while True:  # mkdir is the lock: two runs started at once get different folders
            folder = root / (base if number == 1 else f"{base}{number}")
            try:
                folder.mkdir()
                break
            except FileExistsError:
                number += 1
    if not smoke:
        set_latest(exp, folder)
    return folder


def set_latest(exp, folder):
    """Point runs/<exp>/latest at `folder`: a relative symlink, or a one-line text file where the
    file system has no symlinks. Replaced atomically."""
    link = runs_root(exp) / POINTER
    tmp = temp_name(link)
    try:
        os.symlink(folder.name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        if link.is_symlink():
            link.unlink()
        write_text(link, folder.name + "\n")


def resolve_run(exp, name=None, smoke=False):
    """The run folder of this Exp: runs/<exp>/<name> when named, else the one `latest` points to
    (the newest smoke run with smoke=True). UserError when there is none."""
    root = runs_root(exp)
    if name:
        folder = root / check_name(name)
        if not folder.is_dir():
            known = ", ".join(p.name for p in numbered(root, "train") + numbered(root, "smoke")) or "none yet"
            raise UserError(f"{relative(folder)}: no such run (runs: {known})")
        return folder
    link = root / POINTER
    if smoke or not (link.is_symlink() or link.is_file()):
        # No pointer: a project from before run folders, or smoke runs. The highest number wins.
        runs = numbered(root, "smoke" if smoke else "train")
        if not runs:
            raise UserError(
                f"no {'smoke ' if smoke else ''}training run in {relative(root)}: "
                "run `invoke train` first or pass --ckpt"
            )
        return runs[-1]
    target = os.readlink(link) if link.is_symlink() else link.read_text(encoding="utf-8").strip()
    folder = root / target
    if not _NAME.match(target) or not folder.is_dir():
        raise UserError(
            f"{relative(link)} points to {target!r}, which is not a run folder here: "
            "run `invoke train`, or pass --ckpt"
        )
    return folder


def _holds_files(folder):
    return folder.is_dir() and any(folder.iterdir())


def output_dir(default, output=None, force=False, log=print, keep=()):
    """The folder a task writes its results to, created now (before the long work) and never one
    that holds an earlier result unless `force`:

    - `output` (the task's --output) holding files: UserError unless force;
    - else `default`, or when it holds files its next numbered sibling (name2, name3, ...; mkdir
      is the lock, so two runs started at once get different folders), logged.

    `keep`: names inside a folder that do not count as a result (a resume cache such as
    label-issues' folds/): a folder holding only those is continued, not numbered past."""
    from yft.io import ensure_dir

    def used(folder):
        return folder.is_dir() and any(p.name not in keep for p in folder.iterdir())

    if output is not None:
        folder = Path(output)
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder}: cannot write here (--output must be a folder, and this is a file)")
        if used(folder) and not force:
            raise UserError(
                f"{relative(folder)}: already holds results of an earlier run; pass --force "
                "to write over them, or choose another --output"
            )
        return ensure_dir(folder)
    default = Path(default)
    if force or not used(default):
        return ensure_dir(default)
    root, base = default.parent, default.name
    taken = numbered(root, base)
    number = int(taken[-1].name[len(base) :] or 1) + 1 if taken else 2
    while True:
        folder = root / f"{base}{number}"
        try:
            folder.mkdir()
            break
        except FileExistsError:
            number += 1
    log(
        f"{relative(default)} holds an earlier result: writing to {relative(folder)} "
        "(--force writes over the earlier one instead)"
    )
    return ensure_dir(folder)


def output_file(default, output=None, force=False, log=print):
    """The file a task writes (bench.json): `output` when given (an existing one only with force),
    else `default` inside the folder output_dir picks for default's folder."""
    if output is not None:
        target = Path(output)
        if target.is_dir():
            raise UserError(f"{target}: --output names a folder; give a file path")
        if target.exists() and not force:
            raise UserError(
                f"{relative(target)}: exists; pass --force to replace it, or choose another --output"
            )
        return target
    default = Path(default)
    return output_dir(default.parent, force=force, log=log) / default.name
