"""The comparison report's data: test set, each method's outputs (run or reused), every metric.

For one test set, every method of the report config runs (or its earlier outputs are reused)
through :func:`utils.translate.run_folder`, the batched path ``test.py`` uses, into
``<out>/outputs/<slug>/``; then each output set is measured: FID/KID against the target
domain's images, PSNR/SSIM against paired ground truth (the demo dataset), content and style
loss under one VGG-19 (the Gatys defaults), and the method's own seconds per image.

Outputs are reused only when ``<slug>/run.json`` records the same fingerprint: the method's
settings and amp, the size, mtime and head/tail hash of every file that shapes the outputs
(checkpoint, style images, settings file) and of every input image, and each output's own
SHA-256 as written (an output replaced or truncated since is never reused). A trivial baseline
row (:func:`baseline_run`: the reference palette, blurred) is computed every time. Rendering (HTML, Markdown,
PNG) is :mod:`evaluation.render`; this module computes only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from skimage.color import lab2rgb, rgb2lab
from skimage.filters import gaussian
from torch import nn

from data.demo import make_demo_dataset
from data.image_io import list_images, load_rgb, pil_to_uint8, save_image
from evaluation.metrics import (
    FidKid,
    MetricUnavailable,
    describe_device,
    edge_ssim,
    extract_features,
    fid_kid,
    load_inception,
    psnr_ssim,
    vgg_losses,
)
from methods import inference_class
from methods.base import Method, file_fingerprint, load_method, open_weights
from models.style_losses import LossWeights, resize_longer, style_grams, style_target_size
from models.vgg import VGG19Features, VGGInfo, load_vgg19
from options.report import ReportConfig
from utils.device import warn_once
from utils.errors import UserError
from utils.files import write_text_atomic
from utils.translate import FolderJob, plan_outputs, run_folder

Log = Callable[[str], None]


class ReportError(UserError):
    """The report's inputs are unusable; the message says what to pass instead."""


# ---------------------------------------------------------------------------------------------
# The test set


@dataclass
class TestSet:
    """Test inputs with their output names, optional paired ground truth and FID reference set."""

    inputs: list[Path]
    names: list[str]  # each input's output file name, relative (unique, .png)
    root: Path  # the inputs' folder (names are relative to it)
    ground_truth: list[Path] | None = None  # aligned with inputs
    reference: list[Path] = field(default_factory=list)  # real target-domain images for FID/KID
    description: str = ""


def _names(root: Path, inputs: list[Path]) -> list[str]:
    out = Path("/nonexistent-report-names")  # only the relative names are used
    return [str(dst.relative_to(out)) for _, dst in plan_outputs(root, out, files=inputs)]


def dataset_test_set(root: str | Path, direction: str, limit: int = 0) -> TestSet:
    """monet2photo layout: BtoA translates testB -> compared with testA, AtoB the reverse.

    Ground truth exists only for the built-in demo dataset (``demo.json``): there
    ``testA/<name>`` = painting(``testB/<name>``), so each direction's target is paired.
    """
    root = Path(root)
    src, dst = ("testB", "testA") if direction == "BtoA" else ("testA", "testB")
    for sub in (src, dst):
        if not (root / sub).is_dir():
            raise ReportError(f"{root / sub} does not exist; dataset= needs a folder with testA/ and testB/ "
                              f"(monet2photo layout), or give input=FOLDER [ground_truth=DIR] [reference=DIR]")
    inputs = list_images(root / src)[: limit or None]
    if not inputs:
        raise ReportError(f"{root / src} contains no images")
    gt = None
    if (root / "demo.json").is_file():
        gt = [root / dst / p.relative_to(root / src) for p in inputs]
        missing = [p for p in gt if not p.is_file()]
        if missing:
            raise ReportError(f"demo dataset {root} is incomplete: no ground truth {missing[0]}; regenerate it")
    desc = f"{root}: {src} -> {dst} ({direction}){', paired ground truth from ' + dst if gt else ''}"
    return TestSet(inputs, _names(root / src, inputs), root / src, gt, list_images(root / dst), desc)


def folder_test_set(input: str | Path, ground_truth: str | Path | None = None, reference: str | Path | None = None,
                    limit: int = 0) -> TestSet:
    """Any folder of inputs; ``ground_truth`` holds same-named targets; ``reference`` the FID set
    (default: the ground truth folder, if any)."""
    root = Path(input)
    if not root.is_dir():
        raise ReportError(f"input={root} is not a folder")
    inputs = list_images(root)[: limit or None]
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
    return TestSet(inputs, _names(root, inputs), root, gt, refs,
                   f"{root}{' with ground truth ' + str(ground_truth) if gt else ''}")


