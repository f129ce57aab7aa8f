"""The comparison report on tiny data: test sets, every row and column present, self-contained HTML
with the training curves, grid, metrics.json/md with real values, unavailable metrics labelled,
outputs reused only while nothing that shapes them changed, the CLI."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import GATYS_TINY as _GATYS
from image_corpus import ROOT, load_script
from PIL import Image

from data.image_io import load_rgb, pil_to_uint8
from evaluation.metrics import edge_ssim, psnr_ssim
from evaluation.render import COLUMNS, write_report
from evaluation.report_data import (
    build_report_data,
    dataset_test_set,
    folder_test_set,
    lab_palette,
    palette_transfer,
)
from options.config import load
from options.report import ReportConfig

cli = load_script("report")
CPU = torch.device("cpu")

# The tiny Gatys, its VGG left to the report config's offline fallback (the label says so).
GATYS_TINY = [x for x in _GATYS if x != "vgg.weights=random"]

@pytest.fixture(autouse=True)
def no_hub(tmp_path, monkeypatch):
    """An empty torch cache: no pretrained VGG or Inception, as on this offline machine."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


@pytest.fixture
def run(tiny_config, make_trainer) -> Path:
    """A run folder with one checkpoint (step 1), written by the trainer."""
    trainer = make_trainer(tiny_config())
    trainer.step = 1
    trainer.save()
    return trainer.run_dir


def write_config(path: Path, run: Path | None, dataset: Path | None = None, **top) -> Path:
    """A report config: CycleGAN (BtoA) from ``run`` and the demo's Gatys, tiny, offline."""
    methods = []
    if run is not None:
        methods.append({"method": "cyclegan", "checkpoint": str(run), "direction": "BtoA"})
    methods.append({"method": "gatys", "config": str(ROOT / "experiments" / "gatys_quick.yaml"),
                    "settings": GATYS_TINY})
    cfg = {"methods": methods, "device": "cpu", "download": False,
           "scoring": {"vgg": {"weights": "imagenet", "random_if_unavailable": True},
                       "content_layers": ["relu2_2"], "style_layers": ["relu1_1", "relu2_1"]}}
    if dataset is not None:
        cfg.update(dataset=str(dataset), style=[str(dataset / "trainA" / "0000.png")])
    cfg.update(top)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _load(path: Path, *overrides: str) -> ReportConfig:
    return load(ReportConfig, path, list(overrides))


def _report(capsys, cfg: Path, out: Path, *extra: str) -> tuple[dict, str]:
    code = cli.main(["--config", str(cfg), "--output", str(out), *extra])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    return json.loads((out / "metrics.json").read_text()), stdout


# ---------------------------------------------------------------------------------------------
# Test sets


def test_test_sets(tiny_dataset):
    test = dataset_test_set(tiny_dataset, "BtoA", limit=1)
    assert [p.parent.name for p in test.inputs] == ["testB"] and len(test.reference) == 2
    assert [p.parent.name for p in test.ground_truth] == ["testA"]
    assert [p.name for p in test.ground_truth] == [p.name for p in test.inputs] and test.names == ["0000.png"]
    rev = dataset_test_set(tiny_dataset, "AtoB")
    assert rev.inputs[0].parent.name == "testA" and rev.ground_truth[0].parent.name == "testB"
    plain = folder_test_set(tiny_dataset / "testB", reference=tiny_dataset / "testA")
    assert plain.ground_truth is None and len(plain.reference) == 2 and len(plain.inputs) == 2
    paired = folder_test_set(tiny_dataset / "testB", ground_truth=tiny_dataset / "testA")
    assert paired.ground_truth == [tiny_dataset / "testA" / p.name for p in paired.inputs]
    assert paired.reference == paired.ground_truth  # the ground truth is the FID set unless told otherwise


# ---------------------------------------------------------------------------------------------
# The whole report


