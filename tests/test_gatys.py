"""Gatys baseline: loss values by hand, VGG layer naming and truncation, weight loading,
optimisation, colour preservation, blending, multi-scale, config, the method (blend, fingerprint)
and stylize.py. Random weights only."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import GATYS_TINY
from image_corpus import ROOT, load_script, truncated_jpeg
from PIL import Image

from data.image_io import StyleImageError
from methods.base import MethodError
from methods.gatys import GatysMethod, build_extractor, gatys_params
from models.color import luminance, rgb_to_yiq, yiq_to_rgb
from models.gatys import GatysParams, _init_image, level_sizes, stylize
from models.style_losses import (
    LossWeights,
    content_loss,
    gram_matrix,
    perceptual_losses,
    style_grams,
    style_loss,
    tv_loss,
)
from models.vgg import LAYER_NAMES, VGG19Features, VGGInfo, VGGWeightsUnavailable, load_vgg19
from options.config import ConfigError
from options.gatys import load_gatys_config
from options.methods import MethodOptions

stylize_cli = load_script("stylize")
CPU = torch.device("cpu")
GATYS_TINY = [*GATYS_TINY, "--device", "cpu"]  # on the command line
SMALL = LossWeights(content_layers={"relu2_2": 1.0}, style_layers={"relu1_1": 1.0, "relu2_1": 1.0})


@pytest.fixture(scope="module")
def small_vgg() -> VGG19Features:
    torch.manual_seed(0)
    net, info = load_vgg19(SMALL.layers, "avg", "random")
    assert not info.pretrained
    return net


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random images in [0, 1] (upsampled noise looks more like photos than white noise)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------
# Loss terms by hand


def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0]]).reshape(1, 2, 2, 2)
    expected = torch.tensor([[30.0, 6.0], [6.0, 2.0]]) / 8  # F F^T / (C * H * W), C*H*W = 2*2*2
    assert torch.allclose(gram_matrix(f)[0], expected)
    # Normalisation makes it size independent: tiling the map 2x2 keeps the Gram matrix.
    assert torch.allclose(gram_matrix(f.repeat(1, 1, 2, 2)), gram_matrix(f))


def test_content_style_tv_losses_by_hand():
    a = torch.zeros(1, 2, 2, 2)
    b = torch.ones(1, 2, 2, 2)
    assert content_loss({"x": b}, {"x": a}, {"x": 2.0}).item() == pytest.approx(2.0)  # 2 * mean(1^2)
    g_b = gram_matrix(b)  # every entry 4 / 8 = 0.5
    assert torch.allclose(g_b, torch.full((1, 2, 2), 0.5))
    target = torch.zeros(1, 2, 2)
    assert style_loss({"x": b}, {"x": target}, {"x": 3.0}).item() == pytest.approx(3.0 * 0.25)
    ramp = torch.arange(3.0).view(1, 1, 1, 3).expand(1, 1, 3, 3)  # horizontal steps of 1, none vertical
    assert tv_loss(ramp).item() == pytest.approx(1.0)
    # Per image: a batch of two gives two values.
    assert content_loss({"x": torch.stack([a[0], b[0]])}, {"x": a}, {"x": 1.0}).tolist() == [0.0, 1.0]


def test_loss_weights_normalise_layers():
    w = LossWeights(style_layers={"relu1_1": 1.0, "relu2_1": 3.0})
    assert w.style_layers == {"relu1_1": 0.25, "relu2_1": 0.75}
    with pytest.raises(ValueError):
        LossWeights(style_layers={"relu1_1": 0.0})
    # The sum convention (Gatys) keeps the per-layer weights as given.
    summed = LossWeights(style_layers={"relu1_1": 1.0, "relu2_1": 3.0}, layer_reduction="sum")
    assert summed.style_layers == {"relu1_1": 1.0, "relu2_1": 3.0}
    with pytest.raises(ValueError):
        LossWeights(style_layers={"relu1_1": 0.0}, layer_reduction="sum")
    with pytest.raises(ValueError):
        LossWeights(layer_reduction="median")


def test_tv_l1_sum_by_hand():
    """neural-style-pt's TV: sum of |differences| of 0..255 pixels; ours by default: mean of squares."""
    ramp = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).expand(1, 1, 3, 3)  # steps of 0.5 across
    assert tv_loss(ramp, "l1_sum").item() == pytest.approx(255 * 0.5 * 6)  # 2 steps x 3 rows, none down
    assert tv_loss(ramp).item() == pytest.approx(0.25)  # (0.5^2 * 6) / 6 horizontal pairs
    assert tv_loss(torch.cat([ramp, 0.5 * ramp]), "l1_sum").tolist() == pytest.approx([765.0, 382.5])  # per image
    with pytest.raises(ValueError, match="TV norm"):
        tv_loss(ramp, "l2")


