"""Neural style transfer by optimisation (Gatys, Ecker, Bethge 2015), written as functions.

The pixels of an image x are optimised so that its VGG-19 features match the content image
at the content layers and its Gram matrices match the style image(s) at the style layers::

    L(x) = alpha * L_content + beta * L_style + tv_weight * L_tv
    L_content = sum_l  w_l * mean_{c,h,w} (F_l(x) - F_l(p))^2               (paper eq. 1, averaged)
    L_style   = sum_l  w_l * mean_{i,j}   (G_l(x) - A_l)^2,  G_l = F_l F_l^T / (C_l H_l W_l)
                                                                           (paper eqs. 3-5)
    L_tv      = mean (x[h+1, w] - x[h, w])^2 + mean (x[h, w+1] - x[h, w])^2

Normalising the Gram matrix by C*H*W (as neural-style and the PyTorch tutorial do) makes the
style term independent of the image size, so the same weights work at 256 and 512 px. The
scale of both terms still depends on the input convention of the VGG weights (see
:mod:`models.vgg`): alpha = 1, beta = 1e6 balance them for torchvision's ImageNet weights.

Extensions: colour preservation by luminance-only transfer (Gatys et al. 2016, "Preserving
color in neural artistic style transfer"), several style images blended by weight (their Gram
matrices are mixed), style scale, coarse-to-fine multi-scale optimisation, noise init, and a
batch of same-size content images optimised at once.

Every image tensor here is float (N, 3, H, W) RGB in [0, 1] unless said otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from models.vgg import VGG19Features

Optimizer = Literal["lbfgs", "adam"]
Scheduler = Literal["none", "step", "plateau", "cosine"]
Init = Literal["content", "noise", "noisy_content"]

DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_LAYERS = ("relu4_2",)


# ---------------------------------------------------------------------------------------------
# Loss terms


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


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Squared total variation per image: (N, C, H, W) -> (N,), mean over pixels, so the weight
    does not depend on the image size."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).mean(dim=(1, 2, 3))
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).mean(dim=(1, 2, 3))
    return dh + dw


@dataclass
class GatysLosses:
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
    """alpha, beta, TV weight and per-layer weights (normalised to sum to 1 within each term)."""

    content: float = 1.0
    style: float = 1e6
    tv: float = 0.0
    content_layers: dict[str, float] = field(default_factory=lambda: {n: 1.0 for n in DEFAULT_CONTENT_LAYERS})
    style_layers: dict[str, float] = field(default_factory=lambda: {n: 1.0 for n in DEFAULT_STYLE_LAYERS})

    def __post_init__(self) -> None:
        for name, layers in (("content", self.content_layers), ("style", self.style_layers)):
            total = sum(layers.values())
            if not layers or total <= 0 or any(w < 0 for w in layers.values()):
                raise ValueError(f"{name} layer weights must be >= 0 with a positive sum, got {layers}")
            # Normalised so that adding a layer does not change the term's overall scale.
            layers.update({k: v / total for k, v in layers.items()})

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys([*self.content_layers, *self.style_layers]))


def gatys_losses(feats: dict[str, torch.Tensor], x: torch.Tensor, content_targets: dict[str, torch.Tensor],
                 style_grams: dict[str, torch.Tensor], weights: LossWeights) -> GatysLosses:
    """All terms for images ``x`` (N, C, H, W) whose features are ``feats``."""
    lc = content_loss(feats, content_targets, weights.content_layers)
    ls = style_loss(feats, style_grams, weights.style_layers)
    ltv = tv_loss(x.float()) if weights.tv > 0 else torch.zeros_like(lc)
    return GatysLosses(lc, ls, ltv, weights.content * lc + weights.style * ls + weights.tv * ltv)


# ---------------------------------------------------------------------------------------------
# Colour: luminance-only transfer in YIQ (Gatys et al. 2016)

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


# ---------------------------------------------------------------------------------------------
# Targets


def resize_longer(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (N, C, H, W) so its longer side is ``size`` (antialiased bilinear, aspect kept)."""
    h, w = x.shape[-2:]
    s = size / max(h, w)
    new = (max(1, round(h * s)), max(1, round(w * s)))
    if new == (h, w):
        return x
    return F.interpolate(x, size=new, mode="bilinear", align_corners=False, antialias=s < 1).clamp(0, 1)


