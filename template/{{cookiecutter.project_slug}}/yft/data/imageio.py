"""Image helpers for the dataset tools: full decodes, perceptual hashes, RGB copies.
(Sizes from headers and the list of image suffixes are in yft/io.py.)
"""


def dhash(gray):
    """64-bit difference hash of a grayscale uint8 array (near-duplicates differ in few bits)."""
    import cv2
    import numpy as np

    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


# A 9x8 thumbnail whose grey levels span less than this has no structure to hash: blank frames,
# flat backgrounds and solid fills all hash alike whatever their colour, so comparing their hashes
# would report unrelated images as near-duplicates. Byte-identical copies are still caught by sha1.
FEATURELESS_RANGE = 8


def is_featureless(gray):
    """True when a grayscale image has too little structure for dhash to tell it from others."""
    import cv2

    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA)
    return int(small.max()) - int(small.min()) < FEATURELESS_RANGE


def hamming(a, b):
    return bin(a ^ b).count("1")


def decode_check(path):
    """Fully decode one image with Pillow (EXIF orientation applied).

    Returns a dict: size (width, height) as displayed, raw_size (before orientation), mode,
    orientation, sha1 of the bytes, dhash (left out for a featureless image: see
    FEATURELESS_RANGE); or {"error": "..."} when the file does not decode.
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
    info = {
        "size": (gray.shape[1], gray.shape[0]),
        "raw_size": raw_size,
        "mode": mode,
        "orientation": orientation,
        "sha1": hashlib.sha1(data).hexdigest(),
    }
    if not is_featureless(gray):
        info["dhash"] = dhash(gray)
    return info


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
