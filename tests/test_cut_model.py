"""CUT / FastCUT networks and PatchNCE (models/cut.py) against the authors' code,
taesungp/contrastive-unpaired-translation (``models/gan_networks.py``: get_filter, Downsample,
Upsample, ResnetGenerator, NLayerDiscriminator, Normalize, PatchSampleF; ``models/patchnce.py``:
PatchNCELoss; ``models/cut_model.py``: calculate_NCE_loss), with values worked out by hand.

The oracles below restate what the authors' ops compute, written independently of their code
(slicing and sums instead of their grouped convolutions), so a test fails if either side drifts.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.cut import (
    CUTDiscriminator,
    CUTGenerator,
    Downsample,
    PatchSampleF,
    Upsample,
    blur_filter,
    build_discriminator,
    build_generator,
    l2_normalize,
    nce_channels,
    nce_loss,
    patch_nce_loss,
)
from models.gan_networks import NLayerDiscriminator, ResnetBlock, ResnetGenerator

# ---------------------------------------------------------------------------------------------
# Oracles of the authors' ops (models/gan_networks.py)


def oracle_downsample(x: torch.Tensor) -> torch.Tensor:
    """networks.Downsample(C) (pad_type reflect, filt_size 3, stride 2): reflection pad 1, then
    out[i, j] = sum_{u, v in 0..2} b[u] b[v] / 16 * xpad[2i + u, 2j + v] with b = (1, 2, 1)."""
    b = (1.0, 2.0, 1.0)
    xp = F.pad(x, (1, 1, 1, 1), mode="reflect")
    ho, wo = -(-x.shape[2] // 2), -(-x.shape[3] // 2)
    out = torch.zeros(*x.shape[:2], ho, wo, dtype=x.dtype)
    for u in range(3):
        for v in range(3):
            out += b[u] * b[v] / 16 * xp[:, :, u:u + 2 * ho:2, v:v + 2 * wo:2]
    return out


def _upsample_1d(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Along ``dim``: out[2m] = x[m-1]/4 + 3 x[m]/4, out[2m+1] = 3 x[m]/4 + x[m+1]/4, edges replicated."""
    n = x.shape[dim]
    prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    even, odd = 0.25 * prev + 0.75 * x, 0.75 * x + 0.25 * nxt
    return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)


def oracle_upsample(x: torch.Tensor) -> torch.Tensor:
    """networks.Upsample(C) (pad_type repl, filt_size 4, stride 2): their replicate pad 1, transposed
    conv with outer((1, 3, 3, 1), (1, 3, 3, 1)) / 64 * 4 at stride 2 and padding 2, cropped [1:-1],
    is separable: in each direction the taps (1/4, 3/4) / (3/4, 1/4) on each output pair."""
    return _upsample_1d(_upsample_1d(x, 2), 3)


class OracleDown(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("filt", torch.zeros(c, 1, 3, 3))  # loaded from our state_dict, unused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return oracle_downsample(x)


class OracleUp(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("filt", torch.zeros(c, 1, 4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return oracle_upsample(x)


def authors_generator(input_nc: int, output_nc: int, ngf: int, n_blocks: int) -> nn.Sequential:
    """networks.ResnetGenerator(norm instance, no dropout, padding reflect, antialias down and up)'s
    layer list, in its order; CycleGAN's ResnetBlock is the same module as theirs."""
    IN = lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)  # noqa: E731
    m = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=True), IN(ngf), nn.ReLU(True)]
    for i in range(2):
        c = ngf * 2**i
        m += [nn.Conv2d(c, 2 * c, 3, stride=1, padding=1, bias=True), IN(2 * c), nn.ReLU(True), OracleDown(2 * c)]
    m += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
    for i in range(2):
        c = ngf * 2 ** (2 - i)
        m += [OracleUp(c), nn.Conv2d(c, c // 2, 3, stride=1, padding=1, bias=True), IN(c // 2), nn.ReLU(True)]
    m += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
    return nn.Sequential(*m)


# ---------------------------------------------------------------------------------------------
# Blur filters, Downsample, Upsample


def test_blur_filters_are_the_authors_binomial_kernels() -> None:
    assert torch.equal(blur_filter(3) * 16, torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]))
    assert torch.equal(blur_filter(4) * 64, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])))
    assert torch.equal(blur_filter(1), torch.ones(1, 1)) and blur_filter(7).sum().item() == pytest.approx(1.0)
    assert torch.equal(Upsample(5).filt, (blur_filter(4) * 4)[None, None].repeat(5, 1, 1, 1))  # * stride**2
    with pytest.raises(ValueError, match=r"\[1, 7\]"):
        blur_filter(8)


