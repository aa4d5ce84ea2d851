"""Shared file helpers for every stage: atomic writes, and which files are images and their size.

Writing: the one place that writes files, atomically, with the user's umask, cleaning up after kills.

Every writer goes through a temporary file beside the target, named
`.<name>.<pid>.<random>.yft-tmp<suffix>`, then `os.replace`s it into place, so a crash leaves the
old file or the new one, never half of either. Temporary files are created with mode 0o666 minus
the umask (as `open()` would), not 0600 as `tempfile.mkstemp` does; a file that already exists keeps
its own mode. `clean_stale_temps` removes what a killed process left behind.

Images: one list of image suffixes (`IMAGE_SUFFIXES`, every one of them readable by OpenCV, which YOLOX
uses to load images) and one way to find images (`list_images`), so that convert, split, mine,
predict and the deploy tools all agree on what an image is.

`image_size` reads only the first bytes of a file (JPEG, PNG, GIF, BMP; anything else through
Pillow, which also stops at the header). It applies the EXIF orientation tag the way OpenCV's
`imread` (and so YOLOX's loader) does: orientations 5-8 swap width and height, so the size stored
in COCO files is the size of the image the model will see. It is our own because it is faster
than `imagesize` (which ignores the orientation tag) and Pillow's lazy open, measured ~12 us
against ~19 us and ~38 us per image (benchmarks/README.md).
"""

import json
import os
import re
import secrets
import shutil
import struct
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


def ensure_dir(folder):
    """Create `folder` (and parents) and prove it is writable, before a long job writes into it;
    a one-line UserError otherwise (/proc/x, a path under a file, /dev/null, no permission)."""
    folder = Path(folder)
    probe = temp_name(folder / "probe")
    _prepare_dir(probe)
    os.close(_create(probe))
    probe.unlink()
    return folder


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
    for path in folder.rglob(f".*{TEMP_MARK}*") if recursive else folder.glob(f".*{TEMP_MARK}*"):
        match = _TEMP_NAME.match(path.name)
        if match and path.is_file() and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# ---------------------------------------------------------------- images

# OpenCV refuses images above 2**30 pixels (CV_IO_MAX_IMAGE_PIXELS); a header claiming more is
# broken or hostile (60000x60000 would need 10 GB decoded).
MAX_PIXELS = 2**30
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageProblem(Exception):
    """The file is not a readable image (zero bytes, truncated, another format)."""


def is_image_name(name):
    return str(name).lower().endswith(IMAGE_SUFFIXES)


def list_images(folder, recursive=True, relative=False):
    """The image files under `folder`, sorted: Paths, or with relative=True posix paths relative
    to the folder ("sub/a.jpg"). Hidden folders (".git", ".cache") are skipped."""
    folder = Path(folder)
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        rel = os.path.relpath(top, folder)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        found += [prefix + name for name in files if name.lower().endswith(IMAGE_SUFFIXES)]
    found.sort()
    return found if relative else [folder / rel for rel in found]


def _exif_orientation(tiff):
    """Orientation tag (1-8) from a TIFF-structured EXIF block, 1 when absent."""
    if len(tiff) < 8:
        return 1
    endian = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if endian is None:
        return 1
    (offset,) = struct.unpack(endian + "I", tiff[4:8])
    if offset + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(endian + "H", tiff[offset : offset + 2])
    for i in range(count):
        entry = offset + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        tag, kind = struct.unpack(endian + "HH", tiff[entry : entry + 4])
        if tag == 0x0112:
            value = struct.unpack(endian + "H", tiff[entry + 8 : entry + 10])[0]
            return value if 1 <= value <= 8 else 1
    return 1


def _more(fd, buf, need):
    """buf extended from the file (it holds the file's first len(buf) bytes) to at least `need`
    bytes, or to the end of the file when it is shorter."""
    while len(buf) < need:
        chunk = os.pread(fd, max(need - len(buf), 65536), len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def _jpeg_size(fd, buf):
    """(width, height, orientation) of a JPEG, reading only its marker segments. `buf` holds the
    first bytes of the file (usually all the segments before the frame header); the rest is read
    with pread only when a segment lies beyond it."""
    orientation = 1
    pos = 2
    while True:
        if pos + 4 > len(buf):
            buf = _more(fd, buf, pos + 4)
            if pos + 4 > len(buf):
                raise ImageProblem("truncated JPEG header")
        if buf[pos] != 0xFF:
            raise ImageProblem("corrupt JPEG marker")
        while buf[pos + 1] == 0xFF:  # fill bytes
            pos += 1
            if pos + 4 > len(buf):
                buf = _more(fd, buf, pos + 4)
                if pos + 4 > len(buf):
                    raise ImageProblem("truncated JPEG header")
        marker = buf[pos + 1]
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        if length < 2:
            raise ImageProblem("corrupt JPEG segment")
        pos += 4
        if marker == 0xE1 and orientation == 1:
            buf = _more(fd, buf, pos + length - 2)
            data = buf[pos : pos + length - 2]
            if data[:6] == b"Exif\x00\x00":
                orientation = _exif_orientation(data[6:])
            pos += length - 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 5 > len(buf):
                buf = _more(fd, buf, pos + 5)
                if pos + 5 > len(buf):
                    raise ImageProblem("truncated JPEG header")
            height = (buf[pos + 1] << 8) | buf[pos + 2]
            width = (buf[pos + 3] << 8) | buf[pos + 4]
            return width, height, orientation
        pos += length - 2


def image_size(path):
    """(width, height) as displayed (EXIF orientation applied); ImageProblem if unreadable."""
    try:
        # os.open/os.read: no buffered file object, about half the cost of open() per image
        fd = os.open(path, os.O_RDONLY)
        try:
            head = os.read(fd, 4096)
            if not head:
                raise ImageProblem("empty file (0 bytes)")
            if head[:2] == b"\xff\xd8":
                width, height, orientation = _jpeg_size(fd, head)
            elif head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
                width, height = struct.unpack(">II", head[16:24])
                orientation = 1
            elif head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
                width, height = struct.unpack("<HH", head[6:10])
                orientation = 1
            elif head[:2] == b"BM" and len(head) >= 26:
                width, height = struct.unpack("<ii", head[18:26])
                width, height, orientation = abs(width), abs(height), 1
            else:
                return _pil_size(path)
        finally:
            os.close(fd)
    except OSError as err:
        raise ImageProblem(err.strerror or str(err)) from None
    if width <= 0 or height <= 0:
        raise ImageProblem("image header gives a zero size")
    return (height, width) if orientation >= 5 else (width, height)


def _pil_size(path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except UnidentifiedImageError:
        raise ImageProblem("not an image file") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageProblem(f"unreadable image ({err})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
