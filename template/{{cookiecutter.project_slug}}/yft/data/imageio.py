"""Image helpers for the dataset tools: sizes from file headers, full decodes, perceptual hashes.

`header_size` reads only the first bytes of a file (JPEG, PNG, GIF, BMP, WebP; anything else
through Pillow, which also stops at the header). It applies the EXIF orientation tag the way
OpenCV's `imread` (and so YOLOX's loader) does: orientations 5-8 swap width and height, so the
size we store in COCO files is the size of the image the model will see.
"""

import os
import struct

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageProblem(Exception):
    """The file is not a readable image (zero bytes, truncated, another format)."""


def is_image_name(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


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
    (count,) = struct.unpack(endian + "H", tiff[offset:offset + 2])
    for i in range(count):
        entry = offset + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        tag, kind = struct.unpack(endian + "HH", tiff[entry:entry + 4])
        if tag == 0x0112:
            value = struct.unpack(endian + "H", tiff[entry + 8:entry + 10])[0]
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
            data = buf[pos:pos + length - 2]
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


def header_size(path):
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


def dhash(gray):
    """64-bit difference hash of a grayscale uint8 array (near-duplicates differ in few bits)."""
    import cv2
    import numpy as np

    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a, b):
    return bin(a ^ b).count("1")


def decode_check(path):
    """Fully decode one image with Pillow (EXIF orientation applied).

    Returns a dict: size (width, height) as displayed, raw_size (before orientation), mode,
    orientation, sha1 of the bytes, dhash; or {"error": "..."} when the file does not decode.
    """
    import hashlib

    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        data = open(path, "rb").read()
    except OSError as err:
        return {"error": f"cannot read ({err.strerror or err})"}
    if not data:
        return {"error": "empty file (0 bytes)"}
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            raw_size = im.size
            mode = im.mode
            orientation = im.getexif().get(0x0112, 1)
            im.load()  # full decode: truncated files raise here
            shown = ImageOps.exif_transpose(im)
            gray = np.asarray(shown.convert("L"))
    except UnidentifiedImageError:
        return {"error": "not an image file"}
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return {"error": f"does not decode ({err})"}
    return {"size": (gray.shape[1], gray.shape[0]), "raw_size": raw_size, "mode": mode,
            "orientation": orientation, "sha1": hashlib.sha1(data).hexdigest(), "dhash": dhash(gray)}


def convert_to_rgb(src, dst):
    """Write an 8-bit RGB copy of `src` (CMYK, RGBA, 16-bit, palette, grayscale) to `dst`,
    with the EXIF orientation applied to the pixels. The source is never touched."""
    import io

    import numpy as np
    from PIL import Image, ImageOps

    from yft.io import write_atomic

    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float64)
            scale = 1.0 if arr.max() <= 255 else 1.0 / 257.0  # 16-bit full range to 8 bits
            im = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8))
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            background = Image.new("RGB", im.size, (114, 114, 114))  # YOLOX's padding grey
            background.paste(im, mask=im.getchannel("A"))
            im = background
        im = im.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    write_atomic(dst, buf.getvalue())
