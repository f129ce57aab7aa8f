"""The one loss convention of every objective: a dataclass whose fields are its weighted terms.

``total`` is their sum (what is minimised) and ``as_dict()`` the logs, under the fields' names,
so a new term is one field and its expression. Values stay tensors on the device; the trainer's
logging window (:class:`training.logger.LossWindow`) reads them back once per window, never per step.
"""

from __future__ import annotations

from dataclasses import fields

import torch


class Terms:
    """Base of a loss dataclass (``@dataclass class MyLosses(Terms): a: Tensor; b: Tensor``)."""

    @property
    def total(self) -> torch.Tensor:
        terms = [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
