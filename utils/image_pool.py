"""History buffer of generated images (Shrivastava et al. 2017; CycleGAN section 4).

The discriminators are updated on a mix of the newest fakes and older ones, which reduces
model oscillation. Semantics are the public reference's ``ImagePool.query``.
"""

from __future__ import annotations

from typing import Any

import torch


class ImagePool:
    """Stores up to ``pool_size`` images; :meth:`query` returns a batch of the same size.

    For each incoming image: while the pool is not full it is stored and returned. Once full,
    with probability 0.5 the image is returned as is; otherwise a uniformly chosen stored
    image is returned and replaced by the incoming one. ``pool_size=0`` disables the pool.

    The pool draws from its own seeded generator so that its choices are reproducible and
    its whole state (images + RNG) can be checkpointed.
    """

    def __init__(self, pool_size: int = 50, seed: int = 0) -> None:
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """images: ``(N, C, H, W)``; returns ``(N, C, H, W)``, detached."""
        images = images.detach()
        if self.pool_size == 0:
            return images
        out = []
        for image in images:
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator).item() > 0.5:
                idx = int(torch.randint(0, self.pool_size, (), generator=self.generator))
                out.append(self.images[idx].clone())
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "pool_size": self.pool_size,
            "images": [im.cpu() for im in self.images],
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        if state["pool_size"] != self.pool_size:
            raise ValueError(
                f"checkpoint image pool holds up to {state['pool_size']} images, config asks for {self.pool_size}"
            )
        self.images = [im.to(device) for im in state["images"]]
        self.generator.set_state(state["rng"])
