"""User data is sacred: the --output rules every command shares (test.py, stylize.py, report.py).

The output folder is never the input folder or inside it (refused with exit 2 before anything is
written), may be a parent of it, is never an existing file; every input gets its own output name;
an output folder that cannot be written gives one line and exit 2, leaving no temp files.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import GATYS_TINY
from image_corpus import ROOT, load_script, save_noise
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
    """Every file under ``folder`` -> hash of its bytes: proves nothing was written or replaced."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _photos(folder: Path, n: int = 2) -> Path:
    for i in range(n):
        save_noise(folder / f"p{i}.png", 12, 8, seed=i)
    return folder


def _test(capsys, gen_file: Path, src: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    code = test_cli.main(["--checkpoint", str(gen_file), "--input", str(src), "--output", str(out),
                          "--no-progress", "--device", "cpu", *extra])
    o, e = capsys.readouterr()
    return code, o, e


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# test.py


def test_dry_run_lists_the_plan_and_writes_nothing(gen_file, tmp_path, capsys):
    src, out = _photos(tmp_path / "in", 3), tmp_path / "out"
    out.mkdir()
    (out / "p1.png").write_bytes(b"the user's file")
    before = _snapshot(tmp_path)
    code, stdout, _ = _test(capsys, gen_file, src, out, "--dry-run")
    assert code == 0 and _snapshot(tmp_path) == before
    assert f"{src / 'p1.png'} -> {out / 'p1.png'}  (exists: kept)" in stdout
    assert "dry run: 3 image(s), 2 to write, 1 already there; nothing written" in stdout
    code, stdout, _ = _test(capsys, gen_file, src, out, "--dry-run", "--overwrite")
    assert code == 0 and _snapshot(tmp_path) == before and "3 to write, 0 already there" in stdout
    assert _test(capsys, gen_file, src, src, "--dry-run")[0] == 2  # the output rules hold in a dry run too


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_equal_to_or_inside_the_input_is_refused(gen_file, tmp_path, capsys, where):
    src = _photos(tmp_path / "in")
    before = _snapshot(src)
    out = src if where == "same" else src / "results"
    code, stdout, err = _test(capsys, gen_file, src, out, "--gallery", "--overwrite")
    line = _one_error_line(err)
    assert code == 2 and f"--output {out} is {'the input folder' if where == 'same' else 'inside the input'}" in line
    assert "choose a folder outside it" in line and "translated" not in stdout
    assert _snapshot(src) == before and not (src / "results").exists()


def test_output_that_is_a_parent_of_the_input_works(gen_file, tmp_path, capsys):
    src = _photos(tmp_path / "project" / "photos")
    code, out, err = _test(capsys, gen_file, src, tmp_path / "project")
    assert code == 0, err
    assert "translated 2, skipped 0 (already there), failed 0" in out and "no images found" not in err
    assert sorted(p.name for p in (tmp_path / "project").glob("*.png")) == ["p0.png", "p1.png"]
    assert Image.open(tmp_path / "project" / "p0.png").size == (12, 8)


def test_output_that_is_an_existing_file_exits_2_naming_it(gen_file, tmp_path, capsys):
    src = _photos(tmp_path / "in")
    target = tmp_path / "results.png"
    target.write_bytes(b"my file")
    code, _, err = _test(capsys, gen_file, src, target)
    assert code == 2 and f"--output {target} is a file; give a folder" in _one_error_line(err)
    code, _, err = _test(capsys, gen_file, src / "p0.png", target)  # one image as input
    assert code == 2 and str(target) in _one_error_line(err)
    assert target.read_bytes() == b"my file"


def test_colliding_names_get_distinct_outputs_listed_once(gen_file, tmp_path, capsys):
    src = tmp_path / "in"
    save_noise(src / "same.jpg", 8, 8, seed=1)  # (PNG bytes named .jpg: decoded by content)
    save_noise(src / "same.jpg.png", 8, 8, seed=2)
    save_noise(src / "same.png", 8, 8, seed=3)
    code, out, err = _test(capsys, gen_file, src, tmp_path / "out", "--gallery")
    assert code == 0 and "translated 3, skipped 0 (already there), failed 0" in out, err
    outputs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert outputs == ["same.jpg.png", "same.jpg~2.png", "same.png.png"]
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count("<tr><td") == 3
    for name in outputs:
        assert page.count(f'src="{name}"') == 1, name
    for name in outputs:  # each input's thumbnail, named after its own output
        assert page.count(f'src="_gallery_inputs/{name}.png"') == 1, name
    assert sorted(re.findall(r'<td title="[^"]*">([^<]+)', page)) == ["same.jpg", "same.jpg.png", "same.png"]
    # A second run maps every input to the same name again: all three are skipped, none renamed.
    code, out, _ = _test(capsys, gen_file, src, tmp_path / "out")
    assert code == 1 and "translated 0, skipped 3 (already there)" in out  # nothing done


def test_names_stay_with_their_inputs_when_files_are_added(gen_file, tmp_path, capsys):
    """A literal same.jpg.png translated alone keeps its output name when same.jpg and same.png
    arrive later: the rerun skips only its own output and translates the newcomers (an input's
    primary name is never given to another input's collision name)."""
    src = tmp_path / "in"
    save_noise(src / "same.jpg.png", 8, 8, seed=2)
    assert _test(capsys, gen_file, src, tmp_path / "out")[0] == 0
    first = (tmp_path / "out" / "same.jpg.png").read_bytes()
    save_noise(src / "same.jpg", 8, 8, seed=1)
    save_noise(src / "same.png", 8, 8, seed=3)
    code, out, _ = _test(capsys, gen_file, src, tmp_path / "out")
    assert code == 0 and "translated 2, skipped 1 (already there), failed 0" in out
    assert (tmp_path / "out" / "same.jpg.png").read_bytes() == first  # still the literal input's output
    outputs = {p.name: p.read_bytes() for p in (tmp_path / "out").glob("*.png")}
    assert sorted(outputs) == ["same.jpg.png", "same.jpg~2.png", "same.png.png"]
    assert len(set(outputs.values())) == 3  # three different inputs, three different outputs


def test_a_file_that_cannot_be_written_fails_alone(gen_file, tmp_path, capsys, monkeypatch):
    """A write error about one file (a name too long for the file system) fails that file; the
    others are written. Only errors about the folder (read-only, full) stop the run."""
    import utils.translate

    src = _photos(tmp_path / "in")
    real = utils.translate.save_image

    def too_long_for_p1(img, dst, quality=95):
        if Path(dst).stem == "p1":
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        return real(img, dst, quality)

    monkeypatch.setattr(utils.translate, "save_image", too_long_for_p1)
    code, out, err = _test(capsys, gen_file, src, tmp_path / "out")
    assert code == 0 and "failed 1" in out and "p1.png: cannot write" in err and "File name too long" in err
    assert len(list((tmp_path / "out").glob("*.png"))) == len(list(src.glob("*.png"))) - 1


def test_quality_out_of_range_is_one_line(gen_file, tmp_path, capsys):
    code, _, err = _test(capsys, gen_file, _photos(tmp_path / "in"), tmp_path / "out", "--quality", "500")
    assert code == 2 and "--quality must be in [1, 100], got 500" in _one_error_line(err)


def _eros(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def test_read_only_output_folder_for_the_images(gen_file, tmp_path, capsys, monkeypatch):
    import utils.translate

    src = _photos(tmp_path / "in")
    monkeypatch.setattr(utils.translate, "save_image", _eros)
    code, out, err = _test(capsys, gen_file, src, tmp_path / "out")
    line = _one_error_line(err)
    assert code == 2 and "cannot write" in line and "Read-only file system" in line
    assert "0 outputs were written before it" in line
    assert os.listdir(tmp_path / "out") == []


def test_read_only_output_folder_for_the_gallery(gen_file, tmp_path, capsys, monkeypatch):
    src = _photos(tmp_path / "in")
    real_replace = os.replace

    def replace(src_, dst, *args, **kwargs):  # the images land; only the page cannot be put in place
        if Path(dst).name == "index.html":
            _eros()
        return real_replace(src_, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    code, out, err = _test(capsys, gen_file, src, tmp_path / "out", "--gallery")
    line = _one_error_line(err)
    assert code == 2 and f"cannot write the gallery in {tmp_path / 'out'}: Read-only file system" in line
    assert "the translated images themselves were written" in line
    assert sorted(os.listdir(tmp_path / "out")) == ["_gallery_inputs", "p0.png", "p1.png"]  # and no temp file
    assert sorted(os.listdir(tmp_path / "out" / "_gallery_inputs")) == ["p0.png.png", "p1.png.png"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores file permissions; the monkeypatched tests above cover this case")
def test_read_only_output_folder_for_real(gen_file, tmp_path, capsys):
    src = _photos(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, _, err = _test(capsys, gen_file, src, out)
    finally:
        out.chmod(0o755)
    assert code == 2 and f"cannot write into --output {out}: Permission denied" in _one_error_line(err)


def test_output_below_a_file_is_one_line(gen_file, tmp_path, capsys):
    src = _photos(tmp_path / "in")
    (tmp_path / "file").write_text("x")
    code, _, err = _test(capsys, gen_file, src, tmp_path / "file" / "out")
    assert code == 2 and f"cannot write into --output {tmp_path / 'file' / 'out'}: " in _one_error_line(err)


# ---------------------------------------------------------------------------------------------
# stylize.py


@pytest.mark.parametrize("where", ["same", "inside"])
def test_stylize_refuses_output_equal_to_or_inside_the_content(tmp_path, capsys, where):
    content = _photos(tmp_path / "content")
    style = save_noise(tmp_path / "style.png", 16, 16, seed=9)
    before = _snapshot(content)
    out = content if where == "same" else content / "stylized"
    code = stylize_cli.main(["--input", str(content), "--style", str(style), "--output", str(out), "--overwrite",
                             *GATYS_TINY])
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if not ln.startswith("WARNING")]
    assert code == 2 and len(line) == 1 and line[0].startswith(f"error: --output {out} is ")
    assert _snapshot(content) == before and not (content / "stylized").exists()


def _fail_writing(monkeypatch, name: str) -> None:
    """Writing a file called ``name`` fails as on a read-only or full disk (root ignores permissions):
    its atomic rename into place fails."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            _eros()
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_stylize_record_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    content = _photos(tmp_path / "content", 1)
    style = save_noise(tmp_path / "style.png", 16, 16, seed=9)
    _fail_writing(monkeypatch, "gatys_run.json")
    code = stylize_cli.main(["--input", str(content), "--style", str(style), "--output", str(tmp_path / "out"),
                             *GATYS_TINY])
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert code == 2 and len(errors) == 1
    assert f"cannot write {tmp_path / 'out' / 'gatys_run.json'}: Read-only file system" in errors[0]
    assert "the 1 stylized image(s) were written" in errors[0] and (tmp_path / "out" / "p0.png").is_file()


# ---------------------------------------------------------------------------------------------
# report.py


def _report_config(tmp_path: Path, dataset: Path) -> Path:
    """Gatys only, random weights, the smallest layers: a report of one image in a fraction of a second."""
    tiny = ["vgg.weights=random", "optim.steps=1", "progress=false", "loss.content_layers=[relu1_1]",
            "loss.style_layers=[relu1_1]"]
    cfg = {"dataset": str(dataset), "style": [str(dataset / "trainA" / "0000.png")], "device": "cpu",
           "download": False, "limit": 1,
           "methods": [{"method": "gatys", "settings": tiny}],
           "scoring": {"vgg": {"weights": "random"}, "content_layers": ["relu1_1"], "style_layers": ["relu1_1"]}}
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_report_output_that_is_a_file_or_holds_unrelated_files(tiny_dataset, tmp_path, capsys):
    cfg = _report_config(tmp_path, tiny_dataset)
    target = tmp_path / "report.html"
    target.write_text("mine")
    assert report_cli.main(["--config", str(cfg), "--output", str(target)]) == 2
    assert f"--output {target} is a file; give a folder" in _one_error_line(capsys.readouterr().err)
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.tex").write_text("mine")
    assert report_cli.main(["--config", str(cfg), "--output", str(folder)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--output {folder} holds files that are not an earlier report" in line and "--overwrite" in line
    inside = tiny_dataset / "testB" / "report"
    assert report_cli.main(["--config", str(cfg), "--output", str(inside)]) == 2
    assert f"--output {inside} is inside the input {tiny_dataset}" in _one_error_line(capsys.readouterr().err)
    assert target.read_text() == "mine" and os.listdir(folder) == ["thesis.tex"] and not inside.exists()


def test_every_command_documents_the_output_rule():
    for name in ("test", "stylize"):
        text = (ROOT / f"{name}.py").read_text()
        assert re.search(r"not the input folder or inside it|never the input folder or inside it", text), name


def test_report_output_inside_a_folder_it_reads_is_refused(tiny_dataset, tmp_path, capsys):
    cfg = tmp_path / "report.yaml"
    cfg.write_text(f"input: {tiny_dataset / 'testB'}\nreference: {tiny_dataset / 'trainA'}\n"
                   f"ground_truth: {tiny_dataset / 'testA'}\nmethods:\n  - {{method: gatys}}\n")
    for folder in ("trainA", "testA", "testB"):
        out = tiny_dataset / folder / "report"
        assert report_cli.main(["--config", str(cfg), "--output", str(out)]) == 2
        assert f"--output {out} is inside the input {tiny_dataset / folder}" in _one_error_line(capsys.readouterr().err)
        assert not out.exists()


def test_report_that_cannot_be_written_is_one_line(tiny_dataset, tmp_path, capsys, monkeypatch):
    cfg = _report_config(tmp_path, tiny_dataset)
    out = tmp_path / "report"
    _fail_writing(monkeypatch, "index.html")
    code = report_cli.main(["--config", str(cfg), "--output", str(out)])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and f"cannot write the report into {out}: Read-only file system" in line
    assert (out / "outputs" / "gatys" / "0000.png").is_file()  # the method's work is kept for the rerun


def test_a_failed_rewrite_keeps_the_previous_file(tmp_path, monkeypatch):
    """Reports, records and configs are written atomically: a full disk mid-write leaves the
    previous version whole and no temp file behind."""
    from utils.files import write_text_atomic

    path = write_text_atomic(tmp_path / "metrics.json", '{"old": 1}')
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(path, '{"new": 2}')
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert path.read_text() == '{"old": 1}' and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
