"""download-weights against a local HTTP server standing in for GitHub's release host:
full download, checksum recorded and enforced, resume of a partial file, offline message."""

import hashlib
import http.server
import threading

import pytest

from yft.project import UserError
from yft.train.weights import download_weights

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path, honouring 'Range: bytes=N-' like a real release host."""

    requests = []

    def do_GET(self):
        header = self.headers.get("Range")
        self.requests.append(header)
        start = int(header.split("=")[1].rstrip("-")) if header else 0
        body = PAYLOAD[start:]
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
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
    RangeHandler.requests = []
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
    path = download_weights("yolox_s", tmp_path, url=server, progress=False,
                            sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert path.read_bytes() == PAYLOAD
    assert RangeHandler.requests == ["bytes=300000-"]


def test_checksum_mismatch_is_refused(server, tmp_path):
    with pytest.raises(UserError, match="does not match the expected"):
        download_weights("yolox_s", tmp_path, url=server, progress=False, sha256="0" * 64)
    assert not (tmp_path / "yolox_s.pth").exists() and (tmp_path / "yolox_s.pth.corrupt").exists()


def test_offline_says_where_to_put_the_file(tmp_path):
    with pytest.raises(UserError, match=r"put it at .*yolox_nano.pth"):
        download_weights("yolox_nano", tmp_path, url="http://127.0.0.1:9/yolox_nano.pth",
                         timeout=2, progress=False)
    assert not (tmp_path / "yolox_nano.pth").exists()


@pytest.mark.parametrize("url, expected", [("file:///etc/hostname", "a local file needs no download"),
                                           ("ftp://example.org/w.pth", "give an http:// or https:// address")])
def test_urls_that_are_not_http_are_one_line(tmp_path, url, expected):
    with pytest.raises(UserError, match=expected):
        download_weights("yolox_nano", tmp_path, url=url)
    assert not list(tmp_path.iterdir())
