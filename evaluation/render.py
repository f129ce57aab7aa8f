"""Rendering the comparison report from :class:`evaluation.report_data.ReportData`; computes nothing.

Writes into the report folder:

* ``index.html``: self-contained (images embedded as base64): the metrics table, the notes, the
  style images, the training runs' curves, and per test image ``input | each method | ground
  truth`` side by side;
* ``grid.png``: the same columns for the first rows, as one image;
* ``metrics.json`` (every number, counts, settings, per-image PSNR/SSIM) and ``metrics.md``.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from data.image_io import load_rgb
from evaluation.report_data import ReportData, Row
from utils.files import write_text_atomic

COLUMNS = ("method", "FID", "KID", "PSNR", "SSIM", "edge SSIM", "content loss", "style loss", "s/image", "speed",
           "device")


def _short_reason(reason: str) -> str:
    if "Inception" in reason or "inception" in reason:
        return "no Inception weights offline" if ("download" in reason or "offline" in reason) else reason[:80]
    return reason[:80]


def table_cells(row: Row, data: ReportData) -> list[str]:
    """The row's cells in :data:`COLUMNS` order, as text."""
    facts = data.facts
    if row.fid is None:
        fid = kid = f"unavailable: {_short_reason(facts.fid_unavailable or 'not computed')}"
    else:
        fid = f"{row.fid.fid:.2f}" if row.fid.fid is not None else f"unavailable: {row.fid.unavailable}"
        kid = (f"{row.fid.kid_mean:.4g} ± {row.fid.kid_std:.2g}" if row.fid.kid_mean is not None
               else f"unavailable: {row.fid.unavailable}")
    if row.psnr is None:
        psnr = ssim = edge = "n/a: no ground truth"
    else:
        psnr = "inf (identical)" if math.isinf(row.psnr) else f"{row.psnr:.2f}"
        ssim = f"{row.ssim:.4f}"
        edge = "n/a" if row.edge_ssim is None or math.isnan(row.edge_ssim) else f"{row.edge_ssim:.4f}"
    style = "n/a: no style image" if row.style_loss is None else f"{row.style_loss:.4g}"
    spi = "n/a (no method)" if row.seconds_per_image is None else f"{row.seconds_per_image:.4f}"
    speed = next((f"{r:.0f}x {slow}'s" if r >= 10 else f"{r:.1f}x {slow}'s"
                  for t, slow, r in data.speed_ratios() if t == row.title), "")
    return [row.title, fid, kid, psnr, ssim, edge, f"{row.content_loss:.4g}", style, spi, speed, row.device or "n/a"]


def notes(data: ReportData) -> list[str]:
    f, test = data.facts, data.test
    lines = [f"Test set: {test.description}. Images: {f.n_inputs} inputs, {f.n_reference} reference images for "
             f"FID/KID, {f.n_ground_truth} ground-truth pairs for PSNR/SSIM."]
    if f.n_ground_truth:
        lines.append("edge SSIM: SSIM (scikit-image) of the Sobel gradient magnitudes of output and ground truth "
                     "(luminance), after Chen et al.'s gradient-based SSIM (ICIP 2006): 1 = the same edges; blur and "
                     "lost contours lower it, a colour shift does not. PSNR and SSIM reward a blurred output with the "
                     "right colours; this column does not.")
    if data.baseline is not None:
        lines.append("baseline (palette + blur): the trivial row a method must beat on every paired column; "
                     "'input (unchanged)' is the other floor.")
    if f.fid_unavailable:
        lines.append(f"FID/KID unavailable: {f.fid_unavailable}.")
    else:
        lines.append(f"FID/KID features: {f.fid_features}; KID subset size {f.kid_subset_size} (capped by the "
                     f"smaller set), {data.config.kid_subsets} subsets, mean ± std. FID on fewer than a few thousand "
                     f"images is strongly biased upwards: compare rows, not papers; KID is the fairer one here.")
    lines += [f"FID/KID: {n}." for n in f.fid_notes]
    styles = ", ".join(p.name for p in f.styles) or "none"
    lines.append(f"Content and style loss: every output under one VGG-19 ({f.vgg}), unweighted (no alpha/beta): "
                 f"content against the input, style against the Gram matrices of the style image(s) ({styles}).")
    if not f.vgg_pretrained:
        lines.append("The loss columns (and any method using a VGG) ran with a random-weight VGG because no pretrained "
                     "VGG-19 weights were available: they show the pipeline, not real quality.")
    for run in data.shown:
        lines.append(f"{run.title}: {run.description}" + (" (outputs reused)" if run.reused else ""))
    lines += [f"Training curves: {n}." for n in data.curve_notes]
    lines.append("s/image: the method's own time per image through the batched path test.py uses (no file I/O, "
                 "no model loading), averaged over the inputs; speed: how many times faster than the slowest method, "
                 "measured in this run.")
    return lines


