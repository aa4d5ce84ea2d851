"""Where things are in this project, and how the Exp file is found and loaded."""

import ast
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class UserError(Exception):
    """A problem the user can fix; tasks print its message on one line and exit non-zero."""

    def __init__(self, message=""):
        # Raised in a DataLoader worker, torch re-raises it in the training process as
        # UserError("Caught UserError in DataLoader worker process N.\nOriginal Traceback ...
        # yft.project.UserError: <message>"): keep the user's one line, not the traceback.
        if isinstance(message, str) and message.startswith("Caught UserError in DataLoader"):
            marker = f"{__name__}.UserError: "
            message = (
                message[message.rindex(marker) + len(marker) :].strip() if marker in message else message
            )
        super().__init__(message)


def read_pyproject():
    """pyproject.toml as a dict: tomllib (Python >= 3.11) or its backport tomli (3.10; a
    dependency there, and the first thing `invoke setup` installs)."""
    try:
        import tomllib
    except ImportError:
        try:
            import tomli as tomllib
        except ImportError:
            raise UserError(
                "Python 3.10 reads pyproject.toml with tomli: run `invoke setup` (or pip install tomli)"
            ) from None
    path = ROOT / "pyproject.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: {err}") from None


def default_exp_path():
    """The Exp named in pyproject.toml's [tool.yft] table."""
    return ROOT / read_pyproject()["tool"]["yft"]["exp"]


def load_exp(path=None, overrides=()):
    """Load the Exp (the project's one settings source) and apply `key=value` overrides."""
    from yolox.exp import get_exp

    path = Path(path) if path else default_exp_path()
    if not path.is_file():
        raise UserError(f"{path}: Exp file not found")
    check_exp_source(path)
    try:
        exp = get_exp(str(path))
    except ImportError as err:
        # yolox hides the real error behind "doesn't contain class named 'Exp'": show that one,
        # with the Exp file's line where it happened.
        real = err.__cause__ or err.__context__ or err
        raise UserError(
            f"{path}{_line_in(real, path)}: cannot load the Exp ({type(real).__name__}: {real})"
        ) from err
    apply_overrides(exp, overrides)
    try:
        exp.check()
    except ValueError as err:
        raise UserError(f"{path}: {err}") from err
    exp.exp_file = str(path)
    return exp


CONFLICT = re.compile(r"^(<{7}|={7}|>{7})( |$)")


def check_exp_source(path):
    """The Exp file parses: leftover conflict markers (after `copier update`) and syntax errors
    are named with their line, before yolox's import hides them."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        if CONFLICT.match(line):
            raise UserError(
                f"{path}:{number}: a conflict marker ({line[:7]}) is left from `copier update`: "
                "keep the side you want and delete the marker lines"
            )
    try:
        compile(text, str(path), "exec")
    except SyntaxError as err:
        raise UserError(f"{path}:{err.lineno}: {err.msg}") from None


def _line_in(err, path):
    """':N' for the deepest traceback frame of `err` inside `path`, else ''."""
    import traceback

    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == Path(path)]
    return f":{frames[-1].lineno}" if frames else ""


def apply_overrides(exp, overrides):
    """Set Exp attributes from 'key=value' strings, parsed as Python literals where possible
    ("640" -> 640, "640,640" -> (640, 640), "false" -> False) and checked against the type of
    the current value."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise UserError(f"--set {item!r}: expected key=value")
        if not hasattr(exp, key):
            raise UserError(f"--set {key}: the Exp has no setting named {key!r}")
        current = getattr(exp, key)
        setattr(exp, key, _convert(key, text.strip(), current))


def _convert(key, text, current):
    if isinstance(current, str) or (current is None and not text):
        return text
    lowered = text.lower()
    if lowered in ("true", "false", "none"):
        value = {"true": True, "false": False, "none": None}[lowered]
    else:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UserError(
                f"--set {key}={text}: not a value (numbers, tuples such as 640,640, true/false)"
            ) from None
    if isinstance(current, tuple):
        value = tuple(value) if isinstance(value, (list, tuple)) else (value,) * len(current)
    elif isinstance(current, bool) and not isinstance(value, bool):
        raise UserError(f"--set {key}={text}: expected true or false")
    elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif current is not None and not isinstance(value, type(current)):
        raise UserError(f"--set {key}={text}: expected a {type(current).__name__} like {current!r}")
    return value


def run_dir(exp, name=None):
    """The folder of one run: runs/<exp_name>/<name or 'train'>."""
    return ROOT / exp.output_dir / exp.exp_name / (name or "train")


def relative(path):
    """A path for messages: relative to the project root when inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return os.fspath(path)
