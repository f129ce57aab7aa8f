"""How a method is chosen and set up for inference: ``test.py``'s flags and the report's
``methods:`` entries are both a :class:`MethodOptions`.

``method`` names a registered method (see ``methods/__init__.py``); ``auto`` reads it off the
checkpoint. Method-specific settings come from the method's own YAML (``config``) and
``key=value`` overrides of it (``settings``), checked against that method's schema, so a new
method needs no new field here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from methods import METHODS
from options.config import check


@dataclass
class MethodOptions:
    method: str = "auto"  # a method of the table (methods/__init__.py) or auto: read off the checkpoint
    checkpoint: str = ""  # run folder, checkpoint file, foreign weights file, or a downloaded model's name
    direction: Literal["AtoB", "BtoA"] = "AtoB"  # CycleGAN: AtoB uses G_A, BtoA uses G_B
    style: list[str] = field(default_factory=list)  # style images (methods that take a style at test time)
    style_weights: list[float] = field(default_factory=list)  # blend of several styles (or of a multi-style net's)
    alpha: float = 1.0  # WCT / AdaIN: 1 = fully stylized features, 0 = the content's
    preserve_color: bool = False  # luminance-only: keep the content's colours
    config: str = ""  # the method's own settings file (Gatys: experiments/gatys.yaml)
    settings: list[str] = field(default_factory=list)  # key=value overrides of those settings
    label: str = ""  # the report's row / column title (default: the method's own)
    amp: Literal["off", "auto", "bf16", "fp16"] = "off"  # auto: bf16 where the device has it natively, else fp32


def validate_method_options(o: MethodOptions, key: str = "") -> None:
    valid = ("auto", *METHODS)
    check(o.method in valid, f"{key}method", f"{o.method!r} is not a method; valid: {', '.join(valid)}")
    check(o.method != "auto" or bool(o.checkpoint), f"{key}checkpoint",
          "method auto reads the method off a checkpoint: give one (or name the method)")
    check(0.0 <= o.alpha <= 1.0, f"{key}alpha", f"must be in [0, 1], got {o.alpha}")
    check(all(w >= 0 for w in o.style_weights) and (not o.style_weights or sum(o.style_weights) > 0),
          f"{key}style_weights", "weights must be >= 0 with a positive sum")
    if o.style_weights and o.style:
        check(len(o.style_weights) == len(o.style), f"{key}style_weights",
              f"{len(o.style_weights)} weights for {len(o.style)} style image(s)")