def markdown_table(data: ReportData) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in data.rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in table_cells(row, data)) + " |")
    return "\n".join(lines) + "\n"


def metrics_json(data: ReportData) -> dict[str, Any]:
    cfg = data.config
    return {
        "columns": list(COLUMNS),
        "table": [dict(zip(COLUMNS, table_cells(r, data))) for r in data.rows],
        "methods": {r.method: {
            "title": r.title,
            "fid": r.fid.fid if r.fid else None, "kid_mean": r.fid.kid_mean if r.fid else None,
            "kid_std": r.fid.kid_std if r.fid else None,
            "psnr": data.finite(r.psnr), "ssim": r.ssim, "edge_ssim": r.edge_ssim,
            "content_loss": r.content_loss, "style_loss": r.style_loss,
            "seconds_per_image": r.seconds_per_image, "device": r.device,
            "per_image": {k: {m: data.finite(v) for m, v in d.items()} for k, d in r.per_image.items()},
        } for r in data.rows},
        "settings": {run.slug: run.settings for run in data.shown},
        "speed_ratios": [{"method": t, "against": s, "times_faster": r} for t, s, r in data.speed_ratios()],
        "counts": {"inputs": data.facts.n_inputs, "reference": data.facts.n_reference,
                   "ground_truth": data.facts.n_ground_truth},
        "kid_subset_size": data.facts.kid_subset_size, "fid_unavailable": data.facts.fid_unavailable or None,
        "fid_features": data.facts.fid_features, "vgg": data.facts.vgg, "vgg_pretrained": data.facts.vgg_pretrained,
        "styles": [str(s) for s in data.facts.styles], "test_set": data.test.description,
        "reused": {r.slug: r.reused for r in data.runs},
        "config": dataclasses.asdict(cfg), "notes": notes(data),
        "seconds_total": data.seconds_total,
    }


# ---------------------------------------------------------------------------------------------
# Images


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


def _columns(data: ReportData, short: bool = False) -> list[tuple[str, str, list[Path]]]:
    """(key, column title, files) for input | methods | ground truth."""
    cols = [("input", "input", data.test.inputs)]
    cols += [(r.slug, r.short if short else r.title, r.outputs) for r in data.shown]
    if data.test.ground_truth:
        cols.append(("ground_truth", "ground truth", list(data.test.ground_truth)))
    return cols


def grid_notes(data: ReportData) -> list[str]:
    """The notes a column title carries in the table ("Gatys [random-weight VGG ...]"), which the
    grid's short titles drop: one footnote per such column, its title marked ``*``."""
    return [f"* {run.short}: {_bracket_note(run.title)}" for run in data.shown if _bracket_note(run.title)]