def test_downsample_and_upsample_by_hand() -> None:
    # Downsample of [[0, 4], [8, 12]]: reflection-padded rows (12 8 12), (4 0 4), (12 8 12) under the
    # 3x3 binomial: (40 * 1 + 8 * 2 + 40 * 1) / 16 = 6.
    x = torch.tensor([[[[0.0, 4.0], [8.0, 12.0]]]])
    assert torch.equal(Downsample(1)(x), torch.tensor([[[[6.0]]]]))
    # Upsample of the row (0, 4): replicate pad -> (0, 0, 4, 4); outputs 0/4 + 0*3/4, 0*3/4 + 4/4,
    # 0/4 + 4*3/4, 4*3/4 + 4/4 = (0, 1, 3, 4), and the single row is repeated.
    y = Upsample(1)(torch.tensor([[[[0.0, 4.0]]]]))
    assert torch.allclose(y, torch.tensor([[[[0.0, 1.0, 3.0, 4.0], [0.0, 1.0, 3.0, 4.0]]]]), atol=1e-6)
    assert Downsample(3)(torch.randn(2, 3, 7, 10)).shape == (2, 3, 4, 5)  # ceil(H / 2)
    assert Upsample(3)(torch.randn(2, 3, 7, 10)).shape == (2, 3, 14, 20)
    c = torch.full((1, 2, 6, 6), 0.3)  # both filters keep a constant image
    assert torch.allclose(Downsample(2)(c), torch.full((1, 2, 3, 3), 0.3))
    assert torch.allclose(Upsample(2)(c), torch.full((1, 2, 12, 12), 0.3))


