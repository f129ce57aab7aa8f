"""The built-in demo dataset: photos <-> "paintings" with a known mapping, made offline.

Photos are random crops of the colour photographs scikit-image ships. Paintings are other
such crops passed through :func:`painterly`, a deterministic, local filter chain written here
(flattened colour regions, vertical brush strokes, a shifted palette, dark contours), so the
mapping is a fixed function of the photo that a small convolutional generator can learn.

Each source photo is cut into three disjoint vertical bands: crops for trainA come from the
first, trainB from the second, the test pairs from the third. So training never sees a
pixel that appears in the other domain or in the test set, and testA/<name> is exactly
painterly(testB/<name>): paired ground truth for PSNR/SSIM.

Layout (as monet2photo: A = paintings, B = photos, so photo -> painting is BtoA):
``trainA/ trainB/ testA/ testB/`` plus ``demo.json`` describing how it was made.

User data is safe: the generator writes only into a folder that does not exist, holds no
files, or that it made itself (``demo.json`` with a manifest of the files it wrote and their
SHA-256). Regenerating its own folder deletes only manifest files, and only those still
holding the bytes it wrote; anything else raises :class:`DemoDatasetError` and changes
nothing. ``demo.json`` is written first as a journal (``complete: false``, every file the run
is about to write) and rewritten last (``complete: true``), so an interrupted run leaves a
folder the next run recognises as its own and regenerates.

examples:
  python -m data.demo --output datasets/demo
  python -m data.demo --output /tmp/demo96 --size 96 --n-train 120 --n-test 24 --seed 1

exit status: 0 made, 1 already there (nothing to do), 2 error (one line: a folder it may not write)
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from options import cli
from utils.errors import DatasetError

# scipy and scikit-image are imported where the images are made, not here: `--help` answers at once.

CLI_HELP = """Make the built-in demo dataset: photos <-> "paintings" with a known mapping, offline.

Photos are random crops of the colour photographs scikit-image ships; paintings are other such
crops passed through a fixed painterly filter (flattened colour regions, vertical brush strokes, a
shifted palette, dark contours), so the mapping is learnable and known. Training crops of A and B
and the test pairs come from disjoint parts of each photo; testA/NAME is the painting of
testB/NAME: paired ground truth for PSNR/SSIM.

Layout (as monet2photo: A = paintings, B = photos, so photo -> painting is BtoA): trainA/ trainB/
testA/ testB/ and demo.json (how it was made, and a manifest of the files written).

Your files are safe: it writes only into a new or empty folder, or one it made itself (then it
replaces only its own, unchanged files); anything else is refused and left as it is.

examples:
  python -m data.demo --output datasets/demo
  python -m data.demo --output /tmp/demo96 --size 96 --n-train 120 --n-test 24 --seed 1

