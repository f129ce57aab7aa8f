"""CUT / FastCUT as a method: the one trained generator over a batch, and the reading of every CUT
generator file: our checkpoints (``nets["G"]``; the architecture from the run's config; it maps
trainA -> trainB, or trainB -> trainA for a run with ``direction: BtoA``, and ``--direction`` must
say the same) and the authors' published ``latest_net_G.pth`` (taesungp/contrastive-unpaired-translation:
``horse2zebra_cut_pretrained``, ``cat2dog_fastcut_pretrained`` ...), a plain state_dict whose
architecture (channels, ngf, n_blocks, norm, anti-aliasing down / up) is read off its keys and shapes,
and which translates as it was trained (``--direction AtoB``, the default, only).

A file with blur-pool buffers (``model.N.filt``) is CUT's; one without any (the authors'
``--no_antialias --no_antialias_up``) is the very layout of CycleGAN's ResNet generator, which
:class:`methods.cyclegan.CycleGANMethod` reads, and which ``--method cut`` reads too.

Images keep their size: each batch is padded by reflection to multiples of 4 (at least 8 px) and
the output cropped back, as CycleGAN's method does.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from methods.base import GeneratorMethod, MethodError, WeightsFile, build_generator_from
from models.cut import CUTGenerator, CUTGeneratorArch
from options.config import load
from options.cut import CUTModelConfig, CUTTestSettings
from options.methods import MethodOptions
from utils.checkpoint import CheckpointError, found_keys, is_state_dict, shape_of, strip_prefixes
from utils.device import autocast_context

_FILT_KEY = re.compile(r"^model\.\d+\.filt$")
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.weight$")
_TOP_WEIGHT = re.compile(r"^model\.(\d+)\.weight$")
_NETF_KEY = re.compile(r"^mlp_\d+\.[02]\.(?:weight|bias)$")
FOREIGN_KINDS = ("cut-generator", "cyclegan-generator")  # plain generator state_dicts this method reads


def has_blur_buffers(sd: dict[str, Any]) -> bool:
    """True when ``sd`` holds the authors' blur-pool buffers (``model.7.filt`` ...): a CUT network."""
    return any(_FILT_KEY.match(k) for k in sd)


def infer_cut_arch(sd: dict[str, torch.Tensor], source: str | Path = "state_dict") -> CUTGeneratorArch:
    """Read an authors'-layout CUT generator's architecture off its keys and tensor shapes.

    ``model.1.weight`` is the first 7x7 conv ``(ngf, input_nc, 7, 7)``; ``model.7.filt`` (the first
    Downsample) means anti-aliased down-sampling, a ``filt`` right after the residual blocks
    anti-aliased up-sampling; residual blocks are ``model.N.conv_block.*`` groups (their second conv
    one index later: a Dropout); an affine ``model.2.weight`` means BatchNorm; the last top-level
    conv gives ``output_nc``.
    """
    if any(k.startswith("model.model.") for k in sd):
        raise CheckpointError(f"{source}: this is a U-Net generator (the authors' --netG unet_256, keys "
                              f"model.model.*); this project reads the ResNet generator (--netG resnet_9blocks / "
                              f"resnet_6blocks)")
    w0 = sd.get("model.0.weight")
    if isinstance(w0, torch.Tensor) and w0.ndim == 4:
        raise CheckpointError(f"{source}: this is a discriminator (model.0 is a {w0.shape[-2]}x{w0.shape[-1]} conv "
                              f"with {w0.shape[0]} filters, the layout of latest_net_D.pth), not a generator; "
                              f"translate with the generator file latest_net_G.pth")
    w1 = sd.get("model.1.weight")
    if not (isinstance(w1, torch.Tensor) and w1.ndim == 4 and w1.shape[-1] == 7):
        found = f"model.1.weight of shape {shape_of(w1)}" if w1 is not None else found_keys(sd)
        raise CheckpointError(f"{source}: not a CUT ResNet generator state_dict: expected keys like model.1.weight "
                              f"(a 7x7 conv, ngf x input_nc x 7 x 7), model.7.filt and model.12.conv_block.1.weight; "
                              f"found {found}")
    ngf, input_nc = int(w1.shape[0]), int(w1.shape[1])
    if "model.1.bias" not in sd and "model.2.weight" not in sd:
        raise CheckpointError(f"{source}: a generator without norm layers (the authors' --normG none) is not "
                              f"supported; CUT generators use instance norm (or batch norm)")
    norm = "batch" if isinstance(sd.get("model.2.weight"), torch.Tensor) else "instance"
    antialias = "model.7.filt" in sd
    block_convs: dict[int, list[int]] = {}
    for key in sd:
        if (m := _BLOCK_KEY.match(key)) and sd[key].ndim == 4:
            block_convs.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    blocks = sorted(block_convs)
    first = 12 if antialias else 10
    if blocks and blocks != list(range(first, first + len(blocks))):
        raise CheckpointError(f"{source}: residual blocks at indices {blocks}, expected consecutive ones from {first} "
                              f"({'with' if antialias else 'without'} anti-aliased down-sampling); not a CUT generator")
    dropout = bool(blocks) and max(block_convs[blocks[0]]) == 6  # pad, conv, norm, ReLU, [Dropout], pad, conv
    antialias_up = f"model.{first + len(blocks)}.filt" in sd
    top = {int(m.group(1)): sd[k] for k in sd if (m := _TOP_WEIGHT.match(k)) and sd[k].ndim == 4}
    output_nc = int(top[max(top)].shape[0])
    return CUTGeneratorArch(input_nc, output_nc, ngf, len(blocks), norm, dropout, antialias,  # type: ignore[arg-type]
                            antialias_up)


