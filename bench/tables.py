"""The benchmarks' printed tables: Markdown, so they paste into docs/performance.md as they are."""

from __future__ import annotations

import sys
from typing import Any

Column = tuple[str, str, str]  # (row key, header, format spec)


def fmt(value: Any, spec: str = "") -> str:
    """A cell: ``n/a`` for None, floats with ``spec`` (e.g. ``.2f``, ``.1%``), anything else as str."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and spec:
        return format(value, spec)
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[Column]) -> str:
    """``rows`` as a Markdown table with ``columns``; a column no row has a value for is left out."""
    columns = [c for c in columns if any(r.get(c[0]) is not None for r in rows)]
    cells = [[header for _, header, _ in columns]]
    cells += [[fmt(r.get(key), spec) for key, _, spec in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def print_table(title: str, rows: list[dict[str, Any]], columns: list[Column]) -> None:
    print(f"\n## {title}\n")
    print(markdown_table(rows, columns) if rows else "(no rows)")
    sys.stdout.flush()