def test_report_has_every_row_column_and_the_training_curves(tiny_dataset, tiny_config, make_trainer, tmp_path,
                                                             capsys):
    trainer = make_trainer(tiny_config("optim.n_epochs_decay=0", "log.scalars_every=1"))
    trainer.fit()
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "report.yaml", trainer.run_dir, tiny_dataset)
    metrics, stdout = _report(capsys, cfg, out)

    for name in ("index.html", "grid.png", "metrics.json", "metrics.md", "curves/cyclegan.png"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "outputs" / "cyclegan").glob("*.png")) == ["0000.png", "0001.png"]
    assert sorted(p.name for p in (out / "outputs" / "gatys").glob("*.png")) == ["0000.png", "0001.png"]
    assert Image.open(out / "outputs" / "gatys" / "0000.png").size == (32, 32)

    assert metrics["columns"] == list(COLUMNS)
    rows = {r["method"]: r for r in metrics["table"]}
    assert list(rows) == ["input (unchanged)", "baseline (palette + blur)", "CycleGAN (step 6)",
                          "Gatys [random-weight VGG (no pretrained weights available)]"]
    for row in metrics["table"]:
        assert list(row) == list(COLUMNS)
        assert row["FID"].startswith("unavailable: ") and row["KID"].startswith("unavailable: ")
        assert -1.0 <= float(row["SSIM"]) <= 1.0 and float(row["content loss"]) >= 0
    assert rows["input (unchanged)"]["content loss"] == "0" and rows["input (unchanged)"]["s/image"].startswith("n/a")
    cyc = rows["CycleGAN (step 6)"]
    assert float(cyc["s/image"]) > 0 and cyc["device"].startswith("cpu (")
    assert metrics["counts"] == {"inputs": 2, "reference": 2, "ground_truth": 2}
    assert "Inception" in metrics["fid_unavailable"] and "downloads are disabled" in metrics["fid_unavailable"]
    assert set(metrics["methods"]) == {"input", "baseline", "cyclegan", "gatys"}
    assert set(metrics["methods"]["gatys"]["per_image"]) == {"0000.png", "0001.png"}
    assert metrics["settings"]["cyclegan"]["step"] == 6 and metrics["settings"]["gatys"]["steps"] == 2
    assert metrics["reused"] == {"cyclegan": False, "gatys": False} and not metrics["vgg_pretrained"]

    md = (out / "metrics.md").read_text()
    assert "| " + " | ".join(COLUMNS) + " |" in md and md.count("unavailable: no Inception weights offline") == 8
    assert "random-weight VGG" in md
    assert stdout.count("\n| ") >= 5 and f"report: {out / 'index.html'}" in stdout

    page = (out / "index.html").read_text()
    for header in ("input", "CycleGAN (step 6)", "Gatys [random-weight VGG", "ground truth", *COLUMNS,
                   "Training curves", f"CycleGAN ({trainer.run_dir})"):
        assert header in page, header
    srcs = re.findall(r"<img[^>]* src='([^']*)'", page)
    # 2 rows x 5 columns (input, baseline, 2 methods, ground truth), 1 style image, 1 curves plot: every
    # image embedded (self-contained).
    assert len(srcs) == 2 * 5 + 1 + 1 and all(s.startswith("data:image/") for s in srcs)
    curves = re.search(r"<img class='c' src='data:image/png;base64,([^']*)'", page)
    assert base64.b64decode(curves.group(1)) == (out / "curves" / "cyclegan.png").read_bytes()  # the PNG itself
    plot = Image.open(out / "curves" / "cyclegan.png")
    assert plot.format == "PNG" and plot.size[0] > 400
    from evaluation.curves import read_scalars

    scalars = read_scalars(trainer.run_dir)  # what the plot shows: the validation metric and the losses
    assert [step for step, _ in scalars["val/cycle_l1"]] == [6] and len(scalars["loss/G_A"]) >= 3

    grid = Image.open(out / "grid.png")
    # 5 columns, 2 rows of 128 px cells, then the Gatys column's note (one line of 13 px and a 4 px margin).
    assert grid.size == (5 * 132 + 4, 22 + 2 * 132 + 4 + 13 + 4)


