"""data.download against a local HTTP server on 127.0.0.1: layouts, names, and nothing left behind on failure."""

from __future__ import annotations

import errno
import functools
import hashlib
import http.server
import io
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from data.catalogue import CYCLEGAN_MODELS, FAST_NEURAL_STYLES, NAMES, find_pretrained
from data.download import DownloadError, _swap_in, download_dataset, fetch_file, main, resolve
from data.image_io import load_rgb

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_MODELS = (  # scripts/download_cyclegan_model.sh of the public CycleGAN reference
    "apple2orange", "orange2apple", "summer2winter_yosemite", "winter2summer_yosemite", "horse2zebra", "zebra2horse",
    "monet2photo", "style_monet", "style_cezanne", "style_ukiyoe", "style_vangogh", "sat2map", "map2sat",
    "cityscapes_photo2label", "cityscapes_label2photo", "facades_photo2label", "facades_label2photo",
    "iphone2dslr_flower",
)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0]
        if path == "/short":  # promises 1000 bytes, sends 10, closes
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            return
        body = self.server.routes.get(path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def _server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.routes = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def served(_server) -> tuple[str, dict[str, bytes]]:
    """(base URL, routes): put bytes at routes["/x.zip"] to serve them at base + "/x.zip"."""
    _server.routes.clear()
    return f"http://127.0.0.1:{_server.server_address[1]}", _server.routes


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _dataset_zip(prefix: str = "monet2photo/", tag: bytes = b"new") -> bytes:
    return _zip({f"{prefix}{sub}/0.jpg": tag + sub.encode() for sub in ("trainA", "trainB", "testA", "testB")})


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _weights(tag: bytes) -> bytes:  # what torch.save writes starts with a zip header; the content is ours
    return _zip({"archive/data.pkl": tag})


def _point(monkeypatch: pytest.MonkeyPatch, name: str, url: str) -> None:
    monkeypatch.setitem(NAMES, name, NAMES[name]._replace(url=url))


def test_name_table_matches_the_references() -> None:
    assert CYCLEGAN_MODELS == REFERENCE_MODELS
    for model in REFERENCE_MODELS:
        key, entry = resolve(f"{model}_pretrained")
        assert entry.kind == "generator" and entry.dest == f"{model}_pretrained/latest_net_G.pth"
        assert entry.url == f"http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{model}.pth"
    assert resolve("style_monet")[1] == resolve("style_monet_pretrained")[1]
    assert resolve("monet2photo")[1].kind == "dataset"  # the bare shared name stays the dataset (as before)
    assert resolve("monet2photo")[1].url == "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/monet2photo.zip"
    assert NAMES["fast_neural_style"].url == "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1"
    assert resolve("candy")[0] == "fast_neural_style" and FAST_NEURAL_STYLES == ("candy", "mosaic", "rain_princess",
                                                                                  "udnie")


def test_dataset_zip_lands_in_the_layout(tmp_path: Path, served, monkeypatch: pytest.MonkeyPatch) -> None:
    base, routes = served
    routes["/monet2photo.zip"] = _dataset_zip()
    routes["/flat.zip"] = _dataset_zip(prefix="")
    _point(monkeypatch, "monet2photo", f"{base}/monet2photo.zip")
    out = tmp_path / "datasets"
    assert main(["monet2photo", "--output", str(out)]) == 0
    assert (out / "monet2photo" / "testB" / "0.jpg").read_bytes() == b"newtestB"
    assert main(["mine", "--root", str(out), "--url", f"{base}/flat.zip"]) == 0  # old flag, zip without a top folder
    assert (out / "mine" / "trainA" / "0.jpg").read_bytes() == b"newtrainA"
    routes["/ae.zip"] = _zip({"ae_photos/testA/0.jpg": b"photo"})  # test photos only: no train split expected
    assert main(["ae_photos", "--output", str(out), "--url", f"{base}/ae.zip"]) == 0
    assert (out / "ae_photos" / "testA" / "0.jpg").read_bytes() == b"photo"
    assert main(["half", "--output", str(out), "--url", f"{base}/ae.zip"]) == 2  # others need all four folders
    assert sorted(p.name for p in out.iterdir()) == ["ae_photos", "mine", "monet2photo"]  # no temp folder left


def test_download_from_local_server(tmp_path: Path) -> None:  # moved from test_data.py: the dataset API as before
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "tiny2photo.zip", "w") as zf:
        for sub in ("trainA", "trainB", "testA", "testB"):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (9, 9, 9)).save(buf, "PNG")
            zf.writestr(f"tiny2photo/{sub}/0.png", buf.getvalue())
    (served / "broken.zip").write_bytes(b"nope")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        out = download_dataset("tiny2photo", tmp_path / "datasets", url=f"{base}/tiny2photo.zip")
        assert out == tmp_path / "datasets" / "tiny2photo"
        assert load_rgb(out / "testB" / "0.png").getpixel((0, 0)) == (9, 9, 9)
        with pytest.raises(DownloadError, match="not return a zip"):
            download_dataset("other", tmp_path / "datasets", url=f"{base}/broken.zip")
        assert not (tmp_path / "datasets" / "other").exists()  # nothing half-made left behind
        with pytest.raises(DownloadError, match="monet2photo"):
            download_dataset("not_a_dataset", tmp_path / "datasets")
    finally:
        server.shutdown()
        server.server_close()


