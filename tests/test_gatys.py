"""Gatys baseline: loss values by hand, VGG layer naming and truncation, weight loading,
optimisation, colour preservation, blending, multi-scale, config and CLI. Random weights only."""

from __future__ import annotations

import pytest
import torch
import torchvision
from PIL import Image

from models.color import luminance, rgb_to_yiq, yiq_to_rgb
from models.gatys import GatysParams, stylize
from models.style_losses import LossWeights, content_loss, gram_matrix, style_grams, style_loss, tv_loss
from models.vgg import LAYER_NAMES, VGG19Features, VGGWeightsUnavailable, load_vgg19
from options.config import ConfigError
from options.gatys_config import gatys_params, load_gatys_config, style_blend

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
    cfg = load_gatys_config("experiments/gatys.yaml")
    p = gatys_params(cfg)
    assert p.optimizer == "lbfgs" and p.lr == 1.0 and p.steps == 300
    assert list(p.weights.content_layers) == ["relu4_2"]
    assert list(p.weights.style_layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert p.weights.style == 1e6 and p.weights.content == 1.0
    quick = load_gatys_config("experiments/gatys_quick.yaml", ["optim.optimizer=adam"])
    assert quick.vgg.pooling == "avg" and quick.image.size == 0 and gatys_params(quick).lr == 0.02
    with pytest.raises(ConfigError, match="valid keys here: optim.optimizer"):
        load_gatys_config(None, ["optim.stepz=3"])
    with pytest.raises(ConfigError, match="loss.style_layers: unknown layer"):
        load_gatys_config(None, ["loss.style_layers=relu1_1,conv_4"])
    with pytest.raises(ConfigError, match="loss.style_layer_weights"):
        load_gatys_config(None, ["loss.style_layer_weights=1,2"])
    with pytest.raises(ConfigError, match="vgg.pooling"):
        load_gatys_config(None, ["vgg.pooling=median"])
    cfg = load_gatys_config(None, ["image.style_blend=0.7,0.3"])
    assert style_blend(cfg, 2) == [0.7, 0.3]
    with pytest.raises(ConfigError, match="image.style_blend"):
        style_blend(cfg, 3)


def test_stylize_cli(tmp_path, capsys):
    import stylize as cli

    content_dir = tmp_path / "content"
    content_dir.mkdir()
    for i in range(2):
        Image.fromarray((_images(1, 32, 10 + i)[0].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(
            content_dir / f"c{i}.png")
    style = tmp_path / "s.png"
    Image.fromarray((_images(1, 24, 20)[0].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(style)
    assert cli.main(["--dry-run", "optim.steps=7"]) == 0
    assert "steps: 7" in capsys.readouterr().out
    assert cli.main(["--dry-run", "optim.nope=1"]) == 2
    args = ["--content", str(content_dir), "--style", str(style), "--output", str(tmp_path / "out"),
            "vgg.weights=random", "optim.steps=2", "image.size=0", "progress=false",
            "loss.content_layers=relu2_2", "loss.style_layers=relu1_1,relu2_1"]
    assert cli.main(args) == 0
    outs = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in outs] == ["c0.png", "c1.png"]
    assert Image.open(outs[0]).size == (32, 32)
    assert (tmp_path / "out" / "gatys_run.json").is_file()
    assert cli.main(["--content", str(content_dir), "--style", str(tmp_path / "missing.png"),
                     "--output", str(tmp_path / "o2"), "vgg.weights=random"]) == 1