def test_metrics_are_the_real_values(tiny_dataset, tmp_path, tiny_features):
    """PSNR / SSIM / FID in the report are those of the files, computed here directly."""
    cfg = _load(write_config(tmp_path / "r.yaml", None, input=str(tiny_dataset / "testB"),
                             ground_truth=str(tiny_dataset / "testA"), style=[str(tiny_dataset / "trainA" /
                                                                                  "0000.png")]))
    out = tmp_path / "out"
    data = build_report_data(cfg, out, CPU, feature_extractor=tiny_features, log=lambda s: None)
    rows = {r.method: r for r in data.rows}
    inputs = sorted((tiny_dataset / "testB").glob("*.png"))
    gts = [tiny_dataset / "testA" / p.name for p in inputs]

    def u8(p: Path) -> torch.Tensor:
        return pil_to_uint8(load_rgb(p))

    for method in ("input", "baseline", "gatys"):
        files = inputs if method == "input" else [out / "outputs" / method / p.name for p in inputs]
        values = [psnr_ssim(u8(f), u8(g)) for f, g in zip(files, gts)]
        edges = [edge_ssim(u8(f), u8(g)) for f, g in zip(files, gts)]
        assert rows[method].psnr == pytest.approx(np.mean([v[0] for v in values]), rel=1e-9)
        assert rows[method].ssim == pytest.approx(np.mean([v[1] for v in values]), rel=1e-9)
        assert rows[method].edge_ssim == pytest.approx(np.mean(edges), rel=1e-9)
        assert rows[method].per_image["0001.png"]["psnr"] == pytest.approx(values[1][0], rel=1e-9)
        assert rows[method].per_image["0001.png"]["edge_ssim"] == pytest.approx(edges[1], rel=1e-9)
    # The baseline's outputs: the inputs' palette moved to the reference (= ground truth) images' palette, blurred.
    source = lab_palette([np.asarray(load_rgb(p)) for p in inputs])
    target = lab_palette([np.asarray(load_rgb(g)) for g in gts])
    for p in inputs:
        expected = palette_transfer(np.asarray(load_rgb(p)), source, target, blur_sigma=1.5)
        assert np.array_equal(np.asarray(load_rgb(out / "outputs" / "baseline" / p.name)), expected)
    assert 5 < rows["input"].psnr < 40 and rows["input"].psnr != rows["gatys"].psnr

    # FID/KID against the ground truth folder (the default reference): the ground truth measured
    # against itself is a zero distance, the inputs are not.
    assert rows["input"].fid.n_real == 2 and rows["input"].fid.kid_subset_size == 2
    assert rows["input"].fid.fid > 0
    from evaluation.metrics import extract_features, fid_from_features

    ref = extract_features(tiny_features, [u8(g) for g in gts])
    assert fid_from_features(ref, ref) == pytest.approx(0.0, abs=1e-6)
    assert rows["input"].fid.fid == pytest.approx(fid_from_features(ref, extract_features(tiny_features,
                                                  [u8(p) for p in inputs])), rel=1e-6)
    assert rows["input"].content_loss == 0.0 and rows["gatys"].content_loss > 0
    assert rows["input"].style_loss > 0

    result = write_report(data, out)
    assert result["methods"]["input"]["psnr"] == rows["input"].psnr and result["fid_unavailable"] is None
    assert float(result["table"][0]["FID"]) == pytest.approx(rows["input"].fid.fid, abs=0.01)
    for row, title in zip(result["table"], ("input (unchanged)", "baseline (palette + blur)", rows["gatys"].title)):
        assert row["method"] == title and float(row["FID"]) >= 0 and re.fullmatch(r"-?[\d.e-]+ ± [\d.e-]+", row["KID"])


def test_fid_of_the_reference_set_against_itself_is_zero(tiny_dataset, tmp_path, tiny_features):
    """input= and reference= the same folder: the do-nothing row's FID is 0."""
    cfg = _load(write_config(tmp_path / "r.yaml", None, input=str(tiny_dataset / "trainB"),
                             reference=str(tiny_dataset / "trainB"), style=[str(tiny_dataset / "trainA" / "0000.png")]))
    data = build_report_data(cfg, tmp_path / "out", CPU, feature_extractor=tiny_features, log=lambda s: None)
    rows = {r.method: r for r in data.rows}
    assert rows["input"].fid.fid == pytest.approx(0.0, abs=1e-6) and rows["input"].fid.n_real == 8
    assert rows["gatys"].fid.fid > 1e-3 and rows["gatys"].content_loss > 0
    assert rows["input"].psnr is None and data.facts.n_ground_truth == 0


# ---------------------------------------------------------------------------------------------
# Reuse


