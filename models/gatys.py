"""Neural style transfer by optimisation (Gatys, Ecker, Bethge 2015), written as functions.

The pixels of an image x are optimised so that its VGG-19 features match the content image
at the content layers and its Gram matrices match the style image(s) at the style layers:
L(x) = alpha * L_content + beta * L_style + tv_weight * L_tv, the terms of
:mod:`models.style_losses`, the layers' losses SUMMED (``layer_reduction="sum"``) as in
neural-style and the PyTorch tutorial, so their alpha and beta mean the same here.

L-BFGS runs one iteration per step (one forward/backward each: no line search), so ``steps``
counts loss evaluations like the tutorial's ``num_steps`` and neural-style's ``num_iterations``.
``clamp`` says when the pixels are put back in [0, 1]: ``end`` (the result only, as neural-style)
or ``each_eval`` (before every evaluation, as the tutorial; with Adam: projected gradient);
``auto``: ``end`` for L-BFGS, ``each_eval`` for Adam.

Extensions: colour preservation by luminance-only transfer (:mod:`models.color`), several
style images blended by weight (their Gram matrices are mixed), style scale, coarse-to-fine
multi-scale optimisation, noise init, and a batch of same-size content images optimised at once.

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

from models.color import combine_luminance, luminance, match_luminance
from models.style_losses import (
    LossWeights,
    StyleLosses,
    perceptual_losses,
    resize_longer,
    style_grams,
    style_target_size,
)
from models.vgg import VGG19Features

Optimizer = Literal["lbfgs", "adam"]
Scheduler = Literal["none", "step", "plateau", "cosine"]
Init = Literal["content", "noise", "noisy_content", "mean_noise"]
Clamp = Literal["auto", "end", "each_eval"]

# ---------------------------------------------------------------------------------------------
# Optimisation


def _gatys_weights() -> LossWeights:
    # 2e5 summed over the 5 style layers = the former 1e6 averaged over them.
    return LossWeights(style=2e5, layer_reduction="sum")


@dataclass
class GatysParams:
    """Everything :func:`stylize` needs besides the images (built from the config by
    :func:`methods.gatys.gatys_params`)."""

    weights: LossWeights = field(default_factory=_gatys_weights)
    optimizer: Optimizer = "lbfgs"
    steps: int = 300  # per scale level; for L-BFGS one step = one iteration = one loss evaluation
    lr: float = 1.0  # L-BFGS: 1 (neural-style); Adam on [0, 1] pixels: about 0.02
    lbfgs_history: int = 100
    scheduler: Scheduler = "none"  # Adam only
    sched_step: int = 100
    sched_gamma: float = 0.5
    sched_patience: int = 20
    init: Init = "content"
    noise_ratio: float = 0.5  # noisy_content: (1 - r) * content + r * uniform noise
    noise_std: float = 1e-3  # mean_noise: std of the Gaussian noise, in the VGG's input units
    # end: only the result is clamped to [0, 1]; each_eval: also before every loss evaluation;
    # auto: end for L-BFGS, each_eval for Adam
    clamp: Clamp = "auto"
    preserve_color: bool = False
    style_scale: float = 1.0  # style's longer side = style_scale * content's longer side
    scales: int = 1  # coarse-to-fine levels
    scale_factor: float = 2.0  # size ratio between consecutive levels
    log_every: int = 10
    seed: int = 0


@dataclass
class GatysResult:
    images: torch.Tensor  # (N, 3, H, W) in [0, 1], at the content's size
    losses: StyleLosses  # final, at the finest level
    history: list[dict[str, float]]  # every log_every steps: step, level, total, content, style, tv, lr
    seconds: float
    steps: int  # optimisation steps run, over all levels


def level_sizes(h: int, w: int, scales: int, factor: float, floor: int = 8) -> list[tuple[int, int]]:
    """Sizes of the coarse-to-fine pyramid, finest (= (h, w)) last; no side below ``floor``."""
    return [(max(floor, round(h / factor**k)), max(floor, round(w / factor**k))) for k in reversed(range(scales))]


def _at_least(img: torch.Tensor, side: int) -> torch.Tensor:
    """``img`` enlarged (aspect kept) so its shorter side is at least ``side`` px."""
    h, w = img.shape[-2:]
    if min(h, w) >= side:
        return img
    k = side / min(h, w)
    size = (max(side, round(h * k)), max(side, round(w * k)))
    return F.interpolate(img, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def _init_image(content: torch.Tensor, init: Init, noise_ratio: float, gen: torch.Generator,
                extractor: VGG19Features | None = None, noise_std: float = 1e-3) -> torch.Tensor:
    if init == "content":
        return content.clone()
    if init == "mean_noise":
        # The image whose VGG input is N(0, noise_std^2): the mean pixel of the weights' training
        # data plus faint noise (neural-style's "random" init: randn * 0.001 after preprocessing).
        if extractor is None:
            raise ValueError("init mean_noise needs the extractor (its input convention)")
        z = torch.randn(content.shape, generator=gen).to(content) * noise_std
        norm = extractor.norm  # InputNorm: per channel (x - mean) / std, channels flipped for Caffe
        x = z * norm.std.to(content) + norm.mean.to(content)
        return x.flip(1) if norm.convention == "caffe" else x
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
              callback: Callable[[dict[str, float]], None] | None) -> StyleLosses:
    """``params.steps`` optimisation steps on ``param`` in place; returns the final losses."""
    wts = params.weights

    def render(p: torch.Tensor) -> torch.Tensor:  # a luminance-only image is shown to VGG as grey RGB
        return p.expand(-1, 3, -1, -1) if luminance_only else p

    opt, sched = _make_optimizer(param, params)
    last: dict[str, StyleLosses] = {}

    each_eval = params.clamp == "each_eval" or (params.clamp == "auto" and params.optimizer == "adam")

    def closure() -> torch.Tensor:
        if each_eval:  # the tutorial's projection: every evaluated image is in [0, 1]
            with torch.no_grad():
                param.clamp_(0, 1)
        opt.zero_grad(set_to_none=True)
        img = render(param)
        losses = perceptual_losses(extractor(img), img, c_targets, grams, wts)
        loss = losses.total.sum()
        loss.backward()
        last["losses"] = losses
        return loss

    for i in range(params.steps):
        # clamp "each_eval" projects inside the closure (for Adam: the same points as clamping
        # after each step). "end", L-BFGS's default: the projection breaks the curvature pairs
        # (the step taken is no longer the step L-BFGS recorded), so as in neural-style it runs
        # unconstrained and only the result is clamped; the tutorial projects anyway.
        loss = float(opt.step(closure).detach())
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
        return perceptual_losses(extractor(img), img, c_targets, grams, wts)


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
    floor = extractor.min_side  # the deepest layer's features must exist at every level, for every image
    if min(h, w) < floor:
        raise ValueError(f"content of {w}x{h} px is smaller than the {floor} px per side the VGG layers need")
    sizes = level_sizes(h, w, params.scales, params.scale_factor, max(8, floor))
    history: list[dict[str, float]] = []
    # disable=None: no bar where stderr is not a terminal (a log file, the report beside its own bar)
    bar = tqdm(total=params.steps * len(sizes), disable=None if progress else True, desc="gatys", leave=False,
               dynamic_ncols=True)
    start = time.perf_counter()
    x: torch.Tensor | None = None
    final: StyleLosses | None = None
    for level, size in enumerate(sizes):
        c_lvl = content if size == (h, w) else \
            F.interpolate(content, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        s_lvl = [_at_least(resize_longer(s, style_target_size(max(size), params.style_scale)), floor) for s in styles]
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
            start_img = _init_image(c_lvl, params.init, params.noise_ratio, gen, extractor, params.noise_std)
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
