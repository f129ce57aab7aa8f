"""Test helpers (not tests): a corpus of bad and odd image files, noise images, one thread for torch.

Imported by the image, data, folder-runner and output-safety tests, which need the same awkward
files: what users' folders really hold (empty and truncated files, text named .jpg, a
decompression bomb header, CMYK, 16-bit, palette transparency, EXIF rotation, one pixel).
"""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

BAD = {  # name -> substring of the reason it is refused with
    "zero_bytes.jpg": "empty",
    "truncated.jpg": "cannot decode",
    "text_named.jpg": "not a readable image",
    "bomb.png": "too large",
}
ODD = ("cmyk.jpg", "sixteen_bit.png", "palette_alpha.png", "gray.png", "exif_rotated.jpg", "one_pixel.png")
SIXTEEN_BIT_VALUE = 32895  # 32895 / 257 = 127.996: rounds to 128 (truncation would give 127)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 100 000 x 100 000 PNG header in a few bytes: over PIL's decompression-bomb limit."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def gradient(w: int, h: int) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1))


def noise(w: int, h: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """uint8 (h, w, channels) noise ((h, w) for one channel)."""
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    return arr[..., 0] if channels == 1 else arr


def save_noise(path: Path, w: int = 16, h: int = 16, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise(w, h, seed=seed)).save(path)
    return path


def truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    gradient(64, 64).save(buf, "JPEG", quality=90)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def make_corpus(folder: Path) -> Path:
    """The bad and odd images, plus files that are not images and must be ignored."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero_bytes.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(truncated_jpeg())
    (folder / "text_named.jpg").write_text("this is not a JPEG\n" * 20)
    (folder / "bomb.png").write_bytes(bomb_png())
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)  # pure red
    Image.fromarray(np.full((40, 40), SIXTEEN_BIT_VALUE, np.uint16)).save(folder / "sixteen_bit.png")
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([0, 0, 255] + [0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 20, 40))  # left half green, right half index 0 = transparent
    pal.save(folder / "palette_alpha.png", transparency=0)
    Image.new("L", (40, 40), 77).save(folder / "gray.png")
    landscape = Image.new("RGB", (60, 30), (0, 0, 255))
    landscape.paste((255, 0, 0), (0, 0, 20, 30))  # red on the left third
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    landscape.save(folder / "exif_rotated.jpg", quality=95, exif=exif)
    Image.new("RGB", (1, 1), (10, 200, 30)).save(folder / "one_pixel.png")
    (folder / "notes.txt").write_text("not an image, not listed\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return folder


def load_script(name: str) -> ModuleType:
    """An entry point (``test.py``, ``stylize.py``, ``report.py``) as a module, loaded by path: a plain
    ``import test`` can resolve to the standard library's ``test`` package."""
    spec = importlib.util.spec_from_file_location(f"cli_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
