"""``test.py --gallery``: ``OUTPUT/index.html``, input | output per row, links relative.

Images are shown 384 px wide (enlarged without smoothing when smaller, so a 96 px demo image is
readable), with the checkpoint, its step and the settings in the title. Inputs a browser cannot
show (TIFF, PPM, 16-bit ...) get an 8-bit PNG copy under ``OUTPUT/_gallery_inputs/``. File
names that are not valid UTF-8 are shown with replacement characters and linked by their bytes.
"""

from __future__ import annotations

import html
import os
import urllib.parse
from pathlib import Path

from data.image_io import BadImageError, load_rgb, save_image
from utils.errors import UserError
from utils.files import write_text_atomic

_BROWSER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


def _text(path: Path | str) -> str:
    """A path as displayable text, whatever bytes its name holds."""
    return os.fsencode(str(path)).decode("utf-8", errors="replace")


def _href(target: Path, base: Path) -> str:
    return urllib.parse.quote(os.fsencode(Path(os.path.relpath(target.resolve(), base.resolve())).as_posix()))


def write_gallery(output: str | Path, pairs: list[tuple[Path, Path]], failed: list[tuple[str, str]] | None = None,
                  title: str = "Translations", subtitle: str = "") -> Path:
    """Write ``output/index.html`` for (input, output) pairs; raises :class:`UserError` if it cannot."""
    out = Path(output)
    copies = out / "_gallery_inputs"
    rows = []
    try:
        for n, (src, dst) in enumerate(pairs, 1):
            shown = src
            if src.suffix.lower() not in _BROWSER_SUFFIXES:
                shown = copies / dst.relative_to(out).with_suffix(".png")
                if not shown.exists():
                    try:
                        save_image(load_rgb(src), shown)
                    except BadImageError:
                        shown = src
            s, d = _href(shown, out), _href(dst, out)
            rows.append(
                f'<tr><td class="n">{n}</td><td>{html.escape(_text(dst.relative_to(out)))}</td>'
                f'<td><a href="{s}"><img loading="lazy" src="{s}" alt="input"></a></td>'
                f'<td><a href="{d}"><img loading="lazy" src="{d}" alt="output"></a></td></tr>')
        fails = "".join(f"<li>{html.escape(_text(p))}: {html.escape(r)}</li>" for p, r in failed or [])
        page = (
            '<!doctype html>\n<html><head><meta charset="utf-8"><title>' + html.escape(title) + "</title>\n<style>"
            "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
            "td,th{border-bottom:1px solid #ddd;padding:4px 8px;vertical-align:middle;text-align:left}"
            "img{width:384px;max-width:40vw;image-rendering:pixelated;display:block}.n{color:#888}"
            ".s{color:#444;font-size:14px}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n" + (f"<p class='s'>{html.escape(subtitle)}</p>\n" if subtitle else "")
            + f"<p>{len(pairs)} images</p>\n"
            "<table><tr><th>#</th><th>name</th><th>input</th><th>output</th></tr>\n" + "\n".join(rows) + "\n</table>\n"
            + (f"<h2>Failed ({len(failed or [])})</h2><ul>{fails}</ul>\n" if fails else "") + "</body></html>\n")
        index = write_text_atomic(out / "index.html", page)  # no half page, no temp file left behind
    except OSError as e:
        raise UserError(f"cannot write the gallery in {out}: {e.strerror or e} (read-only or full?); the translated "
                        f"images themselves were written") from e
    return index
