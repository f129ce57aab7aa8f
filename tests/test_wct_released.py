"""The released universal-style-transfer weights: pytorch-AdaIN's vgg_normalised.pth + decoder.pth,
Li et al.'s vgg_normalised_conv{k}_1.t7 + feature_invertor_conv{k}_1.t7 (and PytorchWCT's .pth
conversions), read unchanged and compared with forwards written here from the published
architecture (random weights, files made in tmp_path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from t7_files import write_sequential
from torch import nn

from methods.base import MethodError, load_method, open_weights
from methods.wct_files import load_published
from models.normalised_vgg import NormalisedVGG19
from options.common import load_training_config
from options.config import ConfigError
from options.methods import MethodOptions
from utils.checkpoint import CheckpointError

# The normalised VGG-19's 3x3 convolutions (in, out) up to conv5_1, and the convolutions a pooling precedes.
CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 256), (256, 512),
         (512, 512), (512, 512), (512, 512), (512, 512)]
POOLED = {3, 5, 9, 13}  # 1-based: conv2_1, conv3_1, conv4_1, conv5_1 come after a pooling
DEPTH = {"relu1_1": 1, "relu2_1": 3, "relu3_1": 5, "relu4_1": 9, "relu5_1": 13}


def release_encoder(n_convs: int, ceil: bool) -> nn.Sequential:
    """The releases' encoder: 1x1 conv, then (reflection pad, 3x3 conv, ReLU) with 2x2 max poolings."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    for i, (c_in, c_out) in enumerate(CONVS[:n_convs], 1):
        if i in POOLED:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3), nn.ReLU()]
    return nn.Sequential(*layers).eval()


def release_decoder(n_convs: int) -> nn.Sequential:
    """The releases' decoder of the same depth: mirrored convolutions, nearest x2 where the encoder pools."""
    layers: list[nn.Module] = []
    for i in range(n_convs, 0, -1):
        c_in, c_out = CONVS[i - 1]
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(c_out, c_in, 3)]
        if i > 1:
            layers.append(nn.ReLU())
        if i in POOLED:
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
    return nn.Sequential(*layers).eval()


def _random(seq: nn.Sequential, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    for m in seq.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, (2.0 / (m.in_channels * m.kernel_size[0] ** 2)) ** 0.5)
            nn.init.normal_(m.bias, 0.0, 0.01)
    return seq


def _image(path: Path, size: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC).save(path)
    return path


