"""The demo's honesty (issue 22 item 2): the edge SSIM column punishes lost structure that PSNR and
SSIM forgive, and the trivial baseline (palette + blur) is what it says, value for value."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.color import rgb2lab
from skimage.filters import gaussian

from evaluation.metrics import edge_ssim, gradient_magnitude, psnr_ssim
from evaluation.report_data import lab_palette, palette_transfer

C1 = 0.01 ** 2  # SSIM's luminance constant at data range 1


def _ramp(step: int, n: int = 64) -> np.ndarray:
    """(n, n, 3) uint8 grey ramp rising by ``step`` per column."""
    row = (np.arange(n) * step).astype(np.uint8)
    return np.dstack([np.tile(row, (n, 1))] * 3)


def _blocks(seed: int = 0) -> np.ndarray:
    """48 x 48 grey blocks of 4 px, 40 or 200: sharp edges."""
    rng = np.random.default_rng(seed)
    grey = np.kron(rng.random((12, 12)) > 0.5, np.ones((4, 4))) * 160 + 40
    return np.dstack([grey] * 3).astype(np.uint8)


def test_gradient_magnitude_of_a_ramp_by_hand():
    # Sobel x kernel [[1, 0, -1], [2, 0, -2], [1, 0, -1]] / 4 on a ramp of slope s: 2 s; magnitude
    # sqrt((2 s)^2 / 2) = sqrt(2) s, everywhere inside the 1-pixel border.
    g = gradient_magnitude(_ramp(4))
    assert g.shape == (62, 62) and np.allclose(g, math.sqrt(2) * 4 / 255)


def test_edge_ssim_by_hand():
    # Constant gradient maps g1, g2: no variance, so SSIM is its luminance term.
    g1, g2 = math.sqrt(2) * 4 / 255, math.sqrt(2) * 2 / 255
    assert edge_ssim(_ramp(2), _ramp(4)) == pytest.approx((2 * g1 * g2 + C1) / (g1 ** 2 + g2 ** 2 + C1), abs=1e-12)
    assert edge_ssim(_ramp(4), _ramp(4)) == pytest.approx(1.0)
    # Two flat images of different colours: the same (no) edges, 1, however far apart their PSNR says they are.
    red, blue = np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)
    red[..., 0], blue[..., 2] = 200, 200
    assert edge_ssim(red, blue) == pytest.approx(1.0) and psnr_ssim(red, blue)[0] < 10


def test_edge_ssim_punishes_blur_that_psnr_and_ssim_forgive():
    sharp = _blocks()
    shifted = (sharp.astype(int) + 30).clip(0, 255).astype(np.uint8)  # a colour cast, edges intact
    blurred = (gaussian(sharp / 255.0, sigma=1.5, channel_axis=-1) * 255).round().astype(np.uint8)
    assert edge_ssim(shifted, sharp) == pytest.approx(1.0)
    assert edge_ssim(blurred, sharp) < 0.5
    # PSNR and SSIM rate the blur close to the cast (15.1 dB / 0.65 against 18.6 dB / 0.97).
    assert psnr_ssim(blurred, sharp)[0] > 14 and psnr_ssim(blurred, sharp)[1] > 0.6


def test_palette_transfer_by_hand():
    # Inputs: half black (L 0), half white (L 100): mean 50, std 50. Reference: greys of L 20 and 60,
    # mean 40, std 20. (L - 50) / 50 * 20 + 40 maps black to L 20 and white to L 60: the reference's greys.
    img = np.zeros((4, 8, 3), np.uint8)
    img[:, 4:] = 255
    grey20, grey60 = _grey_of_l(20.0), _grey_of_l(60.0)
    ref = np.zeros((2, 2, 3), np.uint8)
    ref[0], ref[1] = grey20, grey60
    source, target = lab_palette([img]), lab_palette([ref])
    assert source[0][0] == pytest.approx(50, abs=0.01) and source[1][0] == pytest.approx(50, abs=0.01)
    assert target[0][0] == pytest.approx(40, abs=0.3) and target[1][0] == pytest.approx(20, abs=0.3)
    out = palette_transfer(img, source, target)
    assert np.abs(out[:, :4].astype(int) - grey20).max() <= 1 and np.abs(out[:, 4:].astype(int) - grey60).max() <= 1
    # The blur then spreads the edge and nothing else: far from it the colours stay.
    blurred = palette_transfer(img, source, target, blur_sigma=1.0)
    assert np.array_equal(blurred[:, 0], out[:, 0]) and not np.array_equal(blurred[:, 3], out[:, 3])


def test_palette_transfer_gives_the_inputs_the_reference_palette():
    rng = np.random.default_rng(1)
    photos = [(rng.random((24, 24, 3)) * 120 + 60).astype(np.uint8) for _ in range(2)]
    paintings = [(rng.random((16, 16, 3)) * [80, 60, 40] + [120, 80, 40]).astype(np.uint8) for _ in range(2)]
    source, (mean, std) = lab_palette(photos), lab_palette(paintings)
    lab = np.concatenate([rgb2lab(palette_transfer(p, source, (mean, std))).reshape(-1, 3) for p in photos])
    assert np.allclose(lab.mean(axis=0), mean, atol=1.0) and np.allclose(lab.std(axis=0), std, atol=1.0)
    # One map for the whole set: a near-grey photo is not blown up to the paintings' spread.
    grey = np.full((8, 8, 3), 128, np.uint8)
    grey[0, 0] = (129, 128, 128)
    assert np.ptp(palette_transfer(grey, source, (mean, std)).reshape(-1, 3).astype(int), axis=0).max() < 10


def _grey_of_l(lightness: float) -> np.ndarray:
    """The uint8 grey whose CIELAB lightness is closest to ``lightness``."""
    values = np.arange(256, dtype=np.uint8)
    ls = rgb2lab(np.dstack([values[None, :]] * 3))[0, :, 0]
    v = int(np.abs(ls - lightness).argmin())
    return np.array([v, v, v])