def test_outputs_are_reused_only_while_nothing_changed(tiny_dataset, run, tiny_config, make_trainer, tmp_path,
                                                       capsys):
    style = tmp_path / "style.png"
    shutil.copy(tiny_dataset / "trainA" / "0000.png", style)
    cfg = write_config(tmp_path / "report.yaml", run, tiny_dataset, style=[str(style)])
    out = tmp_path / "out"
    ckpt = run / "checkpoints" / "step_00000001.pt"
    first, _ = _report(capsys, cfg, out)
    assert first["reused"] == {"cyclegan": False, "gatys": False}
    stamps = {m: (out / "outputs" / m / "0000.png").stat().st_mtime_ns for m in ("cyclegan", "gatys")}

    metrics, stdout = _report(capsys, cfg, out)  # nothing changed
    assert metrics["reused"] == {"cyclegan": True, "gatys": True}
    assert f"cyclegan: reusing 2 outputs in {out / 'outputs' / 'cyclegan'}" in stdout
    assert {m: (out / "outputs" / m / "0000.png").stat().st_mtime_ns for m in stamps} == stamps
    assert metrics["methods"]["cyclegan"]["psnr"] == first["methods"]["cyclegan"]["psnr"]

    # The checkpoint file replaced by another network (same path, same step, another width).
    other = make_trainer(tiny_config("model.ngf=4", "name=other"))
    other.step = 1
    shutil.copy(other.save(), ckpt)
    metrics, stdout = _report(capsys, cfg, out)
    assert metrics["reused"] == {"cyclegan": False, "gatys": True} and "cyclegan: reusing" not in stdout
    assert "ngf=4" in metrics["settings"]["cyclegan"]["arch"]

    # The style image replaced by another picture under the same name.
    Image.new("RGB", (32, 32), (200, 30, 30)).save(style)
    metrics, _ = _report(capsys, cfg, out)
    assert metrics["reused"] == {"cyclegan": True, "gatys": False}

    # A Gatys setting changed: only Gatys runs again; --rerun runs everything.
    metrics, _ = _report(capsys, cfg, out, "methods.1.settings=[optim.steps=1]")
    assert metrics["reused"] == {"cyclegan": True, "gatys": False} and metrics["settings"]["gatys"]["steps"] == 1
    metrics, _ = _report(capsys, cfg, out, "--rerun")
    assert metrics["reused"] == {"cyclegan": False, "gatys": False}


# ---------------------------------------------------------------------------------------------
# The CLI


def test_report_cli(tiny_dataset, run, tmp_path, capsys):
    cfg = write_config(tmp_path / "report.yaml", run, tiny_dataset,
                       style=[str(tiny_dataset / "trainA" / "0000.png"), str(tiny_dataset / "trainA" / "0001.png")])
    assert cli.main(["--config", str(cfg), "--dry-run", "limit=1"]) == 0
    dry = yaml.safe_load(capsys.readouterr().out)
    assert dry["limit"] == 1 and dry["methods"][0]["checkpoint"] == str(run)
    metrics, out = _report(capsys, cfg, tmp_path / "cli", "limit=1")
    assert out.count("\n| ") >= 3 and "unavailable" in out
    assert metrics["counts"]["inputs"] == 1 and len(metrics["styles"]) == 2
    assert cli.main(["--config", str(cfg), "--output", str(tmp_path / "x"), "methods.1.settingz=[a=1]"]) == 2
    assert "methods.1.settingz" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert cli.main(["--config", str(cfg), "--output", str(tmp_path / "y"), "methods.1.settings=[optim.stepz=1]"]) == 2
    assert "optim.stepz" in capsys.readouterr().err
    # --overwrite writes beside files that are not a report's, and leaves them alone.
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "notes.txt").write_text("mine")
    metrics, _ = _report(capsys, cfg, tmp_path / "shared", "limit=1", "--overwrite")
    assert metrics["counts"]["inputs"] == 1 and (tmp_path / "shared" / "notes.txt").read_text() == "mine"
    missing = write_config(tmp_path / "m.yaml", run, tiny_dataset, style=[str(tmp_path / "nope.png")])
    assert cli.main(["--config", str(missing), "--output", str(tmp_path / "z")]) == 2
    assert f"style image {tmp_path / 'nope.png'} does not exist" in capsys.readouterr().err


