"""The comparison report's config: the test images, the methods (one row and one column each),
the style images they share, and how every output is scored.

Methods are :class:`options.methods.MethodOptions` entries, in the order of the table::

    methods:
      - {method: cyclegan, checkpoint: runs/quickstart, direction: BtoA}
      - {method: gatys, config: experiments/gatys_quick.yaml}
      - {method: johnson, checkpoint: runs/johnson_demo}
      - {method: wct, checkpoint: runs/wct_demo, alpha: 0.6}

Override one entry's key by index: ``methods.3.alpha=0.8``; replace the list with
``methods=[{method: cyclegan, checkpoint: runs/x}]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from options.common import check_device
from options.config import ConfigError, check
from options.gatys import GatysVGGConfig
from options.methods import MethodOptions, validate_method_options


@dataclass
class ScoringConfig:
    """The VGG-19 and layers every output's content and style losses are measured with (the
    Gatys defaults, so the columns mean what Gatys optimises)."""

    vgg: GatysVGGConfig = field(default_factory=GatysVGGConfig)
    content_layers: list[str] = field(default_factory=lambda: ["relu4_2"])
    style_layers: list[str] = field(default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
    style_scale: float = 1.0  # style images resized to this times each output's longer side


@dataclass
class ReportConfig:
    dataset: str = ""  # a dataset folder with testA/ testB/ (the demo dataset has paired ground truth)
    direction: Literal["AtoB", "BtoA"] = "BtoA"  # BtoA: testB -> compared with testA (photo -> Monet)
    demo: bool = False  # generate the demo dataset into `dataset` first (an empty or new folder only)
    input: str = ""  # instead of dataset: any folder of test images
    ground_truth: str = ""  # with input: same-named target images (PSNR/SSIM)
    reference: str = ""  # with input: real target-domain images for FID/KID (default: ground_truth)
    limit: int = 0  # use only the first N test images (0 = all)
    style: list[str] = field(default_factory=list)  # style images of every method that takes one
    style_weights: list[float] = field(default_factory=list)  # their blend
    methods: list[MethodOptions] = field(default_factory=list)
    device: str = "auto"
    batch_size: int = 4  # images per method call (Gatys: its own batch_size)
    inception_weights: str = ""  # local FID Inception file ("" = the torch cache)
    download: bool = True  # may fetch missing Inception / VGG weights
    kid_subsets: int = 100
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    baseline: bool = True  # the trivial baseline row: inputs moved to the reference images' palette, blurred
    baseline_blur: float = 1.5  # its Gaussian blur, sigma in pixels (0 = colour transfer only)
    grid_rows: int = 8  # test images in grid.png
    html_rows: int = 100  # test images shown in index.html
    title: str = "Unpaired translation and style transfer, side by side"

    def validate(self) -> None:
        cfg = self
        check(bool(cfg.dataset) != bool(cfg.input), "dataset", "give exactly one of dataset (testA/ testB/ layout) "
              "and input (any folder of images)")
        check(not cfg.ground_truth or bool(cfg.input), "ground_truth", "only with input (a dataset brings its own)")
        check(not cfg.demo or bool(cfg.dataset), "demo", "generates the demo dataset into `dataset`: set dataset too")
        check(cfg.limit >= 0, "limit", "must be >= 0 (0 = all)")
        check(bool(cfg.methods), "methods", "list at least one method, e.g. methods=[{method: cyclegan, checkpoint: "
              "runs/quickstart}]")
        for i, m in enumerate(cfg.methods):
            validate_method_options(m, f"methods.{i}.")
            if m.method == "auto" and not m.checkpoint:
                raise ConfigError(f"methods.{i}.method: auto needs a checkpoint")
        check_device(cfg.device)
        check(cfg.batch_size >= 1, "batch_size", "must be >= 1")
        check(cfg.kid_subsets >= 1, "kid_subsets", "must be >= 1")
        check(cfg.grid_rows >= 1, "grid_rows", "must be >= 1")
        check(cfg.html_rows >= 1, "html_rows", "must be >= 1")
        check(all(w >= 0 for w in cfg.style_weights), "style_weights", "must be >= 0")
        if cfg.style_weights:
            check(len(cfg.style_weights) == len(cfg.style), "style_weights",
                  f"{len(cfg.style_weights)} weights for {len(cfg.style)} style image(s)")
        check(bool(cfg.scoring.content_layers), "scoring.content_layers", "needs at least one layer")
        check(bool(cfg.scoring.style_layers), "scoring.style_layers", "needs at least one layer")
        check(cfg.scoring.style_scale > 0, "scoring.style_scale", "must be > 0")
        check(0 <= cfg.baseline_blur <= 100, "baseline_blur", f"must be in [0, 100] (pixels), got {cfg.baseline_blur}")