def cut_arch_from_config(model: dict[str, Any]) -> CUTGeneratorArch:
    """The generator's architecture from one of our runs' ``model`` config section."""
    m = {**dataclasses.asdict(CUTModelConfig()), **(model or {})}
    return CUTGeneratorArch(m["input_nc"], m["output_nc"], m["ngf"], m["n_blocks"], m["norm"], m["dropout"],
                            m["antialias"], m["antialias_up"])


@dataclass
class LoadedCUT:
    net: CUTGenerator  # eval mode, no gradients, on the CPU
    arch: CUTGeneratorArch
    mode: str  # "cut" / "fastcut" for our runs, "" when the file does not say
    direction: str  # what G translates: our run's config.direction ("AtoB": trainA -> trainB), "" for a foreign file
    ignored_keys: list[str]


def cut_generator(file: WeightsFile, ngf: int | None = None, n_blocks: int | None = None) -> LoadedCUT:
    """The generator of one of our CUT runs / checkpoints or of an authors' state_dict;
    ``ngf`` / ``n_blocks`` force values instead of the file's."""
    obj, mode, direction = file.obj, "", ""
    if file.kind == "training":
        if file.method != "cut":
            raise CheckpointError(f"{file.path} is a {file.method} checkpoint, not a CUT one; use --method auto "
                                  f"(or {file.method})")
        nets = obj.get("nets")
        if not isinstance(nets, dict) or not is_state_dict(nets.get("G")):
            raise CheckpointError(f"{file.path}: checkpoint has no generator nets['G'] (found nets: "
                                  f"{sorted(nets) if isinstance(nets, dict) else type(nets).__name__})")
        sd = strip_prefixes(nets["G"])
        config = obj.get("config") or {}
        arch, what, mode = cut_arch_from_config(config.get("model", {})), "nets['G']", str(config.get("mode", "cut"))
        direction = str(config.get("direction", "AtoB"))
    elif file.kind == "cut-netF":
        raise CheckpointError(f"{file.path}: this is CUT's feature head netF (latest_net_F.pth, keys mlp_0.0.weight "
                              f"...), used only in training; translate with the generator file latest_net_G.pth")
    elif file.kind in FOREIGN_KINDS:
        sd = strip_prefixes(obj["state_dict"] if is_state_dict(obj.get("state_dict")) else obj)
        arch, what = infer_cut_arch(sd, file.path), "the generator state_dict"
    else:
        found = f"a {file.method} file ({file.kind})" if file.method else f"a {file.kind} file"
        raise CheckpointError(f"{file.path}: expected a CUT generator (one of our cut runs, or the authors' "
                              f"latest_net_G.pth), found {found}")
    forced = {k: v for k, v in (("ngf", ngf), ("n_blocks", n_blocks)) if v is not None}
    net, arch, ignored = build_generator_from(arch, sd, file.path, what, infer_cut_arch, forced)
    return LoadedCUT(net, arch, mode, direction, ignored)