def _by_hand_layer_losses(feats, grams, content_feats):
    """Per-layer style losses (mean of squared Gram differences) and the content MSE, written out."""
    style = {}
    for name, target in grams.items():
        f = feats[name][0]
        c, h, w = f.shape
        flat = f.reshape(c, h * w)
        g = flat @ flat.T / (c * h * w)
        style[name] = float(((g - target[0]) ** 2).sum() / (c * c))
    content = {name: float(((feats[name] - t) ** 2).sum() / t.numel()) for name, t in content_feats.items()}
    return style, content


def test_summed_style_loss_is_the_sum_of_the_layers_by_hand(small_vgg):
    x, content, style = _images(1, 32, 30), _images(1, 32, 31), _images(1, 32, 32)
    layers = list(SMALL.style_layers)
    grams = style_grams(small_vgg, [style], None, layers)
    with torch.no_grad():
        feats, c_feats = small_vgg(x), small_vgg(content)
    per_layer, per_content = _by_hand_layer_losses(feats, grams, {"relu2_2": c_feats["relu2_2"]})
    assert all(v > 0 for v in per_layer.values())
    summed = LossWeights(style=7.0, content=3.0, content_layers={"relu2_2": 1.0},
                         style_layers={"relu1_1": 1.0, "relu2_1": 1.0}, layer_reduction="sum")
    got = perceptual_losses(feats, x, {"relu2_2": c_feats["relu2_2"]}, grams, summed)
    assert got.style.item() == pytest.approx(sum(per_layer.values()), rel=1e-5)
    assert got.total.item() == pytest.approx(3.0 * per_content["relu2_2"] + 7.0 * sum(per_layer.values()), rel=1e-5)
    # Per-layer weights multiply their layer's loss, unnormalised: the config's [1, 3] stays [1, 3].
    cfg = load_gatys_config(None, ["loss.content_layers=[relu2_2]", "loss.style_layers=[relu1_1,relu2_1]",
                                   "loss.style_layer_weights=[1,3]"])
    weighted = style_loss(feats, grams, gatys_params(cfg).weights.style_layers).item()
    assert weighted == pytest.approx(per_layer["relu1_1"] + 3 * per_layer["relu2_1"], rel=1e-5)
    # The averaging convention (Johnson's trainer, the report's columns) is still there.
    assert style_loss(feats, grams, SMALL.style_layers).item() == pytest.approx(
        sum(per_layer.values()) / 2, rel=1e-5)


def test_converted_defaults_give_the_former_total_loss():
    """1e6 on the MEAN of the 5 style layers (before) = 2e5 on their SUM (now): same total loss, hence
    the same optimisation, for the defaults and the shipped configs."""
    default = gatys_params(load_gatys_config(None, []))
    assert (default.weights.content, default.weights.style) == (1.0, 2e5)
    for name in ("gatys.yaml", "gatys_quick.yaml"):
        w = gatys_params(load_gatys_config(ROOT / "experiments" / name)).weights
        assert (w.content, w.style, w.tv, w.layer_reduction) == (1.0, 2e5, 0.0, "sum"), name
        assert w.style_layers == default.weights.style_layers and w.content_layers == {"relu4_2": 1.0}
    assert GatysParams().weights == default.weights  # the function's own default too
    torch.manual_seed(3)
    net, _ = load_vgg19(default.weights.layers, "max", "random")
    x, content, style = _images(1, 32, 33), _images(1, 32, 34), _images(1, 32, 35)
    grams = style_grams(net, [style], None, list(default.weights.style_layers))
    with torch.no_grad():
        feats, c_feats = net(x), net(content)
    per_layer, per_content = _by_hand_layer_losses(feats, grams, {"relu4_2": c_feats["relu4_2"]})
    assert len(per_layer) == 5
    before = 1.0 * per_content["relu4_2"] + 1e6 * sum(per_layer.values()) / 5  # the former convention
    now = perceptual_losses(feats, x, {"relu4_2": c_feats["relu4_2"]}, grams, default.weights)
    assert now.total.item() == pytest.approx(before, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# VGG-19: names, truncation, weights


def test_layer_names_follow_the_paper_and_torchvision_indices():
    assert len(LAYER_NAMES) == 37
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])
    kinds = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}
    for name, module in zip(LAYER_NAMES, features):
        assert isinstance(module, kinds[name[:4]]), name
    assert LAYER_NAMES.index("conv1_1") == 0
    assert LAYER_NAMES.index("relu4_2") == 22
    assert LAYER_NAMES.index("relu5_1") == 29
    assert LAYER_NAMES[-1] == "pool5"
    assert "conv_4" not in LAYER_NAMES  # the popular tutorial's naming


