"""CycleGAN as a method: one trained generator (ours or the public reference's) over a batch,
and the reading of every generator file: our checkpoints (``nets["G_A"]`` / ``nets["G_B"]``) and
the reference's state_dicts (``latest_net_G_A.pth``, ``style_monet.pth``: the architecture is read
off the keys).

Images keep their size: the generator needs sides that are multiples of 4, so each batch is
padded by reflection and the output cropped back, instead of the reference's fixed 256 x 256
resize.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from methods.base import GeneratorMethod, MethodError, WeightsFile, build_generator_from
from models.gan_networks import GeneratorArch, ResnetGenerator
from options.config import load
from options.cyclegan import CycleGANTestSettings, ModelConfig
from options.methods import MethodOptions
from utils.checkpoint import CheckpointError, found_keys, is_state_dict, shape_of, strip_prefixes
from utils.device import autocast_context

_GEN_NAME = {"AtoB": "G_A", "BtoA": "G_B"}
_FILT_KEY = re.compile(r"^model\.\d+\.filt$")  # CUT's blur-pool buffers: not a CycleGAN generator
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.weight$")
_TOP_WEIGHT = re.compile(r"^model\.(\d+)\.(?:conv\.)?weight$")


def _is_cyclegan_generator(sd: dict[str, torch.Tensor]) -> bool:
    w = sd.get("model.1.weight")
    return isinstance(w, torch.Tensor) and w.ndim == 4 and w.shape[-1] == 7


def infer_cyclegan_arch(sd: dict[str, torch.Tensor], source: str | Path = "state_dict") -> GeneratorArch:
    """Read a reference-layout generator's architecture off its keys and tensor shapes.

    ``model.1.weight`` is the first 7x7 conv ``(ngf, input_nc, 7, 7)``; each residual block is
    a ``model.N.conv_block.*`` group; norm layers with an affine weight mean BatchNorm, none at
    all (first down-sampling conv at ``model.3``) mean norm "none"; a block whose second conv
    sits one index later holds a Dropout; ``model.N.conv.weight`` means resize-conv up-sampling.
    """
    if any(k.startswith("model.model.") for k in sd):
        raise CheckpointError(
            f"{source}: this is a U-Net generator (the reference's --netG unet_256/unet_128, keys model.model.*); "
            f"this project has only the ResNet generator (keys like model.1.weight, model.10.conv_block.1.weight)")
    if any(_FILT_KEY.match(k) for k in sd):
        raise CheckpointError(f"{source}: this is a CUT network (blur-pool buffers model.N.filt, the layout of "
                              f"taesungp/contrastive-unpaired-translation), not a CycleGAN one; use --method cut "
                              f"(or auto)")
    w0 = sd.get("model.0.weight")
    if isinstance(w0, torch.Tensor) and w0.ndim == 4:
        # A generator's model.0 is a ReflectionPad2d (no weights); a PatchGAN starts with a 4x4 conv.
        raise CheckpointError(
            f"{source}: this is a discriminator, not a generator (model.0 is a {w0.shape[-2]}x{w0.shape[-1]} conv "
            f"with {w0.shape[0]} filters, the PatchGAN layout of D_A / D_B / latest_net_D_A.pth); "
            f"translate with a generator file (G_A / G_B, latest_net_G_A.pth, style_monet.pth)")
    w1 = sd.get("model.1.weight")
    if not _is_cyclegan_generator(sd):
        found = f"model.1.weight of shape {shape_of(w1)}" if w1 is not None else found_keys(sd)
        raise CheckpointError(
            f"{source}: not a CycleGAN ResNet generator state_dict: expected keys like model.1.weight "
            f"(a 7x7 conv, ngf x input_nc x 7 x 7) and model.10.conv_block.1.weight; found {found}")
    ngf, input_nc = int(w1.shape[0]), int(w1.shape[1])
    if "model.3.weight" in sd:  # no norm layers: the first down-sampling conv moves up to index 3
        norm = "none"
    elif isinstance(sd.get("model.2.weight"), torch.Tensor):  # affine norm weight: BatchNorm
        norm = "batch"
    else:  # InstanceNorm(affine=False): no tensors, or only stale running stats from old PyTorch
        norm = "instance"
    block_convs: dict[int, list[int]] = {}
    for key in sd:
        if (m := _BLOCK_KEY.match(key)) and sd[key].ndim == 4:
            block_convs.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    blocks = sorted(block_convs)
    if blocks and blocks != list(range(blocks[0], blocks[0] + len(blocks))):
        raise CheckpointError(f"{source}: residual blocks at non-consecutive indices {blocks}; not a ResNet generator")
    dropout = False
    if blocks:
        # pad, conv, [norm], ReLU, [Dropout], pad, conv: the second conv is at 5 (4 without norm), +1 with dropout
        dropout = max(block_convs[blocks[0]]) == (5 if norm != "none" else 4) + 1
    top = {int(m.group(1)): sd[k] for k in sd if (m := _TOP_WEIGHT.match(k)) and sd[k].ndim == 4}
    output_nc = int(top[max(top)].shape[0])
    upsample = "resize_conv" if any(re.match(r"^model\.\d+\.conv\.weight$", k) for k in sd) else "transpose"
    return GeneratorArch(input_nc, output_nc, ngf, len(blocks), norm, dropout, upsample)  # type: ignore[arg-type]


def cyclegan_arch_from_config(model: dict[str, Any], net: str) -> GeneratorArch:
    """The architecture of ``net`` ("G_A" / "G_B") of a run from its ``model`` config section.
    G_B maps B back to A, so its channel counts are G_A's swapped (as the trainer builds it)."""
    m = {**dataclasses.asdict(ModelConfig()), **(model or {})}
    in_nc, out_nc = (m["output_nc"], m["input_nc"]) if net == "G_B" else (m["input_nc"], m["output_nc"])
    return GeneratorArch(in_nc, out_nc, m["ngf"], m["n_blocks"], m["norm"], m["dropout"], m["upsample"])


