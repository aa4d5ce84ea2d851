"""Official COCO-pretrained YOLOX weights: download (resumable, checksummed) into a cache.

The files come from YOLOX's GitHub release. Megvii publishes no checksums, so the first
complete download records its sha256 in <cache>/SHA256SUMS and every later use is checked
against it (trust on first use); pass --sha256 to pin a value you already trust. An
interrupted download leaves <name>.part, which the next attempt continues with an HTTP Range
request. Offline, the error says where to put a file fetched elsewhere. $YFT_WEIGHTS_URL points
at a mirror of the release folder (a company server, a local copy).

`starting_weights` decides where a training run starts: --ckpt, else --from-scratch or the
Exp's `pretrained` (a file, None, or "auto": these official weights, downloaded when missing).
"""

import hashlib
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from yft.io import write_text
from yft.project import UserError

RELEASE = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0"
MODELS = ("yolox_nano", "yolox_tiny", "yolox_s", "yolox_m", "yolox_l", "yolox_x")
CHUNK = 1 << 20


class DownloadError(UserError):
    """The file could not be fetched (offline, refused, not found); the cache is unchanged."""

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason


def default_cache():
    """$YFT_WEIGHTS, else ~/.cache/yft/weights."""
    return Path(os.environ.get("YFT_WEIGHTS") or Path.home() / ".cache" / "yft" / "weights")


def release_url(name):
    """Where an official file is downloaded from: YOLOX's release, or the $YFT_WEIGHTS_URL mirror."""
    return f"{(os.environ.get('YFT_WEIGHTS_URL') or RELEASE).rstrip('/')}/{name}"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _recorded(cache):
    sums = cache / "SHA256SUMS"
    if not sums.is_file():
        return {}
    return dict(reversed(line.split(None, 1)) for line in sums.read_text().splitlines() if line.strip())


def _record(cache, name, digest):
    entries = _recorded(cache) | {name: digest}
    text = "".join(f"{d}  {n}\n" for n, d in sorted(entries.items()))
    write_text(cache / "SHA256SUMS", text)


def download_weights(model, cache=None, url=None, sha256=None, timeout=30, progress=True):
    """Path of <cache>/<model>.pth, downloading it if needed; verified against the checksum."""
    if model not in MODELS and url is None:
        raise UserError(f"--model {model}: use one of {', '.join(MODELS)} (or give --url)")
    scheme = urllib.parse.urlsplit(url).scheme.lower() if url else "https"
    if scheme == "file":
        local = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        raise UserError(
            f"--url {url}: a local file needs no download; train from it with `invoke train --ckpt {local}`"
        )
    if scheme not in ("http", "https"):
        raise UserError(f"--url {url}: give an http:// or https:// address")
    cache = Path(cache or default_cache())
    name = f"{model}.pth"
    target, part = cache / name, cache / f"{name}.part"
    expected = sha256 or _recorded(cache).get(name)
    url = url or release_url(name)

    if not target.is_file():
        _fetch(url, part, timeout, progress, target)
        part.replace(target)
    digest = sha256_of(target)
    if expected and digest != expected:
        bad = target.with_suffix(".pth.corrupt")
        target.replace(bad)
        raise UserError(
            f"{target}: sha256 {digest[:16]}... does not match the expected "
            f"{expected[:16]}...; moved it to {bad.name}, download again"
        )
    if not expected:
        _record(cache, name, digest)
    return target


def _fetch(url, part, timeout, progress, target):
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = response.status == 206
            if not resumed:
                have = 0  # the server ignored the Range header: start over
            total = response.length + have if response.length is not None else None
            part.parent.mkdir(parents=True, exist_ok=True)  # only once the server answered
            with (
                open(part, "ab" if resumed else "wb") as f,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=target.name,
                    disable=not progress,
                ) as bar,
            ):
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # already complete
            return
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}", f"{url}: HTTP {err.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"cannot download {url} ({reason}). Offline? Fetch the file elsewhere and put it at "
            f"{target} (or pass --ckpt PATH to train)",
            f"{url}: {reason}",
        ) from None


def backup_weights(path, out_dir):
    """Keep a copy of the starting weights with the run (hard link where possible), as the
    guide's pre-training checklist asks; returns the copy's path."""
    path, backup = Path(path), Path(out_dir) / f"pretrained_{Path(path).name}"
    if backup.exists():
        return backup
    try:
        os.link(path, backup)
    except OSError:
        shutil.copyfile(path, backup)
    return backup


@dataclass
class Start:
    """Where a run's weights come from: path (None: random weights) and why."""

    path: Path = None
    source: str = "random initialisation"

    @property
    def profile(self):
        """The hyperparameter profile: finetune from weights, or scratch without them."""
        return "finetune" if self.path else "scratch"


def starting_weights(exp, ckpt=None, from_scratch=False, smoke=False, progress=True):
    """The Start of a training run (see the module docstring); downloads the official weights
    when exp.pretrained is "auto" and they are not cached. A smoke run never downloads: without
    cached weights it checks the pipeline from random weights."""
    if ckpt:
        return Start(Path(ckpt), "--ckpt")
    if from_scratch:
        return Start(None, "random initialisation (--from-scratch)")
    pretrained = exp.pretrained
    if pretrained is None or str(pretrained).strip().lower() in ("", "none"):  # --set pretrained=none
        return Start(None, "random initialisation (the Exp's pretrained is None)")
    if pretrained != "auto":
        path = Path(pretrained)
        if not path.is_file():
            raise UserError(
                f"{path}: the Exp's pretrained checkpoint is not there (set pretrained "
                'to a file, "auto" or None, or pass --ckpt FILE / --from-scratch)'
            )
        return Start(path, "the Exp's pretrained")
    if exp.model_name not in MODELS:
        raise UserError(
            f'pretrained "auto": YOLOX publishes no weights for {exp.model_name!r}; '
            "pass --ckpt FILE or --from-scratch"
        )
    cached = default_cache() / f"{exp.model_name}.pth"
    if smoke and not cached.is_file():
        return Start(None, f"random initialisation (smoke run; {cached} is not downloaded yet)")
    was_cached = cached.is_file()
    try:
        path = download_weights(exp.model_name, progress=progress)
    except DownloadError as err:
        raise UserError(
            f"no pretrained weights for {exp.model_name}: {cached} is not in the cache and the "
            f"download failed ({err.reason}). Put the file there (from {release_url(cached.name)}, e.g. "
            "with `invoke download-weights` on a machine that is online), or train with --ckpt FILE "
            "(other weights) or --from-scratch (random weights, far weaker on small datasets)"
        ) from None
    return Start(path, "official COCO weights, " + ("cached" if was_cached else "downloaded"))
