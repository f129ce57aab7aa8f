"""Downloads that can neither hang nor fill the disk, and leave nothing when stopped (hostile round 3):
a trickling server meets a stall floor and an overall deadline, --timeout is validated, zip
members are checked (sizes, links, clashes, long names, encryption, methods) before extracting,
and SIGTERM / SIGHUP / Ctrl-C remove the hidden .part folder (exit 128 + signal)."""

from __future__ import annotations

import http.server
import io
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from data import download as dl
from data.catalogue import REFERENCE_DATASET_MAX
from data.download import DownloadError, download_dataset, fetch_file, main

ROOT = Path(__file__).resolve().parents[1]


class _Trickle(http.server.BaseHTTPRequestHandler):
    """/trickle: promises a MiB, sends one byte every ``server.gap`` seconds; /zip: ``server.body``."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/zip"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.server.body)))
            self.end_headers()
            self.wfile.write(self.server.body)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        try:
            for _ in range(1 << 20):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(self.server.gap)
        except OSError:
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    s.daemon_threads = True
    s.gap, s.body = 0.02, b""
    threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield s
    s.shutdown()
    s.server_close()


def _url(s: http.server.ThreadingHTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{s.server_address[1]}{path}"


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_trickling_server_hits_the_stall_floor(tmp_path, server):
    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match="stalled"):
        fetch_file(_url(server, "/trickle"), tmp_path / "w.pth", timeout=5, progress=False, min_rate=1000,
                   stall_window=0.5)
    assert time.perf_counter() - t0 < 5 and _tree(tmp_path) == []


def test_a_slow_download_meets_the_overall_deadline(tmp_path, server):
    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match="not finished after"):
        fetch_file(_url(server, "/trickle"), tmp_path / "w.pth", timeout=5, progress=False, min_rate=0,
                   deadline=0.5)
    assert time.perf_counter() - t0 < 5 and _tree(tmp_path) == []


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "1e9"])
def test_timeout_values_are_validated(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as e:
        main(["monet2photo", "--output", str(tmp_path / "d"), "--timeout", value])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert _tree(tmp_path) == []
    with pytest.raises(DownloadError):
        fetch_file("http://127.0.0.1:9/x", tmp_path / "x", timeout=float(value), progress=False)
    assert _tree(tmp_path) == []


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)
    return info


LAYOUT = [(f"ds/{s}/0.jpg", b"img") for s in ("trainA", "trainB", "testA", "testB")]
BOMB = _zip([*LAYOUT, ("ds/trainA/bomb.jpg", b"\0" * (100 << 20))])  # 100 MiB of zeros in ~100 KiB
CASES = {
    "bomb": BOMB,
    "symlink": _zip([*LAYOUT, (_symlink("ds/trainA/link.jpg"), b"/etc/passwd")]),
    "clash": _zip([*LAYOUT, ("ds/trainA/x", b"file"), ("ds/trainA/x/y.jpg", b"below it")]),
    "long-name": _zip([*LAYOUT, ("ds/trainA/" + "n" * 300 + ".jpg", b"img")]),
    # marked by _mark: flag bit 0 (encrypted) / compression method 99 (AES) in both headers
    "encrypted": _zip([*LAYOUT, ("ds/trainA/secret.jpg", b"img")]),
    "method-99": _zip([*LAYOUT, ("ds/trainA/aes.jpg", b"img")]),
}


def _mark(blob: bytes, case: str) -> bytes:
    zf = zipfile.ZipFile(io.BytesIO(blob))
    info = zf.getinfo("ds/trainA/secret.jpg" if case == "encrypted" else "ds/trainA/aes.jpg")
    out = bytearray(blob)
    # patch the local header (at header_offset) and the central directory entry of this member
    local = info.header_offset
    central = blob.find(b"PK\x01\x02", 0)
    while central != -1:
        n = int.from_bytes(blob[central + 28: central + 30], "little")
        if blob[central + 46: central + 46 + n] == info.filename.encode():
            break
        central = blob.find(b"PK\x01\x02", central + 4)
    if case == "encrypted":
        for off in (local + 6, central + 8):
            out[off] |= 0x1
    else:
        for off in (local + 8, central + 10):
            out[off: off + 2] = (99).to_bytes(2, "little")
    return bytes(out)


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_zips_are_refused_before_extracting(tmp_path, server, case):
    blob = CASES[case]
    server.body = _mark(blob, case) if case in ("encrypted", "method-99") else blob
    out = tmp_path / "datasets"
    with pytest.raises(DownloadError) as e:
        download_dataset("ds", out, url=_url(server, "/zip"))
    assert "free some space" not in str(e.value)
    assert _tree(tmp_path) == []  # nothing extracted, no .part folder, no output folder


def test_a_zip_larger_than_the_free_space_is_refused(tmp_path, server, monkeypatch):
    server.body = _zip(LAYOUT)
    real = dl.shutil.disk_usage
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: real(p)._replace(free=4))
    with pytest.raises(DownloadError, match="free some space"):
        download_dataset("ds", tmp_path / "datasets", url=_url(server, "/zip"))
    assert _tree(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_signal_during_download_leaves_no_part_folder(tmp_path, server, sig, code):
    out = tmp_path / "datasets"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "data.download", "ds", "--output", str(out), "--url",
                          _url(server, "/trickle.zip")], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not list(out.glob(".ds.*.part/*.part")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(out.glob(".ds.*.part/*.part")), "the download never started"
        p.send_signal(sig)
        assert p.wait(timeout=30) == code, p.stderr.read()
    finally:
        p.kill()
        p.wait()
    assert _tree(tmp_path) == []


def test_a_named_dataset_zip_past_its_expected_size_is_refused(tmp_path, server, monkeypatch):
    # horse2zebra from a mirror: its entry keeps the expected size of the reference's zip
    layout = [(f"horse2zebra/{s}/0.jpg", b"i" * 600) for s in ("trainA", "trainB", "testA", "testB")]
    server.body = _zip(layout)
    entry = dl.NAMES["horse2zebra"]
    assert entry.max_bytes == REFERENCE_DATASET_MAX and dl.NAMES["cityscapes"].max_bytes == 0
    monkeypatch.setitem(dl.NAMES, "horse2zebra", entry._replace(max_bytes=2000))  # 2400 bytes declared
    with pytest.raises(DownloadError, match="more than this download can hold"):
        download_dataset("horse2zebra", tmp_path / "datasets", url=_url(server, "/zip"))
    assert _tree(tmp_path) == []
    monkeypatch.setitem(dl.NAMES, "horse2zebra", entry._replace(max_bytes=2400))  # exactly its size: fine
    got = download_dataset("horse2zebra", tmp_path / "datasets", url=_url(server, "/zip"))
    assert (got / "trainA" / "0.jpg").read_bytes() == b"i" * 600


def test_a_zip_member_larger_than_any_image_is_refused(tmp_path, server, monkeypatch):
    server.body = _zip([*LAYOUT, ("ds/trainA/big.jpg", b"\0" * 5000)])
    monkeypatch.setattr(dl, "MAX_MEMBER", 4096)
    with pytest.raises(DownloadError, match="big.jpg"):
        download_dataset("ds", tmp_path / "datasets", url=_url(server, "/zip"))
    assert _tree(tmp_path) == []


def test_the_released_style_transfer_sets_download_into_one_folder_or_say_where_to_put_them(tmp_path, server,
                                                                                           monkeypatch):
    from data.download import download

    server.body = b"T7" + bytes(range(256)) * 4  # stands in for a Torch7 file (checked: not empty, not HTML)
    entry = dl.NAMES["adain_pretrained"]
    assert [f for _, f in entry.files] == ["vgg_normalised.t7", "decoder.t7"]
    local = tuple((_url(server, f"/zip/{f}"), f) for _, f in entry.files)
    monkeypatch.setitem(dl.NAMES, "adain_pretrained", entry._replace(url=local[0][0], files=local))
    got = download("adain_pretrained", tmp_path / "checkpoints", progress=False)
    assert got.done and sorted(p.name for p in got.path.iterdir()) == ["decoder.t7", "vgg_normalised.t7"]
    assert (got.path / "decoder.t7").read_bytes() == server.body
    assert _tree(tmp_path / "checkpoints") == ["adain_pretrained", "adain_pretrained/decoder.t7",
                                               "adain_pretrained/vgg_normalised.t7"]  # no .part left
    assert not download("adain_pretrained", tmp_path / "checkpoints", progress=False).done  # kept
    server.body = b"<html>not found</html>" + b" " * 100
    (got.path / "decoder.t7").unlink()
    with pytest.raises(DownloadError, match="error page"):
        download("adain_pretrained", tmp_path / "checkpoints", progress=False)
    assert sorted(p.name for p in got.path.iterdir()) == ["vgg_normalised.t7"]  # the kept one, nothing half-written
    with pytest.raises(DownloadError, match="several files"):
        download("adain_pretrained", tmp_path / "checkpoints", url="http://mirror/x", progress=False)
    with pytest.raises(DownloadError, match=r"feature_invertor_conv5_1\.t7 .*put them in .*wct_pretrained"):
        download("wct_pretrained", tmp_path / "checkpoints", progress=False)
