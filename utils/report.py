"""The CycleGAN-vs-Gatys comparison report (what ``report.py`` runs).

For one test set it runs (or reuses) both methods' outputs under ``<out>/outputs/<method>/``,
measures them, and writes into ``<out>/``:

* ``index.html``: self-contained (images embedded as base64): the metrics table, the style
  images, and per test image ``input | CycleGAN | Gatys | ground truth`` side by side;
* ``grid.png``: the same columns for the first rows, as one image;
* ``metrics.json`` (every number, counts, settings, per-image PSNR/SSIM) and ``metrics.md``
  (the table: method, FID, KID, PSNR, SSIM, content loss, style loss, s/image, device).

An "input (unchanged)" row gives the scale: the metrics of doing nothing. Metrics that cannot
be computed say why in their cell ("unavailable: no Inception weights offline", "n/a: no
ground truth") instead of disappearing.

Outputs are reused when ``<method>/run.json`` records the same inputs and the same settings
(checkpoint file and step, direction / Gatys config and style images); otherwise, or with
``rerun``, that method runs again.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from data.image_io import list_images, load_rgb
from data.unaligned import pil_to_uint8
from models.style_losses import resize_longer, style_grams, style_target_size
from models.vgg import VGG19Features, VGGInfo
from options.gatys_config import GatysConfig, gatys_params, style_blend
from utils.metrics import (
    FidKid,
    MetricUnavailable,
    Stopwatch,
    describe_device,
    extract_features,
    fid_kid,
    load_inception,
    mean_psnr_ssim,
    psnr_ssim,
    vgg_losses,
)
from utils.stylize import build_extractor, load_unit, stylize_files

Log = Callable[[str], None]
METHODS = ("input", "cyclegan", "gatys")
COLUMNS = ("method", "FID", "KID", "PSNR", "SSIM", "content loss", "style loss", "s/image", "device")


class ReportError(Exception):
    """The report's inputs are unusable; the message says what to pass instead."""


# ---------------------------------------------------------------------------------------------
# The test set


@dataclass
class TestSet:
    """Test inputs with their output names, optional paired ground truth and FID reference set."""

    inputs: list[Path]
    names: list[str]  # output file name of each input (relative, .png)
    root: Path  # the inputs' folder (names are relative to it)
    ground_truth: list[Path] | None = None  # aligned with inputs
    reference: list[Path] = field(default_factory=list)  # real target-domain images for FID/KID
    description: str = ""


def _limit(files: list[Path], limit: int) -> list[Path]:
    return files[:limit] if limit > 0 else files


def dataset_test_set(root: str | Path, direction: str, limit: int = 0) -> TestSet:
    """monet2photo layout: BtoA translates testB -> compared with testA, AtoB the reverse.

    Ground truth exists only for the built-in demo dataset (``demo.json``): there
    ``testA/<name>`` = painterly(``testB/<name>``), so each direction's target is paired.
    """
    root = Path(root)
    src, dst = ("testB", "testA") if direction == "BtoA" else ("testA", "testB")
    for sub in (src, dst):
        if not (root / sub).is_dir():
            raise ReportError(f"{root / sub} does not exist; --dataset needs a folder with testA/ and testB/ "
                              f"(monet2photo layout), or pass --input FOLDER [--ground-truth DIR] [--reference DIR]")
    inputs = _limit(list_images(root / src), limit)
    if not inputs:
        raise ReportError(f"{root / src} contains no images")
    reference = list_images(root / dst)
    gt = None
    if (root / "demo.json").is_file():
        gt = [root / dst / p.relative_to(root / src) for p in inputs]
        missing = [p for p in gt if not p.is_file()]
        if missing:
            raise ReportError(f"demo dataset {root} is incomplete: no ground truth {missing[0]}; regenerate it")
    names = [str(p.relative_to(root / src).with_suffix(".png")) for p in inputs]
    desc = f"{root}: {src} -> {dst} ({direction}){', paired ground truth from ' + dst if gt else ''}"
    return TestSet(inputs, names, root / src, gt, reference, desc)


