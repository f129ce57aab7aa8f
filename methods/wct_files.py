"""The published WCT and AdaIN weights, as the releases ship them, for ``test.py`` and the report.

* AdaIN (Huang & Belongie 2017): ``vgg_normalised.t7`` (the normalised VGG-19, all of it) and
  ``decoder.t7`` (the relu4_1 decoder) as the authors released them, or pytorch-AdaIN's
  conversions ``vgg_normalised.pth`` and ``decoder.pth`` (``state_dict`` s of an
  ``nn.Sequential``). ``--checkpoint`` names their folder or the decoder file (the encoder is then
  the one beside it, or the ``encoder=PATH`` setting).
* WCT (Li et al. 2017): ``vgg_normalised_conv{k}_1.t7`` and ``feature_invertor_conv{k}_1.t7``
  for k = 1 ... 5 (Torch7 files, read with ``torchfile``), or PytorchWCT's ``.pth`` conversions
  of them (``vgg19_normalized.pth.tar``, ``vgg19_normalized_decoder{k}.pth.tar``).
  ``--checkpoint`` names their folder (or one file in it); the levels are those with a decoder.

Li et al.'s five encoders are one VGG-19 truncated five ways; the deepest file present is the
encoder of every level, and each shallower one must hold the same weights (PytorchWCT's
conversion relies on that too). The decoders are :class:`models.wct.Decoder` s, whose
convolutions are the releases' in the same order (reflection padding, nearest x2 up-sampling).
The encoder is :class:`models.normalised_vgg.NormalisedVGG19`, so a run's decoders (trained on
torchvision's VGG-19, ``vgg.arch=torchvision``) and these (``normalised``) are never mixed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from methods.base import MethodError
from models.normalised_vgg import (
    Conv,
    LayoutError,
    NormalisedVGG19,
    assign_convs,
    conv_weights,
    normalised_encoder,
    read_t7,
    t7_pooling_ceil,
)
from models.vgg import VGGInfo
from models.wct import ADAIN_LEVEL, LEVELS, Decoder, build_decoders
from utils.checkpoint import CheckpointError, load_file

ADAIN_ENCODERS = ("vgg_normalised.pth", "vgg_normalised.t7")  # pytorch-AdaIN's, Huang & Belongie's Torch7 file
ADAIN_DECODERS = ("decoder.pth", "decoder.t7")
WCT_T7 = ("vgg_normalised_conv{k}_1.t7", "feature_invertor_conv{k}_1.t7")
WCT_PTH = ("vgg19_normalized.pth.tar", "vgg19_normalized_decoder{k}.pth.tar")
ENCODER_LAYOUT = "normalised"  # vgg.arch of these decoders


@dataclass
class PublishedSet:
    """Which released files a folder holds: one encoder (or several truncations of it) and a
    decoder file per level."""

    release: str  # "adain" (pytorch-AdaIN), "wct-t7" (Li et al.), "wct-pth" (PytorchWCT's conversions)
    folder: Path
    encoders: dict[str, Path] = field(default_factory=dict)  # deepest level -> file ("relu5_1": the whole VGG)
    decoders: dict[str, Path] = field(default_factory=dict)  # level -> file

    @property
    def files(self) -> list[Path]:
        return [*self.encoders.values(), *self.decoders.values()]


def _per_level(folder: Path, pattern: str) -> dict[str, Path]:
    """level -> the file ``pattern`` names for it in ``folder``, for the files that exist."""
    found = {f"relu{k}_1": folder / pattern.format(k=k) for k in range(1, 6)}
    return {level: f for level, f in found.items() if f.is_file()}


def _adain_encoder(folder: Path) -> dict[str, Path]:
    found = [folder / name for name in ADAIN_ENCODERS if (folder / name).is_file()]
    return {"relu5_1": found[0]} if found else {}


def adain_set(decoder: Path) -> PublishedSet:
    """An AdaIN decoder file (pytorch-AdaIN's layout, any name) with the released encoder beside it, if any."""
    return PublishedSet("adain", decoder.parent, _adain_encoder(decoder.parent), {ADAIN_LEVEL: decoder})


def _release_names() -> set[str]:
    wct = {pattern.format(k=k) for pair in (WCT_T7, WCT_PTH) for pattern in pair for k in range(1, 6)}
    return {*ADAIN_ENCODERS, *ADAIN_DECODERS, *wct}


def find_published(path: Path, method: str) -> PublishedSet | None:
    """The released files ``path`` (a folder, or one file of the set, by its released name) holds
    for ``method`` (``adain`` or ``wct``), or None when it holds none."""
    if path.is_file() and path.name not in _release_names():
        return None
    folder = path if path.is_dir() else path.parent
    if method == "adain":
        decoders = [folder / name for name in ADAIN_DECODERS if (folder / name).is_file()]
        if not decoders or (path.is_dir() and not _adain_encoder(folder)):
            return None
        return adain_set(decoders[0])
    for release, (enc, dec) in (("wct-t7", WCT_T7), ("wct-pth", WCT_PTH)):
        decoders = _per_level(folder, dec)
        if not decoders:
            continue
        encoders = _per_level(folder, enc) if "{k}" in enc else {"relu5_1": folder / enc}
        encoders = {level: f for level, f in encoders.items() if f.is_file()}
        return PublishedSet(release, folder, encoders, decoders)
    return None


def _read(path: Path) -> Any:
    if path.suffix.lower() == ".t7":
        return read_t7(path)
    obj = load_file(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    return obj


def file_convs(path: Path) -> list[Conv]:
    """The convolutions of a released encoder or decoder file (``.t7``, ``.pth``, ``.pth.tar``), in order."""
    try:
        convs = conv_weights(_read(path))
    except LayoutError as e:
        raise CheckpointError(f"{path}: {e}") from e
    if not convs:
        raise CheckpointError(f"{path}: no convolution weights found; expected a released encoder or decoder "
                              f"(state_dict with N.weight / seq.convX_Y.weight keys, or a Torch7 nn.Sequential)")
    return convs


@dataclass
class PublishedWeights:
    """The released networks, read: decoders per level, and the encoder they invert."""

    decoders: torch.nn.ModuleDict
    levels: list[str]
    encoder: NormalisedVGG19
    info: VGGInfo
    release: str
    files: list[Path]  # every file read (decoders, encoders): what the outputs depend on


def load_published(found: PublishedSet, levels: list[str], encoder_file: str = "") -> PublishedWeights:
    """Build the decoders of ``levels`` and the normalised VGG-19 they invert from ``found``'s
    files (``encoder_file``: another file of that encoder, e.g. when only ``decoder.pth`` is at hand)."""
    missing = [level for level in levels if level not in found.decoders]
    if missing:
        raise MethodError(f"levels: {found.folder} has no decoder for {', '.join(missing)} (it has "
                          f"{', '.join(sorted(found.decoders, key=LEVELS.index))})")
    decoders = build_decoders(levels)
    for level in levels:
        try:
            assign_convs(decoders[level], file_convs(found.decoders[level]), f"the {level} decoder of the release",
                         found.decoders[level])
        except LayoutError as e:
            raise CheckpointError(str(e)) from e
    decoders.eval().requires_grad_(False)
    encoders = {"relu5_1": Path(encoder_file)} if encoder_file else found.encoders
    if not encoders:
        want = ADAIN_ENCODERS[0] if found.release == "adain" else (WCT_T7 if found.release == "wct-t7" else WCT_PTH)[0]
        raise MethodError(f"{found.folder}: the decoders' encoder is missing: put {want.format(k=5)} (the normalised "
                          f"VGG-19 of the same release) beside them, or pass encoder=PATH")
    deepest = max(encoders, key=LEVELS.index)
    source = encoders[deepest]
    needed = max(levels, key=LEVELS.index)
    if LEVELS.index(deepest) < LEVELS.index(needed):
        raise MethodError(f"{source} stops at {deepest}, but the decoders need {needed}: add the deeper encoder file")
    encoder, info = read_normalised_encoder(source, levels)
    for path in encoders.values():  # Li et al.'s shallower truncations: the same weights
        if path != source:
            _check_same_weights(encoder, file_convs(path), path, source)
    files = [*(found.decoders[level] for level in levels), *encoders.values()]
    return PublishedWeights(decoders, list(levels), encoder, info, found.release, files)


def read_normalised_encoder(path: str | Path, levels: list[str]) -> tuple[NormalisedVGG19, VGGInfo]:
    """The normalised VGG-19 of a release's encoder file, up to the deepest of ``levels``: a
    ``.t7`` (its poolings' rounding as stored), pytorch-AdaIN's ``vgg_normalised.pth`` (rounding
    up, as Huang & Belongie's) or PytorchWCT's conversion (rounding down, as Li et al.'s)."""
    path = Path(path)
    if not path.is_file():
        raise MethodError(f"{path}: no such encoder file (the release's normalised VGG-19)")
    obj = read_t7(path) if path.suffix.lower() == ".t7" else None
    ceil = bool(t7_pooling_ceil(obj)) if obj is not None else path.name in ADAIN_ENCODERS
    convs = conv_weights(obj) if obj is not None else file_convs(path)
    try:
        encoder = normalised_encoder(convs, levels, ceil, path)
    except LayoutError as e:
        raise CheckpointError(f"{e}; {_not_torchvision(convs)}") from e
    return encoder, VGGInfo(str(path), "normalised", True, note="the releases' normalised VGG-19")


def _not_torchvision(convs: list[Conv]) -> str:
    first = convs[0][1].shape if convs else None
    if first is not None and tuple(first) == (64, 3, 3, 3):
        return ("this is a torchvision-layout VGG-19 (no 1x1 input conv), which these decoders were not trained "
                "on: give the release's normalised VGG-19 (vgg.arch=normalised)")
    return "give the release's normalised VGG-19"


def _check_same_weights(encoder: NormalisedVGG19, convs: list[Conv], path: Path, deepest: Path) -> None:
    mine = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    for m, (where, weight, bias) in zip(mine, convs, strict=False):
        if weight.shape != m.weight.shape or not (torch.equal(weight, m.weight) and torch.equal(bias, m.bias)):
            raise CheckpointError(f"{path}: its {where} differs from {deepest}'s; the release's encoders are one "
                                  f"VGG-19 truncated at each level, and this set's are not")


def is_adain_decoder(obj: Any) -> bool:
    """pytorch-AdaIN's ``decoder.pth``: nine 3x3 convolutions 512 -> 256 ... 64 -> 3, keys ``N.weight``."""
    if not isinstance(obj, dict) or not obj or not all(re.fullmatch(r"\d+\.(weight|bias)", str(k)) for k in obj):
        return False
    try:
        assign_convs(Decoder(ADAIN_LEVEL), conv_weights(obj), "", "")
    except (LayoutError, RuntimeError):
        return False
    return True
