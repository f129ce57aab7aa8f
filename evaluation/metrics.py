"""Evaluation metrics for translated images: FID, KID, PSNR, SSIM, VGG losses, time per image.

* FID and KID come from torchmetrics (``FrechetInceptionDistance``, ``KernelInceptionDistance``)
  over features of torch-fidelity's port of the TF Inception-v3 (the 2048-d pool features every
  published FID uses). Features are extracted once per image set and fed to both metrics, so a
  reference set shared by several methods is read once. Any other ``feature_extractor`` module
  can stand in (tests use a tiny random network).
* The Inception weights are looked for in the torch cache (``<torch hub>/checkpoints/``),
  downloaded if allowed, or read from a local file. When none can be had, FID/KID are reported
  as unavailable with the reason (:class:`MetricUnavailable`), never silently dropped.
* KID's subset size is capped by the smaller set (monet2photo's testA has 121 images; the demo
  24), and reported with the image counts.
* PSNR and SSIM (scikit-image) need paired ground truth (the demo dataset's test split); so does
  the edge SSIM (:func:`edge_ssim`: SSIM of Sobel gradient magnitudes), which punishes lost
  structure that PSNR and SSIM forgive in a blurred output with the right colours.

Images enter as uint8 tensors (3, H, W) in [0, 255] (``data.image_io.pil_to_uint8``).
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.filters import sobel
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
from torchmetrics.image.kid import KernelInceptionDistance

from data.download import DownloadError, fetch_file
from models.style_losses import LossWeights, content_loss, style_loss
from utils.checkpoint import CheckpointError, is_safetensors_file, load_file

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
# torch-fidelity's file and pytorch-fid's copy of the same weights (same hash prefix).
INCEPTION_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
DOWNLOAD_TIMEOUT_S = 20.0


class MetricUnavailable(Exception):
    """A metric cannot be computed here; ``str(e)`` says why (shown in the report's cell)."""


# ---------------------------------------------------------------------------------------------
# Inception


def inception_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_inception_weights(weights: str | None = None, allow_download: bool = True) -> Path:
    """A local file holding the FID Inception weights.

    ``weights`` given: that file must exist. Otherwise the torch cache is searched for
    :data:`INCEPTION_FILES`, then (if allowed) the file is downloaded there.

    Raises:
        MetricUnavailable: no file; the message names the expected path and the option to use.
    """
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MetricUnavailable(f"Inception weights file {path} does not exist")
        return path
    cache = inception_cache_dir()
    for name in INCEPTION_FILES:
        if (cache / name).is_file():
            return cache / name
    dst = cache / INCEPTION_FILES[0]
    help_text = (f"put {INCEPTION_FILES[0]} (from {INCEPTION_URL}) in {cache}, or name a local copy: "
                 f"inception_weights=PATH (report.py) or eval.inception_weights=PATH (train.py)")
    if not allow_download:
        raise MetricUnavailable(f"no Inception weights in {cache} and downloads are disabled; {help_text}")

    try:
        # No hash check: the "6726825d" in the name is not documented as a SHA-256 prefix; the file is
        # validated by loading it as a plain state_dict instead.
        fetch_file(INCEPTION_URL, dst, timeout=DOWNLOAD_TIMEOUT_S)
    except DownloadError as e:
        raise MetricUnavailable(f"no Inception weights offline (download failed: {e}); {help_text}") from e
    return dst


def load_inception(weights: str | None = None, allow_download: bool = True) -> nn.Module:
    """The FID Inception-v3 (2048-d pool features), input uint8 (N, 3, H, W), resized inside to 299.

    Raises:
        MetricUnavailable: weights missing (see :func:`find_inception_weights`), unreadable, or
            torch-fidelity not installed.
    """
    path = find_inception_weights(weights, allow_download)
    try:
        # torch-fidelity reads the file with weights_only=False: check first that it is plain tensors
        # (a torch file read weights-only, or a safetensors file).
        state = load_file(path)
    except CheckpointError as e:
        raise MetricUnavailable(f"{path} is not a readable Inception state_dict: {str(e).splitlines()[0]}") from e
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if is_safetensors_file(path):  # torch-fidelity reads only torch files: hand it one
                torch.save(state, Path(tmp) / "inception.pth")
                path = Path(tmp) / "inception.pth"
            return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=str(path))
    except ModuleNotFoundError as e:
        raise MetricUnavailable(f"torch-fidelity is not installed ({e}); pip install torch-fidelity") from e
    except Exception as e:  # wrong keys or shapes
        raise MetricUnavailable(f"cannot load Inception weights from {path}: {str(e).splitlines()[0]}") from e


