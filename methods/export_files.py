"""Writing an :class:`methods.export.ExportPlan` as ONNX, TorchScript or safetensors, and checking
the written file with the runtime that will run it.

* **ONNX** through ``torch.onnx.export(..., dynamo=False)``, the TorchScript-based exporter: it
  keeps the in-graph padding, computed from the input's shape, dynamic (batch, height, width are
  dynamic axes). The dynamo exporter (torch 2.14 with onnxscript 0.7) traced the same graph into
  one whose reflection padding is wrong at any size but the traced one, so it is not used.
  Opsets :data:`MIN_OPSET` (a Pad whose pads are graph values) to the exporter's highest.
* **TorchScript** through ``torch.jit.trace`` (the same tracer: the same dynamic shapes), the
  export's description in the archive's extra file ``export.json``.
* **safetensors**: the networks' tensors, and the description under the metadata key ``export``
  (plus, for Johnson, WCT and AdaIN, the run's config: see :func:`utils.checkpoint.load_file`).

Every file is written to a temporary name beside the output, loaded back by its runtime
(onnxruntime, ``torch.jit.load``, safetensors through the method's own reader), compared with the
PyTorch method on a few images of odd sizes, and only then renamed onto the output: a file that
fails the check, or a full disk, leaves no file and any previous one untouched.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import safetensors
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch.onnx import _constants

from methods import inference_class
from methods.base import Method, open_weights
from methods.export import GRAPH_FREE, ExportPlan
from methods.onnx import open_session
from options.methods import MethodOptions
from utils.checkpoint import run_folder_of
from utils.errors import UserError

FORMATS = ("onnx", "torchscript", "safetensors")
SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".ts", ".torchscript"), "safetensors": (".safetensors",)}
MIN_OPSET = 11  # Pad takes its pads as an input from opset 11: the padding follows the input's shape
DEFAULT_OPSET = 17
TOLERANCE = 1  # uint8 steps (1/255) between an export and the PyTorch method, fp32
CHECK_SIZES = ((1, 37, 45), (2, 29, 51), (1, 64, 33))  # (N, H, W): odd, unequal, not multiples of 4 or 8
TORCHSCRIPT_META = "export.json"


class ExportError(UserError):
    """An export that cannot be written or does not pass its check; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# Options


def max_opset() -> int:
    """The highest opset the installed TorchScript-based ONNX exporter writes."""
    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", getattr(_constants, "ONNX_MAX_OPSET", 17)))


def check_opset(opset: int) -> None:
    top = max_opset()
    if not MIN_OPSET <= opset <= top:
        raise ExportError(f"--opset {opset}: the installed exporter (torch {torch.__version__}, TorchScript-based) "
                          f"writes opsets up to {top}, and these graphs need at least {MIN_OPSET} (padding computed "
                          f"from the input's shape); choose {MIN_OPSET}..{top} (default {DEFAULT_OPSET})")


def check_output(output: Path, fmt: str, checkpoint: str, resolved: Path | None) -> None:
    """The output file's name fits the format, and it is not the input nor inside an input folder
    (the run folder or reference folder given, or the run folder a checkpoint file lies in)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: valid: {', '.join(FORMATS)}")
    if output.suffix.lower() not in SUFFIXES[fmt]:
        raise ExportError(f"--output {output}: a {fmt} file ends in {' or '.join(SUFFIXES[fmt])}; name it so (e.g. "
                          f"{output.with_suffix(SUFFIXES[fmt][0]).name})")
    if output.is_dir():
        example = output / ("model" + SUFFIXES[fmt][0])
        raise ExportError(f"--output {output} is a folder; give a file name (e.g. {example})")
    out = output.resolve()
    given = Path(checkpoint)
    folders = [p for p in (given, run_folder_of(resolved) if resolved else None) if p is not None and p.is_dir()]
    for folder in folders:
        if out.is_relative_to(folder.resolve()):
            raise ExportError(f"--output {output} is inside the input {folder}: a run folder belongs to its trainer "
                              f"(and a reference folder to its files); write the export outside it")
    for file in (given, resolved):
        if file is not None and file.is_file() and out == file.resolve():
            raise ExportError(f"--output {output} is the checkpoint being exported; choose another file")


# ---------------------------------------------------------------------------------------------
# Writers


def _temp_beside(output: Path) -> Path:
    return output.with_name(f".{output.name[:60]}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' deprecation and tracer warnings are about their internals, not the user's model."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _graph_args(plan: ExportPlan) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 37, 45), dtype=torch.uint8, generator=g)
    return tuple(t.to(plan.method.device) for t in plan.example(images))


def write_onnx(plan: ExportPlan, path: Path, opset: int) -> dict[str, Any]:
    """Export the plan's graph to ``path`` at ``opset`` with dynamic batch / height / width, then
    put the description into the model's metadata; returns it."""
    args = _graph_args(plan)
    names_in = [s.name for s in plan.inputs]
    dynamic = {}
    for s in [*plan.inputs, *plan.outputs]:
        axes = {i: str(d) for i, d in enumerate(s.shape) if isinstance(d, str)}
        if axes:
            dynamic[s.name] = axes
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with _quiet(), torch.no_grad():
        torch.onnx.export(plan.graph, args, str(path), input_names=names_in,
                          output_names=[s.name for s in plan.outputs], dynamic_axes=dynamic, opset_version=opset,
                          do_constant_folding=True, **kwargs)
    meta = plan.metadata("onnx", opset=opset, exporter=f"torch.onnx.export (TorchScript-based), torch "
                                                     f"{torch.__version__}")
    model = onnx.load(str(path))
    model.doc_string = plan.title
    props = {"export": json.dumps(meta), "method": plan.key, "title": plan.title,
             "inputs": "; ".join(s.line() for s in plan.inputs), "outputs": "; ".join(s.line() for s in plan.outputs)}
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return meta


