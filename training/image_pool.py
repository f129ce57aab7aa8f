"""History buffer of generated images (Shrivastava et al. 2017; CycleGAN section 4).

The discriminators are updated on a mix of the newest fakes and older ones, which reduces
model oscillation. Semantics are the public reference's ``ImagePool.query``, including its use
of Python's ``random`` for the choices (here a private, seeded ``random.Random``), so the pool
never reads a value back from the device: no host synchronisation in the training step.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import torch


class ImagePool:
    """Stores up to ``pool_size`` images; :meth:`query` returns a batch of the same shape.

    For each incoming image: while the pool is not full it is stored and returned. Once full,
    with probability 0.5 the image is returned as is; otherwise a uniformly chosen stored
    image is returned and replaced by the incoming one. ``pool_size=0`` disables the pool.
    Its whole state (images + RNG) is checkpointed.
    """

    def __init__(self, pool_size: int = 50, seed: int = 0) -> None:
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []  # each (1, C, H, W), on the training device
        self.rng = random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """images: ``(N, C, H, W)``; returns ``(N, C, H, W)``, detached."""
        images = images.detach()
        if self.pool_size == 0:
            return images
        out = []
        for image in images.split(1):
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                idx = self.rng.randint(0, self.pool_size - 1)
                out.append(self.images[idx])  # handed out, then replaced: no copy needed
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "images": [im.cpu() for im in self.images],
                "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        if state["pool_size"] != self.pool_size:
            raise ValueError(f"the checkpoint's image pool holds up to {state['pool_size']} images, the config asks "
                             f"for {self.pool_size} (train.pool_size cannot change on resume)")
        self.images = [im.to(device) for im in state["images"]]
        rng = state["rng"]
        if isinstance(rng, torch.Tensor):
            # Checkpoints of format version 1 drew from a torch.Generator; continue from a seed
            # derived from its state, so such a run resumes (its pool choices are new ones).
            self.rng = random.Random(int.from_bytes(hashlib.sha256(rng.numpy().tobytes()).digest()[:8], "little"))
        else:
            self.rng.setstate(_as_tuple(rng))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