exit status: 0 made, 1 already there (nothing to do), 2 error (one line: a folder it may not write)
"""

PHOTO_SOURCES = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "motorcycle_left", "motorcycle_right",
)
VERSION = 2  # 2: learnable painterly transform, manifest in demo.json
SPLITS = ("trainA", "trainB", "testA", "testB")
MANIFEST = "demo.json"
TMP_MANIFEST = ".demo.json.tmp"


class DemoDatasetError(DatasetError):
    """The demo generator refuses a folder (it would touch files it did not write)."""


@dataclass
class DemoSpec:
    size: int = 96
    n_train_A: int = 120
    n_train_B: int = 120
    n_test: int = 24
    seed: int = 0
    version: int = VERSION

    def check(self, min_count: int = 0) -> None:
        """Raise :class:`DemoSpecError` naming the first value out of range (before anything is
        written). ``min_count``: the fewest images per split (the command asks for 1; a test may
        build a dataset without one domain)."""
        top = COUNT_RANGE[1]
        for flag, value, lo, hi in (("--size", self.size, *SIZE_RANGE), ("--n-train", self.n_train_A, min_count, top),
                                    ("--n-train", self.n_train_B, min_count, top),
                                    ("--n-test", self.n_test, min_count, top), ("--seed", self.seed, 0, 2**31 - 1)):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise DemoSpecError(f"{flag} must be an integer in [{lo}, {hi}], got {value!r}")


# The crops come from photos of about 512 px whose bands are a fifth to two fifths of that wide:
# a larger side only upsamples (and 100000 px would need hundreds of GB); 16 px is the smallest crop.
SIZE_RANGE = (16, 512)
COUNT_RANGE = (1, 100_000)


class DemoSpecError(DatasetError):
    """A demo dataset setting is out of range; the message names it and the valid range."""


@functools.cache
def source_photo(name: str) -> np.ndarray:
    # scikit-image and SciPy load only when images are made: every training run and
    # `python -m data.demo --help` import this module (3 s more under load).
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        img = left if name.endswith("left") else right
    else:
        img = getattr(data, name)()
    out = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    out.flags.writeable = False  # cached and shared: callers must not change it
    return out


# ---------------------------------------------------------------------------------------------
# The painterly transform

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luminance weights
# The palette: each channel is mapped linearly from [0, 1] onto [SHADOW, LIGHT], so no colour is
# black or white, shadows turn violet and lights warm, and blue keeps only a third of its range.
SHADOW = np.array([0.20, 0.14, 0.30])
LIGHT = np.array([1.00, 0.90, 0.45])


def _bilateral(img: np.ndarray, radius: int, sigma_space: float, sigma_color: float) -> np.ndarray:
    """Bilateral filter (Tomasi & Manduchi 1998) over a (2r+1)^2 window, reflect-padded.

    Written out because scikit-image's version quantises colour distances over the image's
    own range, which makes a pixel depend on far-away pixels.
    """
    h, w, _ = img.shape
    pad = np.pad(img, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    num, den = np.zeros_like(img), np.zeros((h, w, 1))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            nb = pad[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
            dist2 = ((nb - img) ** 2).sum(-1, keepdims=True)
            wgt = np.exp(-(dy * dy + dx * dx) / (2 * sigma_space**2) - dist2 / (2 * sigma_color**2))
            num += wgt * nb
            den += wgt
    return num / den


def painterly(photo: np.ndarray) -> np.ndarray:
    """Deterministic photo -> painting filter. photo: float (H, W, 3) in [0, 1]; same out.

    Every step is a fixed, local function of the photo (no noise, no image-wide statistics,
    no segmentation), so the painting is a learnable function of the photo:

    1. flattened colour regions: two passes of an edge-preserving bilateral filter (7 x 7
       window), which wash out texture but keep the outlines of shapes;
    2. brush strokes: a vertical 7-pixel box filter, which drags paint along vertical strokes
       (vertical stays vertical under the horizontal flips of training augmentation, so a
       flipped painting is still the painting of the flipped photo);
    3. soft posterisation: ``v - 0.8 sin(2 pi 4 v) / (2 pi 4)`` per channel, a smooth,
       monotone staircase that flattens each of 4 tone bands;
    4. palette shift: saturation x1.3 around the luminance, then each channel mapped
       linearly onto [SHADOW, LIGHT]: violet shadows, warm lights, a narrow blue range;
    5. contours: darkened by up to 50 % where the photo's smoothed luminance has a strong
       gradient (Sobel), like a painter's outline.

    Why these: an unpaired method can only find a mapping that is the simplest one taking
    photos to paintings. Steps 1-2 and 5 are local filters a convolutional generator learns
    quickly; steps 3-4 are monotone per channel, so no other colour assignment (e.g. lights
    to violet) matches the paintings' colours as well. A palette whose hues depend on
    brightness (blue shadows, yellow lights) was tried and CycleGAN learned it inverted.
    """
    from scipy import ndimage
    from skimage import filters

    img = photo
    for _ in range(2):
        img = _bilateral(img, radius=3, sigma_space=2.0, sigma_color=0.1)
    img = ndimage.uniform_filter1d(img, size=7, axis=0, mode="reflect")
    img = img - 0.8 * np.sin(2 * np.pi * 4 * img) / (2 * np.pi * 4)
    lum = img @ LUMA
    img = np.clip(lum[..., None] + 1.3 * (img - lum[..., None]), 0, 1)
    img = SHADOW + (LIGHT - SHADOW) * img
    smooth_lum = filters.gaussian(photo @ LUMA, sigma=1.0)
    edge = np.clip((filters.sobel(smooth_lum) - 0.03) / 0.06, 0, 1)
    img = img * (1 - 0.5 * edge[..., None])
    return np.clip(img, 0, 1)


# ---------------------------------------------------------------------------------------------
# Generation


def _random_crop(src: np.ndarray, band: tuple[float, float], size: int, rng: np.random.Generator) -> np.ndarray:
    """A square crop from the vertical band [band[0], band[1]) of ``src`` (uint8) at a random
    scale, resized to ``size`` (PIL bicubic, antialiased), randomly flipped; float in [0, 1]."""
    h, w, _ = src.shape
    x0, x1 = int(band[0] * w), int(band[1] * w)
    max_side = min(h, x1 - x0)
    side = int(rng.integers(max(16, max_side // 3), max_side + 1))
    x = int(rng.integers(x0, x1 - side + 1))
    y = int(rng.integers(0, h - side + 1))
    crop = Image.fromarray(src[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BICUBIC)
    out = np.asarray(crop, dtype=np.float64) / 255.0
    return out[:, ::-1] if rng.random() < 0.5 else out


def _encode(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


BANDS = {"trainA": (0.0, 0.4), "trainB": (0.4, 0.8), "test": (0.8, 1.0)}


def planned_files(spec: DemoSpec) -> list[str]:
    """Paths (relative to the root, POSIX style) of the images ``spec`` makes."""
    counts = {"trainA": spec.n_train_A, "trainB": spec.n_train_B, "testA": spec.n_test, "testB": spec.n_test}
    return [f"{sub}/{i:04d}.png" for sub in SPLITS for i in range(counts[sub])]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _first_file(root: Path) -> Path | None:
    """Any non-directory entry below ``root`` (hidden ones included), or None. The temp file of
    :func:`_write_meta` does not count: a run killed while writing it made it."""
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            filenames = [f for f in filenames if f != TMP_MANIFEST]
        if filenames:
            return Path(dirpath) / filenames[0]
        for d in dirnames:  # a symlink to a folder is not walked into: count it as content
            if (Path(dirpath) / d).is_symlink():
                return Path(dirpath) / d
    return None


def _refuse(root: Path, why: str) -> DemoDatasetError:
    images = "" if root.is_file() else f"; to train on the images already in {root}, set data.demo=false"
    return DemoDatasetError(
        f"{root} {why}. The demo generator only writes into a new or empty folder, or one it made itself "
        f"(with its {MANIFEST}); nothing was changed. Choose a new or empty folder for the demo dataset "
        f"(train.py: data.root=; python -m data.demo: --output){images}."
    )


def _read_manifest(root: Path) -> tuple[dict[str, Any], dict[str, str | None]] | None:
    """``demo.json`` of ``root`` and the files it says the generator wrote (path -> SHA-256,
    None = not recorded); None when there is no ``demo.json``. One the generator cannot have
    written is refused."""
    meta_path = root / MANIFEST
    if not os.path.lexists(meta_path):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        spec = meta["spec"]
        if "files" in meta:
            files = meta["files"]
            if not isinstance(files, dict) or not all(isinstance(v, (str, type(None))) for v in files.values()):
                raise ValueError("'files' is not a mapping of paths to digests")
        elif spec.get("version") == 1:
            # Version 1 kept no manifest, but its file names follow from its spec.
            files = dict.fromkeys(planned_files(DemoSpec(**spec)))
        else:
            raise ValueError("no 'files' manifest")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise _refuse(root, f"has a {MANIFEST} the demo generator cannot read ({type(e).__name__}: {e})") from e
    for rel in files:
        p = Path(rel)
        if p.is_absolute() or len(p.parts) != 2 or p.parts[0] not in SPLITS or p.parts[1] in ("..", "."):
            raise _refuse(root, f"has a {MANIFEST} listing {rel!r}, not a file the demo generator writes")
    return meta, files


def _write_meta(root: Path, meta: dict[str, Any]) -> None:
    """Atomic (temp file + rename): a reader never sees a half-written manifest."""
    tmp = root / TMP_MANIFEST
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, root / MANIFEST)


def make_demo_dataset(root: str | Path, spec: DemoSpec | None = None) -> Path:
    """Write the demo dataset into ``root`` and return it.

    ``root`` must not exist, hold no files, or have been made by this function; a complete set
    made with the same ``spec`` is kept as is, one made with another spec, with files missing,
    or left half-written by an interrupted run is replaced, deleting only the files its manifest
    lists. Raises
    :class:`DemoDatasetError` (a :class:`~utils.errors.DatasetError`) before touching
    anything when ``root`` holds files the generator did not write.
    """
    spec = spec or DemoSpec()
    spec.check()
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise _refuse(root, "is a file, not a folder")
    manifest = _read_manifest(root) if root.is_dir() else None
    if manifest is None:
        if root.is_dir() and (found := _first_file(root)) is not None:
            raise _refuse(root, f"is not empty (it holds {found.relative_to(root)}) and has no {MANIFEST}, "
                                f"so the demo generator did not make it")
        owned: dict[str, str | None] = {}
    else:
        meta, owned = manifest
        if meta.get("complete") is True and meta["spec"] == asdict(spec) and all((root / f).is_file() for f in owned):
            return root
    planned = planned_files(spec)
    # Check everything before deleting anything.
    for rel, digest in owned.items():
        path = root / rel
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise _refuse(root, f"holds {rel}, which is not a file the demo generator wrote")
        if digest is not None and path.is_file() and _sha256(path) != digest:
            raise _refuse(root, f"holds {rel}, which the demo generator wrote but someone changed since")
    for rel in planned:
        if rel not in owned and os.path.lexists(root / rel):
            raise _refuse(root, f"holds {rel}, which the demo generator did not write and would overwrite")

    root.mkdir(parents=True, exist_ok=True)
    info = {
        "domains": {"A": "painting", "B": "photo"},
        "paired_test": "testA/<name> = painterly(testB/<name>): ground truth for B->A",
        "sources": list(PHOTO_SOURCES),
        "bands": BANDS,
    }
    # Journal: every file this run may leave behind is listed before the first is written.
    journal = dict.fromkeys(sorted({*owned, *planned}))
    _write_meta(root, {"spec": asdict(spec), "complete": False, **info, "files": journal})
    for rel in owned:
        (root / rel).unlink(missing_ok=True)

    for sub in SPLITS:
        (root / sub).mkdir(exist_ok=True)
    files: dict[str, str] = {}

    def save(img: np.ndarray, rel: str) -> None:
        blob = _encode(img)
        (root / rel).write_bytes(blob)
        files[rel] = hashlib.sha256(blob).hexdigest()

    rng = np.random.default_rng(spec.seed)

    def crops(n: int, band: tuple[float, float]):
        for i in range(n):
            yield i, _random_crop(source_photo(PHOTO_SOURCES[i % len(PHOTO_SOURCES)]), band, spec.size, rng)

    for i, crop in crops(spec.n_train_A, BANDS["trainA"]):
        save(painterly(crop), f"trainA/{i:04d}.png")
    for i, crop in crops(spec.n_train_B, BANDS["trainB"]):
        save(crop, f"trainB/{i:04d}.png")
    for i, crop in crops(spec.n_test, BANDS["test"]):
        save(crop, f"testB/{i:04d}.png")
        save(painterly(crop), f"testA/{i:04d}.png")
    _write_meta(root, {"spec": asdict(spec), "complete": True, **info, "files": files})
    return root


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(CLI_HELP, prog="python -m data.demo")
    cli.add_output(p, "the dataset folder (a new or empty folder, or one this command made)", default="datasets/demo")
    p.add_argument("--root", dest="output", help=argparse.SUPPRESS)  # the old spelling
    p.add_argument("--size", type=int, default=DemoSpec.size, help="image side, px")
    p.add_argument("--n-train", type=int, default=DemoSpec.n_train_A, help="training images per domain")
    p.add_argument("--n-test", type=int, default=DemoSpec.n_test, help="test pairs")
    p.add_argument("--seed", type=int, default=0, help="crops and flips")
    args = p.parse_args(argv)

    def body() -> int:
        spec = DemoSpec(size=args.size, n_train_A=args.n_train, n_train_B=args.n_train, n_test=args.n_test,
                        seed=args.seed)
        spec.check(min_count=1)
        meta = Path(args.output) / "demo.json"
        try:
            before = json.loads(meta.read_text()) if meta.is_file() else {}
        except (OSError, ValueError):
            before = {}
        try:
            root = make_demo_dataset(args.output, spec)
        except OSError as e:  # a read-only place, a full disk: the journal lets a rerun clean up
            raise DatasetError(f"cannot write the demo dataset into {args.output}: {e.strerror or e} (read-only or "
                               f"full?); free space or choose another --output, then run again") from e
        if before.get("complete") is True and before.get("spec") == asdict(spec):
            print(f"nothing to do: the demo dataset is already in {root}")
            return cli.EXIT_NOTHING
        print(f"demo dataset ready in {root}")
        return cli.EXIT_DONE

    return cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
