"""The built-in demo dataset: photos <-> "paintings" with a known mapping, made offline.

Photos are random crops of the colour photographs scikit-image ships. Paintings are other
such crops passed through :func:`painterly`, a deterministic filter chain written here
(flattened colour regions, a warm shifted palette, brush-stroke texture, dark outlines).

Each source photo is cut into three disjoint vertical bands: crops for trainA come from the
first, trainB from the second, the test pairs from the third. So training never sees a
pixel that appears in the other domain or in the test set, and testA/<name> is exactly
painterly(testB/<name>): paired ground truth for PSNR/SSIM.

Layout (as monet2photo: A = paintings, B = photos, so photo -> painting is BtoA):
``trainA/ trainB/ testA/ testB/`` plus ``demo.json`` describing how it was made.

    python -m data.demo --root datasets/demo --size 96
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import color, data, filters, segmentation, transform

PHOTO_SOURCES = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "motorcycle_left", "motorcycle_right",
)
VERSION = 1


@dataclass
class DemoSpec:
    size: int = 96
    n_train_A: int = 120
    n_train_B: int = 120
    n_test: int = 24
    seed: int = 0
    version: int = VERSION


def source_photo(name: str) -> np.ndarray:
    """float RGB image in [0, 1], (H, W, 3), from scikit-image's bundled data (no download)."""
    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        img = left if name.endswith("left") else right
    else:
        img = getattr(data, name)()
    return np.asarray(img[..., :3], dtype=np.float64) / 255.0


def painterly(photo: np.ndarray, seed: int = 0) -> np.ndarray:
    """Deterministic photo -> painting filter. photo: float (H, W, 3) in [0, 1]; same out.

    1. flattened colour regions: SLIC superpixels, each filled with its mean colour, blended
       with a smoothed copy so regions keep a little shading;
    2. palette shift: hue rotated towards warm tones, saturation raised, contrast softened;
    3. brush texture: noise smeared along a fixed stroke direction (oriented blur),
       modulating brightness;
    4. dark outlines on the region boundaries, like a painter's contour.
    The seed only drives the brush noise, so the mapping is a fixed function per seed.
    """
    h, w, _ = photo.shape
    smooth = filters.gaussian(photo, sigma=1.0, channel_axis=-1)
    n_segments = max(12, (h * w) // 160)
    labels = segmentation.slic(smooth, n_segments=n_segments, compactness=12, start_label=0, channel_axis=-1)
    flat = color.label2rgb(labels, smooth, kind="avg", bg_label=-1)
    img = 0.8 * flat + 0.2 * smooth

    hsv = color.rgb2hsv(np.clip(img, 0, 1))
    hsv[..., 0] = (hsv[..., 0] * 0.85 + 0.08) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.35 + 0.08, 0, 1)
    hsv[..., 2] = np.clip(0.12 + 0.82 * hsv[..., 2], 0, 1)
    img = color.hsv2rgb(hsv)

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((h + 16, w + 16))
    kernel = np.zeros((9, 9))
    np.fill_diagonal(kernel, 1.0)  # strokes at 45 degrees
    from scipy.ndimage import convolve  # local import: scipy comes with scikit-image

    strokes = convolve(noise, kernel / kernel.sum(), mode="wrap")[8 : 8 + h, 8 : 8 + w]
    strokes = strokes / (strokes.std() + 1e-8)
    img = img * (1.0 + 0.09 * strokes[..., None])

    # Outline only boundaries between clearly different colours, not every superpixel seam.
    edges = segmentation.find_boundaries(labels, mode="inner")
    contrast = filters.sobel(color.rgb2gray(flat))
    img[edges & (contrast > 0.04)] *= 0.7
    return np.clip(img, 0, 1)


def _random_crop(src: np.ndarray, band: tuple[float, float], size: int, rng: np.random.Generator) -> np.ndarray:
    """A square crop from the vertical band [band[0], band[1]) of ``src`` at a random scale,
    resized to ``size``, randomly flipped."""
    h, w, _ = src.shape
    x0, x1 = int(band[0] * w), int(band[1] * w)
    max_side = min(h, x1 - x0)
    side = int(rng.integers(max(16, max_side // 3), max_side + 1))
    x = int(rng.integers(x0, x1 - side + 1))
    y = int(rng.integers(0, h - side + 1))
    crop = src[y : y + side, x : x + side]
    crop = transform.resize(crop, (size, size), order=3, anti_aliasing=True, mode="reflect")
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.clip(crop, 0, 1)


def _save(img: np.ndarray, path: Path) -> None:
    Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(path)


BANDS = {"trainA": (0.0, 0.4), "trainB": (0.4, 0.8), "test": (0.8, 1.0)}


def make_demo_dataset(root: str | Path, spec: DemoSpec | None = None) -> Path:
    """Write the demo dataset into ``root`` (idempotent: an existing complete one is kept)."""
    spec = spec or DemoSpec()
    root = Path(root)
    meta_path = root / "demo.json"
    if meta_path.is_file():
        try:
            if json.loads(meta_path.read_text()).get("spec") == asdict(spec):
                return root
        except json.JSONDecodeError:
            pass
    for sub in ("trainA", "trainB", "testA", "testB"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for old in (root / sub).glob("*.png"):
            old.unlink()
    sources = {name: source_photo(name) for name in PHOTO_SOURCES}
    names = list(sources)
    rng = np.random.default_rng(spec.seed)

    def crops(n: int, band: tuple[float, float]):
        for i in range(n):
            src = sources[names[i % len(names)]]
            yield i, _random_crop(src, band, spec.size, rng)

    for i, crop in crops(spec.n_train_A, BANDS["trainA"]):
        _save(painterly(crop, seed=spec.seed + i), root / "trainA" / f"{i:04d}.png")
    for i, crop in crops(spec.n_train_B, BANDS["trainB"]):
        _save(crop, root / "trainB" / f"{i:04d}.png")
    for i, crop in crops(spec.n_test, BANDS["test"]):
        _save(crop, root / "testB" / f"{i:04d}.png")
        _save(painterly(crop, seed=spec.seed + 100_000 + i), root / "testA" / f"{i:04d}.png")

    meta = {
        "spec": asdict(spec),
        "domains": {"A": "painting", "B": "photo"},
        "paired_test": "testA/<name> = painterly(testB/<name>): ground truth for B->A",
        "sources": list(PHOTO_SOURCES),
        "bands": BANDS,
    }
    meta_path.write_text(json.dumps(meta, indent=2))  # written last: marks the set complete
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="datasets/demo")
    parser.add_argument("--size", type=int, default=DemoSpec.size)
    parser.add_argument("--n-train", type=int, default=DemoSpec.n_train_A)
    parser.add_argument("--n-test", type=int, default=DemoSpec.n_test)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    spec = DemoSpec(size=args.size, n_train_A=args.n_train, n_train_B=args.n_train, n_test=args.n_test, seed=args.seed)
    root = make_demo_dataset(args.root, spec)
    print(f"demo dataset ready in {root}")


if __name__ == "__main__":
    main()
