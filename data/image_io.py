"""Every image <-> tensor conversion of the project, in one module.

* **Decoding**: any file PIL reads -> 8-bit RGB (EXIF orientation applied, greyscale, palette,
  CMYK, 16-bit and float images converted, transparency composited on a background), with the
  alpha channel kept apart when asked. Bad files raise :class:`BadImageError` naming the file.
* **Encoding**: PNG / JPEG / WebP / BMP / TIFF, encoded in memory, written to a temp file,
  checked (every byte on disk), fsynced and renamed: complete or absent.
* **Value ranges**: images travel as uint8 ``(C, H, W)`` tensors in [0, 255] until they reach a
  network; each method converts to its own range with the functions here: ``[-1, 1]``
  (CycleGAN), ``[0, 1]`` (VGG, Gatys, WCT), ``[0, 255]`` (Johnson's convention).
* **Sizes**: the working size of an image (shorter side to ``load_size``, longer side capped at
  ``max_size``, or longer side to ``size``) and reflection padding to a multiple of a network's
  stride, cropped back after.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from utils.errors import UserError
from utils.files import write_bytes_atomic

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# --format value -> (PIL format, file suffix); "same" keeps each input's own suffix.
OUTPUT_FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", ".png"), "jpg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp"), "bmp": ("BMP", ".bmp"),
    "tif": ("TIFF", ".tif"),
}
_SUFFIX_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                  ".tiff": "TIFF", ".ppm": "PPM", ".pgm": "PPM"}
_NO_ALPHA_FORMATS = ("JPEG", "BMP", "PPM")
WHITE = (255, 255, 255)


class StyleImageError(UserError):
    """A style image (a required input) is missing or unreadable; the message names it."""


class NonFiniteImageError(ValueError):
    """A float image with NaN or Inf pixels (no honest 8-bit version exists)."""


class BadImageError(Exception):
    """An image file that cannot be decoded; the message names the file and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Listing and decoding


def is_image_file(path: str | Path) -> bool:
    return str(path).lower().endswith(IMG_EXTENSIONS)


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Sorted image files under ``folder`` (by extension; contents are checked on load). Dangling
    symbolic links are listed too, so a caller reports them as failed instead of missing them."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if (p.is_file() or p.is_symlink()) and is_image_file(p))


