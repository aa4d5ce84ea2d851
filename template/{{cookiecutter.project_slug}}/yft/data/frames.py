"""Video frames to JPEG images for labelling.

One frame every N frames (or N seconds); a frame that looks like the last one kept (difference
hash within a few bits: a static camera, a paused scene) is skipped. Names keep the video and
the timestamp, `<video>_t<seconds>s.jpg` (e.g. `gate3_t000012.480s.jpg`), so `invoke split
--group-by '^(.+)_t[0-9]'` keeps all frames of a video in one split.
"""

from pathlib import Path

from yft.data.imageio import dhash, hamming
from yft.io import write_atomic
from yft.project import UserError

GROUP_BY = r"^(.+)_t[0-9]+\.[0-9]+s\.jpg$"


def extract_frames(video, out, every=1.0, unit="seconds", max_bits=4, quality=95):
    """Write frames of `video` to `out`; returns (written paths, frames skipped as near-duplicates)."""
    import cv2

    video = Path(video)
    if not video.is_file():
        raise UserError(f"{video}: video not found")
    if unit not in ("frames", "seconds"):
        raise UserError(f"--unit {unit}: expected frames or seconds")
    if every <= 0:
        raise UserError(f"--every {every}: must be positive")
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise UserError(f"{video}: cannot open as a video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    if unit == "seconds" and fps <= 0:
        raise UserError(f"{video}: the video has no frame rate; use --unit frames")
    step = max(1, round(every * fps)) if unit == "seconds" else max(1, int(every))
    written, skipped, last, index = [], 0, None, 0
    try:
        while True:
            ok = cap.grab()
            if not ok:
                break
            if index % step == 0:
                ok, frame = cap.retrieve()
                if not ok:
                    break
                h = dhash(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
                if last is not None and hamming(h, last) <= max_bits:
                    skipped += 1
                else:
                    last = h
                    seconds = index / fps if fps > 0 else float(index)
                    path = Path(out) / f"{video.stem}_t{seconds:010.3f}s.jpg"
                    ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
                    write_atomic(path, jpg.tobytes())
                    written.append(path)
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise UserError(f"{video}: no frames could be decoded")
    return written, skipped
