r"""Check the comparison report's page in a real headless browser (Chromium) at given window widths.

examples:
  python docs/check_report_layout.py report/index.html                 # 1280 and 1920 px
  python docs/check_report_layout.py report/index.html --widths 1280 1400 1920 --screenshots /tmp/shots

For each width it loads a copy of the page with a small measuring script added, and checks:
  * no sideways scrolling (the page is no wider than the window);
  * the last image column (ground truth) ends inside the window;
  * the metrics table ends inside the window;
  * every training-curve picture is shown at >= 90 % of its own width (so its labels stay legible).
It prints one JSON line per width and exits 0 when every check passes, 1 when one fails, 2 when no
browser is found (install Debian's `chromium` package, or pass --browser PATH).

tests/test_report_layout.py runs this on a rendered report with the demo's 10 image columns; it is
skipped where no Chromium is installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
MIN_CURVE_SCALE = 0.9

MEASURE = """
<script>
window.addEventListener('load', function () {
  var doc = document.documentElement, vw = doc.clientWidth;
  function right(el) { return el ? el.getBoundingClientRect().right : null; }
  var heads = document.querySelectorAll('table.g tr:first-child th');
  var curves = Array.prototype.map.call(document.querySelectorAll('img.c'), function (img) {
    return {natural: img.naturalWidth, shown: img.getBoundingClientRect().width};
  });
  document.body.setAttribute('data-layout', JSON.stringify({
    viewport: vw, page: doc.scrollWidth,
    last_column: right(heads.length ? heads[heads.length - 1] : null),
    last_column_title: heads.length ? heads[heads.length - 1].textContent : null,
    metrics_table: right(document.querySelector('table.m')), curves: curves}));
});
</script>
"""


def find_browser(explicit: str | None = None) -> str | None:
    """The path of a Chromium-like browser, or None."""
    if explicit:
        return explicit if Path(explicit).exists() or shutil.which(explicit) else None
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def measure(page: Path, width: int, browser: str, height: int = 1000, screenshot: Path | None = None,
            timeout: float = 60.0) -> dict:
    """Load ``page`` at ``width`` x ``height`` px; the layout numbers of :data:`MEASURE`."""
    html = page.read_text(encoding="utf-8")
    html = html.replace("</body>", MEASURE + "</body>") if "</body>" in html else html + MEASURE
    with tempfile.TemporaryDirectory(prefix="report-layout-") as tmp:
        copy = Path(tmp) / "page.html"
        copy.write_text(html, encoding="utf-8")
        base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--window-size={width},{height}", f"--user-data-dir={tmp}/profile"]
        proc = subprocess.run([*base, "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()],
                              capture_output=True, text=True, timeout=timeout)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([*base, f"--screenshot={screenshot}", copy.as_uri()], capture_output=True,
                           timeout=timeout)
    import html as html_lib
    import re

    found = re.search(r'data-layout="([^"]*)"', proc.stdout)
    if not found:
        raise RuntimeError(f"{browser} did not render {page} (exit {proc.returncode}): {proc.stderr[-400:]}")
    return json.loads(html_lib.unescape(found.group(1)))


def problems(m: dict) -> list[str]:
    """What is wrong with one measurement (empty: the layout is fine)."""
    vw, out = m["viewport"], []
    if m["page"] > vw:
        out.append(f"sideways scrolling: the page is {m['page']} px wide in a {vw} px window")
    if m["last_column"] is not None and m["last_column"] > vw + 0.5:
        out.append(f"the last image column ({m['last_column_title']}) ends at {m['last_column']:.0f} px, outside "
                   f"the {vw} px window")
    if m["metrics_table"] is not None and m["metrics_table"] > vw + 0.5:
        out.append(f"the metrics table ends at {m['metrics_table']:.0f} px, outside the {vw} px window")
    for i, c in enumerate(m["curves"]):
        if c["natural"] and c["shown"] < MIN_CURVE_SCALE * c["natural"]:
            out.append(f"curve picture {i + 1} is shown at {c['shown']:.0f} px of its {c['natural']} px: labels shrink")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python docs/check_report_layout.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("page", help="the report's index.html")
    p.add_argument("--widths", nargs="+", type=int, default=[1280, 1920], help="window widths, px")
    p.add_argument("--browser", help="Chromium or Chrome executable (default: the first found on PATH)")
    p.add_argument("--screenshots", metavar="DIR", help="also save a screenshot per width into DIR")
    args = p.parse_args(argv)
    browser = find_browser(args.browser)
    if browser is None:
        print("error: no Chromium found (apt-get install chromium, or --browser PATH)", file=sys.stderr)
        return 2
    failed = False
    for width in args.widths:
        shot = Path(args.screenshots) / f"report_{width}.png" if args.screenshots else None
        m = measure(Path(args.page), width, browser, screenshot=shot)
        bad = problems(m)
        failed |= bool(bad)
        print(json.dumps({"width": width, **m, "problems": bad}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