def test_existing_dataset_is_kept_and_overwrite_replaces_it(tmp_path: Path, served, capsys) -> None:
    base, routes = served
    routes["/d.zip"] = _dataset_zip(tag=b"v1")
    out = tmp_path / "datasets"
    args = ["monet2photo", "--output", str(out), "--url", f"{base}/d.zip"]
    assert main(args) == 0
    (out / "monet2photo" / "trainA" / "mine.txt").write_text("user data")
    routes["/d.zip"] = _dataset_zip(tag=b"v2")
    assert main(args) == 1 and "nothing to do" in capsys.readouterr().out
    assert (out / "monet2photo" / "trainA" / "mine.txt").read_text() == "user data"
    assert (out / "monet2photo" / "trainA" / "0.jpg").read_bytes() == b"v1trainA"
    assert main([*args, "--overwrite"]) == 0
    assert _tree(out / "monet2photo") == sorted(["testA", "testA/0.jpg", "testB", "testB/0.jpg", "trainA",
                                                 "trainA/0.jpg", "trainB", "trainB/0.jpg"])
    assert (out / "monet2photo" / "trainA" / "0.jpg").read_bytes() == b"v2trainA"
    assert [p.name for p in out.iterdir()] == ["monet2photo"]
    (out / "half").mkdir()  # a folder that is not a complete dataset is the user's: refused, untouched
    assert main(["half", "--output", str(out), "--url", f"{base}/d.zip"]) == 2
    assert "--overwrite" in capsys.readouterr().err and _tree(out / "half") == []


def test_pretrained_generator_and_find_pretrained(tmp_path: Path, served, monkeypatch: pytest.MonkeyPatch) -> None:
    base, routes = served
    routes["/style_monet.pth"], routes["/monet2photo.pth"] = _weights(b"monet"), _weights(b"photo")
    _point(monkeypatch, "style_monet", f"{base}/style_monet.pth")
    _point(monkeypatch, "monet2photo_pretrained", f"{base}/monet2photo.pth")
    out = tmp_path / "checkpoints"
    assert find_pretrained("style_monet", out) is None
    assert main(["style_monet", "--output", str(out)]) == 0
    path = out / "style_monet_pretrained" / "latest_net_G.pth"
    assert path.read_bytes() == _weights(b"monet") and find_pretrained("style_monet", out) == path
    assert main(["monet2photo_pretrained", "--output", str(out)]) == 0
    path = out / "monet2photo_pretrained" / "latest_net_G.pth"
    assert find_pretrained("monet2photo", out) == find_pretrained("monet2photo_pretrained", out) == path
    assert path.read_bytes() == _weights(b"photo")
    assert find_pretrained("horse2zebra", out) is None and find_pretrained("not_a_model", out) is None
    assert _tree(out) == sorted(["monet2photo_pretrained", "monet2photo_pretrained/latest_net_G.pth",
                                 "style_monet_pretrained", "style_monet_pretrained/latest_net_G.pth"])


