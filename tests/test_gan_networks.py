"""Architecture facts from the paper and the public reference's checkpoint layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.cyclegan import build_discriminator, build_generator
from models.gan_networks import NLayerDiscriminator, ResnetGenerator, init_weights


def reference_generator_keys(n_blocks: int) -> set[str]:
    """The keys of the reference's ResnetGenerator state_dict (instance norm, no dropout)."""
    keys = {"model.1.weight", "model.1.bias", "model.4.weight", "model.4.bias", "model.7.weight", "model.7.bias"}
    for i in range(10, 10 + n_blocks):
        for j in (1, 5):
            keys |= {f"model.{i}.conv_block.{j}.weight", f"model.{i}.conv_block.{j}.bias"}
    first_up = 10 + n_blocks
    for idx in (first_up, first_up + 3, first_up + 7):
        keys |= {f"model.{idx}.weight", f"model.{idx}.bias"}
    return keys


@pytest.mark.parametrize("n_blocks", [9, 6])
def test_generator_keys_match_reference_layout(n_blocks: int) -> None:
    g = ResnetGenerator(ngf=8, n_blocks=n_blocks)
    assert set(g.state_dict()) == reference_generator_keys(n_blocks)
    # c7s1-64 ... c7s1-3: first and last convs are 7x7, up-sampling is a transposed conv.
    assert g.model[1].kernel_size == (7, 7) and g.model[-2].kernel_size == (7, 7)
    up = g.model[10 + n_blocks]
    assert isinstance(up, nn.ConvTranspose2d) and up.output_padding == (1, 1) and up.stride == (2, 2)
    assert isinstance(g.model[-1], nn.Tanh)


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_parameter_counts_paper_setting() -> None:
    assert count_parameters(ResnetGenerator(ngf=64, n_blocks=9)) == 11_378_179
    assert count_parameters(NLayerDiscriminator(ndf=64, n_layers=3)) == 2_764_737
    # 6 blocks: 3 fewer residual blocks of 2 x (256*256*9 + 256) parameters each.
    assert count_parameters(ResnetGenerator(ngf=64, n_blocks=6)) == 11_378_179 - 3 * 2 * (256 * 256 * 9 + 256)


def test_discriminator_keys_and_patch_output() -> None:
    d = NLayerDiscriminator(ndf=64, n_layers=3)
    assert list(d.state_dict()) == [f"model.{i}.{p}" for i in (0, 2, 5, 8, 11) for p in ("weight", "bias")]
    assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())
    # LeakyReLU 0.2 everywhere, no norm on the first layer.
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))
    assert isinstance(d.model[1], nn.LeakyReLU)


def test_instance_norm_has_no_state() -> None:
    g = ResnetGenerator(ngf=8, n_blocks=1)
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(not m.affine and not m.track_running_stats for m in norms)
    assert all(c.bias is not None for c in g.modules() if isinstance(c, (nn.Conv2d, nn.ConvTranspose2d)))


@pytest.mark.parametrize("size", [32, 36, 64])
def test_generator_shape_and_range(size: int) -> None:
    g = ResnetGenerator(ngf=8, n_blocks=1).eval()
    y = g(torch.rand(2, 3, size, size) * 2 - 1)
    assert y.shape == (2, 3, size, size)
    assert y.min() >= -1 and y.max() <= 1


def test_resize_conv_option_same_shapes() -> None:
    g = ResnetGenerator(ngf=8, n_blocks=1, upsample="resize_conv")
    assert g(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_dropout_shifts_block_indices_like_reference() -> None:
    g = ResnetGenerator(ngf=8, n_blocks=1, use_dropout=True)
    assert "model.10.conv_block.6.weight" in g.state_dict()  # conv after dropout at index 4


def test_init_normal_std_and_zero_bias() -> None:
    torch.manual_seed(0)
    g = build_generator(ngf=64, n_blocks=9, init="normal", init_gain=0.02)
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(w.std().item() - 0.02) < 2e-4 and abs(w.mean().item()) < 1e-4
    assert all(m.bias.abs().max() == 0 for m in g.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("kind", ["xavier", "kaiming", "orthogonal"])
def test_other_inits(kind: str) -> None:
    d = build_discriminator(ndf=8, n_layers=2, init=kind, init_gain=0.02)
    conv = d.model[0]
    assert conv.bias.abs().max() == 0
    if kind == "orthogonal":
        flat = conv.weight.reshape(conv.weight.shape[0], -1)
        gram = flat @ flat.T
        assert torch.allclose(gram, 0.02**2 * torch.eye(gram.shape[0]), atol=1e-6)
    elif kind == "kaiming":
        fan_in = conv.weight[0].numel()
        assert abs(conv.weight.std().item() - (2 / fan_in) ** 0.5) < 0.1 * (2 / fan_in) ** 0.5


def test_grad_checkpoint_same_output_and_grads() -> None:
    torch.manual_seed(0)
    a = ResnetGenerator(ngf=8, n_blocks=2)
    b = ResnetGenerator(ngf=8, n_blocks=2, grad_checkpoint=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 32, 32)
    ya, yb = a(x), b(x)
    ya.sum().backward()
    yb.sum().backward()
    assert torch.allclose(ya, yb)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-6)


def test_unknown_choices_raise() -> None:
    with pytest.raises(ValueError, match="valid: instance, batch, none"):
        ResnetGenerator(norm="group")
    with pytest.raises(ValueError, match="valid: normal"):
        init_weights(nn.Conv2d(1, 1, 1), "uniform")