def folder_test_set(input: str | Path, ground_truth: str | Path | None = None, reference: str | Path | None = None,
                    limit: int = 0) -> TestSet:
    """Any folder of inputs; ``ground_truth`` holds same-named targets; ``reference`` the FID set
    (default: the ground truth folder, if any)."""
    root = Path(input)
    if not root.is_dir():
        raise ReportError(f"--input {root} is not a folder")
    inputs = _limit(list_images(root), limit)
    if not inputs:
        raise ReportError(f"{root} contains no images")
    gt = None
    if ground_truth:
        by_stem = {p.relative_to(ground_truth).with_suffix(""): p for p in list_images(ground_truth)}
        gt = [by_stem.get(p.relative_to(root).with_suffix("")) for p in inputs]
        if any(g is None for g in gt):
            missing = inputs[[g is None for g in gt].index(True)]
            raise ReportError(f"no ground truth in {ground_truth} for {missing.name} (names must match)")
    ref_dir = reference or ground_truth
    refs = list_images(ref_dir) if ref_dir else []
    names = [str(p.relative_to(root).with_suffix(".png")) for p in inputs]
    return TestSet(inputs, names, root, gt, refs, f"{root}{' with ground truth ' + str(ground_truth) if gt else ''}")


# ---------------------------------------------------------------------------------------------
# Running or reusing the methods


@dataclass
class MethodRun:
    method: str  # one of METHODS
    title: str  # the table's method cell
    outputs: list[Path]  # aligned with the test inputs
    seconds_per_image: float | None
    device: str
    reused: bool = False
    notes: list[str] = field(default_factory=list)
    short: str = ""  # column title in grid.png (narrow); default: title


def _reusable(folder: Path, key: dict[str, Any], names: list[str]) -> dict[str, Any] | None:
    meta_path = folder / "run.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return None
    if meta.get("key") != json.loads(json.dumps(key)) or not all((folder / n).is_file() for n in names):
        return None
    return meta


def _write_meta(folder: Path, key: dict[str, Any], meta: dict[str, Any]) -> None:
    (folder / "run.json").write_text(json.dumps({"key": key, **meta}, indent=2))


def run_cyclegan(checkpoint: str | Path, direction: str, test: TestSet, out: Path, device: torch.device,
                 rerun: bool = False, amp: str = "off", log: Log = print) -> MethodRun:
    """Translate every input with the checkpoint's generator for ``direction`` (or reuse)."""
    from utils.translate import describe_loaded, load_generator, translate_image

    folder = out / "outputs" / "cyclegan"
    generator, info = load_generator(checkpoint, direction, device=device)
    key = {"checkpoint": str(Path(info["path"]).resolve()), "step": info["step"], "direction": direction,
           "inputs": [str(p.resolve()) for p in test.inputs], "amp": amp}
    title = "CycleGAN" + (f" (step {info['step']})" if info["step"] is not None else "")
    short = "CycleGAN"
    outputs = [folder / n for n in test.names]
    meta = None if rerun else _reusable(folder, key, test.names)
    if meta is not None:
        log(f"cyclegan: reusing {len(outputs)} outputs in {folder}")
        return MethodRun("cyclegan", title, outputs, meta["seconds_per_image"], meta["device"], True,
                         [describe_loaded(info)], short)
    log(describe_loaded(info))
    seconds = 0.0
    for src, dst in zip(test.inputs, outputs):
        img = load_rgb(src)
        with Stopwatch(device) as sw:
            y = translate_image(generator, img, device, amp)
        seconds += sw.seconds
        dst.parent.mkdir(parents=True, exist_ok=True)
        y.save(dst)
    run = MethodRun("cyclegan", title, outputs, seconds / len(outputs), describe_device(device), False,
                    [describe_loaded(info)], short)
    _write_meta(folder, key, {"seconds_per_image": run.seconds_per_image, "device": run.device,
                              "images": len(outputs), "loaded": describe_loaded(info)})
    log(f"cyclegan: {len(outputs)} images, {run.seconds_per_image:.3f} s/image on {run.device}")
    return run


def gatys_title(info: VGGInfo) -> str:
    """The Gatys row's name; a random-weight VGG is named in it, never silently."""
    return "Gatys" if info.pretrained else f"Gatys [{info.label}]"


def _gatys_short(info: VGGInfo) -> str:
    return "Gatys" if info.pretrained else "Gatys (random VGG)"