def style_grams(extractor: VGG19Features, styles: Sequence[torch.Tensor], blend: Sequence[float] | None,
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


# ---------------------------------------------------------------------------------------------
# Optimisation


@dataclass
class GatysParams:
    """Everything :func:`stylize` needs besides the images; see ``options/gatys_config.py``."""

    weights: LossWeights = field(default_factory=LossWeights)
    optimizer: Optimizer = "lbfgs"
    steps: int = 300  # per scale level; for L-BFGS one step = one iteration = one forward/backward
    lr: float = 1.0  # L-BFGS: 1 (neural-style); Adam on [0, 1] pixels: about 0.02
    lbfgs_history: int = 100
    scheduler: Scheduler = "none"  # Adam only
    sched_step: int = 100
    sched_gamma: float = 0.5
    sched_patience: int = 20
    init: Init = "content"
    noise_ratio: float = 0.5  # noisy_content: (1 - r) * content + r * uniform noise
    preserve_color: bool = False
    style_scale: float = 1.0  # style's longer side = style_scale * content's longer side
    scales: int = 1  # coarse-to-fine levels
    scale_factor: float = 2.0  # size ratio between consecutive levels
    log_every: int = 10
    seed: int = 0


@dataclass
class GatysResult:
    images: torch.Tensor  # (N, 3, H, W) in [0, 1], at the content's size
    losses: GatysLosses  # final, at the finest level
    history: list[dict[str, float]]  # every log_every steps: step, level, total, content, style, tv, lr
    seconds: float
    steps: int  # optimisation steps run, over all levels


def level_sizes(h: int, w: int, scales: int, factor: float) -> list[tuple[int, int]]:
    """Sizes of the coarse-to-fine pyramid, finest (= (h, w)) last."""
    return [(max(8, round(h / factor**k)), max(8, round(w / factor**k))) for k in reversed(range(scales))]


def _init_image(content: torch.Tensor, init: Init, noise_ratio: float, gen: torch.Generator) -> torch.Tensor:
    if init == "content":
        return content.clone()
    noise = torch.rand(content.shape, generator=gen).to(content)
    if init == "noise":
        return noise
    return (1 - noise_ratio) * content + noise_ratio * noise


def _make_optimizer(param: torch.Tensor, p: GatysParams):
    if p.optimizer == "lbfgs":
        # max_iter=1: one iteration per .step(), so the loop below can log and show progress;
        # the curvature history persists across calls. No line search, lr 1: neural-style's setup.
        opt = torch.optim.LBFGS([param], lr=p.lr, max_iter=1, history_size=p.lbfgs_history,
                                tolerance_grad=0.0, tolerance_change=0.0)
        return opt, None
    opt = torch.optim.Adam([param], lr=p.lr)
    if p.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=p.sched_step, gamma=p.sched_gamma)
    elif p.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, p.steps))
    elif p.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=p.sched_gamma, patience=p.sched_patience)
    else:
        sched = None
    return opt, sched


def _optimise(extractor: VGG19Features, param: torch.Tensor, luminance_only: bool,
              c_targets: dict[str, torch.Tensor], grams: dict[str, torch.Tensor], params: GatysParams,
              level: int, first_step: int, bar: tqdm, history: list[dict[str, float]],
              callback: Callable[[dict[str, float]], None] | None) -> GatysLosses:
    """``params.steps`` optimisation steps on ``param`` in place; returns the final losses."""
    wts = params.weights

    def render(p: torch.Tensor) -> torch.Tensor:  # a luminance-only image is shown to VGG as grey RGB
        return p.expand(-1, 3, -1, -1) if luminance_only else p

    opt, sched = _make_optimizer(param, params)
    last: dict[str, GatysLosses] = {}

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        img = render(param)
        losses = gatys_losses(extractor(img), img, c_targets, grams, wts)
        loss = losses.total.sum()
        loss.backward()
        last["losses"] = losses
        return loss

    for i in range(params.steps):
        loss = float(opt.step(closure).detach())
        if params.optimizer == "adam":
            # Projected gradient: Adam tolerates it. L-BFGS does not (its curvature pairs stop
            # matching the steps and it oscillates), so as in neural-style it runs unconstrained
            # and only the result is clamped.
            with torch.no_grad():
                param.clamp_(0, 1)
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(loss)
        elif sched is not None:
            sched.step()
        bar.update(1)
        if not math.isfinite(loss):
            raise FloatingPointError(f"Gatys loss became {loss} at step {first_step + i + 1}; lower the lr or weights")
        if i % params.log_every == 0 or i == params.steps - 1:
            entry = {"step": float(first_step + i + 1), "level": float(level), "lr": opt.param_groups[0]["lr"],
                     **last["losses"].as_dict()}
            history.append(entry)
            bar.set_postfix(total=f"{entry['total']:.3g}", content=f"{entry['content']:.3g}",
                            style=f"{entry['style']:.3g}")
            if callback is not None:
                callback(entry)
    with torch.no_grad():
        param.clamp_(0, 1)  # the final losses are those of the image that is returned
        img = render(param)
        return gatys_losses(extractor(img), img, c_targets, grams, wts)


