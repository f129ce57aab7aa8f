"""Running a method over folders: utils/translate.run_folder (batching, sizes, alpha, formats, bad
files, out of memory), test.py on folders of awkward images, and the --gallery page (utils/gallery.py).

Output-folder rules (never inside the input, unique names, read-only folders) are in
test_output_safety.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from image_corpus import BAD, ODD, SIXTEEN_BIT_VALUE, load_script, make_corpus, noise, save_noise
from PIL import Image

from data.image_io import load_rgb
from methods.base import Method
from models.cyclegan import build_discriminator, build_generator
from utils.translate import FolderJob, TranslateError, run_folder

cli = load_script("test")


@pytest.fixture(scope="module")
def gen_file(tmp_path_factory) -> Path:
    """A tiny generator as the public reference saves it (a plain state_dict)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gen") / "latest_net_G_A.pth"
    torch.save(build_generator(ngf=8, n_blocks=1, init_gain=0.2).state_dict(), path)
    return path


@pytest.fixture
def run(tiny_config, make_trainer) -> Path:
    """A run folder with a step-12 checkpoint written by the trainer."""
    trainer = make_trainer(tiny_config())
    trainer.step = 12
    trainer.save()
    return trainer.run_dir


class Identity(Method):
    """Output = input: the folder runner's own behaviour shows in the files, value for value.
    ``oom_above``: a batch larger than this raises the allocator's out-of-memory error."""

    key = "identity"

    def __init__(self, oom_above: int | None = None, oom_width: int | None = None, scale: float = 1.0,
                 keeps_size: bool = True) -> None:
        super().__init__(torch.device("cpu"))
        self.oom_above, self.oom_width, self.scale, self._keeps = oom_above, oom_width, scale, keeps_size
        self.calls: list[tuple[int, ...]] = []

    def default_name(self) -> str:
        return "Identity"

    def settings(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return "identity"

    def working_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return (round(size[0] * self.scale), round(size[1] * self.scale))

    @property
    def keeps_size(self) -> bool:
        return self._keeps

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(images.shape))
        if (self.oom_above is not None and len(images) > self.oom_above) or images.shape[-1] == self.oom_width:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return images.clone()

    def last_losses(self) -> dict[str, list[float]] | None:
        return None


def _job(src: Path, out: Path, **kw) -> FolderJob:
    return FolderJob(src, out, progress=False, **kw)


def _run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--no-progress", "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