def run_gatys(cfg: GatysConfig, styles: list[Path], test: TestSet, out: Path, device: torch.device,
              extractor: tuple[VGG19Features, VGGInfo], rerun: bool = False, log: Log = print) -> MethodRun:
    """Stylize every input with the (blended) style images (or reuse)."""
    folder = out / "outputs" / "gatys"
    net, info = extractor
    key = {"config": dataclasses.asdict(cfg), "styles": [str(p.resolve()) for p in styles],
           "inputs": [str(p.resolve()) for p in test.inputs], "vgg": info.label}
    outputs = [folder / n for n in test.names]
    p = gatys_params(cfg)
    setting = (f"{cfg.optim.optimizer} x {p.steps}{f' x {p.scales} scales' if p.scales > 1 else ''}, "
               f"{cfg.vgg.pooling} pooling, alpha {cfg.loss.content_weight:g}, beta {cfg.loss.style_weight:g}, "
               f"{info.label}")
    meta = None if rerun else _reusable(folder, key, test.names)
    if meta is not None:
        log(f"gatys: reusing {len(outputs)} outputs in {folder}")
        return MethodRun("gatys", gatys_title(info), outputs, meta["seconds_per_image"], meta["device"], True,
                         [setting], _gatys_short(info))
    run = stylize_files(cfg, test.inputs, styles, folder, root=test.root, extractor=(net, info), device=device,
                        log=log)
    _write_meta(folder, key, {"seconds_per_image": run.seconds_per_image, "device": run.device,
                              "images": len(outputs), "setting": setting})
    return MethodRun("gatys", gatys_title(info), outputs, run.seconds_per_image, run.device, False, [setting],
                     _gatys_short(info))


# ---------------------------------------------------------------------------------------------
# Metrics


def _load_u8(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    img = load_rgb(path)
    if size is not None and img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    return pil_to_uint8(img)


@dataclass
class Row:
    method: str
    title: str
    fid: FidKid | None
    psnr: float | None
    ssim: float | None
    content_loss: float
    style_loss: float
    seconds_per_image: float | None
    device: str
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)


def _finite(v: float | None) -> float | str | None:
    """JSON has no inf: PSNR of identical images is written as the string "inf"."""
    if v is None or math.isfinite(v):
        return v
    return "inf" if v > 0 else "-inf"


def compute_rows(test: TestSet, runs: list[MethodRun], styles: list[Path], cfg: GatysConfig,
                 extractor: tuple[VGG19Features, VGGInfo], device: torch.device,
                 feature_extractor: nn.Module | None, inception_weights: str | None, allow_download: bool,
                 log: Log = print) -> tuple[list[Row], dict[str, Any]]:
    """Every metric for every method; returns the rows and facts for the notes (counts, reasons)."""
    facts: dict[str, Any] = {"n_inputs": len(test.inputs), "n_reference": len(test.reference),
                             "n_ground_truth": len(test.ground_truth) if test.ground_truth else 0}
    inputs_u8 = [_load_u8(p) for p in test.inputs]

    # FID / KID: one feature extractor, reference features computed once.
    fid_reason = ""
    ref_feats = None
    extractor_fid = feature_extractor
    if extractor_fid is None:
        try:
            extractor_fid = load_inception(inception_weights, allow_download)
            facts["fid_features"] = "Inception-v3 (torch-fidelity FID weights), 2048-d pool features"
        except MetricUnavailable as e:
            fid_reason = str(e)
    else:
        facts["fid_features"] = f"custom feature extractor {type(feature_extractor).__name__}"
    if extractor_fid is not None and len(test.reference) < 2:
        fid_reason = f"needs >= 2 reference images, have {len(test.reference)} (pass --reference FOLDER)"
    if extractor_fid is not None and not fid_reason:
        log(f"fid/kid: features of {len(test.reference)} reference images")
        ref_feats = extract_features(extractor_fid, (_load_u8(p) for p in test.reference), device)
    facts["fid_unavailable"] = fid_reason

    net, info = extractor
    p = gatys_params(cfg)
    style_imgs = [load_unit(s).to(device) for s in styles]
    blend = style_blend(cfg, len(styles))
    gram_cache: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def grams_for(h: int, w: int) -> dict[str, torch.Tensor]:
        if (h, w) not in gram_cache:
            longer = style_target_size(max(h, w), cfg.image.style_scale)
            gram_cache[(h, w)] = style_grams(net, [resize_longer(s, longer) for s in style_imgs], blend,
                                             list(p.weights.style_layers))
        return gram_cache[(h, w)]

    rows = []
    for run in runs:
        # Outputs are compared at the input's size (a Gatys run with image.size set works at another).
        outs = [_load_u8(o, (i.shape[2], i.shape[1])) for o, i in zip(run.outputs, inputs_u8)]
        fk = None
        if ref_feats is not None:
            log(f"fid/kid: {run.method}")
            fk = fid_kid(ref_feats, extract_features(extractor_fid, outs, device))
            if fk.unavailable:
                facts.setdefault("fid_notes", []).append(f"{run.method}: {fk.unavailable}")
        psnr = ssim = None
        per_image: dict[str, dict[str, float]] = {}
        if test.ground_truth:
            gts = [_load_u8(g) for g in test.ground_truth]
            outs_gt = [o if o.shape == g.shape else _load_u8(path, (g.shape[2], g.shape[1]))
                       for o, g, path in zip(outs, gts, run.outputs)]
            psnr, ssim = mean_psnr_ssim(outs_gt, gts)
            for name, o, g in zip(test.names, outs_gt, gts):
                ps, ss = psnr_ssim(o, g)
                per_image[name] = {"psnr": ps, "ssim": ss}
        lc, ls = vgg_losses(net, outs, inputs_u8, grams_for, p.weights, device)
        rows.append(Row(run.method, run.title, fk, psnr, ssim, lc, ls, run.seconds_per_image, run.device, per_image))
    facts["kid_subset_size"] = next((r.fid.kid_subset_size for r in rows if r.fid and r.fid.kid_subset_size), None)
    facts["vgg"] = info.label
    facts["vgg_pretrained"] = info.pretrained
    return rows, facts