def test_truncation_and_outputs():
    net = VGG19Features(["relu4_2", "relu1_1"], pooling="max")
    assert net.names[-1] == "relu4_2" and len(net.names) == 23
    full = VGG19Features(["relu4_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"], pooling="avg")
    assert full.names[-1] == "relu5_1"
    assert isinstance(full.body.pool1, torch.nn.AvgPool2d) and isinstance(net.body.pool1, torch.nn.MaxPool2d)
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64))
    assert set(out) == {"relu4_2", "relu1_1"}
    assert out["relu1_1"].shape == (1, 64, 64, 64) and out["relu4_2"].shape == (1, 512, 8, 8)
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    net.train()
    assert not net.training  # stays frozen
    with pytest.raises(ValueError, match="valid: conv1_1"):
        VGG19Features(["conv_4"])


def test_conv_feature_survives_its_relu():
    net = VGG19Features(["conv1_1", "relu1_1"])
    with torch.no_grad():
        out = net(torch.rand(1, 3, 16, 16))
    assert (out["conv1_1"] < 0).any()  # not overwritten by an in-place ReLU
    assert torch.equal(out["relu1_1"], out["conv1_1"].clamp_min(0))


@pytest.fixture(scope="module")
def tv_features_file(tmp_path_factory) -> tuple[str, dict]:
    """conv1_1 and conv1_2 of a VGG-19 in torchvision's ``features.<i>.*`` layout, random weights
    (enough for an extractor truncated at relu1_2)."""
    torch.manual_seed(1)
    conv1_1, conv1_2 = torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.Conv2d(64, 64, 3, padding=1)
    sd = {"features.0.weight": conv1_1.weight.detach(), "features.0.bias": conv1_1.bias.detach(),
          "features.2.weight": conv1_2.weight.detach(), "features.2.bias": conv1_2.bias.detach()}
    path = tmp_path_factory.mktemp("vgg") / "my_vgg19.pth"
    torch.save(sd, path)
    return str(path), sd


def test_torchvision_layout_file_loads_with_imagenet_normalisation(tv_features_file):
    path, sd = tv_features_file
    net, info = load_vgg19(["relu1_2"], weights=path)
    assert info.pretrained and info.convention == "torchvision"
    x = torch.rand(1, 3, 16, 16)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ref = torch.nn.functional.conv2d((x - mean) / std, sd["features.0.weight"], sd["features.0.bias"], padding=1)
    ref = torch.nn.functional.conv2d(ref.relu(), sd["features.2.weight"], sd["features.2.bias"], padding=1).relu()
    with torch.no_grad():
        assert torch.allclose(net(x)["relu1_2"], ref, atol=1e-4)


def test_caffe_named_keys_and_preprocessing(tv_features_file, tmp_path):
    _, sd = tv_features_file
    names = {i: n for i, n in enumerate(LAYER_NAMES)}
    caffe = {f"{names[int(k.split('.')[1])]}.{k.split('.')[2]}": v for k, v in sd.items()}
    path = tmp_path / "vgg19-d01eb7cb.pth"  # the Caffe conversion's name: auto picks the caffe convention
    torch.save(caffe, path)
    net, info = load_vgg19(["conv1_1"], weights=str(path))
    assert info.convention == "caffe"
    x = torch.rand(1, 3, 8, 8)
    bgr = x.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    ref = torch.nn.functional.conv2d(bgr, caffe["conv1_1.weight"], caffe["conv1_1.bias"], padding=1)
    with torch.no_grad():
        assert torch.allclose(net(x)["conv1_1"], ref, rtol=1e-4, atol=1e-2)


def test_unavailable_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(VGGWeightsUnavailable) as e:
        load_vgg19(["relu1_1"], weights="imagenet", allow_download=False)
    msg = str(e.value)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in msg and "--vgg-weights" in msg
    with pytest.raises(VGGWeightsUnavailable, match="does not exist"):
        load_vgg19(["relu1_1"], weights=str(tmp_path / "nope.pth"))
    net, info = load_vgg19(["relu1_1"], weights="imagenet", allow_download=False, random_if_unavailable=True)
    assert not info.pretrained and info.label == "random-weight VGG (no pretrained weights available)"


# ---------------------------------------------------------------------------------------------
# Optimisation


