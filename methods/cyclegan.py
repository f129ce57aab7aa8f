"""CycleGAN as a method: one trained generator (ours or the public reference's) over a batch.

Images keep their size: the generator needs sides that are multiples of 4, so each batch is
padded by reflection and the output cropped back, instead of the reference's fixed 256 x 256
resize.
"""

from __future__ import annotations

from typing import Any

import torch

from data.image_io import pad_to_multiple, to_model_range, to_uint8
from methods.base import Method, MethodError
from models.color import preserve_color
from options.config import load
from options.cyclegan import CycleGANTestSettings, validate_test_settings
from options.methods import MethodOptions
from utils.checkpoint import LoadedGenerator, WeightsFile, cyclegan_generator
from utils.device import autocast_context


def grey(x: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N, 3, H, W) -> uint8 L (N, 1, H, W), exactly as PIL's ``convert("L")`` (ITU-R 601-2)."""
    r, g, b = (x[:, i : i + 1].to(torch.int32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8)


class CycleGANMethod(Method):
    key = "cyclegan"

    def __init__(self, loaded: LoadedGenerator, file: WeightsFile, opts: MethodOptions, device: torch.device) -> None:
        super().__init__(device, opts.amp, opts.label)
        self.generator = loaded.net.to(device)
        self.loaded, self.file, self.direction = loaded, file, opts.direction
        self.preserve_color = opts.preserve_color

    @classmethod
    def build(cls, opts: MethodOptions, file: WeightsFile | None, device: torch.device) -> CycleGANMethod:
        if file is None:
            raise MethodError("cyclegan needs --checkpoint (a run folder, a checkpoint, or a reference generator)")
        if opts.style:
            raise MethodError("CycleGAN learned its style from a training set and takes no --style image; use "
                              "--method wct, adain or gatys for a style image")
        s = load(CycleGANTestSettings, opts.config or None, opts.settings, validate_test_settings)
        autocast_context(device, opts.amp)  # a bad amp / device pair fails before any work
        loaded = cyclegan_generator(file, opts.direction, s.ngf or None, s.n_blocks or None)
        if loaded.arch.input_nc not in (1, 3) or loaded.arch.output_nc not in (1, 3):
            raise MethodError(f"{file.path}: the generator maps {loaded.arch.input_nc} to {loaded.arch.output_nc} "
                              f"channels; only 1 (grey) or 3 (RGB) channels come from and go to images")
        return cls(loaded, file, opts, device)

    def default_name(self) -> str:
        step = f" (step {self.file.step})" if self.file.step is not None else ""
        return f"CycleGAN{step}"

    @property
    def net_name(self) -> str:
        return self.loaded.name or "generator"

    def settings(self) -> dict[str, Any]:
        return {"checkpoint": str(self.file.path), "step": self.file.step, "net": self.loaded.name,
                "direction": self.direction if self.loaded.name else "as trained",
                "arch": self.loaded.arch.describe(), "preserve_color": self.preserve_color}

    def describe(self) -> str:
        net = self.loaded.name
        net = f"{net} ({'A->B' if net == 'G_A' else 'B->A'})" if net else "generator"
        step = f", step {self.file.step}" if self.file.step is not None else ""
        extra = (f"; ignored {len(self.loaded.ignored_keys)} InstanceNorm running-stat keys"
                 if self.loaded.ignored_keys else "")
        return f"loaded {net} from {self.file.path} ({self.file.source}{step}): {self.loaded.arch.describe()}{extra}"

    def input_files(self) -> list:
        return [self.file.path]

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> uint8 (N, C', H, W): padded to multiples of 4 (at least 8), translated,
        cropped back. A 1-channel generator gets the luminance; uint8 crosses the bus (4x less than float)."""
        x = images.to(self.device, non_blocking=True)
        if self.loaded.arch.input_nc == 1 and x.shape[1] == 3:
            x = grey(x)
        h, w = x.shape[-2:]
        x, top, left = pad_to_multiple(to_model_range(x), 4, 8)
        with autocast_context(self.device, self.amp):
            y = self.generator(x)
        y = y[..., top:top + h, left:left + w].float()
        if self.preserve_color and y.shape[1] == 3 and images.shape[1] == 3:
            content = images.to(self.device).float() / 255.0
            y = preserve_color((y + 1) / 2, content) * 2 - 1
        return to_uint8(y).cpu()