def test_existing_generator_is_kept_and_overwrite_replaces_it(tmp_path: Path, served, monkeypatch) -> None:
    base, routes = served
    routes["/style_monet.pth"] = _weights(b"new")
    routes["/page.html"] = b"<html>moved</html>"  # a mirror that answers 200 with a web page
    _point(monkeypatch, "style_monet", f"{base}/style_monet.pth")
    path = tmp_path / "style_monet_pretrained" / "latest_net_G.pth"
    path.parent.mkdir()
    path.write_bytes(b"old")
    assert main(["style_monet", "--output", str(tmp_path)]) == 1 and path.read_bytes() == b"old"
    assert main(["style_monet", "--output", str(tmp_path), "--url", f"{base}/page.html", "--overwrite"]) == 2
    assert path.read_bytes() == b"old" and _tree(path.parent) == ["latest_net_G.pth"]
    assert main(["style_monet", "--output", str(tmp_path), "--overwrite"]) == 0
    assert path.read_bytes() == _weights(b"new") and _tree(path.parent) == ["latest_net_G.pth"]


def test_fast_neural_style_zip_gives_four_files(tmp_path: Path, served, monkeypatch: pytest.MonkeyPatch) -> None:
    base, routes = served
    routes["/saved_models.zip"] = _zip({f"saved_models/{s}.pth": b"\x80\x02" + s.encode() for s in FAST_NEURAL_STYLES})
    routes["/three.zip"] = _zip({f"saved_models/{s}.pth": b"\x80\x02" for s in FAST_NEURAL_STYLES[:3]})
    _point(monkeypatch, "fast_neural_style", f"{base}/saved_models.zip")
    out = tmp_path / "checkpoints"
    assert main(["fast_neural_style", "--output", str(out), "--url", f"{base}/three.zip"]) == 2
    assert not out.exists()  # udnie.pth missing: nothing kept, not even the --output folder
    assert main(["fast_neural_style", "--output", str(out)]) == 0
    assert _tree(out) == ["fast_neural_style", *sorted(f"fast_neural_style/{s}.pth" for s in FAST_NEURAL_STYLES)]
    assert (out / "fast_neural_style" / "rain_princess.pth").read_bytes() == b"\x80\x02rain_princess"
    assert find_pretrained("udnie", out) == out / "fast_neural_style" / "udnie.pth"
    assert main(["candy", "--output", str(out)]) == 1  # a style names its bundle; all four are there


def _refused_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/w.pth"


@pytest.mark.parametrize("case", ["404", "refused", "truncated", "hash", "disk full", "ctrl-c"])
def test_failed_fetch_leaves_nothing_behind(tmp_path: Path, served, case: str) -> None:
    base, routes = served
    routes["/w.pth"] = b"hello"
    url = {"404": f"{base}/missing.pth", "refused": _refused_url(), "truncated": f"{base}/short"}.get(
        case, f"{base}/w.pth")

    def check(path: Path) -> None:  # runs on the complete temp file, just before the rename
        assert path.parent == tmp_path / "a" / "b" and path.read_bytes() == b"hello"
        if case == "disk full":
            raise OSError(errno.ENOSPC, "No space left on device")
        if case == "ctrl-c":
            raise KeyboardInterrupt

    error = KeyboardInterrupt if case == "ctrl-c" else DownloadError
    with pytest.raises(error) as info:
        fetch_file(url, tmp_path / "a" / "b" / "w.pth", timeout=5, progress=False, check=check,
                   sha256_prefix="00ff" if case == "hash" else None)
    assert _tree(tmp_path) == []  # no file, no temp file, no folder a/ or a/b/
    if error is DownloadError:
        message = str(info.value)
        assert url in message and "\n" not in message
        expected = {"404": "HTTP 404", "refused": "refused", "truncated": "truncated", "hash": "SHA-256",
                    "disk full": "free some space"}[case]
        assert expected in message


def test_failed_download_leaves_no_output_folder(tmp_path: Path, served, capsys) -> None:
    base, _ = served
    out = tmp_path / "new" / "datasets"
    assert main(["monet2photo", "--output", str(out), "--url", f"{base}/missing.zip"]) == 2
    assert main(["style_monet", "--output", str(out), "--url", f"{base}/missing.pth"]) == 2
    assert main(["fast_neural_style", "--output", str(out), "--url", f"{base}/missing.zip"]) == 2
    assert _tree(tmp_path) == []
    err = capsys.readouterr().err.splitlines()
    assert [line.startswith("error: cannot download http://127.0.0.1") for line in err] == [True] * 3


