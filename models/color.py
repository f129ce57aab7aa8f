"""Colour preservation: luminance-only style transfer in YIQ (Gatys et al. 2016, "Preserving
color in neural artistic style transfer"; the lecture notes' colour-preservation extension).

The method stylizes the luminance channel only, and the result takes the chroma (I, Q) of the
content image. Every method (Gatys, Johnson, WCT, AdaIN) offers it the same way.
Tensors are float (N, C, H, W) RGB in [0, 1].
"""

from __future__ import annotations

import torch

_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def rgb_to_yiq(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> YIQ; Y in [0, 1] for RGB in [0, 1]; I, Q carry the chroma."""
    return torch.einsum("ij,njhw->nihw", _RGB2YIQ.to(x), x)


def yiq_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _YIQ2RGB.to(x), x)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) Y."""
    return rgb_to_yiq(x)[:, :1]


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """Shift and scale the style's luminance to the content's mean and std (the paper's
    luminance matching), so the style transfers texture and not a global brightness change."""
    s_mean, s_std = style_y.mean(), style_y.std().clamp_min(1e-6)
    return ((style_y - s_mean) / s_std * content_y.std() + content_y.mean()).clamp(0, 1)


def combine_luminance(y: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance ``y`` (N, 1, H, W) with the chroma (I, Q) of ``content`` (N, 3, H, W) -> RGB in [0, 1]."""
    iq = rgb_to_yiq(content)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0, 1)




def preserve_color(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The luminance of ``stylized`` with the chroma of ``content`` (both (N, 3, H, W) in [0, 1])."""
    return combine_luminance(luminance(stylized), content)


def grey(x: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N, 3, H, W) -> uint8 L (N, 1, H, W), exactly as PIL's ``convert("L")`` (ITU-R 601-2)."""
    r, g, b = (x[:, i : i + 1].to(torch.int32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8)
