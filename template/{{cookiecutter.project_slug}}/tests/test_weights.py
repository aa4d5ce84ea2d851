"""download-weights against a local HTTP server standing in for GitHub's release host:
full download, checksum recorded and enforced, resume of a partial file, offline message; and
where `invoke train` takes its weights from: the official ones by default (downloaded through
the same code, or one clear message offline with nothing written), --from-scratch with its own
hyperparameters, smoke runs without a download."""

import hashlib
import http.server
import io
import threading
from pathlib import Path

import pytest
import torch

from yft.project import UserError
from yft.train.checkpoint import load_checkpoint
from yft.train.run import train
from yft.train.weights import download_weights

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
CPU = torch.device("cpu")


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path, honouring 'Range: bytes=N-' like a real release host."""

    requests = []
    payload = PAYLOAD

    def do_GET(self):
        header = self.headers.get("Range")
        self.requests.append(header)
        start = int(header.split("=")[1].rstrip("-")) if header else 0
        body = self.payload[start:]
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    RangeHandler.requests, RangeHandler.payload = [], PAYLOAD
    yield f"http://127.0.0.1:{httpd.server_address[1]}/yolox_s.pth"
    httpd.shutdown()


def test_download_records_checksum_and_reuses_the_file(server, tmp_path):
    path = download_weights("yolox_s", tmp_path, url=server, progress=False)
    assert path.read_bytes() == PAYLOAD
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert f"{digest}  yolox_s.pth" in (tmp_path / "SHA256SUMS").read_text()
    download_weights("yolox_s", tmp_path, url=server, progress=False)
    assert len(RangeHandler.requests) == 1  # the cached file was verified, not fetched again


def test_partial_download_resumes_with_range(server, tmp_path):
    (tmp_path / "yolox_s.pth.part").write_bytes(PAYLOAD[:300_000])
    path = download_weights(
        "yolox_s", tmp_path, url=server, progress=False, sha256=hashlib.sha256(PAYLOAD).hexdigest()
    )
    assert path.read_bytes() == PAYLOAD
    assert RangeHandler.requests == ["bytes=300000-"]


def test_checksum_mismatch_is_refused(server, tmp_path):
    with pytest.raises(UserError, match="does not match the expected"):
        download_weights("yolox_s", tmp_path, url=server, progress=False, sha256="0" * 64)
    assert not (tmp_path / "yolox_s.pth").exists() and (tmp_path / "yolox_s.pth.corrupt").exists()


def test_offline_says_where_to_put_the_file(tmp_path):
    with pytest.raises(UserError, match=r"put it at .*yolox_nano.pth"):
        download_weights(
            "yolox_nano", tmp_path, url="http://127.0.0.1:9/yolox_nano.pth", timeout=2, progress=False
        )
    assert not (tmp_path / "yolox_nano.pth").exists()


@pytest.mark.parametrize(
    "url, expected",
    [
        ("file:///etc/hostname", "a local file needs no download"),
        ("ftp://example.org/w.pth", "give an http:// or https:// address"),
    ],
)
def test_urls_that_are_not_http_are_one_line(tmp_path, url, expected):
    with pytest.raises(UserError, match=expected):
        download_weights("yolox_nano", tmp_path, url=url)
    assert not list(tmp_path.iterdir())


def short_run(exp, **settings):
    base = {
        "input_size": (64, 64),
        "test_size": (64, 64),
        "max_epoch": 1,
        "warmup_epochs": 1,
        "no_aug_epochs": 0,
        "multiscale": False,
        "tracker": "none",
        "early_stop_patience": 0,
        "ckpt_interval": 0,
        "pretrained": "auto",
    }
    for key, value in (base | settings).items():
        setattr(exp, key, value)
    return exp


def test_train_offline_without_cached_weights_says_what_to_do_and_writes_nothing(
    sample_exp, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("YFT_WEIGHTS", str(cache))  # the mirror stays the refused address of conftest
    with pytest.raises(UserError) as info:
        train(short_run(sample_exp), CPU, batch_size=4, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert (
        f"no pretrained weights for {sample_exp.model_name}: {cache / sample_exp.model_name}.pth" in message
    )
    assert "--ckpt FILE" in message and "--from-scratch" in message and "download-weights" in message
    assert not cache.exists() and not Path(sample_exp.output_dir).exists()


def test_train_downloads_the_official_weights_resuming_a_partial_file(
    sample_exp, server, tmp_path, monkeypatch, capsys
):
    exp = short_run(sample_exp)
    buffer = io.BytesIO()
    torch.save({"model": exp.get_model().state_dict()}, buffer)  # YOLOX's release format
    RangeHandler.payload = buffer.getvalue()
    cache = tmp_path / "cache"
    cache.mkdir()
    name = f"{exp.model_name}.pth"
    (cache / f"{name}.part").write_bytes(RangeHandler.payload[:5000])  # an interrupted download
    monkeypatch.setenv("YFT_WEIGHTS", str(cache))
    monkeypatch.setenv("YFT_WEIGHTS_URL", server.rsplit("/", 1)[0])
    out = train(exp, CPU, batch_size=4, progress=False, max_iters_per_epoch=1)
    assert RangeHandler.requests == ["bytes=5000-"]
    assert (cache / name).read_bytes() == RangeHandler.payload
    digest = hashlib.sha256(RangeHandler.payload).hexdigest()
    assert f"{digest}  {name}" in (cache / "SHA256SUMS").read_text()
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(
        f"weights: {cache / name} (official COCO weights, downloaded, sha256 {digest[:12]}): loaded "
    )
    assert any(line.startswith("hyperparameters: finetune profile") for line in lines[:4])
    assert load_checkpoint(out / "last.pth")["profile"] == "finetune"


@pytest.mark.parametrize("how", ["--from-scratch", "pretrained=None"])
def test_from_scratch_uses_the_scratch_profile(sample_exp, server, capsys, monkeypatch, how):
    monkeypatch.setenv("YFT_WEIGHTS_URL", server.rsplit("/", 1)[0])
    exp = short_run(
        sample_exp,
        scratch_basic_lr_per_img=0.002,
        scratch_warmup_epochs=1,
        basic_lr_per_img=0.001,
        pretrained=None if how == "pretrained=None" else "auto",
    )
    out = train(
        exp, CPU, batch_size=4, progress=False, max_iters_per_epoch=1, from_scratch=how == "--from-scratch"
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("weights: none, random initialisation (")
    assert lines[2].startswith(
        "hyperparameters: scratch profile, lr 0.008 (basic_lr_per_img 0.002 x batch 4)"
    )
    assert load_checkpoint(out / "last.pth")["profile"] == "scratch"
    assert RangeHandler.requests == []  # nothing was downloaded


def test_smoke_run_never_downloads(sample_exp, server, capsys, monkeypatch):
    monkeypatch.setenv("YFT_WEIGHTS_URL", server.rsplit("/", 1)[0])
    train(short_run(sample_exp), CPU, batch_size=4, progress=False, smoke=True)
    assert "weights: none, random initialisation (smoke run;" in capsys.readouterr().out
    assert RangeHandler.requests == []