@pytest.mark.parametrize("optimizer,lr,scheduler", [("lbfgs", 1.0, "none"), ("adam", 0.02, "plateau")])
def test_a_few_steps_lower_the_loss(small_vgg, optimizer, lr, scheduler):
    content, style = _images(1, 32, 0), _images(1, 32, 1)
    params = GatysParams(weights=SMALL, optimizer=optimizer, lr=lr, scheduler=scheduler, steps=6, log_every=1)
    result = stylize(small_vgg, content, [style], params)
    first, last = result.history[0]["total"], float(result.losses.total)
    assert last < 0.7 * first
    assert result.images.shape == content.shape and 0 <= result.images.min() and result.images.max() <= 1
    assert set(result.history[0]) >= {"step", "level", "lr", "total", "content", "style", "tv"}


def test_colour_preservation_keeps_the_contents_chroma(small_vgg):
    content = 0.3 + 0.4 * _images(1, 32, 2)  # mid-range colours: no clipping in YIQ -> RGB
    style = _images(1, 32, 3)
    style[:, 0] = 1.0  # a strongly red style
    weights = LossWeights(style=1e8, content_layers=dict(SMALL.content_layers), style_layers=dict(SMALL.style_layers))
    base = GatysParams(weights=weights, steps=6)
    kept = stylize(small_vgg, content, [style], GatysParams(**{**base.__dict__, "preserve_color": True})).images
    free = stylize(small_vgg, content, [style], base).images
    chroma = rgb_to_yiq(content)[:, 1:]
    err_kept = (rgb_to_yiq(kept)[:, 1:] - chroma).abs().mean().item()
    err_free = (rgb_to_yiq(free)[:, 1:] - chroma).abs().mean().item()
    assert err_kept < 1e-4 and err_free > 1e-2  # without preservation the red style shifts the colours
    assert (luminance(kept) - luminance(content)).abs().mean() > 1e-3  # the luminance was stylised
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-5)


def test_style_blend_mixes_gram_matrices(small_vgg):
    s1, s2 = _images(1, 32, 4), _images(1, 16, 5)
    g1 = style_grams(small_vgg, [s1], None, ["relu1_1"])["relu1_1"]
    g2 = style_grams(small_vgg, [s2], None, ["relu1_1"])["relu1_1"]
    mixed = style_grams(small_vgg, [s1, s2], [3.0, 1.0], ["relu1_1"])["relu1_1"]
    assert torch.allclose(mixed, 0.75 * g1 + 0.25 * g2, atol=1e-7)
    with pytest.raises(ValueError, match="one per style image"):
        style_grams(small_vgg, [s1, s2], [1.0], ["relu1_1"])


def _record_inputs(monkeypatch, net) -> list[tuple[float, float]]:
    """(min, max) of every image the VGG is given from now on."""
    seen: list[tuple[float, float]] = []
    forward = net.forward

    def recording(x, layers=None):
        seen.append((float(x.detach().min()), float(x.detach().max())))
        return forward(x, layers)

    monkeypatch.setattr(net, "forward", recording)
    return seen


def test_clamp_each_eval_keeps_every_evaluated_image_in_range(small_vgg, monkeypatch):
    content, style = _images(1, 16, 0), _images(1, 16, 1)
    weights = LossWeights(content_layers=dict(SMALL.content_layers), style_layers=dict(SMALL.style_layers),
                          style=1e6, layer_reduction="sum")
    seen = _record_inputs(monkeypatch, small_vgg)
    end = stylize(small_vgg, content, [style], GatysParams(weights=weights, steps=8, clamp="end"))
    assert max(hi for _, hi in seen) > 1.0 or min(lo for lo, _ in seen) < 0.0  # unconstrained L-BFGS leaves [0, 1]
    seen.clear()
    each = stylize(small_vgg, content, [style], GatysParams(weights=weights, steps=8, clamp="each_eval"))
    assert len(seen) >= 8  # every evaluation went through the recorder
    assert all(0.0 <= lo and hi <= 1.0 for lo, hi in seen)
    for r in (end, each):
        assert 0 <= r.images.min() and r.images.max() <= 1
    assert not torch.equal(end.images, each.images)
    # auto: L-BFGS clamps at the end, Adam before every evaluation (projected gradient), as before.
    auto = stylize(small_vgg, content, [style], GatysParams(weights=weights, steps=8))
    assert torch.equal(auto.images, end.images)
    adam = {c: stylize(small_vgg, content, [style], GatysParams(weights=weights, steps=4, optimizer="adam", lr=0.2,
                                                                clamp=c)).images for c in ("auto", "each_eval", "end")}
    assert torch.equal(adam["auto"], adam["each_eval"]) and not torch.equal(adam["auto"], adam["end"])


