"""``test.py --gallery``: ``OUTPUT/index.html``, input | output per row.

The page needs nothing outside the output folder, so moving or copying the folder keeps it
whole: each input is shown from a small copy under ``OUTPUT/_gallery_inputs/`` (at most
:data:`THUMB` px on the longer side, 8-bit PNG for small images, JPEG for larger ones; also
what makes TIFF, PPM or 16-bit inputs visible), each output from its file beside the page.
Images are shown 384 px wide (enlarged without smoothing when smaller, so a 96 px demo image is
readable). The name column shows the input's name (relative to the input folder); the output's
name is under the output. File names that are not valid UTF-8 are shown with replacement
characters and linked by their bytes.

**Stale rows.** An output that was already there (skipped without ``--overwrite``) may come from
another checkpoint. The page records, for each row, a digest of what made its output (the
method's fingerprint: settings and checkpoint) and the output's SHA-256, in a JSON block
(``<script id="gallery-record">``); the next gallery reads it back. A skipped output counts as
this checkpoint's only when the record says so and its bytes are unchanged; otherwise its row is
marked stale (naming what made it, when known) and counted in the page's header.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from data.image_io import BadImageError, load_rgb, save_image
from utils.errors import UserError
from utils.files import write_text_atomic

THUMB = 384  # longer side of the inputs' copies (the page shows images 384 px wide)
RECORD_ID = "gallery-record"
MAX_RECORD_PAGE = 64 << 20  # an earlier index.html larger than this is not read back
_RECORD = re.compile(r'<script type="application/json" id="' + RECORD_ID + r'">(.*?)</script>', re.S)


@dataclass(frozen=True)
class GalleryMaker:
    """What made a gallery's new outputs: a digest of the method's fingerprint and a label."""

    digest: str
    label: str

    @classmethod
    def of(cls, fingerprint: dict[str, Any], label: str) -> GalleryMaker:
        blob = json.dumps(fingerprint, sort_keys=True, default=str).encode()
        return cls(hashlib.sha256(blob).hexdigest()[:20], label)


@dataclass
class GalleryResult:
    path: Path  # OUTPUT/index.html
    stale_rows: int  # rows whose output this maker did not make (or of unknown origin)


def _text(path: Path | str) -> str:
    """A path as displayable text, whatever bytes its name holds."""
    return os.fsencode(str(path)).decode("utf-8", errors="replace")


def _href(target: Path, base: Path) -> str:
    return urllib.parse.quote(os.fsencode(Path(os.path.relpath(target.resolve(), base.resolve())).as_posix()))


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def read_record(index: Path) -> dict[str, Any]:
    """The record an earlier gallery embedded in ``index`` (``{"makers": {...}, "rows": {...}}``);
    empty when there is none or it cannot be read."""
    empty: dict[str, Any] = {"makers": {}, "rows": {}}
    try:
        if not index.is_file() or index.stat().st_size > MAX_RECORD_PAGE:
            return empty
        match = _RECORD.search(index.read_text(encoding="utf-8", errors="replace"))
        record = json.loads(match.group(1)) if match else None
    except (OSError, ValueError):
        return empty
    if not (isinstance(record, dict) and isinstance(record.get("makers"), dict)
            and isinstance(record.get("rows"), dict)):
        return empty
    return record


def _thumbnail(src: Path, copies: Path, rel: Path) -> Path | None:
    """A small browser-readable copy of the input ``src`` under ``copies`` (None: unreadable)."""
    try:
        img = load_rgb(src)
    except BadImageError:
        return None
    small = max(img.size) <= 128
    if max(img.size) > THUMB:
        img.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    dst = copies / rel.with_name(rel.name + (".png" if small else ".jpg"))
    save_image(img, dst, quality=90)
    return dst


def write_gallery(output: str | Path, pairs: list[tuple[Path, Path]], failed: list[tuple[str, str]] | None = None,
                  title: str = "Translations", subtitle: str = "", input_root: Path | None = None,
                  written: set[Path] | None = None, maker: GalleryMaker | None = None) -> GalleryResult:
    """Write ``output/index.html`` for (input, output) pairs; raises :class:`UserError` if it cannot.

    ``input_root``: the input folder (the name column is relative to it); ``written``: the outputs
    this run wrote (the rest were there before); ``maker``: what made them. With ``maker``, rows
    whose output this maker did not make are marked stale (see the module docstring).
    """
    out = Path(output)
    copies = out / "_gallery_inputs"
    index = out / "index.html"
    before = read_record(index)
    makers: dict[str, str] = {}
    record_rows: dict[str, dict[str, str]] = {}
    rows, stale = [], 0
    try:
        for n, (src, dst) in enumerate(pairs, 1):
            rel = dst.relative_to(out)
            key = urllib.parse.quote(os.fsencode(rel.as_posix()))
            digest = _sha256(dst)
            made_by = None
            if maker is not None:
                prev = before["rows"].get(key)
                if written is None or dst in written:
                    made_by = maker.digest
                elif isinstance(prev, dict) and digest is not None and prev.get("sha256") == digest \
                        and isinstance(prev.get("maker"), str):
                    made_by = prev["maker"]
                if made_by is not None and digest is not None:
                    record_rows[key] = {"maker": made_by, "sha256": digest}
                    label = maker.label if made_by == maker.digest else before["makers"].get(made_by, "")
                    makers[made_by] = str(label)
            is_stale = maker is not None and made_by != maker.digest
            stale += is_stale
            thumb = _thumbnail(src, copies, rel)
            name = _text(src.relative_to(input_root)) if input_root is not None and src.is_relative_to(input_root) \
                else _text(src.name)
            note = ""
            if is_stale:
                who = before["makers"].get(made_by) if made_by else None
                note = ("<div class='w'>stale: made by " + html.escape(str(who)) + "</div>" if who else
                        "<div class='w'>stale: an earlier output of unknown origin (no gallery recorded what made "
                        "it); it may come from another checkpoint</div>")
            d = _href(dst, out)
            shown = (f'<img loading="lazy" src="{_href(thumb, out)}" alt="input">' if thumb is not None
                     else "<span class='w'>input unreadable now</span>")
            rows.append(
                f'<tr{" class=stale" if is_stale else ""}><td class="n">{n}</td>'
                f'<td title="{html.escape(_text(src))}">{html.escape(name)}{note}</td>'
                f"<td>{shown}</td>"
                f'<td><a href="{d}"><img loading="lazy" src="{d}" alt="output"></a>'
                f'<div class="o">{html.escape(_text(rel))}</div></td></tr>')
        fails = "".join(f"<li>{html.escape(_text(p))}: {html.escape(r)}</li>" for p, r in failed or [])
        record = json.dumps({"version": 1, "makers": makers, "rows": record_rows}, sort_keys=True)
        warning = (f"<p class='w'>{stale} of {len(pairs)} rows show earlier outputs not known to come from this "
                   f"checkpoint (marked stale): rerun with --overwrite to remake them.</p>\n" if stale else "")
        page = (
            '<!doctype html>\n<html><head><meta charset="utf-8"><title>' + html.escape(title) + "</title>\n<style>"
            "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
            "td,th{border-bottom:1px solid #ddd;padding:4px 8px;vertical-align:middle;text-align:left}"
            "img{width:384px;max-width:40vw;image-rendering:pixelated;display:block}.n{color:#888}"
            ".s{color:#444;font-size:14px}.o{color:#777;font-size:12px}.w{color:#8a4b00;font-size:13px}"
            "tr.stale{background:#fff3cd}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n" + (f"<p class='s'>{html.escape(subtitle)}</p>\n" if subtitle else "")
            + f"<p>{len(pairs)} images</p>\n" + warning
            + "<table><tr><th>#</th><th>input name</th><th>input</th><th>output</th></tr>\n" + "\n".join(rows)
            + "\n</table>\n"
            + (f"<h2>Failed ({len(failed or [])})</h2><ul>{fails}</ul>\n" if fails else "")
            + f'<script type="application/json" id="{RECORD_ID}">' + record.replace("</", "<\\/") + "</script>\n"
            + "</body></html>\n")
        write_text_atomic(index, page)  # no half page, no temp file left behind
    except OSError as e:
        raise UserError(f"cannot write the gallery in {out}: {e.strerror or e} (read-only or full?); the translated "
                        f"images themselves were written") from e
    return GalleryResult(index, stale)
