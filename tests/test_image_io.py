"""data/image_io.py: decoding every kind of file users have (and refusing the bad ones by name),
atomic encoding, the value ranges of the networks, working sizes and padding."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from image_corpus import BAD, ODD, SIXTEEN_BIT_VALUE, gradient, make_corpus
from PIL import Image

from data.image_io import (
    BadImageError,
    list_images,
    load_rgb,
    longer_side_to,
    output_suffix,
    pad_to_multiple,
    padded_size,
    pil_to_uint8,
    read_image,
    save_image,
    to_model_range,
    to_uint8,
    uint8_to_pil,
    uint8_to_unit,
    unit_to_uint8,
    working_size,
)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus")


# ---------------------------------------------------------------------------------------------
# Decoding


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


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (128, 0), (129, 1), (200, 1), (32639, 127),
                                                 (SIXTEEN_BIT_VALUE, 128), (65535, 255)])
def test_16_bit_grey_is_scaled_by_257_with_rounding(tmp_path: Path, value: int, expected: int) -> None:
    # round(v / 257): 32895 -> 128 (truncating would give 127); a dark 16-bit image stays dark (200 -> 1).
    path = _save(Image.fromarray(np.full((3, 4), value, dtype=np.uint16)), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")  # really decoded as a 16-bit image
    assert load_rgb(path).getpixel((1, 1)) == (expected,) * 3


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


def test_corpus_lists_only_image_files(corpus: Path) -> None:
    names = {p.name for p in list_images(corpus)}
    assert names == set(BAD) | set(ODD)


@pytest.mark.parametrize("name", list(BAD))
def test_bad_image_raises_naming_the_file(corpus: Path, name: str) -> None:
    with pytest.raises(BadImageError) as e:
        load_rgb(corpus / name)
    assert e.value.path == str(corpus / name) and str(corpus / name) in str(e.value)
    assert BAD[name] in e.value.reason


def test_image_over_the_configured_pixel_limit_is_refused(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    gradient(64, 64).save(path)
    assert load_rgb(path).size == (64, 64)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 px is now over the limit (a warning in PIL)
    with pytest.raises(BadImageError, match="too large"):
        load_rgb(path)


def test_odd_images_are_converted_correctly(corpus: Path) -> None:
    def px(name: str, xy=(0, 0)) -> tuple[int, ...]:
        img = load_rgb(corpus / name)
        assert img.mode == "RGB"
        return img.getpixel(xy)

    r, g, b = px("cmyk.jpg", (20, 20))
    assert r > 230 and g < 25 and b < 25, (r, g, b)
    assert px("sixteen_bit.png") == (128, 128, 128)
    assert px("palette_alpha.png", (5, 5)) == (0, 255, 0)
    assert px("palette_alpha.png", (35, 5)) == (255, 255, 255)  # transparent -> white background
    assert px("gray.png") == (77, 77, 77)
    rotated = load_rgb(corpus / "exif_rotated.jpg")
    assert rotated.size == (30, 60)  # portrait after applying the orientation
    top, bottom = rotated.getpixel((15, 5)), rotated.getpixel((15, 55))
    assert top[0] > 200 and top[2] < 60, top  # the red third is now on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    assert px("one_pixel.png") == (10, 200, 30)


def test_dangling_symlink_is_listed_and_refused_by_name(tmp_path: Path) -> None:
    # Listed (so a command reports it as failed) instead of silently missing from the folder.
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "ok.png").write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["gone.png", "ok.png"]
    with pytest.raises(BadImageError) as e:
        read_image(tmp_path / "gone.png")
    assert e.value.path == str(tmp_path / "gone.png") and "dangling symbolic link" in e.value.reason


def test_alpha_is_kept_apart_only_when_there_is_transparency(tmp_path: Path) -> None:
    a = np.tile(np.arange(0, 250, 50, dtype=np.uint8), (3, 1))  # 3 x 5, alpha 0..200
    rgba = np.dstack([np.full((3, 5, 3), 40, np.uint8), a])
    path = _save(Image.fromarray(rgba), tmp_path / "a.png")
    rgb, alpha = read_image(path, keep_alpha=True)
    assert rgb.mode == "RGB" and np.array_equal(np.asarray(alpha), a)
    assert read_image(path)[1] is None  # not asked for
    opaque = _save(Image.new("RGBA", (2, 2), (1, 2, 3, 255)), tmp_path / "o.png")
    assert read_image(opaque, keep_alpha=True)[1] is None  # fully opaque: no alpha to put back


# ---------------------------------------------------------------------------------------------
# Encoding


def test_save_image_formats_alpha_and_no_temp_files(tmp_path: Path) -> None:
    rgba = Image.fromarray(np.dstack([gradient(8, 6), np.full((6, 8), 90, np.uint8)]))
    save_image(rgba, tmp_path / "sub" / "x.png")
    save_image(rgba, tmp_path / "x.jpg", quality=90)
    with Image.open(tmp_path / "sub" / "x.png") as png, Image.open(tmp_path / "x.jpg") as jpg:
        assert png.mode == "RGBA" and np.asarray(png)[0, 0, 3] == 90
        assert jpg.format == "JPEG" and jpg.mode == "RGB"  # JPEG cannot hold alpha: dropped, not an error
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["sub", "x.jpg", "x.png"]
    assert output_suffix("same", ".TIF") == ".TIF" and output_suffix("jpg", ".png") == ".jpg"
    with pytest.raises(ValueError, match="valid: same, png"):
        output_suffix("gif", ".png")


def test_failed_save_keeps_the_previous_file_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    dst = tmp_path / "out.png"
    save_image(gradient(4, 4), dst)
    before = dst.read_bytes()

    def full_disk(self, fp, *args, **kwargs):
        fp.write(b"half") if hasattr(fp, "write") else Path(fp).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        save_image(gradient(5, 5), dst)
    assert dst.read_bytes() == before and os.listdir(tmp_path) == ["out.png"]


# ---------------------------------------------------------------------------------------------
# Value ranges and sizes


def test_value_ranges_round_trip_every_uint8_value() -> None:
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    m = to_model_range(x.clone())
    assert m.min() == -1.0 and m.max() == 1.0 and m.dtype == torch.float32
    assert torch.equal(to_uint8(m), x)
    u = uint8_to_unit(x.clone())
    assert u[0, 0, 0, 1].item() == pytest.approx(1 / 255) and torch.equal(unit_to_uint8(u), x)
    assert to_uint8(torch.tensor([-3.0, 0.0, 3.0])).tolist() == [0, 128, 255]  # clamped; 127.5 rounds to even 128
    assert unit_to_uint8(torch.tensor([-0.5, 0.5, 1.5])).tolist() == [0, 128, 255]


def test_pil_and_uint8_tensors() -> None:
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    t = pil_to_uint8(Image.fromarray(arr))
    assert t.shape == (3, 2, 3) and t.dtype == torch.uint8 and t[2, 1, 0].item() == arr[1, 0, 2]
    assert np.array_equal(np.asarray(uint8_to_pil(t)), arr)
    grey = pil_to_uint8(Image.fromarray(arr[..., 0]))
    assert grey.shape == (1, 2, 3) and uint8_to_pil(grey).mode == "L"
    with pytest.raises(ValueError, match="2 channels"):
        uint8_to_pil(torch.zeros(2, 4, 4, dtype=torch.uint8))


def test_working_sizes() -> None:
    assert working_size((37, 53), max_size=16) == (11, 16)
    assert working_size((37, 53), load_size=256) == (256, 367)
    assert working_size((37, 53), load_size=256, max_size=300) == (209, 300)
    assert working_size((37, 53)) == (37, 53)
    assert longer_side_to((40, 20), 16) == (16, 8) and longer_side_to((40, 20), 0) == (40, 20)


def test_reflection_padding_to_a_multiple_and_back() -> None:
    assert padded_size(53, 37) == (56, 40) and padded_size(3, 5) == (8, 8)
    x = torch.arange(53 * 37, dtype=torch.float32).view(1, 1, 53, 37)
    padded, top, left = pad_to_multiple(x, 4, 8)
    assert padded.shape == (1, 1, 56, 40) and (top, left) == (1, 1)
    assert torch.equal(padded, torch.nn.functional.pad(x, (1, 2, 1, 2), mode="reflect"))
    assert torch.equal(padded[..., top:top + 53, left:left + 37], x)
    same, t, le = pad_to_multiple(torch.zeros(1, 3, 8, 12))
    assert same.shape == (1, 3, 8, 12) and (t, le) == (0, 0)
    # 2 x 3 up to 8 x 8: reflection cannot reach that far, edge copies instead.
    tiny, top, left = pad_to_multiple(torch.arange(6.0).view(1, 1, 2, 3), 4, 8)
    assert tiny.shape == (1, 1, 8, 8) and (top, left) == (3, 2)
    assert tiny[0, 0, 0, 0] == 0 and tiny[0, 0, -1, -1] == 5


# Hostile round 3: float TIFFs with NaN / Inf, 32-bit integer TIFFs past 16 bits.


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_float_pixels_are_an_error_naming_the_file(tmp_path: Path, bad: float) -> None:
    arr = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    arr[3, 4] = bad
    path = _save(Image.fromarray(arr, mode="F"), tmp_path / "f.tif")
    with pytest.raises(BadImageError) as e:
        read_image(path)
    assert e.value.path == str(path)


def test_finite_float_tiff_still_decodes(tmp_path: Path) -> None:
    arr = np.linspace(-2, 6, 64, dtype=np.float32).reshape(8, 8)
    rgb, _ = read_image(_save(Image.fromarray(arr, mode="F"), tmp_path / "f.tif"))
    grey = np.asarray(rgb)[..., 0]
    assert grey.min() == 0 and grey.max() == 255


def test_32_bit_integers_are_scaled_by_their_real_range(tmp_path: Path) -> None:
    arr = (np.arange(64, dtype=np.int32) * 15_000).reshape(8, 8)  # 0 .. 945000
    rgb, _ = read_image(_save(Image.fromarray(arr, mode="I"), tmp_path / "i.tif"))
    grey = np.asarray(rgb)[..., 0].astype(int).ravel()
    expected = np.rint(np.arange(64) * 15_000 / 945_000 * 255).astype(int)
    assert np.array_equal(grey, expected)  # a gradient, not clipped to white above 65535