def test_json_has_no_infinity(tiny_dataset, tmp_path):
    """PSNR of identical images is inf: metrics.json writes the string "inf", the table "inf (identical)"."""
    cfg = _load(write_config(tmp_path / "r.yaml", None, input=str(tiny_dataset / "testA"),
                             ground_truth=str(tiny_dataset / "testA"), style=[str(tiny_dataset / "trainA" /
                                                                                  "0000.png")]))
    out = tmp_path / "out"
    data = build_report_data(cfg, out, CPU, log=lambda s: None)
    assert math.isinf(data.rows[0].psnr)
    result = write_report(data, out)
    text = (out / "metrics.json").read_text()
    assert "Infinity" not in text and json.loads(text)["methods"]["input"]["psnr"] == "inf"
    assert result["table"][0]["PSNR"] == "inf (identical)"


def test_reused_outputs_must_still_hold_the_bytes_the_report_wrote(tiny_dataset, run, tmp_path, capsys):
    """Issue 23 item 11: a copied ground-truth file, a truncated output or an old run.json without output
    hashes is never reused (no "inf (identical)" row, no traceback): the method runs again."""
    cfg = write_config(tmp_path / "report.yaml", run, tiny_dataset)
    out = tmp_path / "out"
    first, _ = _report(capsys, cfg, out)
    target = out / "outputs" / "cyclegan" / "0000.png"
    shutil.copy(tiny_dataset / "testA" / "0000.png", target)  # the ground truth itself, as an "output"
    metrics, stdout = _report(capsys, cfg, out)
    assert metrics["reused"] == {"cyclegan": False, "gatys": True}
    assert f"{target} changed since the report wrote it: running again" in stdout
    assert metrics["methods"]["cyclegan"]["per_image"]["0000.png"] == first["methods"]["cyclegan"]["per_image"][
        "0000.png"] and metrics["methods"]["cyclegan"]["psnr"] != "inf"
    target.write_bytes(target.read_bytes()[:40])  # truncated
    metrics, _ = _report(capsys, cfg, out)
    assert metrics["reused"]["cyclegan"] is False
    assert metrics["methods"]["cyclegan"]["per_image"] == first["methods"]["cyclegan"]["per_image"]
    meta = json.loads((out / "outputs" / "gatys" / "run.json").read_text())
    assert set(meta["outputs"]) == {"0000.png", "0001.png"}
    del meta["outputs"]  # as an earlier release wrote it
    (out / "outputs" / "gatys" / "run.json").write_text(json.dumps(meta))
    metrics, stdout = _report(capsys, cfg, out)
    assert metrics["reused"] == {"cyclegan": True, "gatys": False} and "records no output hashes" in stdout


def test_report_says_what_it_runs_once_and_reports_progress_of_a_slow_method(tiny_dataset, run, tmp_path, capsys,
                                                                             monkeypatch):
    import evaluation.report_data as rd

    real = rd._progress_log
    monkeypatch.setattr(rd, "_progress_log", lambda slug, log: real(slug, log, every_s=0.0))
    _, stdout = _report(capsys, write_config(tmp_path / "report.yaml", run, tiny_dataset), tmp_path / "out")
    assert stdout.count("loaded G_B (B->A)") == 1 and stdout.count("Gatys: lbfgs") == 1
    assert "gatys: 1/2 images (" in stdout  # a line per image at every_s=0 (10 s in a real report)


def test_a_folder_named_like_an_events_file_is_a_note_not_a_write_error(tiny_dataset, run, tmp_path, capsys):
    """Issue 23 item 16: it used to end the report with "cannot write the report ... read-only or full?"."""
    bad = run / "tb" / "events.out.tfevents.1700000000.host.1.0"
    bad.mkdir(parents=True)
    code = cli.main(["--config", str(write_config(tmp_path / "r.yaml", run, tiny_dataset)), "--output",
                     str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0 and f"WARNING: training curves: {bad} is a folder, not an events file" in err
    notes = json.loads((tmp_path / "out" / "metrics.json").read_text())["notes"]
    assert any(n.startswith(f"Training curves: {bad} is a folder") for n in notes)
