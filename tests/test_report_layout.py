"""The report page fits 1280 and 1920 px windows without sideways scrolling, ground-truth column
visible, curve pictures at their own size (issue 22 item 3). Measured in headless Chromium by
docs/check_report_layout.py (skipped where none is installed); the CSS rules it relies on are
checked without a browser too."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT
from PIL import Image

from evaluation import report_data as rd
from evaluation.curves import plot_curves
from evaluation.metrics import FidKid
from evaluation.render import PAGE_CSS, grid_notes, write_grid, write_html
from options.report import ReportConfig

spec = importlib.util.spec_from_file_location("check_report_layout", ROOT / "docs" / "check_report_layout.py")
layout = importlib.util.module_from_spec(spec)
spec.loader.exec_module(layout)

# The demo report's columns: the baseline and seven methods, with their real titles.
TITLES = ["baseline (palette + blur)", "CycleGAN (step 896)", "CUT (step 896)", "FastCUT (step 896)",
          "Gatys [random-weight VGG (no pretrained weights available)]", "Johnson (step 672) [random-weight VGG-16]",
          "WCT [random-weight VGG]", "AdaIN [random-weight VGG]"]


def demo_like_report(tmp: Path, n: int = 3) -> rd.ReportData:
    rng = np.random.default_rng(0)
    files: dict[str, list[Path]] = {}
    for col in ["input", "gt", *range(len(TITLES))]:
        folder = tmp / str(col)
        folder.mkdir(parents=True)
        files[str(col)] = []
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
            files[str(col)].append(folder / f"{i:04d}.png")
    test = rd.TestSet(files["input"], [p.name for p in files["input"]], tmp / "input", files["gt"], files["gt"],
                   "datasets/demo: testB -> testA (BtoA), paired ground truth from testA")
    runs = [rd.MethodRun(f"m{i}", "x", t, files[str(i)], 0.01 * (i + 1), "cpu (2 threads)",
                      description="loaded something from runs/somewhere (run, step 896): a long description")
            for i, t in enumerate(TITLES)]
    cells = FidKid(fid=None, kid_mean=None, kid_std=None, kid_subset_size=None, n_real=0, n_fake=0,
                   unavailable="no Inception weights offline")
    rows = [rd.Row(r.slug, r.title, cells, 22.68, 0.7612, 0.5123, 0.01234, 1.2e-7, r.seconds_per_image, r.device)
            for r in runs]
    facts = rd.Facts(n, n, n, fid_unavailable="Inception weights are not in the torch cache and downloads are "
                  "disabled (download: false)", vgg="random-weight VGG-19", vgg_pretrained=False)
    scalars = {f"val/m{i}": [(s, float(s)) for s in range(5)] for i in range(5)}
    scalars.update({"loss/a": [(s, 1.0 / (s + 1)) for s in range(50)], "loss/b": [(s, 0.5) for s in range(50)]})
    curve = plot_curves(scalars, tmp / "curves" / "wct.png", "WCT, AdaIN: runs/wct_demo")
    return rd.ReportData(ReportConfig(dataset="datasets/demo", methods=[]), test, runs, rows, facts, 1.0,
                      curves=[("WCT, AdaIN (runs/wct_demo)", curve)])


def test_page_css_shares_the_width_among_the_image_columns_and_lets_cells_wrap(tmp_path):
    rules = dict(re.findall(r"([^{}]+)\{([^}]*)\}", PAGE_CSS))
    assert "table-layout:fixed" in rules["table.g"] and "width:100%" in rules["table.g"]
    assert "width:100%" in rules["table.g img"] and "max-width:192px" in rules["table.g img"]  # never a fixed 192 px
    assert "width:100%" in rules["table.m"] and "overflow-wrap:break-word" in rules["td,th"]
    assert rules["img.c"].startswith("max-width:100%")  # curves at their own size, up to the page's width
    page = write_html(tmp_path / "index.html", demo_like_report(tmp_path / "data")).read_text()
    assert page.count("<th>") >= 11 and "<th>ground truth</th>" in page
    assert Image.open(tmp_path / "data" / "curves" / "wct.png").size[0] == 1200  # 3 panels a row, not 6


def test_grid_carries_the_tables_notes(tmp_path):
    data = demo_like_report(tmp_path / "data", n=1)
    assert grid_notes(data) == ["* Gatys: random-weight VGG (no pretrained weights available)",
                                "* Johnson: random-weight VGG-16", "* WCT: random-weight VGG",
                                "* AdaIN: random-weight VGG"]
    grid = Image.open(write_grid(tmp_path / "grid.png", data, rows=1))
    # input, 8 runs, ground truth: 10 columns of 132 px; a header, one row, then 4 note lines of 13 px.
    assert grid.size == (10 * 132 + 4, 22 + 132 + 4 + 4 * 13 + 4)
    footer = np.asarray(grid.convert("L"))[22 + 132 + 4:]
    assert (footer < 128).sum() > 200  # the notes are drawn (dark text on white)


@pytest.mark.skipif(layout.find_browser() is None, reason="no Chromium here (apt-get install chromium)")
@pytest.mark.parametrize("width", [1280, 1920])
def test_report_fits_the_window_in_a_real_browser(tmp_path, width):
    page = write_html(tmp_path / "index.html", demo_like_report(tmp_path / "data"))
    m = layout.measure(page, width, layout.find_browser())
    assert layout.problems(m) == [], m
    assert m["last_column_title"] == "ground truth" and m["page"] <= width
    assert len(m["curves"]) == 1 and m["curves"][0]["shown"] == m["curves"][0]["natural"] == 1200