def _unit(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def _pytorch_adain(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """pytorch-AdaIN's transform: per channel, variances with Bessel's correction, eps on both."""
    def mean_std(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = f.flatten(2)
        return flat.mean(-1)[..., None, None], (flat.var(-1) + eps).sqrt()[..., None, None]

    cm, cs = mean_std(content)
    sm, ss = mean_std(style)
    return (content - cm) / cs * ss + sm


@pytest.fixture(scope="module")
def adain_release(tmp_path_factory) -> tuple[Path, nn.Sequential, nn.Sequential]:
    """pytorch-AdaIN's two files (the encoder truncated at relu4_1 + the rest would only be skipped)."""
    folder = tmp_path_factory.mktemp("adain")
    encoder = _random(release_encoder(DEPTH["relu4_1"], ceil=True), 1)
    decoder = _random(release_decoder(DEPTH["relu4_1"]), 2)
    torch.save(encoder.state_dict(), folder / "vgg_normalised.pth")  # keys 0.weight, 2.weight, ... as released
    torch.save(decoder.state_dict(), folder / "decoder.pth")  # keys 1.weight, 5.weight, ...
    return folder, encoder, decoder


def test_the_normalised_vgg_keeps_the_releases_module_indices(adain_release) -> None:
    folder, encoder, _ = adain_release
    sd = torch.load(folder / "vgg_normalised.pth", weights_only=True)
    assert list(sd)[:4] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    ours = NormalisedVGG19(["relu4_1"], ceil_mode=True)
    ours.body.load_state_dict(sd)  # key for key, strict
    x = torch.rand(1, 3, 40, 36)
    assert torch.equal(ours(x)["relu4_1"], encoder(x))
    assert ours.min_side == 8 and NormalisedVGG19().min_side == 16


def test_adain_runs_the_released_pair_as_pytorch_adain_does(adain_release, tmp_path) -> None:
    folder, encoder, decoder = adain_release
    content, style = _image(tmp_path / "c.png", 64, 3), _image(tmp_path / "s.png", 64, 4)
    for checkpoint in (folder, folder / "decoder.pth"):  # the folder, or the decoder file with its encoder beside it
        opts = MethodOptions(method="auto" if checkpoint.is_file() else "adain", checkpoint=str(checkpoint),
                             style=[str(style)])
        method = load_method(opts, "cpu")
        assert method.key == "adain" and method.vgg.convention == "normalised" and method.vgg.pretrained
        x = (_unit(content) * 255).round().to(torch.uint8)
        ours = method(x)
        with torch.no_grad():  # pytorch-AdaIN's style_transfer, alpha 1, then saved as 8-bit
            ref = decoder(_pytorch_adain(encoder(_unit(content)), encoder(_unit(style)))).clamp(0, 1)
        ref8 = (ref * 255).round().to(torch.uint8)
        diff = (ours.int() - ref8.int()).abs()
        # Only the variance differs: pytorch-AdaIN's has Bessel's correction (8 x 8 positions at relu4_1
        # here: std 0.8% apart), ours does not; at 512 px (64 x 64) the gap is 64 times smaller.
        assert ours.shape == ref8.shape and diff.float().mean() < 1.0 and diff.max() <= 8
        assert set(method.input_files()) >= {folder / "decoder.pth", folder / "vgg_normalised.pth"}


def test_the_released_decoder_inverts_as_the_released_one_does(adain_release) -> None:
    folder, encoder, decoder = adain_release
    file = open_weights(folder, method="adain")
    assert file.kind == "released" and file.method == "adain"
    pub = load_published(file.obj, ["relu4_1"])
    f = encoder(torch.rand(1, 3, 48, 48))
    assert torch.allclose(pub.decoders["relu4_1"](f), decoder(f), atol=1e-6)


def test_wct_reads_li_et_al_t7_files_and_their_pth_conversions(tmp_path) -> None:
    t7, pth = tmp_path / "t7", tmp_path / "pth"
    t7.mkdir()
    pth.mkdir()
    levels = ["relu1_1", "relu2_1", "relu3_1"]
    deepest = _random(release_encoder(DEPTH["relu3_1"], ceil=False), 5)
    decoders = {}
    for k, level in enumerate(levels, 1):
        # Li et al.'s encoders: one VGG-19 truncated at each level (the same weights)
        write_sequential(t7 / f"vgg_normalised_conv{k}_1.t7", nn.Sequential(*list(deepest)[: 3 * DEPTH[level] + 1
                                                                                         + sum(p <= DEPTH[level]
                                                                                               for p in POOLED)]))
        decoders[level] = _random(release_decoder(DEPTH[level]), 10 + k)
        write_sequential(t7 / f"feature_invertor_conv{k}_1.t7", decoders[level])
        # PytorchWCT's conversion: named blocks
        sd = {f"seq.conv{i}.{p}": t for i, conv in enumerate(m for m in decoders[level] if isinstance(m, nn.Conv2d))
              for p, t in (("weight", conv.weight.detach()), ("bias", conv.bias.detach()))}
        torch.save(sd, pth / f"vgg19_normalized_decoder{k}.pth.tar")
    convs = [m for m in deepest if isinstance(m, nn.Conv2d)]
    enc_sd = {"preprocess_weight": convs[0].weight.detach(), "preprocess_bias": convs[0].bias.detach(),
              **{f"seq.conv{i}.{p}": t for i, c in enumerate(convs[1:]) for p, t in (("weight", c.weight.detach()),
                                                                                      ("bias", c.bias.detach()))}}
    torch.save(enc_sd, pth / "vgg19_normalized.pth.tar")

    x = torch.rand(1, 3, 32, 32)
    for folder in (t7, pth):
        for checkpoint in (folder, next(folder.iterdir())):  # the folder, or any file of it
            method = load_method(MethodOptions(method="wct", checkpoint=str(checkpoint), style=[], settings=[
                "transform=whiten"]), "cpu")
            assert method.levels == ["relu3_1", "relu2_1", "relu1_1"]
            feats = method.encoder(x, levels)
            with torch.no_grad():
                for level in levels:
                    ref = release_encoder(DEPTH[level], ceil=False)
                    ref.load_state_dict({k: v for k, v in deepest.state_dict().items() if k in ref.state_dict()})
                    assert torch.allclose(feats[level], ref(x), atol=1e-6), (folder.name, level)
                    f = ref(x)
                    assert torch.allclose(method.decoders[level](f), decoders[level](f), atol=1e-5), (folder, level)
            out = method((x * 255).to(torch.uint8))
            assert out.shape == (1, 3, 32, 32) and out.dtype == torch.uint8


def test_wrong_layouts_and_mixed_encoders_are_one_line_errors(adain_release, tmp_path) -> None:
    folder, _, decoder = adain_release
    alone = tmp_path / "alone"
    alone.mkdir()
    torch.save(decoder.state_dict(), alone / "decoder.pth")
    style = str(_image(tmp_path / "s.png", 32, 1))
    with pytest.raises(MethodError, match="encoder is missing"):
        load_method(MethodOptions(method="adain", checkpoint=str(alone / "decoder.pth"), style=[style]), "cpu")
    # torchvision's VGG-19 layout (no 1x1 conv) as the encoder of the normalised decoders: refused by name
    tv = nn.Sequential(*[nn.Conv2d(a, b, 3, padding=1) for a, b in CONVS[:9]])
    torch.save(tv.state_dict(), tmp_path / "vgg19_torchvision.pth")
    with pytest.raises(CheckpointError, match="torchvision-layout VGG-19"):
        load_method(MethodOptions(method="adain", checkpoint=str(alone / "decoder.pth"), style=[style],
                                  settings=[f"encoder={tmp_path / 'vgg19_torchvision.pth'}"]), "cpu")
    # a decoder of the wrong depth where decoder.pth should be
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save(_random(release_decoder(DEPTH["relu3_1"]), 3).state_dict(), bad / "decoder.pth")
    (bad / "vgg_normalised.pth").write_bytes((folder / "vgg_normalised.pth").read_bytes())
    with pytest.raises(CheckpointError, match=r"expected the relu4_1 decoder of the release with 9 convolutions"):
        load_method(MethodOptions(method="adain", checkpoint=str(bad), style=[style]), "cpu")
    (tmp_path / "x.t7").write_bytes(b"not torch7")
    with pytest.raises(CheckpointError, match="Torch7"):
        open_weights(tmp_path / "x.t7")


def _decoder_run(tiny_dataset: Path, runs: Path, name: str, *overrides: str) -> Path:
    from training import build_trainer

    cfg = load_training_config(None, [
        f"data.root={tiny_dataset / 'trainB'}", f"log.root={runs}", "method=wct", f"name={name}", "device=cpu",
        "data.load_size=36", "data.crop_size=32", "data.batch_size=2", "data.num_workers=0", "model.width=0.125",
        "model.levels=[relu1_1,relu2_1]", "optim.n_epochs=1", "optim.n_epochs_decay=0", "log.progress=false",
        "train.max_batches_per_epoch=2", *overrides])
    build_trainer(cfg).fit()
    return cfg.run_dir


def test_the_encoder_is_a_run_setting_and_the_other_one_is_refused(tiny_dataset, tmp_path) -> None:
    normalised = _random(release_encoder(DEPTH["relu2_1"], ceil=True), 7)
    torch.save(normalised.state_dict(), tmp_path / "vgg_normalised.pth")
    tv = nn.Sequential(*[nn.Conv2d(a, b, 3, padding=1) for a, b in CONVS[:3]])
    torch.save(tv.state_dict(), tmp_path / "vgg19_tv.pth")
    # decoders trained on the releases' normalised VGG-19 ...
    run_n = _decoder_run(tiny_dataset, tmp_path / "runs", "n", "vgg.arch=normalised",
                         f"vgg.weights={tmp_path / 'vgg_normalised.pth'}")
    method = load_method(MethodOptions(method="wct", checkpoint=str(run_n), style=[], settings=["transform=whiten"]),
                         "cpu")
    x = torch.rand(1, 3, 32, 32)
    assert isinstance(method.encoder, NormalisedVGG19)
    assert torch.equal(method.encoder(x, ["relu2_1"])["relu2_1"], normalised(x))  # the run's encoder, rebuilt
    with pytest.raises(CheckpointError, match="torchvision-layout VGG-19"):
        load_method(MethodOptions(method="wct", checkpoint=str(run_n), style=[], settings=[
            "transform=whiten", f"encoder={tmp_path / 'vgg19_tv.pth'}"]), "cpu")
    # ... and on torchvision's (a random-weight one): the normalised file is refused
    run_t = _decoder_run(tiny_dataset, tmp_path / "runs", "t", "vgg.weights=random")
    with pytest.raises(MethodError, match="trained on torchvision's VGG-19"):
        load_method(MethodOptions(method="wct", checkpoint=str(run_t), style=[], settings=[
            "transform=whiten", f"encoder={tmp_path / 'vgg_normalised.pth'}"]), "cpu")
    with pytest.raises(ConfigError, match="vgg.weights"):
        load_training_config(None, ["method=wct", "vgg.arch=normalised"])  # needs the release's file
