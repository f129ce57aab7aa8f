"""Data: image modes, transforms, the unaligned dataset and sampler, download (demo dataset: test_demo.py)."""

from __future__ import annotations

import functools
import http.server
import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.download import DownloadError, download_dataset
from data.image_io import BadImageError, load_rgb
from data.unaligned import DatasetError, EpochSampler, Transform, UnalignedDataset, image_folder, split_train_val


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_modes_become_rgb(tmp_path: Path) -> None:
    gray = _save(Image.new("L", (5, 4), 100), tmp_path / "g.png")
    assert load_rgb(gray).getpixel((0, 0)) == (100, 100, 100)

    rgba = Image.new("RGBA", (3, 3), (255, 0, 0, 0))  # fully transparent red
    assert load_rgb(_save(rgba, tmp_path / "a.png")).getpixel((1, 1)) == (255, 255, 255)

    pal = Image.new("P", (2, 2), 0)
    pal.putpalette([10, 20, 30] + [0] * 765)
    assert load_rgb(_save(pal, tmp_path / "p.png")).getpixel((0, 0)) == (10, 20, 30)

    deep = Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16))
    assert load_rgb(_save(deep, tmp_path / "d.png")).getpixel((0, 0)) == (255, 255, 255)

    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    r, g, b = load_rgb(_save(cmyk, tmp_path / "c.jpg", quality=95)).getpixel((2, 2))
    assert r > 200 and g < 60 and b < 60


def test_exif_rotation_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (6, 2), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(img, tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_rgb(path).size == (2, 6)


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_bad_files_raise_with_name(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.jpg"
    if content is None:  # truncated JPEG
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "JPEG")
        content = buf.getvalue()[:200]
    path.write_bytes(content)
    with pytest.raises(BadImageError) as err:
        load_rgb(path)
    assert "bad.jpg" in str(err.value)


def test_transform_modes() -> None:
    img = Image.new("RGB", (50, 30))
    rng = np.random.default_rng(0)
    assert Transform("resize_and_crop", 36, 32)(img, rng).size == (32, 32)
    assert Transform("crop", 36, 16)(img, rng).size == (16, 16)
    assert Transform("scale_width", 40, 40)(img, rng).size == (40, 24)
    assert Transform("scale_width_and_crop", 40, 20)(img, rng).size == (20, 20)
    assert Transform("none", 0, 0)(Image.new("RGB", (37, 53)), rng).size == (36, 52)


def test_eval_transform_is_deterministic_center_crop() -> None:
    arr = np.arange(40 * 40 * 3, dtype=np.uint8).reshape(40, 40, 3)
    img = Image.fromarray(arr)
    tf = Transform("crop", 40, 20, flip=True, train=False)
    out = np.asarray(tf(img, np.random.default_rng(1)))
    assert np.array_equal(out, arr[10:30, 10:30])


def _dataset(root: Path, **kw) -> UnalignedDataset:
    A, B = image_folder(root, "trainA"), image_folder(root, "trainB")
    return UnalignedDataset(A, B[:5], Transform("resize_and_crop", 36, 32), seed=3, **kw)


def test_unaligned_dataset_semantics(tiny_dataset: Path) -> None:
    ds = _dataset(tiny_dataset)
    assert len(ds) == 8  # max(8, 5)
    s = ds[(0, 2)]
    assert s["A"].dtype == torch.uint8 and s["A"].shape == (3, 32, 32) and s["skipped"] == ""
    assert torch.equal(ds[(4, 6)]["A"], ds[(4, 6)]["A"])  # same (epoch, index) -> same sample
    # A is index % len(A); B is drawn at random: over epochs, index 0 meets several B images.
    seen_B = {ds[(e, 0)]["B"].float().mean().item() for e in range(12)}
    assert len(seen_B) > 2


def test_corrupt_file_is_skipped_and_named(tiny_dataset: Path, tmp_path: Path) -> None:
    files = image_folder(tiny_dataset, "trainA")[:3]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    ds = UnalignedDataset([broken, *files], files, Transform("resize_and_crop", 36, 32))
    s = ds[(0, 0)]
    assert "broken.png" in s["skipped"] and s["A"].shape == (3, 32, 32)
    assert ds[(0, 0)]["skipped"] == ""  # remembered: one warning per file, not per epoch


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="trainA"):
        image_folder(tmp_path, "trainA")
    (tmp_path / "trainA").mkdir()
    (tmp_path / "trainA" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images"):
        image_folder(tmp_path, "trainA")


def test_split_holds_out_last_and_subsets(tmp_path: Path) -> None:
    files = [tmp_path / f"{i}.png" for i in range(10)]
    train, val = split_train_val(files, 2, 5, tmp_path)
    assert val == files[8:] and train == files[:5]
    with pytest.raises(DatasetError, match="val_images"):
        split_train_val(files, 10, 0, tmp_path)


def test_epoch_sampler_shards_and_resumes() -> None:
    data = list(range(10))
    s0, s1 = EpochSampler(data, 2, 0, seed=1), EpochSampler(data, 2, 1, seed=1)
    s0.set_epoch(3)
    s1.set_epoch(3)
    i0, i1 = [i for _, i in s0], [i for _, i in s1]
    assert sorted(i0 + i1) == data and all(e == 3 for e, _ in s0)
    s0.set_epoch(3, start=2)
    assert [i for _, i in s0] == i0[2:] and len(s0) == len(i0) - 2
    s0.set_epoch(4)
    assert [i for _, i in s0] != i0  # a new permutation each epoch


def _serve(folder: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_from_local_server(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "tiny2photo.zip", "w") as zf:
        for sub in ("trainA", "trainB", "testA", "testB"):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (9, 9, 9)).save(buf, "PNG")
            zf.writestr(f"tiny2photo/{sub}/0.png", buf.getvalue())
    (served / "broken.zip").write_bytes(b"nope")
    server = _serve(served)
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