def make_awkward_folder(folder: Path) -> dict[str, tuple[int, int]]:
    """Awkward inputs; returns relative output name -> expected (width, height) for the good ones."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir(exist_ok=True)
    Image.fromarray(noise(37, 53)).save(folder / "odd.png")
    Image.fromarray(noise(20, 31, 1, seed=1)).save(folder / "grey.png")
    rgba = np.dstack([noise(33, 17, seed=2), np.tile(np.linspace(0, 255, 33, dtype=np.uint8), (17, 1))])
    Image.fromarray(rgba).save(folder / "rgba.png")
    Image.fromarray(noise(21, 19, seed=3)).quantize(16).save(folder / "palette.png", transparency=0)
    deep = (np.arange(24 * 18, dtype=np.uint16).reshape(18, 24) * 150).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep16.png")  # mode I;16
    Image.fromarray(noise(29, 41, seed=4)).convert("CMYK").save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(noise(40, 24, seed=5)).save(folder / "rotated.jpg", exif=exif)
    Image.fromarray(noise(3, 5, seed=6)).save(folder / "tiny.png")
    Image.fromarray(noise(45, 45, seed=7)).save(folder / "sub" / "nested.bmp")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return {"odd.png": (37, 53), "grey.png": (20, 31), "rgba.png": (33, 17), "palette.png": (21, 19),
            "deep16.png": (24, 18), "cmyk.png": (29, 41), "rotated.png": (24, 40), "tiny.png": (3, 5),
            "sub/nested.png": (45, 45)}


# ---------------------------------------------------------------------------------------------
# test.py on folders


def test_folder_of_awkward_images(run, tmp_path, capsys):
    expected = make_awkward_folder(tmp_path / "in")
    out = tmp_path / "out"
    args = ("--checkpoint", str(run), "--input", str(tmp_path / "in"), "--output", str(out), "--recursive")
    code, stdout, stderr = _run_cli(capsys, *args)
    assert code == 0
    assert "loaded G_A (A->B)" in stdout and "step 12" in stdout
    assert "translated 9, skipped 0 (already there), failed 2" in stdout
    assert "images/s" in stdout
    assert f"failed: {tmp_path / 'in' / 'empty.jpg'}: file is empty (0 bytes)" in stderr
    assert f"failed: {tmp_path / 'in' / 'truncated.jpg'}: cannot decode" in stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(expected)
    for name, size in expected.items():
        with Image.open(out / name) as img:
            assert img.size == size, name
            assert img.mode == ("RGBA" if name in ("rgba.png", "palette.png") else "RGB"), name
    # Alpha kept exactly; palette transparency (index 0) comes back as alpha 0 where it was.
    with Image.open(out / "rgba.png") as img, Image.open(tmp_path / "in" / "rgba.png") as src:
        assert np.array_equal(np.asarray(img)[..., 3], np.asarray(src)[..., 3])
    with Image.open(out / "palette.png") as img, Image.open(tmp_path / "in" / "palette.png") as src:
        assert np.array_equal(np.asarray(img)[..., 3] == 0, np.asarray(src) == 0)

    # Second run: everything is there, nothing is overwritten: nothing done, exit 1 (the convention).
    before = (out / "odd.png").stat().st_mtime_ns
    code, stdout, _ = _run_cli(capsys, *args)
    assert code == 1 and "translated 0, skipped 9 (already there), failed 2" in stdout  # nothing done
    assert (out / "odd.png").stat().st_mtime_ns == before
    code, stdout, _ = _run_cli(capsys, *args, "--overwrite", "--batch-size", "1")
    assert code == 0 and "translated 9, skipped 0 (already there), failed 2" in stdout
    assert (out / "odd.png").stat().st_mtime_ns != before

    # Not recursive: sub/ is left out.
    code, stdout, _ = _run_cli(capsys, "--checkpoint", str(run), "--input", str(tmp_path / "in"),
                               "--output", str(tmp_path / "flat"))
    assert code == 0 and "translated 8," in stdout and not (tmp_path / "flat" / "sub").exists()


def test_translate_reports_each_bad_image_and_translates_the_rest(gen_file, tmp_path, capsys):
    corpus = make_corpus(tmp_path / "corpus")
    out_dir = tmp_path / "out"
    code, out, err = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(corpus), "--output",
                              str(out_dir), "--workers", "1")
    assert code == 0, out + err
    assert f"translated {len(ODD)}, skipped 0 (already there), failed {len(BAD)}" in out
    for name, reason in BAD.items():
        assert re.search(rf"failed: {re.escape(str(corpus / name))}: [^\n]*{reason}", err), f"{name}:\n{err}"
    for name in ODD:
        produced = out_dir / (Path(name).stem + ".png")
        assert Image.open(produced).size == load_rgb(corpus / name).size, name
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(Path(n).stem + ".png" for n in ODD)


def test_cli_reports_bad_checkpoint_and_empty_inputs(gen_file, tmp_path, capsys):
    save_noise(tmp_path / "in" / "a.png")
    torch.save(build_discriminator(ndf=8).state_dict(), tmp_path / "D.pth")
    code, _, err = _run_cli(capsys, "--checkpoint", str(tmp_path / "D.pth"), "--input", str(tmp_path / "in"),
                            "--output", str(tmp_path / "o"))
    assert code == 2 and err.startswith(f"error: {tmp_path / 'D.pth'}: ") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    code, _, err = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(tmp_path / "nope"),
                            "--output", str(tmp_path / "o"))
    assert code == 2 and f"input {tmp_path / 'nope'} does not exist" in err
    code, _, err = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(tmp_path / "in"),
                            "--output", str(tmp_path / "o"), "--amp", "fp16")
    if not torch.cuda.is_available():
        assert code == 2 and "fp16 needs a CUDA device" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"")
    (tmp_path / "bad" / "y.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, out, err = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(tmp_path / "bad"),
                              "--output", str(tmp_path / "o2"))
    assert code == 1 and "failed 2" in out and "x.png" in err and "y.jpg" in err
    assert "nothing done: no image of" in err and "no images found" not in err
    (tmp_path / "none").mkdir()
    code, _, err = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(tmp_path / "none"),
                            "--output", str(tmp_path / "o3"))
    assert code == 1 and "no images found" in err
    # One image file as input, output named after it.
    code, out, _ = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(tmp_path / "in" / "a.png"),
                            "--output", str(tmp_path / "single"), "--format", "jpg")
    assert code == 0 and Image.open(tmp_path / "single" / "a.jpg").size == (16, 16)
    assert os.listdir(tmp_path / "single") == ["a.jpg"]


def test_alpha_drop_jpg_format_and_gallery(gen_file, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.dstack([noise(18, 14), np.full((14, 18), 100, np.uint8)])).save(src / "a.png")
    Image.fromarray(noise(18, 14, seed=1)).save(src / "a.jpg")
    Image.fromarray(noise(10, 10, seed=2)).save(src / "b.tif")
    code, out, _ = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(src), "--output",
                            str(tmp_path / "drop"), "--alpha-channel", "drop", "--gallery")
    assert code == 0 and "translated 3, skipped 0 (already there), failed 0" in out
    assert f"gallery: {tmp_path / 'drop' / 'index.html'}" in out
    names = sorted(p.name for p in (tmp_path / "drop").glob("*.png"))
    assert names == ["a.jpg.png", "a.png.png", "b.png"]
    assert Image.open(tmp_path / "drop" / "a.png.png").mode == "RGB"
    html_text = (tmp_path / "drop" / "index.html").read_text()
    assert html_text.count("<tr><td") == 3 and 'src="a.png.png"' in html_text and "../in" not in html_text
    # Every input is shown from a small copy inside the output folder (TIFF too: browsers cannot show it).
    assert 'src="_gallery_inputs/a.jpg.png.png"' in html_text and 'src="_gallery_inputs/b.png.png"' in html_text
    assert Image.open(tmp_path / "drop" / "_gallery_inputs" / "b.png.png").size == (10, 10)
    assert "<p>3 images</p>" in html_text and "Failed" not in html_text

    code, _, _ = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(src), "--output",
                          str(tmp_path / "jpg"), "--format", "jpg")
    assert code == 0
    with Image.open(tmp_path / "jpg" / "a.png.jpg") as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (18, 14)
    code, _, _ = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(src), "--output",
                          str(tmp_path / "same"), "--format", "same")
    assert code == 0 and sorted(p.name for p in (tmp_path / "same").iterdir()) == ["a.jpg", "a.png", "b.tif"]


def test_gallery_title_names_the_method_its_step_and_settings(run, tmp_path, capsys):
    save_noise(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"")
    code, _, _ = _run_cli(capsys, "--checkpoint", str(run), "--input", str(tmp_path / "in"), "--output",
                          str(tmp_path / "out"), "--gallery", "--direction", "BtoA")
    assert code == 0
    page = (tmp_path / "out" / "index.html").read_text()
    title = re.search(r"<title>(.*?)</title>", page).group(1)
    assert title.startswith("CycleGAN (step 12): ")
    assert re.search(r"<h1>CycleGAN \(step 12\): [^<]*in -&gt; [^<]*out</h1>", page)
    subtitle = re.search(r"<p class='s'>(.*?)</p>", page).group(1)
    for part in ("step 12", "net G_B", "direction BtoA", "ResNet generator ngf=8, n_blocks=1",
                 "preserve_color False", str(run / "checkpoints" / "step_00000012.pt")):
        assert part in subtitle, part
    assert "<h2>Failed (1)</h2>" in page and "broken.png: file is empty (0 bytes)" in page


def test_dangling_symlink_is_reported_as_failed(gen_file, tmp_path, capsys):
    save_noise(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "link.png").symlink_to(tmp_path / "gone.png")
    code, out, err = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(tmp_path / "in"),
                              "--output", str(tmp_path / "out"), "--gallery")
    assert code == 0 and "translated 1, skipped 0 (already there), failed 1" in out
    assert f"failed: {tmp_path / 'in' / 'link.png'}: file not found (a dangling symbolic link?)" in err
    assert "link.png: file not found" in (tmp_path / "out" / "index.html").read_text()


def test_huge_load_size_fails_the_image_instead_of_allocating(gen_file, tmp_path, capsys, monkeypatch):
    save_noise(tmp_path / "in" / "a.png", 16, 12)
    real_resize = Image.Image.resize

    def resize(self, size, *args, **kwargs):  # a regression fails here instead of allocating gigabytes
        assert size[0] * size[1] <= 4096 * 4096, f"tried to resize to {size}"
        return real_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", resize)
    code, out, err = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(tmp_path / "in"),
                              "--output", str(tmp_path / "out"), "--load-size", "16000")
    # 16000 x 21333 px = 341 M px: refused per image with the way out, before any tensor is made.
    assert code == 1 and "failed 1" in out
    assert re.search(r"a\.png: 21333x16000 is too large to process; use --max-size", err), err
    code, _, err = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(tmp_path / "in"),
                            "--output", str(tmp_path / "out"), "--load-size", "100000")
    assert code == 2 and "error: --load-size must be in [1, 16384], got 100000" in err
    code, _, _ = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(tmp_path / "in"),
                          "--output", str(tmp_path / "out"), "--load-size", "16000", "--max-size", "64")
    assert code == 0 and Image.open(tmp_path / "out" / "a.png").size == (16, 12)


def test_non_utf8_file_name_in_the_gallery(gen_file, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    Image.fromarray(noise(12, 8)).save(os.fsencode(src) + b"/caf\xe9.png", format="PNG")
    code, out, err = _run_cli(capsys, "--checkpoint", str(gen_file), "--input", str(src), "--output",
                              str(tmp_path / "out"), "--gallery")
    assert code == 0, err
    assert sorted(os.listdir(os.fsencode(tmp_path / "out"))) == [b"_gallery_inputs", b"caf\xe9.png", b"index.html"]
    assert Image.open(tmp_path / "out" / name).size == (12, 8)
    page = (tmp_path / "out" / "index.html").read_bytes().decode("utf-8")  # the page itself is valid UTF-8
    assert 'src="caf%E9.png"' in page and 'src="_gallery_inputs/caf%E9.png.png"' in page and "caf\ufffd.png" in page


# ---------------------------------------------------------------------------------------------
# run_folder itself, with a method whose output is its input


def test_16_bit_input_reaches_the_method_rounded(tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((4, 6), SIXTEEN_BIT_VALUE, np.uint16)).save(tmp_path / "in" / "d.png")
    s = run_folder(Identity(), _job(tmp_path / "in", tmp_path / "out"))
    assert s.translated == 1
    with Image.open(tmp_path / "out" / "d.png") as img:
        assert img.mode == "RGB" and np.all(np.asarray(img) == 128)  # round(32895 / 257), not 127


def test_identity_round_trip_batches_by_size_and_keeps_order(tmp_path):
    src = tmp_path / "in"
    for i, (w, h) in enumerate([(8, 6), (10, 6), (8, 6), (8, 6), (10, 6)]):
        save_noise(src / f"{i}.png", w, h, seed=i)
    (src / "3b.png").write_bytes(b"")
    m = Identity()
    s = run_folder(m, _job(src, tmp_path / "out", batch_size=2, workers=1))
    assert (s.translated, s.skipped, [Path(f).name for f, _ in s.failed]) == (5, 0, ["3b.png"])
    # Equal sizes go together: 0 + 2, then 1 + 4, then the 8 x 6 left over (3).
    assert m.calls == [(2, 3, 6, 8), (2, 3, 6, 10), (1, 3, 6, 8)]
    assert [p.name for p, _ in s.pairs] == ["0.png", "1.png", "2.png", "3.png", "4.png"]  # input order
    for i in range(5):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"{i}.png")),
                              np.asarray(Image.open(src / f"{i}.png")))
    assert 0 < s.method_seconds <= s.seconds and s.seconds_per_image == pytest.approx(s.method_seconds / 5)
    again = run_folder(m, _job(src, tmp_path / "out"))
    assert (again.translated, again.skipped, len(again.pairs)) == (0, 5, 5) and again.seconds_per_image is None


def test_out_of_memory_retries_one_by_one_then_fails_only_that_image(tmp_path):
    src = tmp_path / "in"
    for i in range(3):
        save_noise(src / f"{i}.png", 8, 8, seed=i)
    save_noise(src / "wide.png", 24, 8)
    m = Identity(oom_above=1, oom_width=24)
    s = run_folder(m, _job(src, tmp_path / "out", batch_size=4, workers=1))
    assert s.translated == 3
    assert s.failed == [(str(src / "wide.png"), "out of memory at 24x8; use --max-size (e.g. 1024) or a smaller "
                                                "--batch-size")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png"]

    class Broken(Identity):
        def __call__(self, images):
            raise ValueError("a bug, not memory")

    with pytest.raises(ValueError, match="a bug"):  # other errors are not swallowed as per-image failures
        run_folder(Broken(), _job(src, tmp_path / "out2"))


def test_size_options_and_methods_that_work_at_another_size(tmp_path):
    save_noise(tmp_path / "in" / "a.png", 37, 53)
    m = Identity()
    run_folder(m, _job(tmp_path / "in", tmp_path / "small", max_size=16))
    assert m.calls == [(1, 3, 16, 11)] and Image.open(tmp_path / "small" / "a.png").size == (37, 53)
    half = Identity(scale=0.5, keeps_size=False)  # like Gatys at image.size: the result stays at its size
    run_folder(half, _job(tmp_path / "in", tmp_path / "half"))
    assert half.calls == [(1, 3, 26, 18)] and Image.open(tmp_path / "half" / "a.png").size == (18, 26)
    with pytest.raises(TranslateError, match="does not exist"):
        run_folder(m, _job(tmp_path / "missing", tmp_path / "o"))
    with pytest.raises(TranslateError, match="batch size must be >= 1"):
        run_folder(m, _job(tmp_path / "in", tmp_path / "o", batch_size=0))
    with pytest.raises(TranslateError, match="unknown output format 'gif'"):
        run_folder(m, _job(tmp_path / "in", tmp_path / "o", fmt="gif"))


def test_only_the_listed_files_and_alpha_put_back_at_the_working_size(tmp_path):
    src = tmp_path / "in"
    save_noise(src / "a.png")
    save_noise(src / "b.png")
    rgba = np.dstack([noise(20, 10), np.tile(np.linspace(0, 255, 20, dtype=np.uint8), (10, 1))])
    Image.fromarray(rgba).save(src / "c.png")
    half = Identity(scale=0.5, keeps_size=False)
    s = run_folder(half, _job(src, tmp_path / "out", files=[src / "c.png", src / "a.png"]))
    assert [p.name for p, _ in s.pairs] == ["c.png", "a.png"] and not (tmp_path / "out" / "b.png").exists()
    with Image.open(tmp_path / "out" / "c.png") as img:
        assert img.mode == "RGBA" and img.size == (10, 5)  # alpha resized to the output, not dropped
