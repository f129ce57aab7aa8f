"""The perceptual losses of neural style transfer, shared by every method that uses a VGG.

Gatys, Ecker, Bethge 2015 ("A Neural Algorithm of Artistic Style") define them; Johnson, Alahi,
Fei-Fei 2016 ("Perceptual Losses for Real-Time Style Transfer") train a network with the same
terms; the comparison report scores every method's output with them::

    L_content = sum_l  w_l * mean_{c,h,w} (F_l(x) - F_l(p))^2               (Gatys eq. 1, averaged)
    L_style   = sum_l  w_l * mean_{i,j}   (G_l(x) - A_l)^2,  G_l = F_l F_l^T / (C_l H_l W_l)
                                                                           (Gatys eqs. 3-5)
    L_tv      = mean (x[h+1, w] - x[h, w])^2 + mean (x[h, w+1] - x[h, w])^2     (tv_norm squared_mean)
              = sum |255 x[h+1, w] - 255 x[h, w]| + sum |255 x[h, w+1] - 255 x[h, w]|  (tv_norm l1_sum)

Normalising the Gram matrix by C*H*W (as neural-style and the PyTorch tutorial do) makes the
style term independent of the image size, so the same weights work at 256 and 512 px. The
scale of both terms still depends on the input convention of the VGG weights (see
:mod:`models.vgg`).

How the layers combine (:attr:`LossWeights.layer_reduction`) sets what a weight means:

* ``sum``: the per-layer weights w_l are used as given (1 each by default), so L_style is the
  SUM of the layers' losses. Gatys uses this, as do Johnson's neural-style (2015), its PyTorch
  port neural-style-pt and the PyTorch neural-style tutorial (Jacq, Herring), so their numbers
  mean the same here: alpha = 1, beta = 1e6 for torchvision's ImageNet weights (the tutorial),
  5 and 100 for the Caffe VGG-19 (neural-style).
* ``mean`` (the class default, used by Johnson's trainer and the report's loss columns): w_l
  normalised to sum to 1, so L_style is the weighted AVERAGE of the layers' losses and a
  weight is n_layers times larger than under ``sum`` for the same total (over 5 layers, beta
  1e6 with ``sum`` = beta 5e6 with ``mean``).

Several style images are blended by mixing their Gram matrices with weights (the multi-style
loss of the lecture notes on Johnson et al.: sum_i beta_i ||G_si - G_new||^2 has the same
minimiser as ||sum_i beta_i G_si - G_new||^2 for weights summing to 1).

Every image tensor here is float (N, 3, H, W) RGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_LAYERS = ("relu4_2",)

LayerReduction = Literal["mean", "sum"]
TVNorm = Literal["squared_mean", "l1_sum"]


def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by C*H*W: (N, C, H, W) -> (N, C, C), G_ij = <F_i, F_j> / (C H W).

    Computed in fp32 whatever the feature dtype, since the sums run over H*W terms.
    """
    n, c, h, w = feat.shape
    f = feat.float().reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def content_loss(feats: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                 layer_weights: dict[str, float]) -> torch.Tensor:
    """Per-image weighted MSE of features: -> (N,). ``targets`` may have batch 1 or N."""
    terms = [w * (feats[name].float() - targets[name].float()).pow(2).mean(dim=(1, 2, 3))
             for name, w in layer_weights.items()]
    return torch.stack(terms).sum(0)


def style_loss(feats: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor],
               layer_weights: dict[str, float]) -> torch.Tensor:
    """Per-image weighted MSE of Gram matrices: -> (N,). ``target_grams[l]`` is (1 or N, C, C)."""
    terms = [w * (gram_matrix(feats[name]) - target_grams[name]).pow(2).mean(dim=(1, 2))
             for name, w in layer_weights.items()]
    return torch.stack(terms).sum(0)


def tv_loss(x: torch.Tensor, norm: TVNorm = "squared_mean") -> torch.Tensor:
    """Total variation per image: (N, C, H, W) in [0, 1] -> (N,).

    * ``squared_mean``: mean of squared neighbour differences (vertical + horizontal), so the
      weight does not depend on the image size.
    * ``l1_sum``: sum over pixels and channels of absolute neighbour differences, on a 0..255
      pixel scale: the TV term of neural-style-pt (its weight 1e-3 applies unchanged; it grows
      with the number of pixels).
    """
    dh = x[:, :, 1:, :] - x[:, :, :-1, :]
    dw = x[:, :, :, 1:] - x[:, :, :, :-1]
    if norm == "l1_sum":
        return 255.0 * (dh.abs().sum(dim=(1, 2, 3)) + dw.abs().sum(dim=(1, 2, 3)))
    if norm != "squared_mean":
        raise ValueError(f"unknown TV norm {norm!r}: squared_mean or l1_sum")
    return dh.pow(2).mean(dim=(1, 2, 3)) + dw.pow(2).mean(dim=(1, 2, 3))


