"""CUT / FastCUT networks and the PatchNCE loss (Park, Efros, Zhang, Zhu, ECCV 2020, "Contrastive
Learning for Unpaired Image-to-Image Translation"), as the authors' code
taesungp/contrastive-unpaired-translation has them.

========================================  ===========================================================
authors' code                             here
========================================  ===========================================================
``networks.get_filter``                   :func:`blur_filter`
``networks.Downsample`` / ``Upsample``    :class:`Downsample` / :class:`Upsample` (blur pooling,
                                          Zhang 2019; ``filt`` is a persistent buffer, as theirs)
``networks.ResnetGenerator``              :class:`CUTGenerator` (same ``model.N`` indices, so their
                                          ``latest_net_G.pth`` loads with ``load_state_dict``)
``netG(x, layers, encode_only=True)``     :meth:`CUTGenerator.encode` (also ``forward(x, layers,
                                          encode_only)``, their signature)
``networks.NLayerDiscriminator``          :class:`CUTDiscriminator` (blur-pooled PatchGAN);
  (``no_antialias``)                      without anti-aliasing it is CycleGAN's
                                          :class:`models.gan_networks.NLayerDiscriminator`
``networks.Normalize(2)``                 :func:`l2_normalize`
``networks.PatchSampleF`` (mlp_sample)    :class:`PatchSampleF` (``mlp_i`` -> ``mlps.i``, see
                                          :meth:`PatchSampleF.convert_authors_state_dict`)
``patchnce.PatchNCELoss``                 :func:`patch_nce_loss`
``cut_model.calculate_NCE_loss``          :func:`nce_loss`
``networks.init_net`` / ``init_weights``  :func:`models.gan_networks.init_weights` (their default for
                                          CUT: ``xavier``, gain 0.02)
========================================  ===========================================================

The objective (section 3 of the paper): ``lambda_GAN * GAN(G(X)) + lambda_NCE * NCE(G(X), X)``,
for CUT also ``NCE(G(Y), Y)`` averaged with the first (``nce_idt``); FastCUT: ``lambda_NCE = 10``,
no identity term, flip equivariance. Per iteration D is updated first, then G and F together.

Layer indices of the anti-aliased generator (``n_blocks = 9``), which ``nce_layers = 0,4,8,12,16``
point into: 0 ReflectionPad2d(3) (the padded input), 1 conv7, 2 norm, 3 ReLU, 4 conv3 s1 (ngf ->
2 ngf), 5 norm, 6 ReLU, 7 Downsample, 8 conv3 s1 (2 ngf -> 4 ngf), 9 norm, 10 ReLU, 11 Downsample,
12 ... 20 residual blocks (so 12 and 16 are the outputs of the first and fifth), 21 Upsample, 22
conv3, 23 norm, 24 ReLU, 25 Upsample, 26 conv3, 27 norm, 28 ReLU, 29 ReflectionPad2d(3), 30 conv7,
31 tanh. Without anti-aliased down-sampling (``no_antialias``) each Downsample disappears and the
convs at 4 and 7 have stride 2, so the same indices name other layers, as in their code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.gan_networks import InitKind, NLayerDiscriminator, ResnetBlock, init_weights, norm_layer

CUTNorm = Literal["instance", "batch", "none"]
NCE_LAYERS = (0, 4, 8, 12, 16)  # the authors' --nce_layers default


# ---------------------------------------------------------------------------------------------
# Anti-aliased sampling (blur pooling)


def blur_filter(size: int = 3, gain: float = 1.0) -> torch.Tensor:
    """The 2-D binomial blur kernel of side ``size`` (1 ... 7), normalised to sum ``gain``: ``(size, size)``.

    ``size`` 3: outer([1, 2, 1], [1, 2, 1]) / 16; ``size`` 4: outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64
    (the authors' ``get_filter``: numpy float64 outer product, float32, divided by its sum; their
    Upsample multiplies it by ``stride**2``: ``gain``). Built from Python numbers, so building a
    network on the meta device runs no tensor arithmetic.
    """
    if not 1 <= size <= 7:
        raise ValueError(f"blur filter size must be in [1, 7], got {size}")
    a = [math.comb(size - 1, k) for k in range(size)]
    total = sum(a) ** 2  # 4 ** (size - 1): the division is exact, as theirs in float32
    return torch.tensor([[ai * aj / total * gain for aj in a] for ai in a], dtype=torch.float32)


def _per_channel(filt: torch.Tensor, channels: int) -> torch.Tensor:
    """``(k, k)`` -> ``(channels, 1, k, k)``, the depth-wise weight (their ``filt[None, None].repeat``)."""
    return filt[None, None].expand(channels, 1, *filt.shape).contiguous()


def _pad_layer(kind: str, sizes: int | list[int]) -> nn.Module:
    if kind in ("refl", "reflect"):
        return nn.ReflectionPad2d(sizes)
    if kind in ("repl", "replicate"):
        return nn.ReplicationPad2d(sizes)
    if kind == "zero":
        return nn.ZeroPad2d(sizes)
    raise ValueError(f"unknown pad type {kind!r}; valid: reflect, replicate, zero")


class Downsample(nn.Module):
    """Blur, then subsample by ``stride`` (the authors' ``Downsample``; Zhang, "Making convolutional
    networks shift-invariant again", 2019).

    Reflection pad ``[(k-1)//2, ceil((k-1)/2)]`` per side (+ ``pad_off``), then a depth-wise conv with
    :func:`blur_filter` ``(k)`` at stride 2. ``(N, C, H, W)`` -> ``(N, C, ceil(H/2), ceil(W/2))`` for
    ``k = 3``. ``filt`` ``(C, 1, k, k)`` is a persistent buffer, so it is in the state_dict
    (``model.7.filt``), as in the authors' published files.
    """

    def __init__(self, channels: int, pad_type: str = "reflect", filt_size: int = 3, stride: int = 2,
                 pad_off: int = 0) -> None:
        super().__init__()
        self.filt_size, self.pad_off, self.stride, self.channels = filt_size, pad_off, stride, channels
        lo, hi = (filt_size - 1) // 2, math.ceil((filt_size - 1) / 2)
        self.pad_sizes = [lo + pad_off, hi + pad_off, lo + pad_off, hi + pad_off]
        self.register_buffer("filt", _per_channel(blur_filter(filt_size), channels))
        self.pad = _pad_layer(pad_type, self.pad_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.filt_size == 1:
            x = x if self.pad_off == 0 else self.pad(x)
            return x[:, :, :: self.stride, :: self.stride]
        return F.conv2d(self.pad(x), self.filt, stride=self.stride, groups=x.shape[1])


class Upsample(nn.Module):
    """Up-sample by ``stride`` with a fixed blur (the authors' ``Upsample``): replicate pad 1, a
    depth-wise transposed conv with ``blur_filter(k) * stride**2`` at stride 2 and padding
    ``1 + (k-1)//2``, then the first row / column dropped (and the last, for even ``k``).
    ``(N, C, H, W)`` -> ``(N, C, 2H, 2W)`` for the default ``k = 4``. ``filt`` is a persistent buffer.
    """

    def __init__(self, channels: int, pad_type: str = "repl", filt_size: int = 4, stride: int = 2) -> None:
        super().__init__()
        self.filt_size, self.stride, self.channels = filt_size, stride, channels
        self.filt_odd = filt_size % 2 == 1
        self.pad_size = (filt_size - 1) // 2
        self.register_buffer("filt", _per_channel(blur_filter(filt_size, stride**2), channels))
        self.pad = _pad_layer(pad_type, [1, 1, 1, 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(self.pad(x), self.filt, stride=self.stride, padding=1 + self.pad_size,
                               groups=x.shape[1])[:, :, 1:, 1:]
        return y if self.filt_odd else y[:, :, :-1, :-1]


# ---------------------------------------------------------------------------------------------
# The generator


def _norm_bias(norm: CUTNorm) -> tuple[Callable[[int], nn.Module], bool]:
    """(norm factory, conv bias): the authors' ``use_bias = norm_layer.func == nn.InstanceNorm2d``.

    ``none`` puts an Identity at each norm position, as the authors' ``--normG none`` does, so the
    layer indices (and ``nce_layers``) mean the same as with a norm; unlike theirs the convs keep
    their biases (CycleGAN's ``norm none``, whose residual blocks are reused): without norm or
    bias the network could not shift a colour, which is what the demo's palette mapping needs.
    """
    if norm == "none":
        return (lambda _channels: nn.Identity()), True
    if norm not in ("instance", "batch"):
        raise ValueError(f"unknown CUT norm {norm!r}; valid: instance, batch, none")
    make = norm_layer(norm)
    assert make is not None
    return make, norm == "instance"


class CUTGenerator(nn.Module):
    """The authors' ResNet generator: c7s1-ngf, two down-samplings, ``n_blocks`` residual blocks of
    4 ngf, two up-samplings, c7s1-output_nc, tanh.

    Down-sampling (``antialias``, the default): conv3 s1 - norm - ReLU - :class:`Downsample`; else
    (the authors' ``--no_antialias``) conv3 s2 - norm - ReLU. Up-sampling (``antialias_up``, the
    default): :class:`Upsample` - conv3 s1 - norm - ReLU; else (``--no_antialias_up``) CycleGAN's
    ConvTranspose2d(k3, s2, p1, output_padding 1) - norm - ReLU. Residual blocks are CycleGAN's
    :class:`models.gan_networks.ResnetBlock` (identical layout). With both off the network is exactly
    CycleGAN's :class:`models.gan_networks.ResnetGenerator`, keys included.

    Input ``(N, input_nc, H, W)`` in [-1, 1], H and W multiples of 4; output ``(N, output_nc, H, W)``
    in [-1, 1].

    Args:
        grad_checkpoint: recompute residual-block activations in the backward pass (training mode
            with gradients only), as CycleGAN's generator.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: CUTNorm = "instance", dropout: bool = False, antialias: bool = True,
                 antialias_up: bool = True, grad_checkpoint: bool = False) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        make_norm, bias = _norm_bias(norm)
        self.grad_checkpoint = grad_checkpoint
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, bias=bias),
                                   make_norm(ngf), nn.ReLU(True)]
        for i in range(2):
            c_in, c_out = ngf * 2**i, ngf * 2 ** (i + 1)
            if antialias:
                layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=bias), make_norm(c_out),
                           nn.ReLU(True), Downsample(c_out)]
            else:
                layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=bias), make_norm(c_out),
                           nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm=norm, use_dropout=dropout) for _ in range(n_blocks)]
        self.encoder_depth = len(layers)  # layers 0 .. encoder_depth - 1: the encoder nce_layers may name
        for i in range(2):
            c_in, c_out = ngf * 2 ** (2 - i), ngf * 2 ** (1 - i)
            if antialias_up:
                layers += [Upsample(c_in), nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=bias)]
            else:
                layers += [nn.ConvTranspose2d(c_in, c_out, kernel_size=3, stride=2, padding=1, output_padding=1,
                                              bias=bias)]
            layers += [make_norm(c_out), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.input_nc = input_nc

    def _run(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpoint and isinstance(layer, ResnetBlock) and self.training and torch.is_grad_enabled():
            return checkpoint(layer, x, use_reentrant=False)
        return layer(x)

    def check_layers(self, layers: Sequence[int]) -> list[int]:
        """``layers`` as a list, or ValueError unless strictly increasing indices of the encoder."""
        out = [int(i) for i in layers]
        if not out or any(b <= a for a, b in zip(out, out[1:])) or out[0] < 0 or out[-1] >= self.encoder_depth:
            raise ValueError(f"nce layers must be strictly increasing indices in [0, {self.encoder_depth - 1}] "
                             f"(the encoder of this generator), got {out}")
        return out

    def forward(self, x: torch.Tensor, layers: Sequence[int] = (), encode_only: bool = False
                ) -> torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The authors' signature: no ``layers``: the image; ``encode_only``: :meth:`encode`;
        else ``(image, features at layers)``. Through this method a DDP wrapper sees every call."""
        if not layers:
            if not (self.grad_checkpoint and self.training and torch.is_grad_enabled()):
                return self.model(x)
            for layer in self.model:
                x = self._run(layer, x)
            return x
        wanted = set(self.check_layers(layers))
        last = max(wanted)
        feats = []
        for i, layer in enumerate(self.model):
            x = self._run(layer, x)
            if i in wanted:
                feats.append(x)
            if encode_only and i == last:
                return feats  # the decoder is not run (the authors' early return)
        return x, feats

    def encode(self, x: torch.Tensor, layers: Sequence[int] = NCE_LAYERS) -> list[torch.Tensor]:
        """Outputs of ``self.model[i]`` for each ``i`` in ``layers`` (strictly increasing, inside the
        encoder), running no layer past the last: the authors' ``netG(x, nce_layers, encode_only=True)``.
        ``(N, input_nc, H, W)`` -> ``[(N, C_i, H_i, W_i)]``; layer 0 is the reflection-padded input
        ``(N, input_nc, H + 6, W + 6)``."""
        return self(x, layers, encode_only=True)  # type: ignore[return-value]

    def feature_channels(self, layers: Sequence[int] = NCE_LAYERS) -> list[int]:
        """Channels of :meth:`encode`'s features at ``layers``, read off the layers (no forward)."""
        wanted = set(self.check_layers(layers))
        channels, out = self.input_nc, []
        for i, layer in enumerate(self.model):
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                channels = layer.out_channels
            if i in wanted:
                out.append(channels)
        return out


@dataclass(frozen=True)
class CUTGeneratorArch:
    """The :class:`CUTGenerator` constructor arguments a state_dict was made with."""

    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    n_blocks: int = 9
    norm: CUTNorm = "instance"
    dropout: bool = False
    antialias: bool = True
    antialias_up: bool = True

    def describe(self) -> str:
        aa = {(True, True): "anti-aliased down and up", (True, False): "anti-aliased down only",
              (False, True): "anti-aliased up only", (False, False): "no anti-aliasing"}[(self.antialias,
                                                                                          self.antialias_up)]
        return (f"CUT ResNet generator ngf={self.ngf}, n_blocks={self.n_blocks}, norm={self.norm}, {aa}, "
                f"dropout={self.dropout}, channels {self.input_nc}->{self.output_nc}")

    def build(self, grad_checkpoint: bool = False) -> CUTGenerator:
        return CUTGenerator(self.input_nc, self.output_nc, self.ngf, self.n_blocks, self.norm, self.dropout,
                            self.antialias, self.antialias_up, grad_checkpoint)


def build_generator(input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                    norm: CUTNorm = "instance", dropout: bool = False, antialias: bool = True,
                    antialias_up: bool = True, init: InitKind = "xavier", init_gain: float = 0.02,
                    grad_checkpoint: bool = False) -> CUTGenerator:
    """The authors' ``define_G`` for ``resnet_9blocks`` / ``resnet_6blocks``: built, then initialised
    (their CUT default ``--init_type xavier --init_gain 0.02``; biases 0; blur filters untouched)."""
    net = CUTGenerator(input_nc, output_nc, ngf, n_blocks, norm, dropout, antialias, antialias_up, grad_checkpoint)
    return init_weights(net, init, init_gain)


def nce_channels(layers: Sequence[int] = NCE_LAYERS, input_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                 antialias: bool = True) -> list[int]:
    """Channels of the generator's features at ``layers`` for these settings, without building
    weights (meta tensors): what :meth:`PatchSampleF.create` needs before the first batch.
    The defaults give ``[3, 128, 256, 256, 256]``. ValueError for layers outside the encoder."""
    with torch.device("meta"):
        return CUTGenerator(input_nc, 3, ngf, n_blocks, antialias=antialias).feature_channels(layers)


# ---------------------------------------------------------------------------------------------
# The discriminator


class CUTDiscriminator(nn.Module):
    """The authors' PatchGAN with blur pooling (``NLayerDiscriminator``, ``no_antialias`` off): each
    stride-2 k4 conv of CycleGAN's PatchGAN becomes a stride-1 k4 conv followed (after its norm and
    LeakyReLU 0.2) by a :class:`Downsample`; the last two convs (s1) are CycleGAN's.

    Layers with ``n_layers = 3``: 0 C(ndf, s1), 1 LReLU, 2 Downsample, 3 C(2 ndf, s1), 4 norm,
    5 LReLU, 6 Downsample, 7 C(4 ndf), 8, 9, 10 Downsample, 11 C(8 ndf, s1), 12 norm, 13 LReLU,
    14 C(1, s1). Input ``(N, input_nc, H, W)``; raw logits ``(N, 1, H', W')``, 256 -> 30 as CycleGAN's.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: CUTNorm = "instance") -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        make_norm, bias = _norm_bias(norm)
        kw, padw = 4, 1
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=1, padding=padw),
                                   nn.LeakyReLU(0.2, True), Downsample(ndf)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=1, padding=padw, bias=bias),
                       make_norm(ndf * mult), nn.LeakyReLU(0.2, True), Downsample(ndf * mult)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=1, padding=padw, bias=bias),
                   make_norm(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_discriminator(input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: CUTNorm = "instance",
                        antialias: bool = True, init: InitKind = "xavier", init_gain: float = 0.02) -> nn.Module:
    """The authors' ``define_D`` (``basic`` / ``n_layers``): blur-pooled unless ``antialias`` is off,
    when it is CycleGAN's :class:`models.gan_networks.NLayerDiscriminator` (their layout is the same)."""
    if antialias:
        net: nn.Module = CUTDiscriminator(input_nc, ndf, n_layers, norm)
    else:
        net = NLayerDiscriminator(input_nc, ndf, n_layers, norm)
    return init_weights(net, init, init_gain)


# ---------------------------------------------------------------------------------------------
# netF: patch sampling and the projection head


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """``x / (||x||_2 over dim 1 + 1e-7)``: the authors' ``Normalize(power=2)``."""
    return x.div(x.pow(2).sum(1, keepdim=True).pow(0.5) + 1e-7)


class PatchSampleF(nn.Module):
    """netF (the authors' ``PatchSampleF`` with ``use_mlp``, ``--netF mlp_sample``): per NCE layer,
    ``num_patches`` random locations, their feature vectors through a 2-layer MLP
    (Linear(C_l, nc) - ReLU - Linear(nc, nc)), L2-normalised.

    The MLPs' input sizes are the generator's feature channels, so the authors create them at the
    first forward pass ("data-dependent initialisation"). Here :meth:`create` builds them from the
    channel list (:func:`nce_channels` or :meth:`CUTGenerator.feature_channels`), so a resumed run
    and every DDP rank build the same modules before loading weights or wrapping; with ``seed``
    the initial weights are the same on every rank too, whatever the global RNG holds. A forward
    pass before :meth:`create` still creates them lazily (with ``self.seed``), as the authors' does.
    Either way they are initialised as the authors' ``init_net(self, init_type, init_gain)``.

    State-dict keys: ``mlps.<l>.0.weight`` ... (the authors': ``mlp_<l>.0.weight``).
    """

    def __init__(self, nc: int = 256, init: InitKind = "xavier", init_gain: float = 0.02,
                 seed: int | None = None) -> None:
        super().__init__()
        self.nc, self.init, self.init_gain, self.seed = nc, init, init_gain, seed
        self.mlps = nn.ModuleList()

    @property
    def created(self) -> bool:
        return len(self.mlps) > 0

    @property
    def channels(self) -> list[int]:
        return [int(mlp[0].in_features) for mlp in self.mlps]

    def create(self, channels: Sequence[int], seed: int | None = None) -> PatchSampleF:
        """Build and initialise one MLP per feature layer with ``channels[l]`` inputs (on the CPU;
        move the module afterwards). ``seed`` (default ``self.seed``): initialise from
        ``torch.manual_seed(seed)`` without touching the global RNG; None draws from the global RNG."""
        if self.created:
            raise RuntimeError(f"netF already holds MLPs for channels {self.channels}")
        seed = self.seed if seed is None else seed
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            for c in channels:
                self.mlps.append(nn.Sequential(nn.Linear(int(c), self.nc), nn.ReLU(), nn.Linear(self.nc, self.nc)))
            init_weights(self, self.init, self.init_gain)
        return self

    def forward(self, feats: Sequence[torch.Tensor], num_patches: int = 256,
                patch_ids: Sequence[torch.Tensor] | None = None, generator: torch.Generator | None = None
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``feats[l]`` ``(B, C_l, H_l, W_l)`` -> (``[(B * P_l, nc)]`` unit rows, ``[(P_l,)]`` location ids).

        Row ``b * P_l + p`` is image ``b`` at flat location ``ids[p]`` (``h * W_l + w``); the same
        ids serve every image of the batch. ``patch_ids`` (the ids a first call returned) sample
        the same locations again: the authors' key/query pairing, ``F(feat_k)`` then
        ``F(feat_q, ids)``. Else ``P_l = min(num_patches, H_l W_l)`` locations are drawn by
        ``randperm`` (from ``generator`` if given, else the global RNG, on the features' device).
        """
        if num_patches < 1:
            raise ValueError(f"num_patches must be >= 1, got {num_patches}")
        if not self.created:
            self.create([f.shape[1] for f in feats])
            self.to(feats[0].device)
        if len(feats) != len(self.mlps):
            raise ValueError(f"netF has {len(self.mlps)} MLPs (channels {self.channels}), got {len(feats)} features")
        out, ids = [], []
        for i, (feat, mlp) in enumerate(zip(feats, self.mlps)):
            flat = feat.permute(0, 2, 3, 1).flatten(1, 2)  # (B, H*W, C)
            if patch_ids is not None:
                pid = patch_ids[i]
            else:
                pid = torch.randperm(flat.shape[1], device=feat.device, generator=generator)
                pid = pid[: min(num_patches, pid.shape[0])]
            x = flat[:, pid, :].flatten(0, 1)  # (B * P, C)
            out.append(l2_normalize(mlp(x)))
            ids.append(pid)
        return out, ids

    @staticmethod
    def convert_authors_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The authors' ``latest_net_F.pth`` keys (``mlp_0.0.weight``) -> ours (``mlps.0.0.weight``)."""
        out = {}
        for key, value in sd.items():
            head, _, rest = key.partition(".")
            if head.startswith("mlp_") and head[4:].isdigit():
                key = f"mlps.{int(head[4:])}.{rest}"
            out[key] = value
        return out


# ---------------------------------------------------------------------------------------------
# PatchNCE


def patch_nce_loss(feat_q: torch.Tensor, feat_k: torch.Tensor, nce_T: float = 0.07, batch_size: int = 1,
                   all_negatives_from_minibatch: bool = False) -> torch.Tensor:
    """PatchNCE of one layer (eq. 2-3 of the paper; the authors' ``PatchNCELoss.forward``), per row.

    ``feat_q``, ``feat_k``: ``(B * P, D)`` from :class:`PatchSampleF` (query: the output image's
    features, key: the input's at the same locations); the key is detached. For query ``i`` the
    logits are ``[q_i . k_i, q_i . k_j for every j of the same image]`` with the ``j = i`` entry set
    to -10 (``exp(-10 / tau)`` is about 0), all divided by ``nce_T``; the loss is the cross-entropy
    with target 0 (the positive), reduction none: ``(B * P,)``. ``all_negatives_from_minibatch``
    takes the negatives from every image of the batch instead (the authors' single-image setting).
    Computed in fp32 even under autocast (logits / 0.07 in bf16 would lose the positive's margin).
    """
    device = feat_q.device
    with torch.autocast(device.type, enabled=False):
        q, k = feat_q.float(), feat_k.detach().float()
        n, dim = q.shape
        l_pos = torch.bmm(q.view(n, 1, -1), k.view(n, -1, 1)).view(n, 1)
        groups = 1 if all_negatives_from_minibatch else batch_size
        q, k = q.view(groups, -1, dim), k.view(groups, -1, dim)
        npatches = q.shape[1]
        l_neg = torch.bmm(q, k.transpose(2, 1))
        diagonal = torch.eye(npatches, device=device, dtype=torch.bool)[None, :, :]
        l_neg = l_neg.masked_fill(diagonal, -10.0).view(-1, npatches)
        logits = torch.cat((l_pos, l_neg), dim=1) / nce_T
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=device)
        return F.cross_entropy(logits, target, reduction="none")


def nce_loss(G: nn.Module, netF: nn.Module, src: torch.Tensor, tgt: torch.Tensor,
             layers: Sequence[int] = NCE_LAYERS, num_patches: int = 256, nce_T: float = 0.07,
             flipped: bool = False, all_negatives_from_minibatch: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The authors' ``calculate_NCE_loss(src, tgt)`` without the ``lambda_NCE`` factor (multiply by it):
    the mean over ``layers`` of the mean PatchNCE of :func:`patch_nce_loss`, a scalar.

    ``G(x, layers, encode_only=True)`` gives the features (call it with the DDP-wrapped generator);
    the query is ``tgt`` (the generated image, e.g. ``G(real_A)``), the key ``src`` (its source,
    ``real_A``): ``netF`` samples the key's locations and reuses their ids for the query.
    ``flipped``: ``tgt`` was generated from a horizontally flipped ``src`` (FastCUT's flip
    equivariance), so its features are flipped back before sampling. ``src``, ``tgt``
    ``(B, C, H, W)`` in [-1, 1].
    """
    feat_q = G(tgt, layers, encode_only=True)
    if flipped:
        feat_q = [torch.flip(f, [3]) for f in feat_q]
    feat_k = G(src, layers, encode_only=True)
    k_pool, ids = netF(feat_k, num_patches, None, generator)
    q_pool, _ = netF(feat_q, num_patches, ids)
    total = src.new_zeros((), dtype=torch.float32)
    for f_q, f_k in zip(q_pool, k_pool):
        total = total + patch_nce_loss(f_q, f_k, nce_T, src.shape[0], all_negatives_from_minibatch).mean()
    return total / len(q_pool)