@pytest.mark.parametrize("convention", ["torchvision", "caffe"])
def test_mean_noise_init_is_faint_noise_around_the_vgg_input_mean(convention):
    """neural-style-pt's init random: randn * 0.001 in the VGG's input units."""
    net = VGG19Features(["relu1_1"], convention=convention)
    content = torch.rand(1, 3, 64, 64)
    x = _init_image(content, "mean_noise", 0.5, torch.Generator().manual_seed(0), net, 1e-3)
    z = net.norm(x)
    assert z.mean(dim=(0, 2, 3)).abs().max() < 1e-4 and z.std().item() == pytest.approx(1e-3, rel=0.05)
    assert 0 < x.min() and x.max() < 1


def test_batch_multiscale_noise_init_and_reproducibility(small_vgg):
    content, style = _images(2, 32, 6), _images(1, 24, 7)
    params = GatysParams(weights=SMALL, steps=2, scales=2, init="noise", style_scale=0.5, log_every=1, seed=3)
    a = stylize(small_vgg, content, [style], params)
    b = stylize(small_vgg, content, [style], params)
    assert a.images.shape == (2, 3, 32, 32) and a.steps == 4
    assert {h["level"] for h in a.history} == {0.0, 1.0}
    assert a.losses.total.shape == (2,)
    assert torch.equal(a.images, b.images)  # seeded noise


# ---------------------------------------------------------------------------------------------
# Config and CLI


