"""``test.py --gallery`` (utils/gallery.py): the page needs nothing outside its folder, names rows
by the input, and marks rows whose output another checkpoint made (issue 22 item 5, issue 23
item 14)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from image_corpus import load_script, noise
from PIL import Image

from models.cyclegan import build_generator
from utils.gallery import GalleryMaker, read_record, write_gallery

cli = load_script("test")


def _generator(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_generator(ngf=8, n_blocks=1, init_gain=0.2).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def generators(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gens")
    return _generator(root / "old" / "latest_net_G_A.pth", 0), _generator(root / "new" / "latest_net_G_A.pth", 1)


def _test(capsys, checkpoint: Path, src: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    code = cli.main(["--checkpoint", str(checkpoint), "--input", str(src), "--output", str(out), "--gallery",
                     "--no-progress", "--device", "cpu", *extra])
    o, e = capsys.readouterr()
    return code, o, e


def _srcs(page: str) -> list[str]:
    return re.findall(r'<img loading="lazy" src="([^"]+)"', page)


def test_a_moved_gallery_keeps_its_input_column_and_names_rows_by_input(generators, tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(noise(200, 150, seed=1)).save(src / "coffee.JPG")  # larger than a thumbnail
    Image.fromarray(noise(12, 8, seed=2)).save(src / "b.png")
    code, _, err = _test(capsys, generators[0], src, tmp_path / "out")
    assert code == 0, err
    moved = tmp_path / "elsewhere" / "gallery"
    moved.parent.mkdir()
    shutil.move(tmp_path / "out", moved)
    shutil.rmtree(src)  # the inputs are gone too: the page still shows them
    page = (moved / "index.html").read_text()
    srcs = _srcs(page)
    assert len(srcs) == 4 and all((moved / s).is_file() for s in srcs), srcs
    thumb = Image.open(moved / "_gallery_inputs" / "coffee.png.jpg")
    assert thumb.size == (200, 150) and thumb.format == "JPEG"  # under 384 px: kept at its size
    # The name column is the input's name, the output's name sits under the output.
    names = re.findall(r'<td title="[^"]*">([^<]+)', page)
    assert names == ["b.png", "coffee.JPG"]
    assert "<div class=\"o\">coffee.png</div>" in page


def test_rows_of_an_older_checkpoint_are_marked_stale(generators, tmp_path, capsys):
    old, new = generators
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(2):
        Image.fromarray(noise(12, 8, seed=i)).save(src / f"p{i}.png")
    assert _test(capsys, old, src, out)[0] == 0
    Image.fromarray(noise(12, 8, seed=5)).save(src / "p2.png")  # a new input: only it is made by the new file

    code, o, err = _test(capsys, new, src, out)
    assert code == 0 and "translated 1, skipped 2" in o
    page = (out / "index.html").read_text()
    assert page.count("<tr class=stale>") == 2 and "2 of 3 rows show earlier outputs" in page
    notes = re.findall(r"stale: made by ([^<]*)", page)  # what made them: the old file's describe() line
    assert len(notes) == 2 and all(str(old) in n and str(new) not in n for n in notes), notes
    assert "gallery: 2 of 3 row(s) show earlier outputs" in err

    # Unchanged rerun with the new checkpoint: still stale (nothing remade), the record survives it.
    assert _test(capsys, new, src, out)[0] == 1
    assert (out / "index.html").read_text().count("<tr class=stale>") == 2
    # An output replaced by hand is of unknown origin, whatever the record said.
    Image.fromarray(noise(12, 8, seed=9)).save(out / "p2.png")
    _test(capsys, new, src, out)
    page = (out / "index.html").read_text()
    assert page.count("<tr class=stale>") == 3 and page.count("unknown origin") == 1
    # --overwrite remakes every row with the new checkpoint: nothing stale.
    code, o, err = _test(capsys, new, src, out, "--overwrite")
    assert code == 0 and "<tr class=stale>" not in (out / "index.html").read_text() and "stale" not in err


def test_a_gallery_without_a_record_counts_its_skipped_rows_as_stale(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pairs = []
    for i in range(2):
        Image.fromarray(noise(8, 8, seed=i)).save(tmp_path / f"s{i}.png")
        Image.fromarray(noise(8, 8, seed=i + 3)).save(out / f"s{i}.png")
        pairs.append((tmp_path / f"s{i}.png", out / f"s{i}.png"))
    maker = GalleryMaker.of({"method": "x", "files": ["a"]}, "X from a")
    result = write_gallery(out, pairs, written={out / "s0.png"}, maker=maker)
    assert result.stale_rows == 1  # s1.png was there before, nobody recorded what made it
    record = read_record(result.path)
    assert list(record["rows"]) == ["s0.png"] and record["makers"] == {maker.digest: "X from a"}
    # The next gallery of the same maker that skips s0.png trusts the record (same bytes).
    assert write_gallery(out, pairs, written=set(), maker=maker).stale_rows == 1
    assert GalleryMaker.of({"method": "x", "files": ["b"]}, "X from b").digest != maker.digest
