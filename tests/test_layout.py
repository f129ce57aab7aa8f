"""The layout rules of docs/layout.md that code can check: utils/ is a leaf, options/ imports no
models/, and a method's trainer imports no other method's modules."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The modules that belong to one method (shared building blocks such as models/gan_networks.py are not listed).
OWN = {
    "cyclegan": {"models.cyclegan", "training.cyclegan", "methods.cyclegan", "options.cyclegan"},
    "cut": {"models.cut", "training.cut", "methods.cut", "options.cut"},
    "johnson": {"models.johnson", "training.johnson", "methods.johnson", "options.johnson"},
    "wct": {"models.wct", "training.wct", "methods.wct", "options.wct"},
    "gatys": {"models.gatys", "methods.gatys", "options.gatys"},
    "onnx": {"methods.onnx", "options.onnx"},
}


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` / ``from ... import`` anywhere in the file names (functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("package, forbidden", [
    ("utils", ("models", "methods", "training", "options")),
    ("options", ("models", "training")),
])
def test_package_imports_stay_inside_their_layer(package, forbidden) -> None:
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in sorted((ROOT / package).glob("*.py")) for m in imported_modules(p)
           if m.split(".")[0] in forbidden]
    assert not bad, bad


@pytest.mark.slow
def test_a_trainer_imports_no_module_of_another_method() -> None:
    code = ("import json, sys; import methods; "
            "found = {}\n"
            "for name in methods.TRAINABLE:\n"
            "    before = set(sys.modules)\n"
            "    methods.trainer_class(name)\n"
            "    found[name] = sorted(set(sys.modules))\n"
            "    for m in set(sys.modules) - before:\n"
            "        if m.split('.')[0] in ('models', 'methods', 'training', 'options', 'data', 'evaluation'):\n"
            "            del sys.modules[m]\n"
            "print(json.dumps(found))")
    found = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                      check=True).stdout)
    assert set(found) == {"cyclegan", "cut", "johnson", "wct"}
    for method, modules in found.items():
        others = set().union(*(own for m, own in OWN.items() if m != method))
        assert OWN[method] & set(modules), method  # its own trainer was imported
        assert not others & set(modules), (method, sorted(others & set(modules)))


def test_every_table_entry_names_classes_that_exist_and_carry_their_rules() -> None:
    import methods
    from methods.base import Method

    for name, entry in methods.METHODS.items():
        cls = methods.inference_class(name)
        assert issubclass(cls, Method) and cls.build.__func__ is not Method.build.__func__, name  # load_method calls it
        assert cls.key == name, name
        assert dataclasses.is_dataclass(methods.settings_schema(name)), name
        if entry.training:
            schema = methods.training_schema(name)
            assert callable(schema.validate) and isinstance(schema.RESUME_FROZEN, tuple), name
            assert methods.trainer_class(name).__name__.endswith("Trainer"), name


ENTRY_POINTS = ("train.py", "test.py", "report.py", "stylize.py", "export.py")
# Imports a library module may defer, and why: scikit-image and SciPy only when demo images are made
# (every training run and `python -m data.demo --help` import data/demo.py); torchmetrics only when
# FID during training is on.
DEFERRED = {"data/demo.py": {"skimage", "scipy"}, "training/trainer.py": {"evaluation.during_training"}}


def _local_imports(path: Path) -> dict[str, set[str]]:
    """innermost function name -> the modules imported inside it."""
    out: dict[str, set[str]] = {}

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if function is not None and isinstance(child, ast.Import):
                out.setdefault(function, set()).update(a.name for a in child.names)
            elif function is not None and isinstance(child, ast.ImportFrom):
                out.setdefault(function, set()).add(child.module or "")
            visit(child, function)

    visit(ast.parse(path.read_text(encoding="utf-8")), None)
    return out


def test_imports_are_deferred_only_in_one_block_per_entry_point() -> None:
    bad = []
    for path in sorted(ROOT.glob("*.py")) + sorted(ROOT.glob("*/*.py")):
        rel = str(path.relative_to(ROOT))
        if rel.startswith(("tests/", "bench/", "docs/", ".")) or rel == "conftest.py":
            continue
        local = _local_imports(path)
        if rel in ENTRY_POINTS:
            inner = {name for name, mods in local.items() if mods}
            if len(inner) > 1:
                bad.append(f"{rel}: imports in {sorted(inner)}")
        else:
            extra = set().union(*local.values()) - DEFERRED.get(rel, set()) if local else set()
            if extra:
                bad.append(f"{rel}: {sorted(extra)}")
    assert not bad, bad