# ---------------------------------------------------------------------------------------------
# Running or reusing the methods


@dataclass
class MethodRun:
    """One method's outputs on the test set and how they were made."""

    slug: str  # folder name under outputs/
    key: str  # registry name (cyclegan, gatys, ...); "input" for the do-nothing row
    title: str  # the table's row title
    outputs: list[Path]  # aligned with the test inputs
    seconds_per_image: float | None
    device: str
    reused: bool = False
    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None  # the training run the weights came from (for its curves)

    @property
    def short(self) -> str:
        """A column title for the narrow grid."""
        return re.sub(r"\s*[\[(].*$", "", self.title) or self.title


def _slug(title: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:40] or "method"
    slug, k = base, 2
    while slug in taken:
        slug, k = f"{base}_{k}", k + 1
    taken.add(slug)
    return slug


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _reusable(folder: Path, key: dict[str, Any], outputs: list[Path], names: list[str],
              log: Log = print) -> dict[str, Any] | None:
    """``run.json``'s content when the outputs in ``folder`` can be reused: the recorded fingerprint
    ``key`` (method, settings, checkpoint and style files, every input) is today's, and every output
    still holds the bytes recorded when it was written (its SHA-256). Else None (and why, logged)."""
    try:
        meta = json.loads((folder / "run.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != json.loads(json.dumps(key)):
        return None
    recorded = meta.get("outputs")
    if not isinstance(recorded, dict):
        log(f"{folder.name}: {folder / 'run.json'} records no output hashes (an older report): running again")
        return None
    for name, path in zip(names, outputs):
        if _sha256(path) != recorded.get(name) or recorded.get(name) is None:
            why = "is missing" if not path.exists() else "changed since the report wrote it"
            log(f"{folder.name}: {path} {why}: running again")
            return None
    return meta


def _progress_log(slug: str, log: Log, every_s: float = 10.0) -> Callable[[int, int], None]:
    """A :class:`utils.translate.FolderJob` ``on_progress``: a line every ``every_s`` seconds while a
    slow method (Gatys) runs, so a long report is never silent for minutes."""
    t0 = time.perf_counter()
    last = [t0]

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= every_s and done < total:
            last[0] = now
            log(f"{slug}: {done}/{total} images ({now - t0:.0f} s)")

    return report


def _run_dir_of(method: Method) -> Path | None:
    file = getattr(method, "file", None)
    path = getattr(file, "path", None)
    if path is not None and Path(path).parent.name == "checkpoints":
        return Path(path).parent.parent
    return None


def run_methods(cfg: ReportConfig, test: TestSet, out: Path, device: torch.device, rerun: bool = False,
                log: Log = print) -> list[MethodRun]:
    """Each configured method on every test input (or its reused outputs), in config order."""
    inputs_key = [file_fingerprint(p) for p in test.inputs]
    for i, opts in enumerate(cfg.methods):  # every entry checked before any runs (they may take long)
        if opts.method != "auto" and inference_class(opts.method).needs_checkpoint and not opts.checkpoint:
            raise ReportError(f"methods.{i}: {opts.method} needs a checkpoint")
    runs, taken = [], {"input", BASELINE_SLUG}
    for index, opts in enumerate(cfg.methods):
        opts = dataclasses.replace(opts)
        try:
            name = opts.method if opts.method != "auto" else open_weights(opts.checkpoint, opts.direction).method
            if not opts.style and cfg.style and inference_class(name).takes_style:
                opts.style, opts.style_weights = list(cfg.style), list(opts.style_weights or cfg.style_weights)
            method = load_method(opts, device)
        except UserError as e:
            raise ReportError(f"methods.{index} ({opts.label or opts.method}): {e}") from e
        slug = _slug(opts.label or method.key, taken)
        folder = out / "outputs" / slug
        outputs = [folder / n for n in test.names]
        key = {"method": method.fingerprint(), "inputs": inputs_key, "names": test.names}
        meta = None if rerun else _reusable(folder, key, outputs, test.names, log)
        if meta is not None:
            log(f"{slug}: reusing {len(outputs)} outputs in {folder}")
            runs.append(MethodRun(slug, method.key, method.name, outputs, meta.get("seconds_per_image"),
                                  str(meta.get("device", "")), True, method.describe(), method.settings(),
                                  _run_dir_of(method)))
            continue
        log(method.describe())
        if method.amp_choice.requested == "auto":
            log(f"{slug}: {method.amp_choice.describe()}")
        warn_once(method.amp_choice.warning.replace("use amp auto or off", f"use methods.{index}.amp=auto or off"))
        job = FolderJob(test.root, folder, overwrite=True, keep_alpha=False, batch_size=cfg.batch_size,
                        progress=False, files=test.inputs, on_progress=_progress_log(slug, log))
        summary = run_folder(method, job)
        if summary.failed:
            raise ReportError(f"{method.name} failed on {summary.failed[0][0]}: {summary.failed[0][1]}; the report "
                              f"needs every test image (fix or remove it, or set limit=)")
        run = MethodRun(slug, method.key, method.name, outputs, summary.seconds_per_image,
                        describe_device(method.device), False, method.describe(), method.settings(),
                        _run_dir_of(method))
        hashes = {name: _sha256(path) for name, path in zip(test.names, outputs)}
        write_text_atomic(folder / "run.json", json.dumps({"key": key, "seconds_per_image": run.seconds_per_image,
                                                           "device": run.device, "images": len(outputs),
                                                           "describe": run.description, "outputs": hashes},
                                                          indent=2))
        log(f"{slug}: {len(outputs)} images, {run.seconds_per_image:.4f} s/image on {run.device}")
        runs.append(run)
    return runs


# ---------------------------------------------------------------------------------------------
# The trivial baseline: a real method must beat it

BASELINE_SLUG = "baseline"


def lab_palette(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation in CIELAB over every pixel of ``images`` (uint8
    (H, W, 3)): the palette of a set of paintings."""
    pixels = np.concatenate([rgb2lab(im).reshape(-1, 3) for im in images])
    return pixels.mean(axis=0), pixels.std(axis=0)


def palette_transfer(image: np.ndarray, source: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray],
                     blur_sigma: float = 0.0) -> np.ndarray:
    """A global colour transfer after Reinhard et al. (2001, "Color transfer between images"), in
    CIELAB, from one palette to another: each channel of ``image`` (uint8 (H, W, 3)) standardised by
    the ``source`` palette's (mean, std) and given the ``target``'s (a channel without spread is only
    shifted), back to RGB (out-of-gamut colours clipped), then a Gaussian blur of ``blur_sigma``
    pixels (0 = none). The same map for every image: the palette of a whole set (:func:`lab_palette`)
    moved to another set's, never an image's own statistics (a near-grey photo would be blown up).
    uint8 (H, W, 3) out."""
    (src_mean, src_std), (dst_mean, dst_std) = source, target
    scale = np.where(src_std > 1e-6, dst_std / np.maximum(src_std, 1e-6), 1.0)
    lab = (rgb2lab(image) - src_mean) * scale + dst_mean
    with warnings.catch_warnings():  # colours moved out of the sRGB gamut are clipped, as said
        warnings.simplefilter("ignore", UserWarning)
        rgb = np.clip(lab2rgb(lab), 0.0, 1.0)
    if blur_sigma > 0:
        rgb = gaussian(rgb, sigma=blur_sigma, channel_axis=-1, preserve_range=True)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def baseline_run(test: TestSet, out: Path, blur_sigma: float, log: Log = print) -> MethodRun | None:
    """The report's trivial baseline row: every input through :func:`palette_transfer` from the
    inputs' palette to the reference (target-domain) images' palette, blurred; written to
    ``out/outputs/baseline/``. It knows the target domain's colours and nothing of its structure, so
    a method that only learnt the palette (blurred colour washes) scores about as well; one that
    learnt the mapping beats it. None when there are no reference images."""
    if not test.reference:
        return None
    inputs = [np.asarray(load_rgb(p)) for p in test.inputs]
    source, target = lab_palette(inputs), lab_palette([np.asarray(load_rgb(p)) for p in test.reference])
    folder = out / "outputs" / BASELINE_SLUG
    outputs = [folder / n for n in test.names]
    log(f"{BASELINE_SLUG}: {len(outputs)} inputs moved to the palette of {len(test.reference)} reference images, "
        f"blurred (sigma {blur_sigma:g} px)")
    for image, dst in zip(inputs, outputs):
        save_image(Image.fromarray(palette_transfer(image, source, target, blur_sigma)), dst)
    desc = (f"trivial baseline: the inputs' colours moved to the reference images' palette (a global colour transfer "
            f"after Reinhard et al. 2001: per-channel mean and std in CIELAB of the {len(inputs)} inputs mapped onto "
            f"those of the {len(test.reference)} reference images), then a Gaussian blur of sigma {blur_sigma:g} px; "
            f"it knows the target colours and no structure, so a method that learnt the mapping must beat it")
    return MethodRun(BASELINE_SLUG, "baseline", "baseline (palette + blur)", outputs, None, "", False, desc,
                     {"blur_sigma": blur_sigma, "space": "CIELAB", "reference_images": len(test.reference)})


# ---------------------------------------------------------------------------------------------
# Metrics


def _load_u8(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    img = load_rgb(path)
    if size is not None and img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    return pil_to_uint8(img)


@dataclass
class Row:
    method: str  # slug
    title: str
    fid: FidKid | None
    psnr: float | None
    ssim: float | None
    edge_ssim: float | None  # SSIM of Sobel gradient magnitudes against the ground truth
    content_loss: float
    style_loss: float | None  # None: no style images to compare with
    seconds_per_image: float | None
    device: str
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Facts:
    """What the notes under the table say: counts, where features came from, why a cell is empty."""

    n_inputs: int
    n_reference: int
    n_ground_truth: int
    fid_features: str = ""
    fid_unavailable: str = ""
    fid_notes: list[str] = field(default_factory=list)
    kid_subset_size: int | None = None
    vgg: str = ""
    vgg_pretrained: bool = True
    styles: list[Path] = field(default_factory=list)


def scoring_extractor(cfg: ReportConfig, device: torch.device) -> tuple[VGG19Features, VGGInfo, LossWeights]:
    s = cfg.scoring
    weights = LossWeights(content_layers={n: 1.0 for n in s.content_layers},
                          style_layers={n: 1.0 for n in s.style_layers})
    net, info = load_vgg19(weights.layers, s.vgg.pooling, s.vgg.weights, s.vgg.preprocess,
                           allow_download=s.vgg.download and cfg.download,
                           random_if_unavailable=s.vgg.random_if_unavailable)
    return net.to(device), info, weights


def compute_rows(cfg: ReportConfig, test: TestSet, runs: list[MethodRun], device: torch.device,
                 feature_extractor: nn.Module | None = None, log: Log = print,
                 baseline: MethodRun | None = None) -> tuple[list[Row], Facts]:
    """Every metric for every method, the do-nothing row and the ``baseline`` row (:func:`baseline_run`)."""
    facts = Facts(len(test.inputs), len(test.reference), len(test.ground_truth) if test.ground_truth else 0,
                  styles=[Path(s) for s in cfg.style])
    inputs_u8 = [_load_u8(p) for p in test.inputs]

    # FID / KID: one feature extractor, reference features computed once.
    ref_feats, extractor_fid = None, feature_extractor
    if extractor_fid is None:
        try:
            extractor_fid = load_inception(cfg.inception_weights or None, cfg.download)
            facts.fid_features = "Inception-v3 (torch-fidelity FID weights), 2048-d pool features"
        except MetricUnavailable as e:
            facts.fid_unavailable = str(e)
    else:
        facts.fid_features = f"custom feature extractor {type(feature_extractor).__name__}"
    if extractor_fid is not None and len(test.reference) < 2:
        facts.fid_unavailable = f"needs >= 2 reference images, have {len(test.reference)} (set reference=FOLDER)"
    if extractor_fid is not None and not facts.fid_unavailable:
        log(f"fid/kid: features of {len(test.reference)} reference images")
        ref_feats = extract_features(extractor_fid, (_load_u8(p) for p in test.reference), device)

    net, info, weights = scoring_extractor(cfg, device)
    facts.vgg, facts.vgg_pretrained = info.label, info.pretrained
    style_imgs = [_load_u8(Path(s)).float().div(255).unsqueeze(0).to(device) for s in cfg.style]
    gram_cache: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def grams_for(h: int, w: int) -> dict[str, torch.Tensor]:
        if (h, w) not in gram_cache:
            longer = style_target_size(max(h, w), cfg.scoring.style_scale)
            gram_cache[(h, w)] = style_grams(net, [resize_longer(s, longer) for s in style_imgs],
                                             cfg.style_weights or None, list(weights.style_layers))
        return gram_cache[(h, w)]

    gts = [_load_u8(g) for g in test.ground_truth] if test.ground_truth else None
    rows = []
    unchanged = MethodRun("input", "input", "input (unchanged)", list(test.inputs), None, "")
    for run in [unchanged, *([baseline] if baseline is not None else []), *runs]:
        # Outputs are compared at the input's size (a method may work at another, e.g. Gatys' image.size).
        outs = [_load_u8(o, (i.shape[2], i.shape[1])) for o, i in zip(run.outputs, inputs_u8)]
        fk = None
        if ref_feats is not None:
            log(f"fid/kid: {run.slug}")
            fk = fid_kid(ref_feats, extract_features(extractor_fid, outs, device), kid_subsets=cfg.kid_subsets)
            if fk.unavailable:
                facts.fid_notes.append(f"{run.slug}: {fk.unavailable}")
            facts.kid_subset_size = facts.kid_subset_size or fk.kid_subset_size
        psnr = ssim = edge = None
        per_image: dict[str, dict[str, float]] = {}
        if gts is not None:
            pairs = [(o if o.shape == g.shape else _load_u8(path, (g.shape[2], g.shape[1])), g)
                     for o, g, path in zip(outs, gts, run.outputs)]
            values = [(*psnr_ssim(o, g), edge_ssim(o, g)) for o, g in pairs]
            for name, (ps, ss, es) in zip(test.names, values):
                per_image[name] = {"psnr": ps, "ssim": ss, "edge_ssim": es}
            psnr = float(sum(v[0] for v in values) / len(values))
            ssim = float(sum(v[1] for v in values) / len(values))
            edge = float(sum(v[2] for v in values) / len(values))
        lc, ls = vgg_losses(net, outs, inputs_u8, grams_for if style_imgs else None, weights, device)
        rows.append(Row(run.slug, run.title, fk, psnr, ssim, edge, lc, ls, run.seconds_per_image, run.device,
                        per_image))
    return rows, facts


# ---------------------------------------------------------------------------------------------
# Everything, for the renderer


@dataclass
class ReportData:
    config: ReportConfig
    test: TestSet
    runs: list[MethodRun]  # the configured methods, in config order
    rows: list[Row]
    facts: Facts
    seconds_total: float
    baseline: MethodRun | None = None  # the trivial baseline row's outputs (:func:`baseline_run`)
    curves: list[tuple[str, Path]] = field(default_factory=list)  # (title, PNG) of the runs' curves
    curve_notes: list[str] = field(default_factory=list)  # events that could not be read (evaluation.curves)

    @property
    def shown(self) -> list[MethodRun]:
        """Every output set the page shows besides the input and the ground truth: the baseline, the methods."""
        return ([self.baseline] if self.baseline is not None else []) + self.runs

    def speed_ratios(self) -> list[tuple[str, str, float]]:
        """(method title, slowest method's short title, times faster) against the slowest method
        of this run (e.g. Johnson : Gatys), measured in this run."""
        shorts = {r.title: r.short for r in self.runs}
        timed = [(r.title, r.seconds_per_image) for r in self.rows if r.seconds_per_image]
        if len(timed) < 2:
            return []
        slow_title, slow = max(timed, key=lambda t: t[1])
        return [(t, shorts.get(slow_title, slow_title), slow / s) for t, s in timed if t != slow_title]

    def finite(self, v: float | None) -> float | str | None:
        """JSON has no inf: PSNR of identical images is written as the string "inf"."""
        if v is None or math.isfinite(v):
            return v
        return "inf" if v > 0 else "-inf"


def build_report_data(cfg: ReportConfig, out: Path, device: torch.device, rerun: bool = False,
                      feature_extractor: nn.Module | None = None, log: Log = print) -> ReportData:
    """Test set, method outputs and metrics for ``cfg``, written under ``out/outputs``."""
    t0 = time.perf_counter()
    for s in cfg.style:
        if not Path(s).is_file():
            raise ReportError(f"style image {s} does not exist")
    if cfg.dataset:
        if cfg.demo:
            make_demo_dataset(cfg.dataset)
        test = dataset_test_set(cfg.dataset, cfg.direction, cfg.limit)
    else:
        test = folder_test_set(cfg.input, cfg.ground_truth or None, cfg.reference or None, cfg.limit)
    runs = run_methods(cfg, test, out, device, rerun, log)
    base = baseline_run(test, out, cfg.baseline_blur, log) if cfg.baseline else None
    rows, facts = compute_rows(cfg, test, runs, device, feature_extractor, log, baseline=base)
    return ReportData(cfg, test, runs, rows, facts, time.perf_counter() - t0, baseline=base)