# ---------------------------------------------------------------------------------------------
# Table


def _short_reason(reason: str) -> str:
    if "Inception" in reason or "inception" in reason:
        return "no Inception weights offline" if ("download" in reason or "offline" in reason) else reason[:80]
    return reason[:80]


def table_cells(row: Row, facts: dict[str, Any]) -> list[str]:
    """The row's cells in :data:`COLUMNS` order, as text."""
    if row.fid is None:
        why = f"unavailable: {_short_reason(facts.get('fid_unavailable') or 'not computed')}"
        fid = kid = why
    else:
        fid = f"{row.fid.fid:.2f}" if row.fid.fid is not None else f"unavailable: {row.fid.unavailable}"
        kid = (f"{row.fid.kid_mean:.4g} ± {row.fid.kid_std:.2g}" if row.fid.kid_mean is not None
               else f"unavailable: {row.fid.unavailable}")
    if row.psnr is None:
        psnr = ssim = "n/a: no ground truth"
    else:
        psnr = "inf (identical)" if math.isinf(row.psnr) else f"{row.psnr:.2f}"
        ssim = f"{row.ssim:.4f}"
    spi = "n/a (no method)" if row.seconds_per_image is None else f"{row.seconds_per_image:.3f}"
    return [row.title, fid, kid, psnr, ssim, f"{row.content_loss:.4g}", f"{row.style_loss:.4g}", spi,
            row.device or "n/a"]


def notes(facts: dict[str, Any], runs: list[MethodRun], test: TestSet, styles: list[Path]) -> list[str]:
    lines = [
        f"Test set: {test.description}. Images: {facts['n_inputs']} inputs, {facts['n_reference']} reference images "
        f"for FID/KID, {facts['n_ground_truth']} ground-truth pairs for PSNR/SSIM.",
    ]
    if facts.get("fid_unavailable"):
        lines.append(f"FID/KID unavailable: {facts['fid_unavailable']}.")
    else:
        lines.append(f"FID/KID features: {facts.get('fid_features')}; KID subset size {facts.get('kid_subset_size')} "
                     f"(capped by the smaller set), 100 subsets, mean ± std. FID on fewer than a few thousand "
                     f"images is strongly biased upwards: compare rows, not papers; KID is the fairer one here.")
    for note in facts.get("fid_notes", []):
        lines.append(f"FID/KID: {note}.")
    lines.append(
        f"Content and style loss: every output under the Gatys run's VGG-19 ({facts['vgg']}), unweighted (no "
        f"alpha/beta): content against the input, style against the Gram matrices of {len(styles)} style image(s) "
        f"({', '.join(p.name for p in styles)})."
    )
    if not facts.get("vgg_pretrained", True):
        lines.append("The Gatys row and the content/style loss columns use a random-weight VGG because no "
                     "pretrained VGG-19 weights were available: they show the pipeline, not Gatys' real quality.")
    for run in runs:
        for n in run.notes:
            lines.append(f"{run.title}: {n}" + (" (outputs reused)" if run.reused else ""))
    lines.append("s/image: wall time of the method alone (no file I/O, no model loading), averaged over the inputs.")
    return lines