def write_torchscript(plan: ExportPlan, path: Path) -> dict[str, Any]:
    meta = plan.metadata("torchscript", exporter=f"torch.jit.trace, torch {torch.__version__}")
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(plan.graph, _graph_args(plan), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_META: json.dumps(meta)})
    return meta


def write_safetensors(plan: ExportPlan, path: Path) -> dict[str, Any]:
    meta = plan.metadata("safetensors", tensors=plan.weights_doc)
    meta.pop("inputs"), meta.pop("outputs")  # the graph's; the tensors' convention is in "tensors"
    # in memory, then an ordinary write: save_file creates its file 0600, whatever the umask
    path.write_bytes(safetensors_bytes(plan.weights, metadata={**plan.weights_meta, "export": json.dumps(meta)}))
    return meta


# ---------------------------------------------------------------------------------------------
# Checks


@dataclass
class Check:
    """How an export compared with the PyTorch method on :data:`CHECK_SIZES`."""

    runtime: str  # what loaded the file, e.g. "onnxruntime 1.32.0 (CPUExecutionProvider)"
    sizes: str  # "1x37x45, 2x29x51, 1x64x33"
    max_uint8: float  # max |export - method| in uint8 steps (float outputs: scaled by 255)
    max_graph: float | None  # max |export - the eager graph| in the output's units (None: no graph)
    unit: str  # "uint8" or "float"

    @property
    def passed(self) -> bool:
        return self.max_uint8 <= TOLERANCE

    def line(self) -> str:
        steps = " (uint8 steps)" if self.unit == "uint8" else ""
        graph = "" if self.max_graph is None else f"; vs the same graph in PyTorch: {self.max_graph:.3g}{steps}"
        return (f"checked with {self.runtime} on {self.sizes} images: max |export - PyTorch method| = "
                f"{self.max_uint8:.3g}/255{graph}")


def check_images() -> list[torch.Tensor]:
    """Deterministic uint8 batches of :data:`CHECK_SIZES`: smooth colour ramps plus noise (random
    noise alone would make every method's output a texture of saturated values)."""
    g = torch.Generator().manual_seed(20)
    out = []
    for n, h, w in CHECK_SIZES:
        yy = torch.linspace(0, 1, h).view(1, 1, h, 1)
        xx = torch.linspace(0, 1, w).view(1, 1, 1, w)
        base = torch.cat([xx.expand(n, 1, h, w), yy.expand(n, 1, h, w), (1 - xx * yy).expand(n, 1, h, w)], 1)
        noise = torch.rand((n, 3, h, w), generator=g) * 0.5
        out.append(((base * 0.6 + noise) * 255).clamp(0, 255).round().to(torch.uint8))
    return out


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off for the check: the exported graph is fp32, and CUDA's default TF32 convolutions
    would make the PyTorch reference differ from it by more than rounding on a deep generator."""
    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm


def _as_uint8_steps(y: torch.Tensor) -> torch.Tensor:
    return y.double() if y.dtype == torch.uint8 else y.double() * 255.0


def check_export(plan: ExportPlan, fmt: str, path: Path, opts: MethodOptions, device: torch.device) -> Check:
    """Load ``path`` with its runtime and compare it with the plan's PyTorch method."""
    batches = check_images()
    sizes = ", ".join(f"{n}x{h}x{w}" for n, h, w in CHECK_SIZES)
    if fmt == "safetensors":
        return _check_weights(plan, path, opts, device, batches, sizes)
    if fmt == "onnx":
        try:
            session = open_session(path, device)
            runtime_device = device
        except UserError:  # no CUDA provider: the check runs on the CPU one
            session = open_session(path, torch.device("cpu"))
            runtime_device = torch.device("cpu")

        runtime = f"onnxruntime {ort.__version__} ({session.get_providers()[0]}, {runtime_device})"
        names = [s.name for s in plan.inputs]

        def run(args: tuple[torch.Tensor, ...]) -> torch.Tensor:
            feed = {n: np.ascontiguousarray(a.detach().cpu().numpy()) for n, a in zip(names, args)}
            return torch.from_numpy(session.run(None, feed)[0])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": the format is the point
            loaded = torch.jit.load(str(path), map_location=device)
        runtime = f"torch.jit.load (torch {torch.__version__}, {device})"

        def run(args: tuple[torch.Tensor, ...]) -> torch.Tensor:
            with torch.no_grad():
                return loaded(*(a.to(device) for a in args)).cpu()
    worst = worst_graph = 0.0
    unit = "uint8" if plan.image_type == "uint8" else "float"
    for images in batches:
        args = plan.example(images)
        got = run(args)
        ref = plan.method(images)
        with torch.no_grad():
            eager = plan.graph(*(a.to(plan.method.device) for a in args)).cpu()
        if got.shape != ref.shape:
            raise ExportError(f"{fmt} check: the export returned shape {tuple(got.shape)} for input "
                              f"{tuple(images.shape)}, the PyTorch method {tuple(ref.shape)}")
        worst = max(worst, float((_as_uint8_steps(got) - ref.double()).abs().max()))
        worst_graph = max(worst_graph, float((got.double() - eager.double()).abs().max()))
    return Check(runtime, sizes, worst, worst_graph, unit)