class CUTMethod(GeneratorMethod):
    key = "cut"

    def __init__(self, loaded: LoadedCUT, file: WeightsFile, opts: MethodOptions, device: torch.device) -> None:
        super().__init__(device, opts.amp, opts.label)
        self.generator = loaded.net.to(device)
        self.loaded, self.file = loaded, file
        self.preserve_color = opts.preserve_color
        self.input_nc = loaded.arch.input_nc

    @classmethod
    def build(cls, opts: MethodOptions, file: WeightsFile | None, device: torch.device) -> CUTMethod:
        if file is None:
            raise MethodError("cut needs --checkpoint (a cut run folder, a checkpoint, or the authors' "
                              "latest_net_G.pth)")
        if opts.style:
            raise MethodError("CUT learned its style from a training set and takes no --style image; use "
                              "--method wct, adain or gatys for a style image")
        s = load(CUTTestSettings, opts.config or None, opts.settings)
        autocast_context(device, opts.amp)  # a bad amp / device pair fails before any work
        loaded = cut_generator(file, s.ngf or None, s.n_blocks or None)
        trained = loaded.direction or "AtoB"  # a foreign file translates as it was trained: call that A -> B
        if opts.direction != trained:
            ran = "B->A" if trained == "BtoA" else "A->B"
            fix = f"pass --direction {trained}" if loaded.direction else "drop --direction"
            raise MethodError(f"--direction {opts.direction}: CUT has one generator, {ran} (the direction it was "
                              f"trained in: {file.path}); {fix}, or train CUT with direction: {opts.direction}")
        if loaded.arch.input_nc not in (1, 3) or loaded.arch.output_nc not in (1, 3):
            raise MethodError(f"{file.path}: the generator maps {loaded.arch.input_nc} to {loaded.arch.output_nc} "
                              f"channels; only 1 (grey) or 3 (RGB) channels come from and go to images")
        return cls(loaded, file, opts, device)

    @classmethod
    def recognise(cls, obj: Any) -> str:
        """``"cut-generator"`` for a state_dict in the authors' layout with blur-pool buffers (a generator,
        or a discriminator the reader then names), ``"cut-netF"`` for their feature head; never a
        CycleGAN reference file (no ``filt`` buffers)."""
        sd = obj.get("state_dict") if isinstance(obj, dict) and is_state_dict(obj.get("state_dict")) else obj
        if not is_state_dict(sd):
            return ""
        sd = strip_prefixes(sd)
        if all(k.startswith("model.") for k in sd) and has_blur_buffers(sd):
            return "cut-generator"
        if all(_NETF_KEY.match(k) for k in sd):
            return "cut-netF"
        return ""

    def default_name(self) -> str:
        label = "FastCUT" if self.loaded.mode == "fastcut" else "CUT"
        step = f" (step {self.file.step})" if self.file.step is not None else ""
        return f"{label}{step}"

    def settings(self) -> dict[str, Any]:
        return {"checkpoint": str(self.file.path), "step": self.file.step, "mode": self.loaded.mode or None,
                "direction": self.loaded.direction or "as trained", "arch": self.loaded.arch.describe(),
                "preserve_color": self.preserve_color}

    def describe(self) -> str:
        step = f", step {self.file.step}" if self.file.step is not None else ""
        ran = "B->A" if self.loaded.direction == "BtoA" else "A->B" if self.loaded.direction else "as trained"
        what = f"{'FastCUT' if self.loaded.mode == 'fastcut' else 'CUT'} generator G ({ran})"
        extra = (f"; ignored {len(self.loaded.ignored_keys)} InstanceNorm running-stat keys"
                 if self.loaded.ignored_keys else "")
        return f"loaded {what} from {self.file.path} ({self.file.source}{step}): {self.loaded.arch.describe()}{extra}"

    def input_files(self) -> list[Path]:
        return [self.file.path]
