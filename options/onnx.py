"""Test-time settings of an exported ONNX graph run through onnxruntime (``test.py --checkpoint
model.onnx`` trailing ``key=value``, or a report entry's ``settings``). No torch imports."""

from __future__ import annotations

from dataclasses import dataclass

from options.config import check


@dataclass
class ONNXSettings:
    """``test.py --checkpoint monet.onnx --input photos/ --output out/ threads=2``."""

    threads: int = 0  # onnxruntime intra-op threads (0 = its default: one per core)
    style_max_size: int = 512  # AdaIN graphs: a style image's longer side is scaled down to this if above (0 = never)

    def validate(self) -> None:
        check(0 <= self.threads <= 1024, "threads", "must be in [0, 1024] (0 = onnxruntime's default)")
        check(self.style_max_size >= 0, "style_max_size", "must be >= 0 (0 = never scale the style image)")
