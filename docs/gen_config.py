"""Regenerates docs/config.md from the config schemas in options/: every key, its default, its
type, and the comment written beside it (or above it) in the source.

    python docs/gen_config.py

tests/test_docs.py checks that every key of every schema is in docs/config.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from methods import training_schema  # noqa: E402
from options.gatys import GatysConfig  # noqa: E402
from options.methods import MethodOptions  # noqa: E402
from options.report import ReportConfig  # noqa: E402

SECTIONS = [  # (title, schema, introduction)
    ("CycleGAN training (`method: cyclegan`, the default)", lambda: training_schema("cyclegan"),
     "`experiments/quickstart.yaml`, `monet.yaml`, `monet_plateau.yaml`. Defaults are the paper's "
     "(Zhu et al. 2017)."),
    ("Johnson training (`method: johnson`)", lambda: training_schema("johnson"),
     "`experiments/johnson_demo.yaml`, `johnson_monet.yaml`, `johnson_multi.yaml`. Defaults are the "
     "paper's (Johnson et al. 2016)."),
    ("CUT / FastCUT training (`method: cut`)", lambda: training_schema("cut"),
     "`experiments/cut_demo.yaml`, `cut_monet.yaml`, `fastcut_monet.yaml`. Defaults are the authors' "
     "(Park et al. 2020); keys shown as None are filled from `mode` (cut / fastcut) unless set."),
    ("WCT / AdaIN decoder training (`method: wct`)", lambda: training_schema("wct"),
     "`experiments/wct_demo.yaml`, `wct_decoders.yaml`. Defaults follow Li et al. 2017."),
    ("Gatys (`stylize.py --config`, a report entry's `config:`)", lambda: GatysConfig,
     "`experiments/gatys.yaml`, `gatys_quick.yaml`; the peers' defaults in `gatys_neural_style_pt.yaml` and "
     "`gatys_tutorial.yaml`. Style and content layers are summed, as in neural-style-pt and the PyTorch "
     "tutorial; the weights depend on the VGG weights' input scaling: see [methods.md](methods.md)."),
    ("The report (`report.py --config`)", lambda: ReportConfig,
     "`experiments/report_demo.yaml`, `report_monet.yaml`. `methods` is a list of method entries "
     "(next table), one row and one column each."),
    ("A method entry (`methods:` of a report; what test.py's flags set)", lambda: MethodOptions,
     "The method's own settings go in `settings:` as `key=value` strings (see [methods.md](methods.md))."),
]

INTRO = (
    "# Config keys\n\nEvery command with a config reads it the same way ([cli.md](cli.md)): a YAML file "
    "(`--config`), then `key.sub=value` overrides; an unknown key, a wrong type or a value out of range is "
    "an error naming the key. Lists are YAML lists. A training config's `method:` key picks its schema. "
    "This page is generated from the schemas in `options/` by `python docs/gen_config.py`.\n"
)


def comments(cls: type) -> dict[str, str]:
    """Field name -> the comment beside it (or the comment lines right above it)."""
    out: dict[str, str] = {}
    for c in inspect.getmro(cls):
        if not dataclasses.is_dataclass(c):
            continue
        lines = inspect.getsource(c).splitlines()
        block: list[str] = []
        for k, line in enumerate(lines):
            if re.match(r"\s+#", line):
                block.append(line.strip()[1:].strip())
                continue
            field = re.match(r"\s+(\w+): ", line)
            if field and field.group(1) not in out:
                j = k  # a key written over several lines carries its comment on the last one
                while "#" not in lines[j] and lines[j].rstrip().endswith((",", "[", "(")) and j + 1 < len(lines):
                    j += 1
                tail = re.search(r"#\s*(.*)$", lines[j])
                text = tail.group(1).strip() if tail else " ".join(block)
                if text:
                    out[field.group(1)] = text.replace("|", "\\|")
            block = []
    return out


def _value(v: object) -> str:
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    if isinstance(v, str):
        return f"`{v}`" if v else '`""`'
    if isinstance(v, list):
        return "`[" + ", ".join(str(x) for x in v if not dataclasses.is_dataclass(x)) + "]`"
    return f"`{v}`"


def _kind(tp: object) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " \\| ".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) is list:
        item = typing.get_args(tp)[0]
        return "list of method entries" if dataclasses.is_dataclass(item) else f"list of {item.__name__}"
    return getattr(tp, "__name__", str(tp))


def rows(cls: type, prefix: str = "") -> list[str]:
    hints, defaults, notes = typing.get_type_hints(cls), cls(), comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += rows(tp, prefix + f.name + ".")
        else:
            out.append(f"| `{prefix}{f.name}` | {_value(getattr(defaults, f.name))} | {_kind(tp)} | "
                       f"{notes.get(f.name, '')} |")
    return out


def render() -> str:
    parts = [INTRO]
    for title, get, intro in SECTIONS:
        parts.append("\n".join([f"## {title}", "", intro, "", "| key | default | type | meaning |",
                                "|---|---|---|---|", *rows(get())]) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    (ROOT / "docs" / "config.md").write_text(render(), encoding="utf-8")