def to_8bit_rgb(img: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Any decoded PIL image -> 8-bit RGB (16-bit scaled with rounding, wider integers and floats by
    their real range, transparency composited on ``background``). A float image with NaN / Inf
    pixels raises :class:`NonFiniteImageError`."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=0))
        if lo >= 0 and hi <= 65535:
            # 16-bit PNGs decode as 'I' or 'I;16' with values in 0..65535: scaled by 257, rounded.
            scale = 257.0 if hi > 255 or img.mode.startswith("I;16") else 1.0
            arr = np.clip(np.rint(arr / scale), 0, 255)
        else:  # 32-bit integers beyond 16 bits (or negative): their real range, not a clip to 65535
            lo = min(lo, 0.0)
            arr = np.rint((arr - lo) / (hi - lo) * 255)
        return Image.fromarray(arr.astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img)
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:  # one NaN would make lo/hi NaN and the whole image black
            raise NonFiniteImageError(f"{bad} of {arr.size} pixels are not finite numbers (NaN or Inf)")
        lo, hi = float(np.min(arr)), float(np.max(arr))
        arr = np.rint((arr - lo) / (hi - lo + 1e-12) * 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def _alpha_of(img: Image.Image) -> Image.Image | None:
    """The alpha channel, or None when the image has no transparency or is fully opaque."""
    if "A" in img.getbands() or "transparency" in img.info:
        with contextlib.suppress(ValueError, OSError):  # exotic modes without an RGBA conversion: no alpha
            a = img.convert("RGBA").getchannel("A")
            return None if a.getextrema() == (255, 255) else a
    return None


def read_image(path: str | Path, keep_alpha: bool = False, background: tuple[int, int, int] = WHITE
               ) -> tuple[Image.Image, Image.Image | None]:
    """Decode a file, EXIF orientation applied -> (8-bit RGB, alpha or None).

    Raises :class:`BadImageError` (naming the file) for a missing, empty, truncated, non-image
    or decompression-bomb file.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise BadImageError(path, "file not found (a dangling symbolic link?)")
        if path.stat().st_size == 0:
            raise BadImageError(path, "file is empty (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # decode now, so truncation shows up here and not later
                img = ImageOps.exif_transpose(img)
                return to_8bit_rgb(img, background), (_alpha_of(img) if keep_alpha else None)
    except BadImageError:
        raise
    except NonFiniteImageError as e:
        raise BadImageError(path, f"{e}; fix the file (replace them) or remove it") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImageError(path, f"image too large ({e})") from e
    except UnidentifiedImageError as e:
        raise BadImageError(path, "not a readable image (unknown or corrupt format)") from e
    except MemoryError as e:
        raise BadImageError(path, "too large to decode in memory; use --max-size") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise BadImageError(path, f"cannot decode ({e})") from e


def load_rgb(path: str | Path, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Decode any image file as 8-bit RGB (see :func:`read_image`)."""
    return read_image(path, False, background)[0]


def load_style_images(paths: list[str | Path], longer: int = 0, key: str = "--style") -> list:
    """Style images as float (1, 3, H, W) in [0, 1], longer side resized to ``longer`` (0: as
    they are). Style images are required, so a missing or unreadable one is an error naming it
    (``key`` says where it was given: ``--style``, ``style.images`` ...)."""
    out = []
    for i, p in enumerate(paths):
        where = f"style image {p}" if key.startswith("-") else f"{key}.{i}: {p}"
        if not Path(p).is_file():
            raise StyleImageError(f"{where} does not exist")
        try:
            img = load_rgb(p)
        except BadImageError as e:
            raise StyleImageError(f"{where} cannot be read ({e.reason})") from e
        if longer:
            img = img.resize(longer_side_to(img.size, longer), Image.Resampling.BICUBIC)
        out.append(uint8_to_unit(pil_to_uint8(img)).unsqueeze(0))
    return out


# ---------------------------------------------------------------------------------------------
# Encoding


def output_suffix(fmt: str, source_suffix: str) -> str:
    """The file suffix for ``--format fmt`` (``same``: the source's)."""
    if fmt == "same":
        return source_suffix
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; valid: same, {', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[fmt][1]


def save_image(img: Image.Image, dst: str | Path, quality: int = 95) -> None:
    """Write an image so that ``dst`` is either complete or absent (never a half file a rerun would
    skip as "already there"), whatever the format: encoded in memory, written to a temp file in the
    same folder, checked (every byte on disk: a short write, as PIL's raw BMP/TIFF writers can miss
    on a full disk, is caught), fsynced, then renamed. JPEG and BMP cannot hold alpha: it is
    dropped for them. Raises OSError on failure (the temp file is removed, a previous ``dst`` kept)."""
    dst = Path(dst)
    fmt = _SUFFIX_FORMAT.get(dst.suffix.lower(), "PNG")
    if fmt in _NO_ALPHA_FORMATS and img.mode in ("RGBA", "LA"):
        img = img.convert(img.mode[:-1])
    params = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    write_bytes_atomic(dst, buf.getbuffer())


# ---------------------------------------------------------------------------------------------
# PIL <-> uint8 tensors, and the value ranges of the networks (torch imported on use)


def pil_to_uint8(img: Image.Image):  # -> torch.Tensor
    """PIL RGB or L -> uint8 tensor (C, H, W)."""
    arr = np.array(img, dtype=np.uint8, copy=True)
    arr = arr.reshape(arr.shape[0], arr.shape[1], -1)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def uint8_to_pil(x) -> Image.Image:
    """uint8 tensor (C, H, W), C in (1, 3) -> PIL L or RGB."""
    arr = x.detach().cpu().permute(1, 2, 0).numpy()
    if arr.shape[2] not in (1, 3):
        raise ValueError(f"{arr.shape[2]} channels cannot be saved as an image (1 or 3 can)")
    return Image.fromarray(np.ascontiguousarray(arr[:, :, 0] if arr.shape[2] == 1 else arr))


def to_model_range(x):
    """uint8 [0, 255] -> float [-1, 1] (CycleGAN's range)."""
    return x.float().div_(127.5).sub_(1.0)


def to_uint8(x):
    """float [-1, 1] -> uint8 [0, 255] (rounded)."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round_().to(dtype=_uint8())


def uint8_to_unit(x):
    """uint8 [0, 255] -> float [0, 1] (VGG, Gatys, WCT)."""
    return x.float().div_(255.0)


def unit_to_uint8(x):
    """float [0, 1] -> uint8 [0, 255] (rounded, clamped)."""
    return (x.detach().float().clamp(0, 1) * 255.0).round_().to(dtype=_uint8())


def _uint8():
    return torch.uint8


# ---------------------------------------------------------------------------------------------
# Sizes


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    w, h = size
    return max(1, round(w * scale)), max(1, round(h * scale))


def longer_side_to(size: tuple[int, int], target: int) -> tuple[int, int]:
    """``(width, height)`` scaled so the longer side is ``target`` (aspect ratio kept; 0 = unchanged)."""
    if not target or max(size) == target:
        return size
    return scaled_size(size, target / max(size))


def working_size(size: tuple[int, int], load_size: int | None = None, max_size: int | None = None) -> tuple[int, int]:
    """The ``(width, height)`` an image is processed at.

    ``load_size``: scale so the shorter side is ``load_size`` (e.g. the 256 a model was trained
    at). ``max_size``: then, if the longer side is still above ``max_size``, scale it down to
    that (memory cap for huge images). Neither: the image's own size.
    """
    w, h = size
    scale = load_size / min(w, h) if load_size else 1.0
    if max_size and max(w, h) * scale > max_size:
        scale = max_size / max(w, h)
    return size if scale == 1.0 else scaled_size(size, scale)


def padded_size(height: int, width: int, multiple: int = 4, minimum: int = 8) -> tuple[int, int]:
    """The size a ``height x width`` image is padded to: multiples of ``multiple``, at least ``minimum``."""
    return (max(minimum, -(-height // multiple) * multiple), max(minimum, -(-width // multiple) * multiple))


def pad_to_multiple(x, multiple: int = 4, minimum: int = 8):
    """Pad a float batch (N, C, H, W) by reflection (edge copies where reflection cannot reach)
    so H and W are multiples of ``multiple``; returns (padded, top, left) to crop back with."""
    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w, multiple, minimum)
    top, left = (ph - h) // 2, (pw - w) // 2  # split the padding so both borders see the same context
    pads = (left, pw - w - left, top, ph - h - top)
    if pads == (0, 0, 0, 0):
        return x, 0, 0
    mode = "reflect" if max(pads[:2]) < w and max(pads[2:]) < h else "replicate"
    return F.pad(x, pads, mode=mode), top, left
