"""Running the Gatys baseline over files (what ``stylize.py`` and the report call).

Loads images, builds the VGG-19 extractor from a :class:`~options.gatys_config.GatysConfig`,
groups same-size content images into batches, optimises them with
:func:`models.gatys.stylize`, and writes ``<output>/<relative name>.png`` plus
``gatys_run.json`` (config, VGG weights used, per-image losses, seconds per image, device).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from data.image_io import list_images, load_rgb
from models.gatys import GatysParams, stylize
from models.vgg import VGG19Features, VGGInfo, load_vgg19
from options.gatys_config import GatysConfig, gatys_params, style_blend
from utils.metrics import Stopwatch, describe_device
from utils.translate import resolve_device


def pil_to_unit(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float (1, 3, H, W) in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def unit_to_pil(x: torch.Tensor) -> Image.Image:
    """float (3, H, W) in [0, 1] -> PIL RGB (rounded, clamped)."""
    arr = (x.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def load_unit(path: str | Path, size: int = 0) -> torch.Tensor:
    """An image file as (1, 3, H, W) in [0, 1], its longer side resized to ``size`` (0 = as is)."""
    img = load_rgb(path)
    if size and max(img.size) != size:
        s = size / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.LANCZOS)
    return pil_to_unit(img)


def build_extractor(cfg: GatysConfig, device: torch.device) -> tuple[VGG19Features, VGGInfo]:
    """The frozen VGG-19 the config asks for, truncated after the deepest loss layer, on ``device``."""
    params = gatys_params(cfg)
    v = cfg.vgg
    net, info = load_vgg19(params.weights.layers, v.pooling, v.weights, v.preprocess, allow_download=v.download,
                           random_if_unavailable=v.random_if_unavailable, seed=cfg.seed)
    return net.to(device), info


def content_files(content: str | Path) -> tuple[list[Path], Path]:
    """(image files, root they are named relative to) for a file or a folder."""
    path = Path(content)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise FileNotFoundError(f"{path} contains no images (looked for .jpg .jpeg .png .bmp .tif .webp ...)")
        return files, path
    if not path.is_file():
        raise FileNotFoundError(f"content image or folder {path} does not exist")
    return [path], path.parent


@dataclass
class GatysRun:
    """What :func:`stylize_files` did; ``as_dict`` is written to ``gatys_run.json``."""

    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0  # optimisation time, all images (image I/O and VGG loading excluded)
    device: str = ""
    vgg: str = ""  # VGGInfo.label
    vgg_pretrained: bool = True
    steps: int = 0  # per image, over all scale levels
    losses: dict[str, dict[str, float]] = field(default_factory=dict)  # output name -> final losses

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(1, len(self.outputs))

    def as_dict(self) -> dict[str, Any]:
        return {"images": len(self.outputs), "seconds": self.seconds, "seconds_per_image": self.seconds_per_image,
                "device": self.device, "vgg": self.vgg, "vgg_pretrained": self.vgg_pretrained, "steps": self.steps,
                "losses": self.losses, "outputs": [str(p) for p in self.outputs]}


def stylize_files(cfg: GatysConfig, contents: list[Path], styles: list[Path], output: str | Path,
                  root: Path | None = None, extractor: tuple[VGG19Features, VGGInfo] | None = None,
                  device: torch.device | None = None, log: Any = print) -> GatysRun:
    """Stylize every content file with the (blended) styles; outputs keep their relative names as .png.

    Args:
        root: the content paths are named relative to it in ``output`` (default: their folder).
        extractor: a prebuilt (network, info) to reuse; built from ``cfg`` otherwise.
        log: called with progress lines (``print`` by default).
    """
    if not styles:
        raise ValueError("at least one style image is needed (--style)")
    for path in styles:
        if not Path(path).is_file():
            raise FileNotFoundError(f"style image {path} does not exist")
    device = device or resolve_device(cfg.device)
    net, info = extractor or build_extractor(cfg, device)
    if not info.pretrained:
        log(f"WARNING: Gatys runs with a {info.label}: the images show what the optimisation does, not real "
            f"style transfer")
    params: GatysParams = gatys_params(cfg)
    blend = style_blend(cfg, len(styles))
    style_imgs = [load_unit(p) for p in styles]
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    run = GatysRun(device=describe_device(device), vgg=info.label, vgg_pretrained=info.pretrained,
                   steps=params.steps * params.scales)

    items = []
    for path in contents:
        rel = path.relative_to(root) if root is not None else Path(path.name)
        items.append((path, rel.with_suffix(".png"), load_unit(path, cfg.image.size)))
    # Same-size images share a batch; order within a size is kept so outputs are deterministic.
    by_size: dict[tuple[int, int], list[tuple[Path, Path, torch.Tensor]]] = {}
    for item in items:
        by_size.setdefault(tuple(item[2].shape[-2:]), []).append(item)
    done = 0
    for group in by_size.values():
        for i in range(0, len(group), cfg.batch_size):
            batch = group[i : i + cfg.batch_size]
            x = torch.cat([t for _, _, t in batch])
            with Stopwatch(device) as sw:
                result = stylize(net, x, style_imgs, params, blend, progress=cfg.progress)
            run.seconds += sw.seconds
            for j, (_, rel, _) in enumerate(batch):
                dst = output / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                unit_to_pil(result.images[j]).save(dst)
                run.losses[str(rel)] = {k: float(getattr(result.losses, k)[j]) for k in ("total", "content",
                                                                                          "style", "tv")}
            done += len(batch)
            log(f"gatys: {done}/{len(items)} images, {sw.seconds / len(batch):.2f} s/image "
                f"(final total loss {float(result.losses.total.mean()):.4g})")
    run.outputs = [output / rel for _, rel, _ in items]  # input order, whatever the batching
    meta = {**run.as_dict(), "config": dataclasses.asdict(cfg), "styles": [str(p) for p in styles],
            "style_blend": blend, "vgg_source": info.source, "vgg_convention": info.convention}
    (output / "gatys_run.json").write_text(json.dumps(meta, indent=2))
    return run