def test_unwritable_output_is_one_line_error(tmp_path: Path, served, capsys) -> None:
    base, routes = served
    routes["/w.pth"], routes["/d.zip"] = _weights(b"w"), _dataset_zip()
    (tmp_path / "afile").write_text("mine")  # a file where --output needs a folder
    out = tmp_path / "afile" / "checkpoints"
    assert main(["style_monet", "--output", str(out), "--url", f"{base}/w.pth"]) == 2
    assert main(["monet2photo", "--output", str(out), "--url", f"{base}/d.zip"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "cannot save" in err[0] and "cannot write under" in err[1]
    assert all("choose another --output" in line for line in err)
    assert _tree(tmp_path) == ["afile"] and (tmp_path / "afile").read_text() == "mine"


def test_swap_puts_the_old_folder_back_when_the_move_fails(tmp_path: Path) -> None:
    target = tmp_path / "monet2photo"
    (target / "trainA").mkdir(parents=True)
    (target / "trainA" / "0.jpg").write_bytes(b"old")
    with pytest.raises(FileNotFoundError):
        _swap_in(tmp_path / "no_new_copy", target, tmp_path / "aside")
    assert _tree(tmp_path) == ["monet2photo", "monet2photo/trainA", "monet2photo/trainA/0.jpg"]


def test_fetch_file_replaces_only_when_complete(tmp_path: Path, served) -> None:
    base, routes = served
    routes["/w.pth"] = b"hello"
    dst = tmp_path / "w.pth"
    dst.write_bytes(b"old")
    with pytest.raises(DownloadError):
        fetch_file(f"{base}/w.pth", dst, sha256_prefix="0000", progress=False)
    assert dst.read_bytes() == b"old" and _tree(tmp_path) == ["w.pth"]
    good = hashlib.sha256(b"hello").hexdigest()[:10].upper()  # any length, any case
    assert fetch_file(f"{base}/w.pth", dst, sha256_prefix=good, progress=False) == dst
    assert dst.read_bytes() == b"hello" and _tree(tmp_path) == ["w.pth"]


def test_timeout_is_per_request(tmp_path: Path) -> None:
    before = socket.getdefaulttimeout()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections (backlog), never answers
        t0 = time.perf_counter()
        with pytest.raises(DownloadError, match="no answer within 0.5 s"):
            fetch_file(f"http://127.0.0.1:{silent.getsockname()[1]}/w.pth", tmp_path / "w.pth", timeout=0.5,
                       progress=False)
        elapsed = time.perf_counter() - t0
    assert 0.4 < elapsed < 2.0
    assert socket.getdefaulttimeout() == before is None  # the process-wide default is not touched
    assert _tree(tmp_path) == []


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "x/../../evil.txt"])
def test_zip_with_escaping_paths_is_refused(tmp_path: Path, served, member: str) -> None:
    base, routes = served
    routes["/evil.zip"] = _zip({"evil/trainA/0.jpg": b"a", member: b"pwned"})
    out = tmp_path / "out" / "datasets"
    with pytest.raises(DownloadError, match="unsafe path"):
        download_dataset("evil", out, url=f"{base}/evil.zip")
    assert _tree(tmp_path) == []


def test_mistyped_name_lists_valid_ones_and_suggests(capsys) -> None:
    assert main(["style_monnet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unknown name 'style_monnet'")
    assert "did you mean 'style_monet'?" in err and all(name in err for name in NAMES)
    with pytest.raises(DownloadError, match="did you mean 'monet2photo'"):
        resolve("monet2phot")
    with pytest.raises(DownloadError, match="cityscapes-dataset|license"):  # listed, but not on the server
        download_dataset("cityscapes", "unused")


def test_list_names_every_entry(capsys) -> None:
    assert main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[: len(NAMES)]] == list(NAMES)
    assert "photo -> Monet painting" in lines[list(NAMES).index("style_monet")]