def test_downsample_and_upsample_equal_the_oracles() -> None:
    torch.manual_seed(0)
    for shape in ((2, 3, 8, 8), (1, 4, 7, 5), (1, 2, 2, 3)):
        x = torch.randn(*shape)
        assert torch.allclose(Downsample(shape[1])(x), oracle_downsample(x), atol=1e-6)
        assert torch.allclose(Upsample(shape[1])(x), oracle_upsample(x), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The generator's layout: the authors' state_dict keys

# networks.ResnetGenerator(3, 3, ngf=64, n_blocks=9), antialias on (the published latest_net_G.pth):
AUTHORS_G_KEYS = [
    "model.1.weight", "model.1.bias",  # c7s1-64 (1); InstanceNorm (2) and ReLU (3) hold nothing
    "model.4.weight", "model.4.bias", "model.7.filt",  # conv3 s1 64->128, IN, ReLU, Downsample(128)
    "model.8.weight", "model.8.bias", "model.11.filt",  # conv3 s1 128->256, IN, ReLU, Downsample(256)
    *[f"model.{i}.conv_block.{j}.{p}" for i in range(12, 21) for j in (1, 5) for p in ("weight", "bias")],
    "model.21.filt", "model.22.weight", "model.22.bias",  # Upsample(256), conv3 256->128, IN, ReLU
    "model.25.filt", "model.26.weight", "model.26.bias",  # Upsample(128), conv3 128->64, IN, ReLU
    "model.30.weight", "model.30.bias",  # ReflectionPad2d(3) (29), c7s1-3 (30), Tanh (31)
]


def test_state_dict_keys_are_the_authors() -> None:
    with torch.device("meta"):
        sd = CUTGenerator().state_dict()
    assert list(sd) == AUTHORS_G_KEYS
    shapes = {"model.1.weight": (64, 3, 7, 7), "model.4.weight": (128, 64, 3, 3), "model.7.filt": (128, 1, 3, 3),
              "model.11.filt": (256, 1, 3, 3), "model.21.filt": (256, 1, 4, 4), "model.22.weight": (128, 256, 3, 3),
              "model.25.filt": (128, 1, 4, 4), "model.30.weight": (3, 64, 7, 7)}
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    # Their Downsample / Upsample register ``filt`` with register_buffer (persistent): in the file.
    assert not Downsample(2)._non_persistent_buffers_set and not Upsample(2)._non_persistent_buffers_set
    # --no_antialias --no_antialias_up: exactly CycleGAN's ResnetGenerator, keys and shapes.
    with torch.device("meta"):
        plain = CUTGenerator(antialias=False, antialias_up=False).state_dict()
        cyc = ResnetGenerator().state_dict()
    assert {k: v.shape for k, v in plain.items()} == {k: v.shape for k, v in cyc.items()}
    # Only one of them off: the Downsamples go (stride-2 convs at 4 and 7), the Upsamples stay.
    with torch.device("meta"):
        down_off = CUTGenerator(antialias=False).state_dict()
    assert "model.7.weight" in down_off and "model.19.filt" in down_off and "model.28.weight" in down_off


def test_generator_shapes_and_features_on_32px() -> None:
    torch.manual_seed(0)
    G = build_generator(ngf=8, n_blocks=1, init_gain=0.2).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = G(x)
    assert y.shape == (2, 3, 32, 32) and y.abs().max() <= 1
    layers = [0, 4, 8, 12]  # 16 is past the encoder of a 1-block generator (layers 0 .. 12)
    feats = G.encode(x, layers)
    assert [tuple(f.shape) for f in feats] == [(2, 3, 38, 38), (2, 16, 32, 32), (2, 32, 16, 16), (2, 32, 8, 8)]
    assert torch.equal(feats[0], F.pad(x, (3, 3, 3, 3), mode="reflect"))  # layer 0 is the padded input
    assert G.feature_channels(layers) == [3, 16, 32, 32] == nce_channels(layers, ngf=8, n_blocks=1)
    assert nce_channels() == [3, 128, 256, 256, 256]  # the authors' ngf 64, 9 blocks, 0,4,8,12,16
    out, also = G(x, layers)
    assert torch.equal(out, y) and all(torch.equal(a, b) for a, b in zip(also, feats))
    assert G.encoder_depth == 13 and CUTGenerator().encoder_depth == 21
    for bad in ([13], [4, 0], [0, 0], [-1], []):
        with pytest.raises(ValueError, match="strictly increasing"):
            G.check_layers(bad)


def test_generator_forward_and_encoder_equal_the_authors_layers() -> None:
    torch.manual_seed(1)
    ours = build_generator(ngf=4, n_blocks=2, init_gain=0.3).eval()
    ref = authors_generator(3, 3, 4, 2)
    ref.load_state_dict({k.removeprefix("model."): v for k, v in ours.state_dict().items()}, strict=True)
    x = torch.rand(1, 3, 16, 20) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)
        h, want = x, {}
        for i, layer in enumerate(ref):  # the authors' forward(layers, encode_only=True) loop
            h = layer(h)
            want[i] = h
        for got, i in zip(ours.encode(x, [0, 4, 8, 12, 13]), [0, 4, 8, 12, 13]):
            assert torch.allclose(got, want[i], atol=1e-5), i


def test_grad_checkpoint_gives_the_same_gradients() -> None:
    torch.manual_seed(2)
    a = build_generator(ngf=4, n_blocks=2)
    b = build_generator(ngf=4, n_blocks=2, grad_checkpoint=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 16, 16)
    for net in (a, b):
        (net(x).sum() + net.encode(x, [4, 12])[1].sum()).backward()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


# ---------------------------------------------------------------------------------------------
# The discriminator