def stylize(extractor: VGG19Features, content: torch.Tensor, styles: Sequence[torch.Tensor],
            params: GatysParams, blend: Sequence[float] | None = None, progress: bool = False,
            callback: Callable[[dict[str, float]], None] | None = None) -> GatysResult:
    """Optimise images that take ``content``'s content and the (blended) style of ``styles``.

    Args:
        extractor: a :class:`VGG19Features` that provides every layer in ``params.weights``.
        content: (N, 3, H, W) in [0, 1]; N images of one size are optimised together, each with
            its own loss (the batch loss is their sum, so gradients are per image; with L-BFGS
            the shared step makes results differ slightly from one-at-a-time runs).
        styles: list of (1, 3, H_k, W_k) in [0, 1], any sizes; resized per level so their longer
            side is ``style_scale`` times the content's.
        blend: one weight per style image (normalised); None = equal.
        progress: show a tqdm bar with the losses.
        callback: called with each logged history entry.

    Returns:
        :class:`GatysResult` with images (N, 3, H, W) in [0, 1] at the content's size.
    """
    missing = [n for n in params.weights.layers if n not in extractor.layers]
    if missing:
        raise ValueError(f"the extractor does not provide {missing}; build it with layers={params.weights.layers}")
    device = next(extractor.parameters()).device
    content = content.to(device).float().clamp(0, 1).contiguous()
    styles = [s.to(device).float() for s in styles]
    gen = torch.Generator().manual_seed(params.seed)
    h, w = content.shape[-2:]
    sizes = level_sizes(h, w, params.scales, params.scale_factor)
    history: list[dict[str, float]] = []
    bar = tqdm(total=params.steps * len(sizes), disable=not progress, desc="gatys", leave=False, dynamic_ncols=True)
    start = time.perf_counter()
    x: torch.Tensor | None = None
    final: GatysLosses | None = None
    for level, size in enumerate(sizes):
        c_lvl = content if size == (h, w) else \
            F.interpolate(content, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        s_lvl = [resize_longer(s, max(8, round(max(size) * params.style_scale))) for s in styles]
        if params.preserve_color:
            c_y = luminance(c_lvl)
            s_lvl = [match_luminance(luminance(s), c_y).expand(-1, 3, -1, -1) for s in s_lvl]
            c_in = c_y.expand(-1, 3, -1, -1)
        else:
            c_in = c_lvl
        with torch.no_grad():
            c_feats = extractor(c_in)
        c_targets = {n: c_feats[n] for n in params.weights.content_layers}
        grams = style_grams(extractor, s_lvl, blend, list(params.weights.style_layers))

        if x is None:
            start_img = _init_image(c_lvl, params.init, params.noise_ratio, gen)
        else:  # coarse-to-fine: the previous level's result, upsampled, is the next init
            start_img = F.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
        # With colour preservation only the luminance is optimised (one channel).
        param = (luminance(start_img) if params.preserve_color else start_img).detach().contiguous().clone()
        param.requires_grad_(True)
        final = _optimise(extractor, param, params.preserve_color, c_targets, grams, params, level,
                          level * params.steps, bar, history, callback)
        with torch.no_grad():
            x = combine_luminance(param, c_lvl) if params.preserve_color else param.detach().clone()
    bar.close()
    assert x is not None and final is not None
    return GatysResult(images=x, losses=final, history=history, seconds=time.perf_counter() - start,
                       steps=params.steps * len(sizes))