def test_shipped_configs_load_and_overrides_are_checked():
    cfg = load_gatys_config(ROOT / "experiments" / "gatys.yaml")
    p = gatys_params(cfg)
    assert p.optimizer == "lbfgs" and p.lr == 1.0 and p.steps == 300
    assert list(p.weights.content_layers) == ["relu4_2"]
    assert list(p.weights.style_layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert p.weights.style == 2e5 and p.weights.content == 1.0 and p.weights.layer_reduction == "sum"
    quick = load_gatys_config(ROOT / "experiments" / "gatys_quick.yaml", ["optim.optimizer=adam"])
    assert quick.vgg.pooling == "avg" and quick.image.size == 0 and gatys_params(quick).lr == 0.02
    with pytest.raises(ConfigError, match=r"'optim.stepz' \(did you mean 'steps'\?\); valid keys here: optim.opt"):
        load_gatys_config(None, ["optim.stepz=3"])
    # Layer names are VGG-19's, checked where the network is known (options/ does not import models/).
    with pytest.raises(ConfigError, match="loss.style_layers: unknown VGG-19 layer.s. conv_4; valid: conv1_1"):
        gatys_params(load_gatys_config(None, ["loss.style_layers=[relu1_1,conv_4]"]))
    with pytest.raises(ConfigError, match="loss.style_layer_weights: 2 weights for 5 layers"):
        load_gatys_config(None, ["loss.style_layer_weights=[1,2]"])
    with pytest.raises(ConfigError, match="vgg.pooling"):
        load_gatys_config(None, ["vgg.pooling=median"])
    with pytest.raises(ConfigError, match="image.size: must be 0"):
        load_gatys_config(None, ["image.size=8"])


def test_presets_load_with_the_peers_values(capsys):
    """experiments/gatys_tutorial.yaml: the PyTorch tutorial; gatys_neural_style_pt.yaml: neural-style-pt."""
    tut = load_gatys_config(ROOT / "experiments" / "gatys_tutorial.yaml")
    p = gatys_params(tut)
    assert list(p.weights.content_layers) == ["conv2_2"]  # its conv_4: convolutions counted, before the ReLU
    assert list(p.weights.style_layers) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]
    assert (p.weights.content, p.weights.style, p.weights.tv, p.weights.layer_reduction) == (1.0, 1e6, 0.0, "sum")
    assert (p.optimizer, p.lr, p.lbfgs_history, p.steps, p.init, p.clamp) == ("lbfgs", 1.0, 100, 320, "content",
                                                                            "each_eval")
    assert (tut.vgg.weights, tut.vgg.preprocess, tut.vgg.pooling, tut.image.size) == ("imagenet", "torchvision",
                                                                                      "max", 512)
    nsp = load_gatys_config(ROOT / "experiments" / "gatys_neural_style_pt.yaml")
    p = gatys_params(nsp)
    assert list(p.weights.content_layers) == ["relu4_2"]
    assert list(p.weights.style_layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    w = p.weights
    assert (w.content, w.style, w.tv, w.tv_norm, w.layer_reduction) == (5.0, 100.0, 1e-3, "l1_sum", "sum")
    assert (p.optimizer, p.lr, p.lbfgs_history, p.steps, p.init, p.noise_std, p.clamp) == (
        "lbfgs", 1.0, 100, 1000, "mean_noise", 1e-3, "end")
    assert (nsp.vgg.weights, nsp.vgg.preprocess, nsp.vgg.pooling) == ("caffe", "caffe", "max")
    assert (nsp.image.size, nsp.image.style_scale, nsp.image.preserve_color) == (512, 1.0, False)
    for name in ("gatys_tutorial.yaml", "gatys_neural_style_pt.yaml"):
        assert stylize_cli.main(["--config", str(ROOT / "experiments" / name), "--dry-run"]) == 0
        assert "clamp: " in capsys.readouterr().out


def test_caffe_weights_come_from_the_torch_cache(tv_features_file, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cfg = load_gatys_config(None, ["vgg.weights=caffe", "loss.content_layers=[relu1_1]",
                                   "loss.style_layers=[relu1_1]"])
    with pytest.raises(VGGWeightsUnavailable) as e:
        build_extractor(cfg, CPU)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-d01eb7cb.pth") in str(e.value)
    _, sd = tv_features_file
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(sd, tmp_path / "hub" / "checkpoints" / "vgg19-d01eb7cb.pth")
    net, info = build_extractor(cfg, CPU)
    assert info.pretrained and info.convention == "caffe" and net.norm.convention == "caffe"
    with pytest.raises(ConfigError, match="optim.noise_std"):
        load_gatys_config(None, ["optim.noise_std=0"])
    with pytest.raises(ConfigError, match="optim.clamp"):
        load_gatys_config(None, ["optim.clamp=always"])
    with pytest.raises(ConfigError, match="loss.tv_norm"):
        load_gatys_config(None, ["loss.tv_norm=l2"])


def test_demo_configs_never_download(tmp_path, monkeypatch):
    """experiments/report_demo.yaml says the demo never downloads: its Gatys entry must not either
    (an empty torch cache: the labelled random-weight fallback, no network)."""
    import models.vgg
    from options.config import load
    from options.report import ReportConfig

    downloads: list[str] = []

    def no_network(url, *args, **kwargs):
        downloads.append(url)
        raise OSError("offline")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(models.vgg, "_download", no_network)
    report = load(ReportConfig, ROOT / "experiments" / "report_demo.yaml", [])
    assert not report.download
    gatys = [m for m in report.methods if m.method == "gatys"]
    assert gatys
    for m in gatys:
        cfg = load_gatys_config(ROOT / m.config, m.settings)
        assert not cfg.vgg.download and cfg.vgg.random_if_unavailable
        method = GatysMethod.build(dataclasses.replace(m, style=[str(_style_file(tmp_path))],
                                                       settings=[*m.settings, "loss.content_layers=[relu1_1]",
                                                                 "loss.style_layers=[relu1_1]"]), None, CPU)
        assert method.name == "Gatys [random-weight VGG (no pretrained weights available)]"
    assert downloads == []


def _style_file(folder: Path, size: int = 24, seed: int = 20) -> Path:
    path = folder / f"style{seed}.png"
    Image.fromarray((_images(1, size, seed)[0].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(path)
    return path


def test_method_blends_styles_and_checks_their_weights(small_vgg, tmp_path):
    styles = [str(_style_file(tmp_path, 16, s)) for s in (1, 2, 3)]
    extractor = (small_vgg, VGGInfo("random", "torchvision", False, "test"))
    tiny = ["loss.content_layers=[relu2_2]", "loss.style_layers=[relu1_1,relu2_1]", "optim.steps=1", "image.size=0"]

    def build(**kw):
        return GatysMethod.build(MethodOptions(method="gatys", **kw), None, CPU, extractor=extractor)

    with pytest.raises(MethodError, match="2 style weights for 3 style image"):
        build(style=styles, settings=[*tiny, "image.style_blend=[0.7,0.3]"])
    with pytest.raises(MethodError, match="needs at least one style image"):
        build(settings=tiny)
    with pytest.raises(StyleImageError, match=r"style image .*missing.png does not exist"):
        build(style=[str(tmp_path / "missing.png")], settings=tiny)
    (tmp_path / "broken.png").write_bytes(b"")
    with pytest.raises(StyleImageError, match="broken.png cannot be read"):
        build(style=[str(tmp_path / "broken.png")], settings=tiny)
    m = build(style=styles[:2], style_weights=[3.0, 1.0], settings=tiny)
    assert m.blend == [3.0, 1.0] and m.settings()["style_blend"] == [3.0, 1.0]
    assert m.takes_style and not m.keeps_size and m.max_batch == 1
    out = m(torch.randint(0, 256, (1, 3, 16, 20), dtype=torch.uint8))
    assert out.shape == (1, 3, 16, 20) and out.dtype == torch.uint8
    assert set(m.last_losses()) == {"total", "content", "style", "tv"} and len(m.last_losses()["total"]) == 1
    assert m.working_size((40, 20)) == (40, 20)  # image.size 0: the input's size
    assert build(style=styles[:1], settings=[*tiny, "image.size=16"]).working_size((40, 20)) == (16, 8)


def test_fingerprint_covers_every_setting_that_shapes_the_outputs(small_vgg, tmp_path):
    """The report reuses Gatys outputs by fingerprint: a setting that changes the images must change it."""
    style = str(_style_file(tmp_path))
    extractor = (small_vgg, VGGInfo("random", "torchvision", False, "test"))
    tiny = ["loss.content_layers=[relu2_2]", "loss.style_layers=[relu1_1,relu2_1]"]

    def fp(*settings: str) -> dict:
        opts = MethodOptions(method="gatys", style=[style], settings=[*tiny, *settings])
        return GatysMethod.build(opts, None, CPU, extractor=extractor).fingerprint()

    base = fp()
    assert fp() == base
    assert fp("progress=false", "log_every=1") == base  # logging does not change an image
    for change in ("loss.style_layers=[relu1_1]", "loss.content_layer_weights=[2]", "optim.lr=0.5",
                   "optim.init=noise", "optim.lbfgs_history=5", "image.style_scale=0.5", "image.scale_factor=1.5",
                   "vgg.preprocess=caffe", "batch_size=2", "optim.steps=3", "loss.tv_weight=1",
                   "loss.tv_norm=l1_sum", "optim.clamp=each_eval", "optim.init=mean_noise", "optim.noise_std=0.01"):
        assert fp(change) != base, change
    # The style image's content, not only its name.
    before = fp()
    Image.new("RGB", (24, 24), (200, 10, 10)).save(style)
    assert fp() != before


# ---------------------------------------------------------------------------------------------
# stylize.py


def _content(folder: Path, names=("c0.png", "c1.png"), size: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        arr = (_images(1, size, 10 + i)[0].permute(1, 2, 0).numpy() * 255).astype("uint8")
        Image.fromarray(arr).save(folder / name, format="PNG")
    return folder


def _stylize(capsys, *args: str) -> tuple[int, str, str]:
    code = stylize_cli.main([*args, *GATYS_TINY])
    out, err = capsys.readouterr()
    return code, out, err


def test_stylize_cli(tmp_path, capsys):
    content_dir = _content(tmp_path / "content")
    style = _style_file(tmp_path)
    assert stylize_cli.main(["--dry-run", "optim.steps=7"]) == 0
    assert "steps: 7" in capsys.readouterr().out
    assert stylize_cli.main(["--dry-run", "optim.nope=1"]) == 2
    assert "optim.nope" in capsys.readouterr().err
    out_dir = tmp_path / "out"
    code, out, err = _stylize(capsys, "--input", str(content_dir), "--style", str(style), "--output", str(out_dir))
    assert code == 0, err
    assert "WARNING: Gatys runs with a random-weight VGG" in err
    assert re.search(r"wrote 2 image\(s\) to .*out: [\d.]+ s/image on cpu; skipped 0 \(already there\), failed 0", out)
    outs = sorted(out_dir.glob("*.png"))
    assert [p.name for p in outs] == ["c0.png", "c1.png"]
    assert Image.open(outs[0]).size == (32, 32)
    record = json.loads((out_dir / "gatys_run.json").read_text())
    assert record["images"] == 2 and record["device"] == "cpu" and record["settings"]["steps"] == 2
    assert set(record["losses"]) == {"c0.png", "c1.png"} and record["losses"]["c0.png"]["total"] > 0
    assert record["outputs"] == [str(out_dir / "c0.png"), str(out_dir / "c1.png")]
    assert record["config"]["optim"]["steps"] == 2 and record["seconds_per_image"] > 0

    # Existing outputs are kept unless --overwrite.
    stamp = (out_dir / "c0.png").stat().st_mtime_ns
    code, out, _ = _stylize(capsys, "--input", str(content_dir), "--style", str(style), "--output", str(out_dir))
    assert code == 1 and f"nothing to do: all 2 outputs already exist in {out_dir} (--overwrite)" in out
    assert (out_dir / "c0.png").stat().st_mtime_ns == stamp
    code, out, _ = _stylize(capsys, "--input", str(content_dir), "--style", str(style), "--output", str(out_dir),
                            "--overwrite")
    assert code == 0 and "wrote 2 image(s)" in out and (out_dir / "c0.png").stat().st_mtime_ns != stamp


def test_stylize_errors_exit_2(tmp_path, capsys):
    content_dir = _content(tmp_path / "content", ("c0.png",), 16)
    code, _, err = _stylize(capsys, "--content", str(content_dir), "--style", str(tmp_path / "missing.png"),
                            "--output", str(tmp_path / "o2"))
    assert code == 2 and f"error: style image {tmp_path / 'missing.png'} does not exist" in err
    code, _, err = _stylize(capsys, "--style", str(tmp_path / "s.png"))
    assert code == 2 and "error: --input, --output required (or use --dry-run)" in err
    code, _, err = _stylize(capsys, "--input", str(tmp_path / "nope"), "--style", str(_style_file(tmp_path)),
                            "--output", str(tmp_path / "o3"))
    assert code == 2 and f"input {tmp_path / 'nope'} does not exist" in err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_stylize_same_stem_gets_two_outputs_and_bad_files_are_skipped(tmp_path, capsys):
    content_dir = _content(tmp_path / "content", ("same.jpg", "same.png"), 16)  # (PNG bytes named .jpg)
    (content_dir / "empty.png").write_bytes(b"")
    (content_dir / "truncated.jpg").write_bytes(truncated_jpeg())
    out_dir = tmp_path / "out"
    code, out, err = _stylize(capsys, "--input", str(content_dir), "--style", str(_style_file(tmp_path, 16)),
                              "--output", str(out_dir))
    assert code == 0, err
    assert sorted(p.name for p in out_dir.glob("*.png")) == ["same.jpg.png", "same.png.png"]
    assert "wrote 2 image(s)" in out and "failed 2" in out
    assert f"failed: {content_dir / 'empty.png'}: file is empty (0 bytes)" in err
    assert f"failed: {content_dir / 'truncated.jpg'}: cannot decode" in err
    record = json.loads((out_dir / "gatys_run.json").read_text())
    assert set(record["losses"]) == {"same.jpg.png", "same.png.png"}
    # Only bad files: nothing done, exit 1.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"")
    code, _, err = _stylize(capsys, "--input", str(bad), "--style", str(_style_file(tmp_path, 16)),
                            "--output", str(tmp_path / "o"))
    assert code == 1 and "nothing done: no image of" in err


# Hostile round 3: images smaller than the VGG's poolings allow.


def test_vgg_min_side_counts_the_poolings_before_the_deepest_layer():
    assert [VGG19Features(layers).min_side for layers in (["relu1_1"], ["relu2_1"], ["relu4_1", "relu1_1"],
                                                          ["conv5_1"])] == [1, 2, 8, 16]
    net = VGG19Features(["relu5_1"], "avg")
    assert net(torch.zeros(1, 3, 16, 17))["relu5_1"].shape[-2:] == (1, 1)  # works at the bound ...
    with pytest.raises(RuntimeError):
        net(torch.zeros(1, 3, 15, 40))  # ... and not below it


def test_pyramid_levels_and_thin_styles_stay_above_the_vgg_minimum():
    torch.manual_seed(0)
    net = VGG19Features(["relu1_1", "relu5_1"], "avg")
    weights = LossWeights(content_layers={"relu5_1": 1.0}, style_layers={"relu1_1": 1.0, "relu5_1": 1.0})
    params = GatysParams(weights=weights, optimizer="adam", lr=0.02, steps=1, scales=2, scale_factor=2.0)
    assert level_sizes(20, 24, 2, 2.0, 16) == [(16, 16), (20, 24)]  # the coarse level is not 10 x 12
    style = torch.rand(1, 3, 4, 200)  # at the content's longer side it would be 24 x 0.5 px
    result = stylize(net, torch.rand(1, 3, 20, 24), [style], params)
    assert result.images.shape == (1, 3, 20, 24) and torch.isfinite(result.images).all()
    with pytest.raises(ValueError, match="12x30 px"):
        stylize(net, torch.rand(1, 3, 30, 12), [style], params)


def test_a_content_image_too_small_for_the_vgg_fails_alone_and_the_folder_goes_on(tmp_path, capsys):
    content_dir = _content(tmp_path / "content", ("big.png",), 16)
    Image.new("RGB", (12, 10), (90, 40, 20)).save(content_dir / "tiny.png")
    out_dir = tmp_path / "out"
    code = stylize_cli.main(["--input", str(content_dir), "--style", str(_style_file(tmp_path, 16)), "--output",
                             str(out_dir), *GATYS_TINY, "loss.style_layers=[relu1_1,relu5_1]"])  # 4 poolings: 16 px
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [p.name for p in out_dir.glob("*.png")] == ["big.png"] and "failed 1" in out
    assert f"failed: {content_dir / 'tiny.png'}: 12x10 px" in err and "image.size=16" in err
    assert set(json.loads((out_dir / "gatys_run.json").read_text())["losses"]) == {"big.png"}