def test_discriminator_is_the_authors_blur_pooled_patchgan() -> None:
    D = CUTDiscriminator(3, ndf=8, n_layers=3)
    assert list(D.state_dict()) == ["model.0.weight", "model.0.bias", "model.2.filt", "model.3.weight", "model.3.bias",
                                    "model.6.filt", "model.7.weight", "model.7.bias", "model.10.filt",
                                    "model.11.weight", "model.11.bias", "model.14.weight", "model.14.bias"]
    assert [m.stride for m in D.model if isinstance(m, nn.Conv2d)] == [(1, 1)] * 5
    with torch.device("meta"):
        assert CUTDiscriminator()(torch.empty(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # as CycleGAN's
    assert D(torch.randn(1, 3, 32, 32)).shape == (1, 1, 2, 2)
    assert isinstance(build_discriminator(ndf=8, antialias=False), NLayerDiscriminator)


# ---------------------------------------------------------------------------------------------
# netF (PatchSampleF)


def test_netF_samples_the_same_locations_and_returns_unit_rows() -> None:
    torch.manual_seed(3)
    feats_k = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
    feats_q = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
    netF = PatchSampleF(nc=6, init_gain=1.0).create([3, 5], seed=0)  # gain 0.02: rows of ~1e-4, where the 1e-7 shows
    k, ids = netF(feats_k, num_patches=3)
    q, ids_q = netF(feats_q, 3, ids)
    assert [tuple(t.shape) for t in k] == [(6, 6), (6, 6)] and [len(i) for i in ids] == [3, 3]
    assert all(torch.equal(a, b) for a, b in zip(ids, ids_q))
    for t in (*k, *q):
        assert torch.allclose(t.norm(dim=1), torch.ones(t.shape[0]), atol=1e-5)
    # Row b * P + p is image b at flat location ids[p] = h * W + w, through that layer's MLP.
    for layer, (feat, out, pid) in enumerate(zip(feats_q, q, ids)):
        W = feat.shape[3]
        for b in range(2):
            for p, loc in enumerate(pid.tolist()):
                v = feat[b, :, loc // W, loc % W]
                assert torch.allclose(out[b * 3 + p], l2_normalize(netF.mlps[layer](v[None]))[0], atol=1e-6)
    # More patches than locations: every location once.
    _, every = netF(feats_k, num_patches=100)
    assert sorted(every[1].tolist()) == [0, 1, 2, 3] and sorted(every[0].tolist()) == list(range(16))


def test_netF_mlps_init_and_creation_are_deterministic() -> None:
    netF = PatchSampleF(nc=8, init="xavier", init_gain=0.02).create([3, 16], seed=7)
    mlp = netF.mlps[0]
    assert [type(m) for m in mlp] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (mlp[0].in_features, mlp[0].out_features, mlp[2].in_features, mlp[2].out_features) == (3, 8, 8, 8)
    assert all(torch.equal(m.bias, torch.zeros(8)) for m in (mlp[0], mlp[2]))
    # xavier_normal(gain 0.02): std = 0.02 * sqrt(2 / (fan_in + fan_out)).
    big = PatchSampleF(nc=256).create([256], seed=0).mlps[0][0].weight
    assert big.std().item() == pytest.approx(0.02 * math.sqrt(2 / 512), rel=0.02)
    assert list(netF.state_dict()) == [f"mlps.{i}.{j}.{p}" for i in (0, 1) for j in (0, 2) for p in ("weight", "bias")]
    # Same seed, same weights, and the global RNG is left alone; lazy creation (first forward) is the same.
    torch.manual_seed(11)
    before = torch.get_rng_state()
    again = PatchSampleF(nc=8).create([3, 16], seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    lazy = PatchSampleF(nc=8, seed=7)
    lazy([torch.randn(1, 3, 2, 2), torch.randn(1, 16, 2, 2)], 2)
    for other in (again, lazy):
        assert all(torch.equal(a, b) for a, b in zip(netF.state_dict().values(), other.state_dict().values()))
    authors = {f"mlp_{i}.{j}.{p}": v for (i, j, p), v in
               zip([(i, j, p) for i in (0, 1) for j in (0, 2) for p in ("weight", "bias")], netF.state_dict().values())}
    fresh = PatchSampleF(nc=8).create([3, 16])
    fresh.load_state_dict(PatchSampleF.convert_authors_state_dict(authors))
    assert all(torch.equal(a, b) for a, b in zip(netF.state_dict().values(), fresh.state_dict().values()))
    with pytest.raises(RuntimeError, match="already"):
        netF.create([3])


# ---------------------------------------------------------------------------------------------
# PatchNCE


def test_patch_nce_by_hand_two_locations_three_dimensions() -> None:
    """q1 = (1, 0, 0), q2 = (0, 1, 0); k1 = (0.6, 0.8, 0), k2 = (0, 0.6, 0.8); tau = 0.07.

    Row i's logits: [q_i . k_i, q_i . k_1, q_i . k_2] with the diagonal (q_i . k_i among the
    negatives) set to -10, over tau:
      row 1: [0.6, -10, q1 . k2 = 0] / tau,  row 2: [0.6, q2 . k1 = 0.8, -10] / tau
    so loss_1 = log(1 + exp(-0.6 / tau) + exp(-10.6 / tau)) = 1.8942e-4 and
    loss_2 = log(1 + exp(0.2 / tau) + exp(-10.6 / tau)) = 2.91299.
    loss_i = -logit_pos + log(sum exp(logits)).
    """
    q = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    k = torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.6, 0.8]])
    t = 0.07
    loss1 = -0.6 / t + math.log(math.exp(0.6 / t) + math.exp(-10 / t) + math.exp(0.0 / t))
    loss2 = -0.6 / t + math.log(math.exp(0.6 / t) + math.exp(0.8 / t) + math.exp(-10 / t))
    assert (loss1, loss2) == (pytest.approx(1.8942e-4, rel=1e-4), pytest.approx(2.91299, rel=1e-5))
    got = patch_nce_loss(q, k, nce_T=t, batch_size=1)
    assert got.shape == (2,) and torch.allclose(got, torch.tensor([loss1, loss2]), rtol=1e-5, atol=1e-7)

    # Two images of one location each: no negatives but the masked self (-10); with negatives
    # from the minibatch (the authors' single-image option) it is the computation above.
    alone = -0.6 / t + math.log(math.exp(0.6 / t) + math.exp(-10 / t))
    assert torch.allclose(patch_nce_loss(q, k, t, batch_size=2), torch.tensor([alone, alone]), rtol=1e-5, atol=1e-7)
    assert torch.allclose(patch_nce_loss(q, k, t, batch_size=2, all_negatives_from_minibatch=True), got)


def test_patch_nce_detaches_the_key() -> None:
    q = torch.randn(4, 3, requires_grad=True)
    k = torch.randn(4, 3, requires_grad=True)
    patch_nce_loss(q, k, batch_size=2).mean().backward()
    assert q.grad is not None and k.grad is None


def test_nce_loss_is_the_mean_over_layers_with_shared_locations() -> None:
    torch.manual_seed(4)
    G = build_generator(ngf=4, n_blocks=1, init_gain=0.2)
    layers = [0, 4, 8, 12]
    netF = PatchSampleF(nc=8).create(G.feature_channels(layers), seed=0)
    src = torch.rand(2, 3, 16, 16) * 2 - 1
    tgt = G(src)
    torch.manual_seed(5)
    got = nce_loss(G, netF, src, tgt, layers, num_patches=6, nce_T=0.07)
    torch.manual_seed(5)
    k, ids = netF(G.encode(src, layers), 6)
    q, _ = netF(G.encode(tgt, layers), 6, ids)
    want = sum(patch_nce_loss(a, b, 0.07, 2).mean() for a, b in zip(q, k)) / 4
    assert torch.allclose(got, want)
    got.backward()
    assert all(p.grad is not None for p in netF.parameters()) and G.model[1].weight.grad is not None
    # The flip: features of a flipped image's translation are flipped back onto the source's locations.
    flipped = G(torch.flip(src, [3]))
    torch.manual_seed(5)
    a = nce_loss(G, netF, src, flipped, layers, 6, flipped=True)
    torch.manual_seed(5)
    k, ids = netF(G.encode(src, layers), 6)
    q, _ = netF([torch.flip(f, [3]) for f in G.encode(flipped, layers)], 6, ids)
    assert torch.allclose(a, sum(patch_nce_loss(x, y, 0.07, 2).mean() for x, y in zip(q, k)) / 4)
