"""The public CycleGAN reference's training iteration, written compactly: the baseline of the
``train`` section, run in the same process on the same networks.

It follows junyanz/pytorch-CycleGAN-and-pix2pix, ``models/cycle_gan_model.py``
``optimize_parameters``: forward (fake_B, rec_A, fake_A, rec_B); D_A and D_B frozen
(``set_requires_grad``); ``backward_G`` (identity, adversarial and cycle terms, one backward);
``optimizer_G.step``; D unfrozen; ``backward_D_A`` and ``backward_D_B`` on fakes drawn from the
reference's ``ImagePool`` (``util/image_pool.py``), each 0.5 * (real + fake) with its own
backward; ``optimizer_D.step``. fp32, eager, PyTorch's default (unfused) Adam with betas
(beta1, 0.999), no finite checks; the batch is a float tensor in [-1, 1] already on the device
(the reference's ``set_input`` copies it there). The networks are this project's
(:func:`models.cyclegan.build_generator` / ``build_discriminator``, the reference's layout) and
the losses of :mod:`models.gan_networks` (the reference's ``GANLoss`` and ``L1Loss``), so with the same
weights and input the losses and updates equal this project's trainer with
``train.fused_adam=false`` (tests/test_bench.py checks it).
"""

from __future__ import annotations

import itertools
import random

import torch
from torch import nn

from models.cyclegan import build_discriminator, build_generator
from models.gan_networks import gan_loss, l1


class ReferencePool:
    """The reference's ``ImagePool``: up to ``pool_size`` past fakes; once full, each new image is
    returned (p = 0.5) or swapped for a random stored one, which is returned. Its draws come from
    a private ``random.Random`` (the reference uses the global one) so the bench leaves the
    process's RNG alone."""

    def __init__(self, pool_size: int, seed: int = 0) -> None:
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, C, H, W) -> (N, C, H, W)."""
        if self.pool_size == 0:
            return images
        out = []
        for image in images:
            image = torch.unsqueeze(image.data, 0)
            if len(self.images) < self.pool_size:
                self.images.append(image)
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                k = self.rng.randint(0, self.pool_size - 1)
                out.append(self.images[k].clone())
                self.images[k] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad = flag


class ReferenceStep:
    """One reference iteration per :meth:`optimize_parameters`, on the input of :meth:`set_input`.

    The loss attributes (``loss_G_A`` ... ``loss_D_B``) hold the last iteration's values, as in
    the reference; :meth:`losses` returns them under this project's logged names.
    """

    def __init__(self, G_A: nn.Module, G_B: nn.Module, D_A: nn.Module, D_B: nn.Module, lr: float = 2e-4,
                 beta1: float = 0.5, lambda_A: float = 10.0, lambda_B: float = 10.0, lambda_identity: float = 0.5,
                 gan_mode: str = "lsgan", pool_size: int = 50, seed: int = 0) -> None:
        self.netG_A, self.netG_B, self.netD_A, self.netD_B = G_A, G_B, D_A, D_B
        self.lambda_A, self.lambda_B, self.lambda_idt, self.gan_mode = lambda_A, lambda_B, lambda_identity, gan_mode
        self.fake_A_pool = ReferencePool(pool_size, seed)
        self.fake_B_pool = ReferencePool(pool_size, seed + 1)
        self.optimizer_G = torch.optim.Adam(itertools.chain(G_A.parameters(), G_B.parameters()), lr=lr,
                                            betas=(beta1, 0.999))
        self.optimizer_D = torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=lr,
                                            betas=(beta1, 0.999))

    @classmethod
    def build(cls, device: torch.device, ngf: int = 64, ndf: int = 64, n_blocks: int = 9, n_layers_D: int = 3,
              seed: int = 0, **kwargs: float | str | int) -> ReferenceStep:
        """Fresh networks (normal(0, 0.02) init, seeded) on ``device``."""
        torch.manual_seed(seed)
        nets = [build_generator(ngf=ngf, n_blocks=n_blocks), build_generator(ngf=ngf, n_blocks=n_blocks),
                build_discriminator(ndf=ndf, n_layers=n_layers_D), build_discriminator(ndf=ndf, n_layers=n_layers_D)]
        return cls(*(net.to(device) for net in nets), seed=seed, **kwargs)  # type: ignore[arg-type]

    def networks(self) -> dict[str, nn.Module]:
        return {"G_A": self.netG_A, "G_B": self.netG_B, "D_A": self.netD_A, "D_B": self.netD_B}

    def set_input(self, real_A: torch.Tensor, real_B: torch.Tensor) -> None:
        """Float images (N, 3, H, W) in [-1, 1] on the networks' device."""
        self.real_A, self.real_B = real_A, real_B

    def forward(self) -> None:
        self.fake_B = self.netG_A(self.real_A)  # G_A(A)
        self.rec_A = self.netG_B(self.fake_B)  # G_B(G_A(A))
        self.fake_A = self.netG_B(self.real_B)  # G_B(B)
        self.rec_B = self.netG_A(self.fake_A)  # G_A(G_B(B))

    def backward_D_basic(self, netD: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        loss_D = (gan_loss(netD(real), True, self.gan_mode) + gan_loss(netD(fake.detach()), False, self.gan_mode)) * 0.5
        loss_D.backward()
        return loss_D

    def backward_D_A(self) -> None:
        self.loss_D_A = self.backward_D_basic(self.netD_A, self.real_B, self.fake_B_pool.query(self.fake_B))

    def backward_D_B(self) -> None:
        self.loss_D_B = self.backward_D_basic(self.netD_B, self.real_A, self.fake_A_pool.query(self.fake_A))

    def backward_G(self) -> None:
        if self.lambda_idt > 0:
            self.idt_A = self.netG_A(self.real_B)
            self.loss_idt_A = l1(self.idt_A, self.real_B) * self.lambda_B * self.lambda_idt
            self.idt_B = self.netG_B(self.real_A)
            self.loss_idt_B = l1(self.idt_B, self.real_A) * self.lambda_A * self.lambda_idt
        else:
            self.loss_idt_A = self.loss_idt_B = torch.zeros((), device=self.real_A.device)
        self.loss_G_A = gan_loss(self.netD_A(self.fake_B), True, self.gan_mode)
        self.loss_G_B = gan_loss(self.netD_B(self.fake_A), True, self.gan_mode)
        self.loss_cycle_A = l1(self.rec_A, self.real_A) * self.lambda_A
        self.loss_cycle_B = l1(self.rec_B, self.real_B) * self.lambda_B
        self.loss_G = (self.loss_G_A + self.loss_G_B + self.loss_cycle_A + self.loss_cycle_B + self.loss_idt_A
                       + self.loss_idt_B)
        self.loss_G.backward()

    def optimize_parameters(self) -> None:
        self.forward()
        set_requires_grad([self.netD_A, self.netD_B], False)
        self.optimizer_G.zero_grad()
        self.backward_G()
        self.optimizer_G.step()
        set_requires_grad([self.netD_A, self.netD_B], True)
        self.optimizer_D.zero_grad()
        self.backward_D_A()
        self.backward_D_B()
        self.optimizer_D.step()

    def losses(self) -> dict[str, torch.Tensor]:
        """The last iteration's terms, detached, under this project's names."""
        terms = {"G_A": self.loss_G_A, "G_B": self.loss_G_B, "cycle_A": self.loss_cycle_A,
                 "cycle_B": self.loss_cycle_B, "idt_A": self.loss_idt_A, "idt_B": self.loss_idt_B,
                 "D_A": self.loss_D_A, "D_B": self.loss_D_B}
        return {name: value.detach() for name, value in terms.items()}