def markdown_table(rows: list[Row], facts: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in table_cells(row, facts)) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Images: HTML and grid


def _thumb(img: Image.Image, size: int) -> Image.Image:
    img = img.copy()
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return img


def _data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    if max(img.size) <= 128:
        img.save(buf, format="PNG", optimize=True)
        mime = "image/png"
    else:  # large thumbnails as JPEG keep a 100-row page at a few MB
        img.convert("RGB").save(buf, format="JPEG", quality=90)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _columns(test: TestSet, runs: list[MethodRun], short: bool = False) -> list[tuple[str, str, list[Path]]]:
    """(method key, column title, files) for input | methods | ground truth."""
    cols = [("input", "input", test.inputs)]
    cols += [(r.method, (r.short or r.title) if short else r.title, r.outputs) for r in runs if r.method != "input"]
    if test.ground_truth:
        cols.append(("ground_truth", "ground truth", list(test.ground_truth)))
    return cols


def write_grid(path: Path, test: TestSet, runs: list[MethodRun], rows: int = 8, cell: int = 128) -> Path:
    """A PNG: a header row naming the columns, then ``rows`` test images, ``cell`` px per image."""
    cols = _columns(test, runs, short=True)
    n = min(rows, len(test.inputs))
    pad, header = 4, 22
    grid = Image.new("RGB", (len(cols) * (cell + pad) + pad, header + n * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for c, (_, title, _) in enumerate(cols):
        text = title if len(title) <= cell // 6 else title[: cell // 6 - 1] + "…"
        draw.text((pad + c * (cell + pad), 5), text, fill="black", font=font)
    for r in range(n):
        for c, (_, _, files) in enumerate(cols):
            img = _thumb(load_rgb(files[r]), cell)
            if max(img.size) < cell:  # tiny images: enlarge without smoothing so pixels stay visible
                s = cell / max(img.size)
                img = img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.NEAREST)
            x = pad + c * (cell + pad) + (cell - img.width) // 2
            y = header + pad + r * (cell + pad) + (cell - img.height) // 2
            grid.paste(img, (x, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def write_html(path: Path, test: TestSet, runs: list[MethodRun], rows: list[Row], facts: dict[str, Any],
               styles: list[Path], note_lines: list[str], max_rows: int = 100, thumb: int = 256) -> Path:
    esc = html.escape
    cols = _columns(test, runs)
    table = ["<table class='m'><tr>" + "".join(f"<th>{esc(c)}</th>" for c in COLUMNS) + "</tr>"]
    for row in rows:
        table.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in table_cells(row, facts)) + "</tr>")
    table.append("</table>")
    style_imgs = "".join(
        f"<figure><img src='{_data_uri(_thumb(load_rgb(p), thumb))}' alt='style'><figcaption>{esc(p.name)}"
        f"</figcaption></figure>" for p in styles)
    per_image = {r.method: r.per_image for r in rows}
    body = ["<table class='g'><tr><th>#</th>" + "".join(f"<th>{esc(t)}</th>" for _, t, _ in cols) + "</tr>"]
    n = min(max_rows, len(test.inputs))
    for i in range(n):
        cells = []
        for method, title, files in cols:
            cap = ""
            stats = per_image.get(method, {}).get(test.names[i])
            if stats:
                ps = "inf" if math.isinf(stats["psnr"]) else f"{stats['psnr']:.2f}"
                cap = f"<figcaption>PSNR {ps} / SSIM {stats['ssim']:.3f}</figcaption>"
            uri = _data_uri(_thumb(load_rgb(files[i]), thumb))
            cells.append(f"<td><figure><img src='{uri}' alt='{esc(title)}'>{cap}</figure></td>")
        body.append(f"<tr><td class='n'>{i + 1}<br>{esc(test.names[i])}</td>{''.join(cells)}</tr>")
    body.append("</table>")
    shown = f"<p>Showing {n} of {len(test.inputs)} test images (all are in the metrics).</p>" \
        if n < len(test.inputs) else ""
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>CycleGAN vs Gatys</title><style>"
        "body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
        "table.g img{width:192px;image-rendering:pixelated}figure{margin:0}figcaption{font-size:12px;color:#555}"
        "figure{display:inline-block;margin-right:8px}.n{color:#777;font-size:12px}li{margin:3px 0}"
        "</style></head><body>\n<h1>CycleGAN vs Gatys</h1>\n"
        f"<p>Generated {esc(time.strftime('%Y-%m-%d %H:%M:%S'))} by report.py from saved outputs.</p>\n"
        + "\n".join(table) + "\n<h2>Notes</h2><ul>" + "".join(f"<li>{esc(x)}</li>" for x in note_lines) + "</ul>\n"
        + f"<h2>Style image{'s' if len(styles) > 1 else ''} (Gatys)</h2>\n{style_imgs}\n"
        + "<h2>Images</h2>\n" + shown + "\n".join(body) + "\n</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# The whole report


def build_report(test: TestSet, checkpoint: str | Path, direction: str, styles: list[Path], out: str | Path,
                 gatys_cfg: GatysConfig, device: str | torch.device = "auto", rerun: bool = False,
                 inception_weights: str | None = None, allow_download: bool = True,
                 feature_extractor: nn.Module | None = None, grid_rows: int = 8, html_rows: int = 100,
                 amp: str = "off", log: Log = print) -> dict[str, Any]:
    """Run or reuse both methods on ``test``, compute the metrics, write the report into ``out``.

    Args:
        feature_extractor: replaces Inception for FID/KID (tests: a tiny random network taking
            uint8 (B, 3, H, W) and returning (B, D)).
        allow_download: may fetch missing Inception / VGG weights (False: cache or files only).

    Returns:
        The content of ``metrics.json``.
    """
    from utils.translate import resolve_device

    if not styles:
        raise ReportError("Gatys needs at least one --style image (for monet2photo: a Monet from trainA/testA)")
    for s in styles:
        if not Path(s).is_file():
            raise ReportError(f"style image {s} does not exist")
    styles = [Path(s) for s in styles]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    extractor = build_extractor(gatys_cfg, dev)
    runs = [MethodRun("input", "input (unchanged)", list(test.inputs), None, "")]
    runs.append(run_cyclegan(checkpoint, direction, test, out, dev, rerun, amp, log))
    runs.append(run_gatys(gatys_cfg, styles, test, out, dev, extractor, rerun, log))
    rows, facts = compute_rows(test, runs, styles, gatys_cfg, extractor, dev, feature_extractor,
                               inception_weights, allow_download, log)
    note_lines = notes(facts, runs, test, styles)

    table_md = markdown_table(rows, facts)
    (out / "metrics.md").write_text("# CycleGAN vs Gatys\n\n" + table_md + "\n"
                                    + "".join(f"- {x}\n" for x in note_lines))
    result = {
        "columns": list(COLUMNS),
        "table": [dict(zip(COLUMNS, table_cells(r, facts))) for r in rows],
        "methods": {r.method: {
            "title": r.title,
            "fid": r.fid.fid if r.fid else None,
            "kid_mean": r.fid.kid_mean if r.fid else None,
            "kid_std": r.fid.kid_std if r.fid else None,
            "psnr": _finite(r.psnr), "ssim": r.ssim,
            "content_loss": r.content_loss, "style_loss": r.style_loss,
            "seconds_per_image": r.seconds_per_image, "device": r.device,
            "per_image": {k: {m: _finite(v) for m, v in d.items()} for k, d in r.per_image.items()},
        } for r in rows},
        "counts": {"inputs": facts["n_inputs"], "reference": facts["n_reference"],
                   "ground_truth": facts["n_ground_truth"]},
        "kid_subset_size": facts.get("kid_subset_size"),
        "fid_unavailable": facts.get("fid_unavailable") or None,
        "fid_features": facts.get("fid_features"),
        "vgg": facts["vgg"], "vgg_pretrained": facts["vgg_pretrained"],
        "checkpoint": str(checkpoint), "direction": direction, "styles": [str(s) for s in styles],
        "test_set": test.description, "reused": {r.method: r.reused for r in runs if r.method != "input"},
        "gatys_config": dataclasses.asdict(gatys_cfg), "notes": note_lines,
        "seconds_total": None,
    }
    write_html(out / "index.html", test, runs, rows, facts, styles, note_lines, html_rows)
    write_grid(out / "grid.png", test, runs, grid_rows)
    result["seconds_total"] = time.perf_counter() - t0
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    log(f"report: {out / 'index.html'}, {out / 'grid.png'}, {out / 'metrics.md'} "
        f"({result['seconds_total']:.0f} s)")
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The markdown table of a ``metrics.json`` content, for printing."""
    cols = result["columns"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(row[c]) for c in cols) + " |" for row in result["table"]]
    return lines