def test_help_is_fast_and_imports_no_torch() -> None:
    run = functools.partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run([sys.executable, "-c", "import sys, data.download; assert 'torch' not in sys.modules"]).returncode == 0
    t0 = time.perf_counter()
    done = run([sys.executable, "-m", "data.download", "--help"])
    assert done.returncode == 0 and time.perf_counter() - t0 < 5  # < 0.1 s on an idle machine
    assert "  python -m data.download style_monet             # -> checkpoints/style_monet_pretrained/" in done.stdout
    options = " ".join(done.stdout.split("\noptions:")[1].split())  # argparse wraps to the terminal's width
    assert "--output DIR" in options and "(default: 60.0)" in options and "--root" not in options  # hidden alias


def test_test_py_finds_a_downloaded_generator_by_name(tmp_path: Path, served, monkeypatch, capsys) -> None:
    """`python -m data.download style_monet` then `python test.py --checkpoint style_monet`: the name
    finds the file (checkpoints/style_monet_pretrained/latest_net_G.pth, as the reference lays it out)."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    import test as test_cli
    from models.cyclegan import build_generator

    buf = io.BytesIO()
    torch.save(build_generator(ngf=8, n_blocks=1).state_dict(), buf)
    base, routes = served
    routes["/style_monet.pth"] = buf.getvalue()
    _point(monkeypatch, "style_monet", f"{base}/style_monet.pth")
    monkeypatch.chdir(tmp_path)  # checkpoints/ is relative to where the commands run, as for the reference
    assert main(["style_monet"]) == 0
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((20, 28, 3), 120, np.uint8)).save(photos / "a.png")
    capsys.readouterr()
    assert test_cli.main(["--checkpoint", "style_monet", "--input", str(photos), "--output", str(tmp_path / "out"),
                          "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "checkpoints/style_monet_pretrained/latest_net_G.pth (pretrained)" in out
    assert Image.open(tmp_path / "out" / "a.png").size == (28, 20)
    assert test_cli.main(["--checkpoint", "style_vangogh", "--input", str(photos), "--output",
                          str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "no downloaded pretrained model of that name" in err and "python -m data.download style_vangogh" in err


def _tar(files: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_the_cut_authors_archive_lands_as_their_checkpoints(tmp_path: Path, served, monkeypatch) -> None:
    """One tar of checkpoints/<name>/latest_net_G.pth (the authors' pretrained_models.tar): each generator
    lands at <output>/<name>/latest_net_G.pth, nothing else of the archive is kept, and any of the six
    names fetches it."""
    from data.catalogue import CUT_MODELS, pretrained_path

    assert sorted(CUT_MODELS) == sorted(f"{d}_{m}_pretrained" for d in ("horse2zebra", "cat2dog", "cityscapes")
                                        for m in ("cut", "fastcut"))
    assert NAMES["cut_pretrained"].url == "http://efrosgans.eecs.berkeley.edu/CUT/pretrained_models.tar"
    base, routes = served
    files = {f"checkpoints/{m}/latest_net_G.pth": _weights(m.encode()) for m in CUT_MODELS}
    files["checkpoints/horse2zebra_cut_pretrained/latest_net_D.pth"] = _weights(b"D")  # not extracted
    routes["/cut.tar"] = _tar(files)
    _point(monkeypatch, "cut_pretrained", f"{base}/cut.tar")
    out = tmp_path / "checkpoints"
    assert find_pretrained("horse2zebra_cut_pretrained", out) is None
    assert pretrained_path("horse2zebra_cut_pretrained", out) == out / "horse2zebra_cut_pretrained" / "latest_net_G.pth"
    assert main(["horse2zebra_cut_pretrained", "--output", str(out)]) == 0
    assert _tree(out) == sorted([*CUT_MODELS, *(f"{m}/latest_net_G.pth" for m in CUT_MODELS)])
    for m in CUT_MODELS:
        assert find_pretrained(m, out).read_bytes() == _weights(m.encode())
    assert main(["cut_pretrained", "--output", str(out)]) == 1  # all there: nothing to do
    routes["/cut.tar"] = b"not a tar"
    (out / "cat2dog_cut_pretrained" / "latest_net_G.pth").unlink()
    assert main(["cut_pretrained", "--output", str(out)]) == 2  # a bad archive: nothing changes
    assert find_pretrained("cat2dog_cut_pretrained", out) is None and not list(out.glob(".*"))
