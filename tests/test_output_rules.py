"""The general output rules of docs/failures.md, each caused on purpose (hostile round 3):

* a folder counts as an earlier report only when report.py's own marker is in it;
* a single input file's folder is an input folder (never the output);
* one writer per output folder (``flock`` on ``OUTPUT/.lock``), the second exits 2 naming the holder;
* every written image is complete or absent, whatever its format.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
import torch
import yaml
from conftest import GATYS_TINY
from image_corpus import load_script, save_noise
from PIL import Image

from models.cyclegan import build_generator

test_cli = load_script("test")
stylize_cli = load_script("stylize")
report_cli = load_script("report")


@pytest.fixture(scope="module")
def gen_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gen") / "latest_net_G_A.pth"
    torch.save(build_generator(ngf=8, n_blocks=1).state_dict(), path)
    return path


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _test(gen_file: Path, src: Path, out: Path, *extra: str) -> int:
    return test_cli.main(["--checkpoint", str(gen_file), "--input", str(src), "--output", str(out),
                          "--no-progress", "--device", "cpu", *extra])


# ---------------------------------------------------------------------------------------------
# Item 3 (and 16): only a folder report.py wrote is an earlier report


def _report_config(tmp_path: Path, dataset: Path) -> Path:
    tiny = ["vgg.weights=random", "optim.steps=1", "progress=false", "loss.content_layers=[relu1_1]",
            "loss.style_layers=[relu1_1]"]
    cfg = {"dataset": str(dataset), "style": [str(dataset / "trainA" / "0000.png")], "device": "cpu",
           "download": False, "limit": 1, "methods": [{"method": "gatys", "settings": tiny}],
           "scoring": {"vgg": {"weights": "random"}, "content_layers": ["relu1_1"], "style_layers": ["relu1_1"]}}
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_report_refuses_a_folder_with_someone_elses_metrics_json(tiny_dataset, tmp_path, capsys):
    cfg = _report_config(tmp_path, tiny_dataset)
    theirs = tmp_path / "results"
    theirs.mkdir()
    for name, text in (("metrics.json", '{"mine": 1}'), ("index.html", "<p>my page</p>"), ("metrics.md", "# mine"),
                       ("grid.png", "not even a png")):
        (theirs / name).write_text(text)
    before = _snapshot(theirs)
    assert report_cli.main(["--config", str(cfg), "--output", str(theirs)]) == 2
    assert _snapshot(theirs) == before and sorted(os.listdir(theirs)) == sorted(before)
    capsys.readouterr()
    # A folder the report wrote itself is replaced without --overwrite (the rerun).
    ours = tmp_path / "report"
    assert report_cli.main(["--config", str(cfg), "--output", str(ours)]) == 0
    assert report_cli.main(["--config", str(cfg), "--output", str(ours)]) == 0
    assert (ours / "metrics.json").is_file() and (ours / report_cli.REPORT_MARKER).is_file()


def test_an_interrupted_report_reruns_without_overwrite(tiny_dataset, tmp_path, capsys, monkeypatch):
    import evaluation.render as render

    cfg = _report_config(tmp_path, tiny_dataset)
    out = tmp_path / "report"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(render, "write_report", interrupted)
        assert report_cli.main(["--config", str(cfg), "--output", str(out)]) == 130
    assert (out / "outputs").is_dir() and not (out / "metrics.json").exists()
    capsys.readouterr()
    assert report_cli.main(["--config", str(cfg), "--output", str(out)]) == 0
    assert (out / "metrics.json").is_file()


def test_a_report_that_fails_before_any_output_leaves_no_folder(tiny_dataset, tmp_path, capsys):
    """A missing checkpoint: exit 2 naming the methods entry; the folders the report made are gone
    (its marker was left in a new folder before), and a folder that was already there stays empty."""
    cfg = yaml.safe_load(_report_config(tmp_path, tiny_dataset).read_text())
    cfg["methods"] = [{"method": "cyclegan", "checkpoint": str(tmp_path / "nope"), "label": "mine"}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert report_cli.main(["--config", str(path), "--output", str(tmp_path / "new" / "report")]) == 2
    err = capsys.readouterr().err
    assert f"methods.0 (mine): checkpoint {tmp_path / 'nope'} does not exist" in err and err.count("\n") == 1, err
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_cli.main(["--config", str(path), "--output", str(empty)]) == 2
    assert empty.is_dir() and list(empty.iterdir()) == []
    # a folder of the user's, with --overwrite: the failed report takes back its marker (with it, the next
    # report without --overwrite would have written over the user's files)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "index.html").write_text("my page")
    assert report_cli.main(["--config", str(path), "--output", str(theirs), "--overwrite"]) == 2
    assert sorted(p.name for p in theirs.iterdir()) == ["index.html"]


def test_a_report_output_spelled_with_dotdot_is_the_folder_it_names(tiny_dataset, tmp_path, capsys):
    """--output theirs/new/.. is theirs/, which holds the user's index.html: refused, as --output theirs
    is (it skipped the check while theirs/new did not exist, then wrote over the page); nothing made."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "index.html").write_text("my page")
    config = _report_config(tmp_path, tiny_dataset)
    assert report_cli.main(["--config", str(config), "--output", str(theirs / "new" / "..")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in theirs.iterdir()) == ["index.html"]
    assert (theirs / "index.html").read_text() == "my page"


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_an_output_folders_lock_that_is_not_a_lock_file_is_left(gen_file, tmp_path, capsys):
    """OUTPUT/.lock a link to the user's file: test.py exits 2 and neither is touched (the lock was
    opened through the link, truncated, then unlinked)."""
    src = tmp_path / "in"
    save_noise(src / "p0.png", 12, 8, seed=0)
    theirs = tmp_path / "notes.txt"
    theirs.write_text("my notes\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").symlink_to(theirs)
    assert _test(gen_file, src, out) == 2
    assert f"{out / '.lock'}" in capsys.readouterr().err
    assert theirs.read_text() == "my notes\n" and (out / ".lock").is_symlink() and os.listdir(out) == [".lock"]


# ---------------------------------------------------------------------------------------------
# Item 4: one input file: its folder is never the output


def test_single_file_input_may_not_write_into_its_own_folder(gen_file, tmp_path):
    photos = tmp_path / "photos"
    save_noise(photos / "photo.png", 12, 8, seed=1)
    save_noise(photos / "photo.jpg", 12, 8, seed=2)  # the user's other file, same stem
    before = _snapshot(photos)
    assert _test(gen_file, photos / "photo.png", photos, "--format", "jpg", "--overwrite") == 2
    assert _test(gen_file, photos / "photo.jpg", photos, "--overwrite") == 2
    link = tmp_path / "link.png"  # a link elsewhere to a file in photos/: photos/ is still its folder
    link.symlink_to(photos / "photo.png")
    assert _test(gen_file, link, photos, "--format", "jpg", "--overwrite") == 2
    assert _snapshot(photos) == before
    # Another folder (a parent of the input's included) still works.
    assert _test(gen_file, photos / "photo.png", tmp_path, "--format", "jpg") == 0
    assert Image.open(tmp_path / "photo.jpg").size == (12, 8) and _snapshot(photos) == before


def test_stylize_single_file_input_may_not_write_into_its_own_folder(tmp_path, capsys):
    photos = tmp_path / "photos"
    save_noise(photos / "a.jpg", 12, 8, seed=1)
    save_noise(photos / "a.png", 12, 8, seed=2)
    style = save_noise(tmp_path / "style.png", 16, 16, seed=9)
    before = _snapshot(photos)
    code = stylize_cli.main(["--input", str(photos / "a.jpg"), "--style", str(style), "--output", str(photos),
                             "--overwrite", *GATYS_TINY])
    assert code == 2 and _snapshot(photos) == before


# ---------------------------------------------------------------------------------------------
# Item 5: one writer per output folder


def _hold_lock(folder: Path, pid: str):
    """Hold ``folder/.lock`` the way another live process does (flock is per open file, so a
    second open in this process conflicts exactly as another process's would)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{pid}\n".encode())
    return fd


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_second_writer_into_a_live_output_folder_exits_2_naming_the_holder(gen_file, tmp_path, capsys):
    src = tmp_path / "in"
    for i in range(2):
        save_noise(src / f"p{i}.png", 12, 8, seed=i)
    out = tmp_path / "out"
    fd = _hold_lock(out, "424242")
    try:
        assert _test(gen_file, src, out, "--gallery") == 2
        err = capsys.readouterr().err
        assert "424242" in err and len(err.strip().splitlines()) == 1
        assert sorted(os.listdir(out)) == [".lock"]  # nothing written
        style = save_noise(tmp_path / "style.png", 16, 16, seed=9)
        code = stylize_cli.main(["--input", str(src), "--style", str(style), "--output", str(out), *GATYS_TINY])
        assert code == 2 and "424242" in capsys.readouterr().err and sorted(os.listdir(out)) == [".lock"]
    finally:
        os.close(fd)
    # Released (as the OS does when the holder dies): the folder is usable again.
    assert _test(gen_file, src, out) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["p0.png", "p1.png"]


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_two_test_py_processes_never_share_an_output_folder(gen_file, tmp_path):
    """Two real test.py processes started together into one folder: one translates, the other
    exits 2 at once (or, if the first finished already, skips everything: exit 1); never both 0."""
    import subprocess
    import sys

    from image_corpus import ROOT

    src = tmp_path / "in"
    for i in range(40):
        save_noise(src / f"p{i:02d}.png", 64, 64, seed=i)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "test.py"), "--checkpoint", str(gen_file), "--input", str(src), "--output",
           str(out), "--no-progress", "--device", "cpu", "--batch-size", "1"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes in ([0, 1], [0, 2]), results
    assert len(list(out.glob("*.png"))) == 40


# ---------------------------------------------------------------------------------------------
# Item 6: every format complete or absent


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "bmp", "tif"])
def test_a_short_write_leaves_no_file_under_the_final_name(tmp_path, monkeypatch, fmt):
    """A full disk that takes only part of the bytes while the writer believes it wrote them all
    (as PIL's raw BMP/TIFF writers did): no file under the final name, the previous one intact,
    no temp file; a rerun then writes it."""
    from data.image_io import save_image

    img = Image.new("RGB", (16, 12), (10, 200, 30))
    dst = tmp_path / f"out.{fmt}"
    old = tmp_path / f"old.{fmt}"
    old.write_bytes(b"previous output")
    real_write = os.write

    def short_write(fd, data):
        data = bytes(data)
        real_write(fd, data[: len(data) // 2])
        return len(data)  # the lie

    monkeypatch.setattr(os, "write", short_write)
    for target in (dst, old):
        with pytest.raises(OSError) as e:
            save_image(img, target)
        assert e.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "write", real_write)
    assert not dst.exists() and old.read_bytes() == b"previous output"
    assert sorted(os.listdir(tmp_path)) == [old.name]
    save_image(img, dst)
    assert Image.open(dst).convert("RGB").size == (16, 12)


def test_a_write_error_fails_the_image_and_a_rerun_writes_it(gen_file, tmp_path, capsys, monkeypatch):
    """Through test.py: a full disk during one BMP file stops the run (exit 2) leaving no file under
    its name, so the rerun translates it instead of skipping it as "already there"."""
    src = tmp_path / "in"
    save_noise(src / "p0.png", 12, 8, seed=0)
    out = tmp_path / "out"
    real_write = os.write

    def full(fd, data):
        real_write(fd, bytes(data)[:10])
        return len(data)

    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        assert _test(gen_file, src, out, "--format", "bmp") == 2
    assert not (out / "p0.bmp").exists()
    capsys.readouterr()
    assert _test(gen_file, src, out, "--format", "bmp") == 0
    assert "translated 1, skipped 0" in capsys.readouterr().out
    assert Image.open(out / "p0.bmp").size == (12, 8)


# ---------------------------------------------------------------------------------------------
# Item 15: an output name the file system cannot hold fails that file only


def test_an_output_name_over_255_bytes_fails_that_file_only(gen_file, tmp_path, capsys):
    src = tmp_path / "in"
    long = "x" * 250
    save_noise(src / f"{long}.jpg", 8, 8, seed=1)  # with its .png twin: outputs x...x.jpg.png, 259 bytes
    save_noise(src / f"{long}.png", 8, 8, seed=2)
    save_noise(src / "ok.png", 8, 8, seed=3)
    out = tmp_path / "out"
    assert _test(gen_file, src, out, "--gallery") == 0
    assert "translated 1, skipped 0 (already there), failed 2" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["_gallery_inputs", "index.html", "ok.png"]
