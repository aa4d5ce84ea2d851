"""The one place that writes files: atomically, with the user's umask, and cleaning up after kills.

Every writer goes through a temporary file beside the target, named
`.<name>.<pid>.<random>.yft-tmp<suffix>`, then `os.replace`s it into place, so a crash leaves the
old file or the new one, never half of either. Temporary files are created with mode 0o666 minus
the umask (as `open()` would), not 0600 as `tempfile.mkstemp` does; a file that already exists keeps
its own mode. `clean_stale_temps` removes what a killed process left behind.
"""

import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

from yft.project import UserError

TEMP_MARK = ".yft-tmp"
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}" + re.escape(TEMP_MARK) + r"(\.[^.]*)?$")


def temp_name(path, suffix=""):
    """Name of a fresh temporary file for `path` (same folder, so os.replace stays atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_MARK}{suffix}")


def _prepare_dir(path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{path}: cannot write here ({path.parent} exists and is not a folder)") from None
    except PermissionError:
        raise UserError(f"{path}: cannot write here (permission denied creating {path.parent})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot write here ({err.strerror or err})") from None


def _check_target(path):
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file")
    if path.exists() and not path.is_file():
        raise UserError(f"{path}: is not a regular file (a device or pipe); give a file path")


def _create(tmp):
    """Create `tmp` exclusively; mode 0o666 lets the kernel apply the umask."""
    try:
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except PermissionError:
        raise UserError(f"{tmp.parent}: cannot write here (permission denied)") from None
    except OSError as err:
        raise UserError(f"{tmp.parent}: cannot write here ({err.strerror or err})") from None


def _finish(tmp, path):
    """Keep an existing target's mode, then move the finished temporary file into place."""
    try:
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
    except FileNotFoundError:
        pass
    os.replace(tmp, path)


@contextmanager
def atomic_path(path, keep_suffix=True):
    """Yield a temporary path for writers that need a file name (video writers, np.save); on success
    it replaces `path`, on any failure it is removed. keep_suffix keeps the extension so that
    writers choosing the format from it (cv2.VideoWriter, np.save) still do."""
    path = Path(path)
    _prepare_dir(path)
    _check_target(path)
    tmp = temp_name(path, path.suffix if keep_suffix else "")
    os.close(_create(tmp))
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _finish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path, data: bytes):
    """Write bytes to `path` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    _prepare_dir(path)
    _check_target(path)
    tmp = temp_name(path)
    fd = _create(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _finish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path, text):
    """Write UTF-8 text atomically."""
    return write_atomic(path, text.encode("utf-8"))


def write_json(path, obj, indent=None):
    """Write JSON atomically (UTF-8, non-ASCII kept as is)."""
    return write_atomic(path, json.dumps(obj, ensure_ascii=False, indent=indent).encode("utf-8"))


def write_png(path, img):
    """Encode a BGR image as PNG and write it atomically; returns the path."""
    import cv2

    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise UserError(f"{path}: could not encode the image as PNG")
    return write_atomic(path, data.tobytes())


def write_figure(path, fig):
    """Render a matplotlib figure to PNG in memory, write it atomically, close the figure."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return write_atomic(path, buffer.getvalue())


def copy_atomic(source, target):
    """Copy a file so that `target` is either absent/old or complete, never half written."""
    target = Path(target)
    with atomic_path(target, keep_suffix=False) as tmp, open(source, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return target


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(folder, recursive=False):
    """Remove temporary files that a killed writer left in `folder`; files of a live process
    (same pid still running) are kept. Returns the removed paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in (folder.rglob(f".*{TEMP_MARK}*") if recursive else folder.glob(f".*{TEMP_MARK}*")):
        match = _TEMP_NAME.match(path.name)
        if match and path.is_file() and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