def _bracket_note(title: str) -> str:
    """``random-weight VGG`` of ``WCT [random-weight VGG]``; "" for a title without one."""
    found = re.search(r"\[(.+)\]", title)
    return found.group(1) if found else ""


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def write_grid(path: Path, data: ReportData, rows: int = 8, cell: int = 128) -> Path:
    """A PNG: a header row naming the columns, then ``rows`` test images, ``cell`` px per image,
    then the columns' notes (:func:`grid_notes`), so the picture says what the table says."""
    cols = _columns(data, short=True)
    noted = {run.slug for run in data.shown if _bracket_note(run.title)}
    n = min(rows, len(data.test.inputs))
    pad, header, line_h = 4, 22, 13
    width = len(cols) * (cell + pad) + pad
    footer = [ln for note in grid_notes(data) for ln in _wrap(note, max(20, (width - 2 * pad) // 6))]
    grid = Image.new("RGB", (width, header + n * (cell + pad) + pad + (len(footer) * line_h + pad if footer else 0)),
                     "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for c, (key, title, _) in enumerate(cols):
        title = title + ("*" if key in noted else "")
        text = title if len(title) <= cell // 6 else title[: cell // 6 - 2] + "…" + ("*" if key in noted else "")
        draw.text((pad + c * (cell + pad), 5), text, fill="black", font=font)
    top = header + n * (cell + pad) + pad
    for i, line in enumerate(footer):
        draw.text((pad, top + i * line_h), line, fill="black", font=font)
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


# The page fits the window, 1280 px and up, without sideways scrolling (docs/check_report_layout.py checks it
# in a headless browser): both tables take the page's width with a fixed layout, so the image columns
# share it (each image at most 192 px, smaller when there are many columns) and long cells wrap; a curve
# picture is shown at its own size (at most 1200 px wide, see evaluation/curves.py) or the page's width.
PAGE_CSS = (
    "body{font-family:sans-serif;margin:1.5em;max-width:2400px}table{border-collapse:collapse}"
    "td,th{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top;overflow-wrap:break-word}"
    "table.m{width:100%}table.g{width:100%;table-layout:fixed}table.g th.n,table.g td.n{width:5em}"
    "table.g td figure{display:block;margin:0}"
    "table.g img{width:100%;max-width:192px;height:auto;image-rendering:pixelated;display:block}"
    "figure{margin:0}figcaption{font-size:12px;color:#555}"
    "figure{display:inline-block;margin-right:8px}.n{color:#777;font-size:12px}li{margin:3px 0}"
    "figure.cf{display:block;margin:0 0 1em 0}img.c{max-width:100%;height:auto}")


def write_html(path: Path, data: ReportData, max_rows: int = 100, thumb: int = 256) -> Path:
    esc = html.escape
    cols = _columns(data)
    table = ["<table class='m'><tr>" + "".join(f"<th>{esc(c)}</th>" for c in COLUMNS) + "</tr>"]
    table += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in table_cells(row, data)) + "</tr>" for row in data.rows]
    table.append("</table>")
    style_imgs = "".join(
        f"<figure><img src='{_data_uri(_thumb(load_rgb(p), thumb))}' alt='style'><figcaption>{esc(p.name)}"
        f"</figcaption></figure>" for p in data.facts.styles)
    # The plots' own PNG bytes: line art stays sharp (JPEG, as for large photos, would blur it) and small.
    curves = "".join(f"<figure class='cf'><img class='c' src='data:image/png;base64,"
                     f"{base64.b64encode(Path(p).read_bytes()).decode('ascii')}' alt='curves'>"
                     f"<figcaption>{esc(t)}</figcaption></figure>" for t, p in data.curves)
    per_image = {r.method: r.per_image for r in data.rows}
    body = ["<table class='g'><tr><th class='n'>#</th>" + "".join(f"<th>{esc(t)}</th>" for _, t, _ in cols) + "</tr>"]
    n = min(max_rows, len(data.test.inputs))
    for i in range(n):
        cells = []
        for key, title, files in cols:
            cap = ""
            stats = per_image.get(key, {}).get(data.test.names[i])
            if stats:
                ps = "inf" if math.isinf(stats["psnr"]) else f"{stats['psnr']:.2f}"
                edge = f" / edge {stats['edge_ssim']:.3f}" if "edge_ssim" in stats else ""
                cap = f"<figcaption>PSNR {ps} / SSIM {stats['ssim']:.3f}{edge}</figcaption>"
            uri = _data_uri(_thumb(load_rgb(files[i]), thumb))
            cells.append(f"<td><figure><img src='{uri}' alt='{esc(title)}'>{cap}</figure></td>")
        body.append(f"<tr><td class='n'>{i + 1}<br>{esc(data.test.names[i])}</td>{''.join(cells)}</tr>")
    body.append("</table>")
    shown = (f"<p>Showing {n} of {len(data.test.inputs)} test images (all are in the metrics).</p>"
             if n < len(data.test.inputs) else "")
    title = esc(data.config.title)
    page = (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title><style>"
        + PAGE_CSS + "</style></head><body>\n"
        f"<h1>{title}</h1>\n<p>Generated {esc(time.strftime('%Y-%m-%d %H:%M:%S'))} by report.py from saved "
        "outputs.</p>\n"
        + "\n".join(table) + "\n<h2>Notes</h2><ul>" + "".join(f"<li>{esc(x)}</li>" for x in notes(data)) + "</ul>\n"
        + (f"<h2>Style image{'s' if len(data.facts.styles) > 1 else ''}</h2>\n{style_imgs}\n" if style_imgs else "")
        + (f"<h2>Training curves</h2>\n{curves}\n" if curves else "")
        + "<h2>Images</h2>\n" + shown + "\n".join(body) + "\n</body></html>\n")
    write_text_atomic(path, page)
    return path


def write_report(data: ReportData, out: Path) -> dict[str, Any]:
    """Every file of the report into ``out``; returns the content of ``metrics.json``."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "metrics.md", f"# {data.config.title}\n\n" + markdown_table(data) + "\n"
                      + "".join(f"- {x}\n" for x in notes(data)))
    write_html(out / "index.html", data, data.config.html_rows)
    write_grid(out / "grid.png", data, data.config.grid_rows)
    result = metrics_json(data)
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=2))  # last: it marks a complete report
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The markdown table of a ``metrics.json`` content, for printing."""
    cols = result["columns"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(row[c]) for c in cols) + " |" for row in result["table"]]
    return lines