@torch.no_grad()
def extract_features(extractor: nn.Module, images: Iterable[torch.Tensor], device: str | torch.device = "cpu",
                     batch_size: int = 16) -> torch.Tensor:
    """Features of each image: uint8 (3, H, W) tensors -> float64 (N, D).

    Consecutive images of the same size are batched; the extractor gets uint8 (B, 3, H, W)
    on ``device`` and returns (B, D).
    """
    extractor = extractor.to(device).eval()
    out: list[torch.Tensor] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        if batch:
            feats = extractor(torch.stack(batch).to(device))
            out.append(feats.reshape(len(batch), -1).double().cpu())
            batch.clear()

    for img in images:
        if img.dtype != torch.uint8 or img.dim() != 3:
            raise ValueError(f"expected uint8 (3, H, W) images, got {img.dtype} {tuple(img.shape)}")
        if batch and (img.shape != batch[0].shape or len(batch) >= batch_size):
            flush()
        batch.append(img)
    flush()
    if not out:
        raise ValueError("no images to extract features from")
    return torch.cat(out)


class _Features(nn.Module):
    """Identity 'extractor' over precomputed features, so torchmetrics' FID/KID run on them."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to (N_r, D) and (N_f, D) features."""
    if len(real) < 2 or len(fake) < 2:
        raise MetricUnavailable(f"FID needs >= 2 images per set (got {len(real)} real, {len(fake)} generated)")
    metric = FrechetInceptionDistance(feature=_Features(real.shape[1])).double()
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return max(0.0, float(metric.compute()))  # tiny negative values are round-off of a zero distance


