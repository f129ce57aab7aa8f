"""A tiny CycleGAN learns a known mapping, and each of its four parts can be seen doing its job.

The toy problem: domain A is photos (the demo generator's 32 px crops, 64 per domain), domain
B is *other* photos passed through a fixed per-channel tone curve T (red brightened by a
square root, green darkened by a square, blue brightened by 1 - (1 - b)^2). T is monotone in
each channel, so it is the simplest map that turns A's colours into B's, the one an unpaired
method can recover; the held-out pairs (a, T(a)) measure whether it did. The identity loss
(0.5, the paper's weight for colour-faithful mappings) makes that the map found: without it,
2 of 4 seeds learned another assignment of colours that photos of the same scenes also allow.

One training run (800 iterations, batch 4, ngf 8, one residual block, no normalisation, Kaiming
init, identity loss 0.5, fixed seed, two CPU threads; about 30 s) is shared by the tests below.
Each breakage of the training loop fails at least one of them. Measured with throwaway
patches of this very run (seed 0, one thread; on two threads the healthy run gives 21.2 dB,
0.12, 0.21 / 0.18, 22 %, 3):

=====================================  =========  ========  ============  ===================
run                                    PSNR (dB)  cycle L1  D_A / D_B     pool: past fakes,
                                       > 18       < 0.2     in (.05, .3)  median age <= 8
=====================================  =========  ========  ============  ===================
healthy                                21.3       0.12      0.22 / 0.18   22 %, 3
G update skipped (opt_G.step no-op)    5.1        0.52      0.01 / 0.04   97 %, 389
D update skipped (opt_D.step no-op)    17.2       0.13      1.13 / 0.82   22 %, 3
cycle weights set to 0                 12.1       0.70      0.26 / 0.03   22 %, 3
cycle terms left out of the total      15.9       0.37      0.26 / 0.24   22 %, 3
pool bypassed (fakes passed through)   21.1       0.12      0.22 / 0.18   0 %
pool returns zeros                     18.6       0.12      0.01 / 0.01   0 %
pool never replaces its images         21.1       0.12      0.16 / 0.16   24 %, 396
=====================================  =========  ========  ============  ===================

The output metric alone does not separate all of them with a margin. A skipped D update costs
only 4 dB: the cycle loss alone teaches each generator its target domain's colours, because
G_A's output is the reconstruction target of the B cycle (G_A(G_B(b)) = b). So the
discriminators are checked on their own: their loss must settle between "learned nothing" and
"wins outright". A broken pool costs 0.4 to 3 dB in so short a run, so the pool is also checked
on what it is for: the discriminator must be shown generated images from earlier iterations,
and recent ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.demo import DemoSpec, make_demo_dataset
from evaluation.metrics import mean_psnr_ssim
from options.common import load_training_config
from training import build_trainer
from training.cyclegan import CycleGANTrainer

N_TRAIN = 64  # images per domain
STEPS = 800  # 50 epochs of 16 batches of 4
TOY = [
    "seed=0", "device=cpu", "train.amp=off", "data.load_size=32", "data.crop_size=32", "data.batch_size=4",
    "data.num_workers=0", "data.val_images=0", "model.ngf=8", "model.ndf=8", "model.n_blocks=1", "model.n_layers_D=2",
    "model.norm=none", "model.init=kaiming", "model.upsample=resize_conv", "loss.lambda_identity=0.5", "optim.lr=5e-4",
    "optim.n_epochs=30", "optim.n_epochs_decay=20", "train.pool_size=8", "log.progress=false",
    "log.scalars_every=1000000", "log.images_every=0", "checkpoint.every_epochs=0",
]


def tone_curve(images: torch.Tensor) -> torch.Tensor:
    """The known mapping T: uint8 ``(N, 3, H, W)`` -> uint8, per channel (r^0.5, g^2, 1-(1-b)^2)."""
    x = images.double() / 255
    out = torch.stack([x[:, 0].sqrt(), x[:, 1] ** 2, 1 - (1 - x[:, 2]) ** 2], 1)
    return (out * 255).round().to(torch.uint8)


def _load(folder: Path) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
                        for p in sorted(folder.iterdir())])


def _write(images: torch.Tensor, folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")


def _digest(image: torch.Tensor) -> bytes:
    return hashlib.blake2b(image.detach().float().cpu().contiguous().numpy().tobytes(), digest_size=16).digest()


@dataclass
class Spy:
    """Records, without changing anything, what the training loop does.

    ``ages``: for every generated image D_A was shown, how many iterations ago G_A made it
    (0 = this iteration); ``logs``: the loss values of every iteration.
    """

    trainer: CycleGANTrainer
    made_at: dict[bytes, int] = field(default_factory=dict)
    ages: list[int] = field(default_factory=list)
    logs: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.trainer.G_A.register_forward_hook(self._generated)
        self.trainer.D_A.register_forward_hook(self._judged)
        inner = self.trainer.train_step

        def train_step(batch: dict) -> dict[str, torch.Tensor]:
            out = inner(batch)
            self.logs.append({k: float(v) for k, v in out.items()})  # (host reads: the test's, not the loop's)
            return out

        self.trainer.train_step = train_step  # fit() looks it up on the instance

    def _generated(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        for img in output:
            self.made_at.setdefault(_digest(img), self.trainer.step)

    def _judged(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        for img in inputs[0]:
            made = self.made_at.get(_digest(img))
            if made is not None:
                self.ages.append(self.trainer.step - made)

    def late_mean(self, key: str) -> float:
        """Mean of a logged loss over the second half of training."""
        values = [log[key] for log in self.logs[len(self.logs) // 2 :] if key in log]
        return float(np.mean(values))


@dataclass
class Outcome:
    psnr: float  # G_A(a) vs T(a), held-out, dB
    identity_psnr: float  # a vs T(a)
    constant_psnr: float  # the mean colour of trainB vs T(a)
    cycle_l1: float  # |G_B(G_A(a)) - a| in [-1, 1] units, held-out
    spy: Spy


def train_toy(root: Path, *overrides: str) -> Outcome:
    """Make the toy domains under ``root``, train, and measure on the held-out pairs."""
    src = make_demo_dataset(root / "demo", DemoSpec(size=32, n_train_A=0, n_train_B=2 * N_TRAIN, n_test=16, seed=0))
    photos, test_a = _load(src / "trainB"), _load(src / "testB")
    toy = root / "toy"
    # A and B are drawn from different photos: the pairs are never seen in training.
    for sub, images in (("trainA", photos[0::2]), ("trainB", tone_curve(photos[1::2])), ("testA", test_a),
                        ("testB", tone_curve(test_a))):
        _write(images, toy / sub)
    cfg = load_training_config(None, [f"data.root={toy}", f"log.root={root / 'runs'}", "name=toy", *TOY,
                                      *overrides])
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = build_trainer(cfg)
        spy = Spy(trainer)
        trainer.fit()
    assert trainer.step == STEPS

    truth = tone_curve(test_a)
    with torch.no_grad():
        a = test_a.float() / 127.5 - 1
        fake = trainer.G_A.eval()(a)
        rec = trainer.G_B.eval()(fake)
    out = ((fake.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    mean_b = tone_curve(photos[1::2]).float().mean((0, 2, 3), keepdim=True).round().to(torch.uint8)
    return Outcome(
        psnr=mean_psnr_ssim(list(out), list(truth))[0],
        identity_psnr=mean_psnr_ssim(list(test_a), list(truth))[0],
        constant_psnr=mean_psnr_ssim(list(mean_b.expand_as(truth)), list(truth))[0],
        cycle_l1=float((rec - a).abs().mean()),
        spy=spy,
    )


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    # A fixed thread count: the same arithmetic whatever the machine's core count (a GAN run
    # amplifies rounding differences). Two, CI's cores: 1.3x faster than one, same outcome.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return train_toy(tmp_path_factory.mktemp("learning"))
    finally:
        torch.set_num_threads(threads)


def test_generators_learn_the_known_mapping(healthy: Outcome) -> None:
    """Catches a G update that does nothing (5.1 dB) and a missing cycle loss (11.8 / 15.7 dB)."""
    assert healthy.identity_psnr == pytest.approx(15.65, abs=0.1)  # the toy itself is as designed
    assert healthy.constant_psnr == pytest.approx(13.0, abs=0.1)
    assert healthy.psnr > 18.0  # measured 21.3
    assert healthy.psnr > healthy.identity_psnr + 2.0 and healthy.psnr > healthy.constant_psnr + 5.0


def test_cycle_reconstructs_held_out_images(healthy: Outcome) -> None:
    """Catches a cycle loss weighted 0 or left out of the total (0.70 / 0.31; measured 0.12)."""
    assert healthy.cycle_l1 < 0.2


def test_adversarial_game_is_played(healthy: Outcome) -> None:
    """Neither side wins: each discriminator's loss (0.5 * (MSE to 1 on real + MSE to 0 on fake))
    ends between a D that learned nothing and a D that wins outright.

    An LSGAN D that ignores its input scores at best 0.25 (constant output 0.5); a frozen D
    keeps its initial score (0.8 to 1.1 with this init). A D that drives its loss to ~0 sees
    fakes it can always reject: a G that does not learn, or a pool returning zeros, noise or
    stale images.
    """
    for key in ("D_A", "D_B"):
        assert 0.05 < healthy.spy.late_mean(key) < 0.3, key  # measured 0.22 and 0.18


def test_discriminator_is_shown_recent_history_from_the_pool(healthy: Outcome) -> None:
    """The image pool's purpose: D also sees fakes from earlier iterations, and recent ones.

    With pool_size 8 and batch 4, half of the pooled fakes come from the pool once it is full,
    each stays about 4 iterations; the G phase shows D the current fakes. A pool that passes
    fakes through, is bypassed, or returns zeros/noise shows D no past fakes (0 %); one that
    never replaces its images shows only the first ones (median age 400).
    """
    ages = healthy.spy.ages
    assert len(ages) >= STEPS * 4  # D_A judged the fakes of every iteration
    past = [age for age in ages if age > 0]
    assert 0.1 < len(past) / len(ages) < 0.6  # measured 0.22
    assert statistics.median(past) <= 8  # measured 3