@dataclass
class StyleLosses:
    """Unweighted terms and the weighted total, each (N,) (one value per image)."""

    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor
    total: torch.Tensor

    def as_dict(self) -> dict[str, float]:
        """Means over the batch as floats, with fixed keys: total, content, style, tv."""
        return {"total": float(self.total.detach().mean()), "content": float(self.content.detach().mean()),
                "style": float(self.style.detach().mean()), "tv": float(self.tv.detach().mean())}


@dataclass
class LossWeights:
    """alpha, beta, TV weight and per-layer weights.

    ``layer_reduction`` (see the module docstring): ``mean`` normalises the per-layer weights of
    each term to sum to 1 (the layers are averaged); ``sum`` keeps them as given (the layers are
    summed, as neural-style and the PyTorch tutorial do). ``tv_norm``: see :func:`tv_loss`.
    """

    content: float = 1.0
    style: float = 1e6
    tv: float = 0.0
    content_layers: dict[str, float] = field(default_factory=lambda: {n: 1.0 for n in DEFAULT_CONTENT_LAYERS})
    style_layers: dict[str, float] = field(default_factory=lambda: {n: 1.0 for n in DEFAULT_STYLE_LAYERS})
    layer_reduction: LayerReduction = "mean"
    tv_norm: TVNorm = "squared_mean"

    def __post_init__(self) -> None:
        if self.layer_reduction not in ("mean", "sum"):
            raise ValueError(f"layer_reduction must be mean or sum, got {self.layer_reduction!r}")
        if self.tv_norm not in ("squared_mean", "l1_sum"):
            raise ValueError(f"tv_norm must be squared_mean or l1_sum, got {self.tv_norm!r}")
        for name, layers in (("content", self.content_layers), ("style", self.style_layers)):
            total = sum(layers.values())
            if not layers or total <= 0 or any(w < 0 for w in layers.values()):
                raise ValueError(f"{name} layer weights must be >= 0 with a positive sum, got {layers}")
            if self.layer_reduction == "mean":
                # Normalised so that adding a layer does not change the term's overall scale.
                layers.update({k: v / total for k, v in layers.items()})

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys([*self.content_layers, *self.style_layers]))


def perceptual_losses(feats: dict[str, torch.Tensor], x: torch.Tensor, content_targets: dict[str, torch.Tensor],
                 style_grams: dict[str, torch.Tensor], weights: LossWeights) -> StyleLosses:
    """All terms for images ``x`` (N, C, H, W) whose features are ``feats``."""
    lc = content_loss(feats, content_targets, weights.content_layers)
    ls = style_loss(feats, style_grams, weights.style_layers)
    ltv = tv_loss(x.float(), weights.tv_norm) if weights.tv > 0 else torch.zeros_like(lc)
    return StyleLosses(lc, ls, ltv, weights.content * lc + weights.style * ls + weights.tv * ltv)


# ---------------------------------------------------------------------------------------------
# Style targets


def resize_longer(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (N, C, H, W) so its longer side is ``size`` (antialiased bilinear, aspect kept)."""
    h, w = x.shape[-2:]
    s = size / max(h, w)
    new = (max(1, round(h * s)), max(1, round(w * s)))
    if new == (h, w):
        return x
    return F.interpolate(x, size=new, mode="bilinear", align_corners=False, antialias=s < 1).clamp(0, 1)


def style_grams(extractor: nn.Module, styles: Sequence[torch.Tensor], blend: Sequence[float] | None,
                layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Blended target Gram matrices: {layer: (1, C, C)} = sum_k b_k G_l(style_k), b normalised to sum 1.

    ``styles``: list of (1, 3, H_k, W_k) in [0, 1], of any sizes.
    """
    if not styles:
        raise ValueError("at least one style image is needed")
    blend = list(blend) if blend else [1.0] * len(styles)
    if len(blend) != len(styles) or sum(blend) <= 0 or any(b < 0 for b in blend):
        raise ValueError(f"blend weights {blend} must be >= 0 with a positive sum, one per style image "
                         f"({len(styles)})")
    total = sum(blend)
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for style, b in zip(styles, blend):
            feats = extractor(style)
            for name in layers:
                g = gram_matrix(feats[name]).mean(0, keepdim=True) * (b / total)
                out[name] = out[name] + g if name in out else g
    return out




def style_target_size(content_longer: int, style_scale: float = 1.0) -> int:
    """Longer side a style image is resized to before its Gram matrices are taken: ``style_scale``
    times the content's (output's) longer side, at least 8 px. Gatys and the report's style-loss
    column both use this rule, so their numbers agree."""
    return max(8, round(content_longer * style_scale))