def _check_weights(plan: ExportPlan, path: Path, opts: MethodOptions, device: torch.device,
                   batches: list[torch.Tensor], sizes: str) -> Check:
    """A safetensors export read back the way test.py reads it, and run as the same method."""
    again = replace(opts, method=plan.key, checkpoint=str(path), settings=[], config="",
                    direction="AtoB" if plan.key == "cut" else opts.direction,
                    style=[str(plan.style_file)] if plan.style_file else list(opts.style))
    file = open_weights(path, again.direction, plan.key)
    method: Method = inference_class(plan.key).build(again, file, device)
    worst = 0.0
    for images in batches:
        worst = max(worst, float((method(images).double() - plan.method(images).double()).abs().max()))
    return Check(f"safetensors {safetensors.__version__} through test.py's reader ({device})", sizes, worst, None,
                 "uint8")


# ---------------------------------------------------------------------------------------------
# The whole export


@dataclass
class Written:
    path: Path
    bytes: int
    meta: dict[str, Any]
    check: Check


def export(plan: ExportPlan, fmt: str, output: Path, opts: MethodOptions, device: torch.device,
           opset: int = DEFAULT_OPSET) -> Written:
    """Write ``plan`` as ``fmt`` to ``output`` (replacing it if there: the caller checked --overwrite),
    via a temporary file that is checked by its runtime first."""
    if fmt != "safetensors" and plan.graph is None:
        raise ExportError(f"--format {fmt}: {plan.key} has no single graph: {GRAPH_FREE.get(plan.key, '')}; export "
                          f"--format safetensors (its decoders), or --method adain for one graph with content and "
                          f"style inputs")
    if fmt == "onnx":
        check_opset(opset)
    tmp = _temp_beside(output)
    try:  # the folder is writable before any work (the exporters' own errors name no path)
        output.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        raise ExportError(f"cannot write {output}: {e.strerror or e}") from e
    try:
        try:
            if fmt == "onnx":
                meta = write_onnx(plan, tmp, opset)
            elif fmt == "torchscript":
                meta = write_torchscript(plan, tmp)
            else:
                meta = write_safetensors(plan, tmp)
        except OSError as e:
            raise ExportError(f"cannot write {output}: {e.strerror or e}"
                              + (" (disk full: free space and retry)" if e.errno == 28 else "")) from e
        except UserError:
            raise
        except Exception as e:  # an exporter failure: name the step, keep one line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ExportError(f"the {fmt} exporter failed on {plan.key}: {type(e).__name__}: {first[:300]}") from e
        with strict_fp32():
            check = check_export(plan, fmt, tmp, opts, device)
        if not check.passed:
            raise ExportError(f"{fmt} export of {plan.key} does not match the PyTorch method: {check.line()} (more "
                              f"than {TOLERANCE}/255); nothing written")
        size = tmp.stat().st_size
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return Written(output, size, meta, check)


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``export`` description of a file export() wrote, whichever its format."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props["export"])
    if suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})["export"])
    extra = {TORCHSCRIPT_META: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[TORCHSCRIPT_META])