@dataclass
class LoadedGenerator:
    net: ResnetGenerator  # eval mode, no gradients, on the CPU
    arch: GeneratorArch
    name: str | None  # "G_A" / "G_B", or None for a single-generator file
    ignored_keys: list[str]
    note: str = ""


def cyclegan_generator(file: WeightsFile, direction: str, ngf: int | None = None,
                       n_blocks: int | None = None) -> LoadedGenerator:
    """The generator for ``direction`` (AtoB: G_A, BtoA: G_B) from one of our checkpoints or a
    reference state_dict; ``ngf`` / ``n_blocks`` force values instead of the file's."""
    if direction not in _GEN_NAME:
        raise CheckpointError(f"direction must be AtoB or BtoA, got {direction!r}")
    obj, note = file.obj, ""
    name: str | None = _GEN_NAME[direction]
    if file.kind == "training":
        if file.method != "cyclegan":
            raise CheckpointError(f"{file.path} is a {file.method} checkpoint, not a CycleGAN one; use --method auto "
                                  f"(or {file.method})")
        nets = obj.get("nets")
        if not isinstance(nets, dict) or not is_state_dict(nets.get(name)):
            raise CheckpointError(f"{file.path}: checkpoint has no generator nets[{name!r}] (found nets: "
                                  f"{sorted(nets) if isinstance(nets, dict) else type(nets).__name__})")
        sd = strip_prefixes(nets[name])
        arch = cyclegan_arch_from_config((obj.get("config") or {}).get("model", {}), name)
        what = f"nets[{name!r}]"
    elif file.kind == "nets":
        nets = obj["nets"] if isinstance(obj.get("nets"), dict) else obj
        if not is_state_dict(nets.get(name)):
            raise CheckpointError(f"{file.path}: no generator {name!r} in it (found {sorted(nets)})")
        sd = strip_prefixes(nets[name])
        arch, what = infer_cyclegan_arch(sd, file.path), f"{name}"
    else:
        sd = strip_prefixes(obj["state_dict"] if is_state_dict(obj.get("state_dict")) else obj)
        arch, what, name = infer_cyclegan_arch(sd, file.path), "the generator state_dict", None
        note = "single generator file: it translates in the direction it was trained, whatever --direction says"
    forced = {k: v for k, v in (("ngf", ngf), ("n_blocks", n_blocks)) if v is not None}
    net, arch, ignored = build_generator_from(arch, sd, file.path, what, infer_cyclegan_arch, forced)
    return LoadedGenerator(net, arch, name, ignored, note)


class CycleGANMethod(GeneratorMethod):
    key = "cyclegan"

    def __init__(self, loaded: LoadedGenerator, file: WeightsFile, opts: MethodOptions, device: torch.device) -> None:
        super().__init__(device, opts.amp, opts.label)
        self.generator = loaded.net.to(device)
        self.loaded, self.file, self.direction = loaded, file, opts.direction
        self.preserve_color = opts.preserve_color
        self.input_nc = loaded.arch.input_nc

    @classmethod
    def build(cls, opts: MethodOptions, file: WeightsFile | None, device: torch.device) -> CycleGANMethod:
        if file is None:
            raise MethodError("cyclegan needs --checkpoint (a run folder, a checkpoint, or a reference generator)")
        if opts.style:
            raise MethodError("CycleGAN learned its style from a training set and takes no --style image; use "
                              "--method wct, adain or gatys for a style image")
        s = load(CycleGANTestSettings, opts.config or None, opts.settings)
        autocast_context(device, opts.amp)  # a bad amp / device pair fails before any work
        loaded = cyclegan_generator(file, opts.direction, s.ngf or None, s.n_blocks or None)
        if loaded.arch.input_nc not in (1, 3) or loaded.arch.output_nc not in (1, 3):
            raise MethodError(f"{file.path}: the generator maps {loaded.arch.input_nc} to {loaded.arch.output_nc} "
                              f"channels; only 1 (grey) or 3 (RGB) channels come from and go to images")
        return cls(loaded, file, opts, device)

    @classmethod
    def recognise(cls, obj: Any) -> str:
        sd = obj.get("state_dict") if isinstance(obj, dict) and is_state_dict(obj.get("state_dict")) else obj
        if is_state_dict(sd):
            sd = strip_prefixes(sd)
            if any(_FILT_KEY.match(k) for k in sd):
                return ""
            # The reference's layout but not a ResNet generator (a PatchGAN, a U-Net) is ours too:
            # the reader says exactly what it is and what to give instead.
            if _is_cyclegan_generator(sd) or all(k.startswith("model.") for k in sd):
                return "cyclegan-generator"
        if isinstance(obj, dict) and (isinstance(obj.get("nets"), dict)  # our "nets" dict saved on its own
                                      or any(is_state_dict(obj.get(k)) for k in ("G_A", "G_B"))):
            return "nets"
        return ""

    def default_name(self) -> str:
        step = f" (step {self.file.step})" if self.file.step is not None else ""
        return f"CycleGAN{step}"

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