def kid_subset_size(n_real: int, n_fake: int, preferred: int = 1000) -> int:
    """KID's subset size: the usual 1000, capped by the smaller set (it must not exceed either)."""
    return min(preferred, n_real, n_fake)


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, subset_size: int | None = None, subsets: int = 100,
                      seed: int = 0) -> tuple[float, float, int]:
    """Kernel Inception Distance (polynomial-kernel MMD^2): (mean, std over subsets, subset size).

    Subsets are drawn from a seeded RNG, so the value is reproducible.
    """
    size = subset_size or kid_subset_size(len(real), len(fake))
    if size < 2:
        raise MetricUnavailable(f"KID needs >= 2 images per set (got {len(real)} real, {len(fake)} generated)")
    with warnings.catch_warnings():  # "will save all extracted features": they are already in memory
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        metric = KernelInceptionDistance(feature=_Features(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std), size


@dataclass
class FidKid:
    fid: float | None
    kid_mean: float | None
    kid_std: float | None
    kid_subset_size: int | None
    n_real: int
    n_fake: int
    unavailable: str = ""  # why FID / KID are None

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {"fid": self.fid, "kid_mean": self.kid_mean, "kid_std": self.kid_std,
                "kid_subset_size": self.kid_subset_size, "n_real": self.n_real, "n_fake": self.n_fake,
                "unavailable": self.unavailable}


def fid_kid(real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = 100, seed: int = 0) -> FidKid:
    """Both metrics from features (N_r, D), (N_f, D); either may come back unavailable."""
    reasons = []
    fid = kid_mean = kid_std = None
    size = None
    try:
        fid = fid_from_features(real, fake)
    except MetricUnavailable as e:
        reasons.append(str(e))
    try:
        kid_mean, kid_std, size = kid_from_features(real, fake, subsets=kid_subsets, seed=seed)
    except MetricUnavailable as e:
        reasons.append(str(e))
    return FidKid(fid, kid_mean, kid_std, size, len(real), len(fake), "; ".join(dict.fromkeys(reasons)))


# ---------------------------------------------------------------------------------------------
# Paired metrics


def _hwc(img: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = img.numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    return arr


def psnr_ssim(output: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of uint8 images, (3, H, W) tensors or (H, W, 3) arrays of equal size.

    PSNR of identical images is ``inf``. SSIM uses scikit-image's default 7x7 window, shrunk
    for images smaller than that.
    """
    out, tgt = _hwc(output), _hwc(target)
    if out.shape != tgt.shape:
        raise ValueError(f"output {out.shape} and ground truth {tgt.shape} differ in size")
    if np.array_equal(out, tgt):
        psnr = math.inf  # skimage divides by a zero MSE and warns
    else:
        psnr = float(peak_signal_noise_ratio(tgt, out, data_range=255))
    side = min(out.shape[:2])
    win = 7 if side >= 7 else (side if side % 2 else side - 1)
    ssim = float(structural_similarity(tgt, out, channel_axis=-1, data_range=255, win_size=win))
    return psnr, ssim


def gradient_magnitude(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """uint8 RGB (3, H, W) / (H, W, 3) -> (H - 2, W - 2) float Sobel gradient magnitude of its
    luminance in [0, 1] (``skimage.color.rgb2gray``, ``skimage.filters.sobel``: sqrt((gx^2 + gy^2) / 2)
    with the kernels divided by 4, so values lie in [0, 1]). The 1-pixel border, whose gradient
    depends on the padding, is left out."""
    arr = _hwc(img)
    grey = rgb2gray(arr.astype(np.float64) / 255.0) if arr.ndim == 3 and arr.shape[-1] == 3 \
        else arr.reshape(arr.shape[:2]).astype(np.float64) / 255.0
    return sobel(grey)[1:-1, 1:-1]


def edge_ssim(output: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> float:
    """Gradient-structure similarity: SSIM (scikit-image, 7x7 window, data range 1) of the Sobel
    gradient-magnitude maps (:func:`gradient_magnitude`) of ``output`` and ``target``, uint8 RGB of
    equal size; 1 = the same edges, lower = edges lost, blurred or added.

    After the gradient-based SSIM of Chen, Yang and Xie (ICIP 2006, "Gradient-based structural
    similarity for image quality assessment"), which compares images through their gradient maps
    because the eye reads structure from edges: a global colour or brightness shift leaves it at 1,
    a blur that keeps the colours (the failure PSNR and SSIM reward on the demo) lowers it. For two
    flat (constant) images of any colours it is 1; for two maps that are constant ``g1`` and ``g2``
    it is SSIM's luminance term (2 g1 g2 + C1) / (g1^2 + g2^2 + C1), C1 = 0.01^2.
    """
    out, tgt = _hwc(output), _hwc(target)
    if out.shape != tgt.shape:
        raise ValueError(f"output {out.shape} and ground truth {tgt.shape} differ in size")
    g_out, g_tgt = gradient_magnitude(out), gradient_magnitude(tgt)
    side = min(g_out.shape)
    if side < 3:
        return 1.0 if np.array_equal(g_out, g_tgt) else float("nan")
    win = 7 if side >= 7 else (side if side % 2 else side - 1)
    return float(structural_similarity(g_tgt, g_out, data_range=1.0, win_size=win))


def mean_psnr_ssim(outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> tuple[float, float]:
    """Means over image pairs; an ``inf`` PSNR pair (identical images) makes the mean ``inf``."""
    if not outputs or len(outputs) != len(targets):
        raise ValueError(f"need equally many outputs and targets, got {len(outputs)} and {len(targets)}")
    values = [psnr_ssim(o, t) for o, t in zip(outputs, targets)]
    return float(np.mean([v[0] for v in values])), float(np.mean([v[1] for v in values]))


# ---------------------------------------------------------------------------------------------
# VGG losses of any output, time and device


@torch.no_grad()
def vgg_losses(extractor: nn.Module, outputs: Sequence[torch.Tensor], contents: Sequence[torch.Tensor],
               grams_for: Callable[[int, int], dict[str, torch.Tensor]] | None, weights: LossWeights,
               device: str | torch.device = "cpu") -> tuple[float, float | None]:
    """Mean unweighted content and style loss (:mod:`models.gatys`) of each output image.

    Args:
        outputs, contents: uint8 (3, H, W) tensors, pairwise the same size (content = the input
            the output was made from).
        grams_for: ``grams_for(height, width) -> {layer: (1, C, C)}``, the style targets for an
            output of that size (style images resized as the Gatys run resized them); None: no
            style images, and the style loss is None.
        weights: :class:`models.gatys.LossWeights` (layer lists and per-layer weights).
    """
    lc, ls = [], []
    for out, con in zip(outputs, contents):
        x = out.float().div(255).unsqueeze(0).to(device)
        c = con.float().div(255).unsqueeze(0).to(device)
        if c.shape != x.shape:
            c = torch.nn.functional.interpolate(c, size=x.shape[-2:], mode="bilinear", antialias=True)
        fx, fc = extractor(x), extractor(c)
        lc.append(float(content_loss(fx, {n: fc[n] for n in weights.content_layers}, weights.content_layers)))
        if grams_for is not None:
            ls.append(float(style_loss(fx, grams_for(*x.shape[-2:]), weights.style_layers)))
    return float(np.mean(lc)), (float(np.mean(ls)) if ls else None)


def describe_device(device: str | torch.device) -> str:
    """``cpu (2 threads)`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``: what a time was measured on."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


class Stopwatch:
    """Wall-clock seconds of a block, synchronising CUDA so queued kernels are counted."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> Stopwatch:
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._start
