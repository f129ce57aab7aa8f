"""Metrics: FID/KID through torchmetrics on a tiny random feature network, Inception loading
offline, PSNR/SSIM, VGG losses, devices and timing. Nothing is downloaded."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.metrics import (
    MetricUnavailable,
    Stopwatch,
    describe_device,
    extract_features,
    fid_from_features,
    fid_kid,
    find_inception_weights,
    kid_from_features,
    kid_subset_size,
    load_inception,
    mean_psnr_ssim,
    psnr_ssim,
    vgg_losses,
)
from models.style_losses import LossWeights, style_grams
from models.vgg import load_vgg19


def _set(n: int, seed: int, shift: int = 0, size: int = 24) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 200, (n, 3, size, size), generator=g) + shift
    return list(imgs.clamp(0, 255).to(torch.uint8))


@pytest.fixture
def feats(tiny_features):
    return tiny_features, extract_features(tiny_features, _set(48, 0))


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift(feats):
    net, base = feats
    assert fid_from_features(base, base) == pytest.approx(0.0, abs=1e-6)
    near = extract_features(net, _set(48, 0, shift=10))
    far = extract_features(net, _set(48, 0, shift=50))
    f_near, f_far = fid_from_features(base, near), fid_from_features(base, far)
    assert 1e-4 < f_near < f_far
    # Another sample of the same distribution is close, much closer than the far shift.
    assert fid_from_features(base, extract_features(net, _set(48, 1))) < f_far


def test_kid_self_small_shift_large_and_subset_adapted(feats):
    net, base = feats
    far = extract_features(net, _set(10, 2, shift=50))
    same_mean, _, size = kid_from_features(base, base)
    # The unbiased MMD estimator of a set against itself is ~0 (O(1/n), either sign), not exactly 0.
    assert size == 48 and abs(same_mean) < 1e-3
    mean, std, size = kid_from_features(base, far)
    assert size == 10  # capped by the 10 generated images
    assert mean > 20 * abs(same_mean) and mean > 0 and std >= 0
    assert kid_from_features(base, far) == kid_from_features(base, far)  # seeded subsets
    assert kid_subset_size(121, 751) == 121 and kid_subset_size(5000, 3000) == 1000


def test_too_few_images_are_reported_not_crashing(feats):
    _, base = feats
    result = fid_kid(base, base[:1])
    assert result.fid is None and result.kid_mean is None
    assert "FID needs >= 2 images" in result.unavailable and "KID needs" in result.unavailable
    assert result.n_real == 48 and result.n_fake == 1


def test_extract_features_batches_by_size(tiny_features):
    net = tiny_features
    imgs = _set(3, 0, size=16) + _set(2, 1, size=20)
    f = extract_features(net, imgs, batch_size=2)
    assert f.shape == (5, 16) and f.dtype == torch.float64
    one = extract_features(net, imgs[3:4])
    assert torch.allclose(f[3], one[0])
    with pytest.raises(ValueError, match="uint8"):
        extract_features(net, [torch.rand(3, 8, 8)])


def test_inception_unavailable_offline_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MetricUnavailable) as e:
        load_inception(None, allow_download=False)
    assert str(tmp_path / "hub" / "checkpoints") in str(e.value) and "inception_weights=PATH" in str(e.value)
    with pytest.raises(MetricUnavailable, match="does not exist"):
        find_inception_weights(str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MetricUnavailable, match="not a readable"):
        load_inception(str(bad))
    cached = tmp_path / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find_inception_weights(None, allow_download=False) == cached  # pytorch-fid's copy is found too


def test_psnr_ssim_values():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    ta = torch.from_numpy(a)
    assert psnr_ssim(ta, ta) == (math.inf, pytest.approx(1.0))
    b = a.astype(np.int16)
    b[0, 0, :10] += 10  # 10 pixels off by 10 in one channel
    b = np.clip(b, 0, 255).astype(np.uint8)
    mse = np.mean((b.astype(float) - a.astype(float)) ** 2)
    psnr, ssim = psnr_ssim(torch.from_numpy(b), ta)
    assert psnr == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-6)
    assert 0.9 < ssim < 1.0
    mean_p, mean_s = mean_psnr_ssim([torch.from_numpy(b), torch.from_numpy(b)], [ta, ta])
    assert mean_p == pytest.approx(psnr) and mean_s == pytest.approx(ssim)
    assert psnr_ssim(ta[:, :5, :5], ta[:, :5, :5])[1] == pytest.approx(1.0)  # tiny images: smaller window
    with pytest.raises(ValueError, match="differ in size"):
        psnr_ssim(ta, ta[:, :16])


def test_vgg_losses_of_outputs():
    weights = LossWeights(content_layers={"relu2_2": 1.0}, style_layers={"relu1_1": 1.0})
    net, _ = load_vgg19(weights.layers, "avg", "random")
    imgs = _set(2, 3, size=32)
    style = torch.rand(1, 3, 32, 32)

    def grams_for(h: int, w: int) -> dict[str, torch.Tensor]:
        return style_grams(net, [style], None, ["relu1_1"])

    lc, ls = vgg_losses(net, imgs, imgs, grams_for, weights)
    assert lc == 0.0 and ls > 0
    lc2, _ = vgg_losses(net, _set(2, 4, size=32), imgs, grams_for, weights)
    assert lc2 > 0


def test_device_and_stopwatch():
    assert describe_device("cpu") == f"cpu ({torch.get_num_threads()} threads)"
    with Stopwatch("cpu") as sw:
        sum(range(1000))
    first = sw.seconds
    with sw:
        sum(range(1000))
    assert 0 < first <= sw.seconds  # accumulates


def test_inception_weights_as_safetensors_reach_torch_fidelity_as_a_torch_file(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    import evaluation.metrics as metrics

    state = {"Conv2d_1a_3x3.conv.weight": torch.randn(32, 3, 3, 3), "fc.bias": torch.randn(1008)}
    save_file(state, str(tmp_path / "inception.safetensors"))
    torch.save(state, tmp_path / "inception.pth")
    seen = []

    def fake(name, features_list, feature_extractor_weights_path):  # torch-fidelity reads the path itself
        path = Path(feature_extractor_weights_path)
        seen.append((path.suffix, torch.load(path, weights_only=True)))
        return "inception"

    monkeypatch.setattr(metrics, "NoTrainInceptionV3", fake)
    assert load_inception(str(tmp_path / "inception.safetensors")) == "inception"
    assert load_inception(str(tmp_path / "inception.pth")) == "inception"
    assert [suffix for suffix, _ in seen] == [".pth", ".pth"]
    assert all(torch.equal(got[k], v) for _, got in seen for k, v in state.items())
