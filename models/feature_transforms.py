"""Feature transforms of universal style transfer: whitening and colouring (WCT) and AdaIN.

Li, Fang, Yang, Wang, Lu, Yang 2017, "Universal Style Transfer via Feature Transforms" (WCT)::

    f_w   = E_c D_c^{-1/2} E_c^T (f_c - m_c)            (whitening, eq. 2: cov(f_w) = I)
    f_cs  = E_s D_s^{1/2} E_s^T f_w + m_s               (colouring, eq. 3: cov(f_cs) = cov(f_s))
    out   = alpha * f_cs + (1 - alpha) * f_c            (content/style trade-off, eq. 4)

with features f as C x HW matrices, m their channel means and E D E^T the eigendecomposition
of a covariance (f - m)(f - m)^T / (HW - 1); f_c in the blend is the uncentred content.
Several styles are interpolated by blending their transformed features, sum_k w_k f_cs^k (Li
et al.'s style interpolation), before the alpha blend; the weights are normalised to sum 1.

Huang & Belongie 2017, "Arbitrary Style Transfer in Real-time with Adaptive Instance
Normalization", eq. 8: AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y), per channel over
space; same alpha and multi-style blend.

Numerics (checked against the reference code):

* Li et al.'s Torch code (Yijunmaverick/UniversalStyleTransfer) does the maths in double,
  eigendecomposes both covariances (``symeig``) and drops eigenvalues below an absolute 1e-5
  (its k_c / k_s cut); sunshineatnoon/PytorchWCT does the same with an SVD and adds the
  identity (eps = 1) to the content covariance. Here: float64 whatever the input dtype
  (bf16/fp16/fp32 in, the same dtype out), ``torch.linalg.eigh`` (the covariance is symmetric
  PSD, so eigh and SVD agree and eigh is cheaper), and a *relative* rank cut: eigenvalues
  ``<= rank_tol * lambda_max`` (default 1e-5) are dropped, which also drops exact zeros. The
  cut is relative because feature magnitudes differ by about two orders between the
  torchvision and Caffe VGG conventions (see :mod:`models.vgg`), where an absolute 1e-5 would
  mean different things.
* ``eps`` (default 1e-5, absolute, like AdaIN's) is added to the retained content eigenvalues
  before the inverse square root, i.e. whitening uses cov_c + eps I on its retained subspace.
  It keeps rounding noise of flat maps from being blown up to unit variance. Colouring uses
  the style eigenvalues as they are (no division happens there).
* A flat style (one colour) has zero covariance: nothing is retained, colouring gives the
  style mean. A single spatial sample (a 1x1 relu5_1 map) or an all-zero content has zero
  covariance: the whitened features are 0. Covariances divide by max(HW - 1, 1).
* AdaIN follows Huang & Belongie's Torch layer (xunhuang1995/AdaIN-style): the content is
  normalised with the biased variance plus eps = 1e-5 (batch norm in training mode), the style
  std is the biased std without eps. Biased statistics keep a 1x1 map finite (an unbiased
  variance of one sample is NaN, as in the popular PyTorch port).

Features are (C, L), (N, C, L) or (N, C, H, W); a style given with batch 1 applies to every
content sample, a style batch N pairs sample by sample. Style statistics can be computed once
with :func:`feature_stats` and passed wherever a style tensor is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

DEFAULT_EPS = 1e-5
DEFAULT_RANK_TOL = 1e-5


@dataclass(frozen=True)
class FeatureStats:
    """Per-sample statistics of a style's features at one layer, float64, batch B (1 for one image).

    mean: (B, C, 1); std: (B, C, 1) biased; coloring: (B, C, C) = E_s D_s^{1/2} E_s^T on the
    retained eigenvectors; rank: (B,) number of retained eigenvalues.
    """

    mean: torch.Tensor
    std: torch.Tensor
    coloring: torch.Tensor
    rank: torch.Tensor

    def to(self, device: torch.device | str) -> FeatureStats:
        return FeatureStats(self.mean.to(device), self.std.to(device), self.coloring.to(device), self.rank.to(device))


StyleInput = torch.Tensor | FeatureStats


def _flatten(f: torch.Tensor) -> torch.Tensor:
    """(C, L) / (N, C, L) / (N, C, H, W) -> float64 (N, C, L)."""
    if f.dim() == 2:
        f = f.unsqueeze(0)
    elif f.dim() == 4:
        f = f.flatten(2)
    elif f.dim() != 3:
        raise ValueError(f"features must be (C, L), (N, C, L) or (N, C, H, W), got shape {tuple(f.shape)}")
    if f.shape[-1] == 0:
        raise ValueError(f"features have no spatial samples (shape {tuple(f.shape)})")
    return f.to(torch.float64)


def _restore(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return out.reshape(like.shape).to(like.dtype)


def _centre(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = f.mean(-1, keepdim=True)
    return f - mean, mean


def _eig(centred: torch.Tensor, rank_tol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Covariance eigendecomposition with the rank cut: (eigenvalues >= 0, eigenvectors, keep mask)."""
    n = centred.shape[-1]
    cov = centred @ centred.mT / max(n - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    evals = evals.clamp_min(0.0)  # eigh of a PSD matrix can return -1e-17
    keep = evals > rank_tol * evals.amax(-1, keepdim=True)
    return evals, evecs, keep


def _sandwich(evecs: torch.Tensor, diag: torch.Tensor) -> torch.Tensor:
    """E diag(d) E^T for batched E (B, C, C) and d (B, C)."""
    return (evecs * diag.unsqueeze(-2)) @ evecs.mT


def feature_stats(fs: torch.Tensor, rank_tol: float = DEFAULT_RANK_TOL) -> FeatureStats:
    """Style statistics for :func:`color`, :func:`wct` and :func:`adain`, computed once.

    Args:
        fs: style features, (C, L), (N, C, L) or (N, C, H, W), any float dtype.
        rank_tol: relative eigenvalue cut (see the module docstring).
    """
    f = _flatten(fs)
    centred, mean = _centre(f)
    evals, evecs, keep = _eig(centred, rank_tol)
    coloring = _sandwich(evecs, torch.where(keep, evals.sqrt(), torch.zeros_like(evals)))
    std = centred.pow(2).mean(-1, keepdim=True).sqrt()
    return FeatureStats(mean=mean, std=std, coloring=coloring, rank=keep.sum(-1))


def _stats(fs: StyleInput, rank_tol: float) -> FeatureStats:
    return fs if isinstance(fs, FeatureStats) else feature_stats(fs, rank_tol)


def _whiten64(f: torch.Tensor, eps: float, rank_tol: float) -> torch.Tensor:
    centred, _ = _centre(f)
    evals, evecs, keep = _eig(centred, rank_tol)
    inv_sqrt = torch.where(keep, (evals + eps).rsqrt(), torch.zeros_like(evals))
    return _sandwich(evecs, inv_sqrt) @ centred


def _check(f: torch.Tensor, style_mean: torch.Tensor) -> None:
    b, c = style_mean.shape[:2]
    if c != f.shape[1] or b not in (1, f.shape[0]):
        raise ValueError(f"style statistics for batch {b} x {c} channels do not fit features of shape "
                         f"{tuple(f.shape)} (channels must match; style batch 1 or the content's)")


def _color64(fw: torch.Tensor, stats: FeatureStats) -> torch.Tensor:
    _check(fw, stats.mean)
    return stats.coloring.to(fw.device) @ fw + stats.mean.to(fw.device)


def _mean_std(fs: StyleInput) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel mean and biased std, (B, C, 1) float64, without the eigendecomposition."""
    if isinstance(fs, FeatureStats):
        return fs.mean, fs.std
    centred, mean = _centre(_flatten(fs))
    return mean, centred.pow(2).mean(-1, keepdim=True).sqrt()


def whiten(fc: torch.Tensor, eps: float = DEFAULT_EPS, rank_tol: float = DEFAULT_RANK_TOL) -> torch.Tensor:
    """Whitening: E_c D_c^{-1/2} E_c^T (f_c - m_c) (Li et al. eq. 2), per sample.

    The result has zero mean and identity covariance on the retained subspace of the content
    covariance (eigenvalues above ``rank_tol * lambda_max``; exactly lambda / (lambda + eps)
    there), zero elsewhere. Same shape and dtype as ``fc``.
    """
    return _restore(_whiten64(_flatten(fc), eps, rank_tol), fc)


def color(fw: torch.Tensor, fs: StyleInput, rank_tol: float = DEFAULT_RANK_TOL) -> torch.Tensor:
    """Colouring: E_s D_s^{1/2} E_s^T f_w + m_s (Li et al. eq. 3), per sample.

    ``fw`` are whitened features (:func:`whiten`); ``fs`` style features or their
    :class:`FeatureStats` (then ``rank_tol`` is the one they were made with). Same shape and
    dtype as ``fw``.
    """
    return _restore(_color64(_flatten(fw), _stats(fs, rank_tol)), fw)


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Blend weights normalised to sum 1; None means equal weights."""
    if n == 0:
        raise ValueError("at least one style is needed")
    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise ValueError(f"{len(w)} style weights for {n} styles")
    if any(x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"style weights must be >= 0 with a positive sum, got {w}")
    total = sum(w)
    return [x / total for x in w]


def _as_list(fs: StyleInput | Sequence[StyleInput]) -> list[StyleInput]:
    return [fs] if isinstance(fs, torch.Tensor | FeatureStats) else list(fs)


def _blend(fc: torch.Tensor, f: torch.Tensor, transformed: torch.Tensor, alpha: float) -> torch.Tensor:
    # Blended in float64 and cast once: alpha = 0 gives back the content features bit for bit.
    return _restore(alpha * transformed + (1.0 - alpha) * f, fc)


def wct(fc: torch.Tensor, fs: StyleInput | Sequence[StyleInput], alpha: float = 1.0,
        weights: Sequence[float] | None = None, eps: float = DEFAULT_EPS,
        rank_tol: float = DEFAULT_RANK_TOL) -> torch.Tensor:
    """Whitening and colouring transform with the alpha blend (Li et al. eqs. 2-4).

    Args:
        fc: content features, (C, L), (N, C, L) or (N, C, H, W), any float dtype.
        fs: style features (same C; any spatial size) or :class:`FeatureStats`, or a sequence
            of them to interpolate several styles: sum_k w_k WCT(f_c, f_s^k).
        alpha: 1 = fully stylised features, 0 = the content features unchanged.
        weights: per-style weights (>= 0, normalised to sum 1); None = equal.
        eps, rank_tol: see the module docstring.

    Returns:
        alpha * sum_k w_k (C_k f_w + m_k) + (1 - alpha) * f_c, same shape and dtype as ``fc``.
    """
    styles = _as_list(fs)
    w = _weights(weights, len(styles))
    f = _flatten(fc)
    fw = _whiten64(f, eps, rank_tol)
    out = sum(wk * _color64(fw, _stats(s, rank_tol)) for wk, s in zip(w, styles))
    return _blend(fc, f, out, alpha)


def whiten_only(fc: torch.Tensor, alpha: float = 1.0, eps: float = DEFAULT_EPS,
                rank_tol: float = DEFAULT_RANK_TOL) -> torch.Tensor:
    """alpha * whiten(f_c) + (1 - alpha) * f_c: the "only whitening" mode, which removes style.

    Decoding whitened features shows what is left of an image without its feature
    correlations (Li et al. visualise whitened features this way). No mean is added back.
    """
    f = _flatten(fc)
    return _blend(fc, f, _whiten64(f, eps, rank_tol), alpha)


def adain(fc: torch.Tensor, fs: StyleInput | Sequence[StyleInput], alpha: float = 1.0,
          weights: Sequence[float] | None = None, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Adaptive instance normalisation (Huang & Belongie eq. 8) with the alpha and style blends.

    sigma(y) (x - mu(x)) / sqrt(var(x) + eps) + mu(y), per sample and channel over space,
    biased statistics (see the module docstring). Shapes as :func:`wct`; same dtype out.
    """
    styles = _as_list(fs)
    w = _weights(weights, len(styles))
    f = _flatten(fc)
    centred, _ = _centre(f)
    normalised = centred / (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    out = 0.0
    for wk, s in zip(w, styles):
        mean, std = _mean_std(s)
        _check(f, mean)
        out = out + wk * (normalised * std.to(f.device) + mean.to(f.device))
    return _blend(fc, f, out, alpha)
