"""One convention for every command: --help fast (torch not imported), defaults shown, examples
verbatim; --config / --output / --device / --overwrite where they apply; exit 0 / 1 / 2."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from helpers import ROOT
from PIL import Image

COMMANDS = {  # command line -> (a verbatim example line of its help, flags it must have)
    "train.py": ("  python train.py --config experiments/quickstart.yaml", ("--config", "--output", "--device",
                                                                             "--overwrite", "--dry-run")),
    "test.py": ("  python test.py --checkpoint candy --input photos/ --output candy/", ("--config", "--output",
                                                                                       "--device", "--overwrite")),
    "stylize.py": ("  python stylize.py --config experiments/gatys.yaml --dry-run optim.steps=500",
                   ("--config", "--output", "--device", "--overwrite", "--dry-run")),
    "report.py": ("  python report.py --config experiments/report_demo.yaml", ("--config", "--output", "--device",
                                                                                 "--overwrite", "--dry-run")),
    "export.py": ("  python export.py --checkpoint runs/monet --direction BtoA --format onnx --output monet.onnx",
                  ("--config", "--output", "--device", "--overwrite", "--dry-run")),
    "-m data.download": ("  python -m data.download style_monet", ("--output", "--overwrite")),
    "bench/bench.py": ("  python bench/bench.py", ("--output", "--device")),
    "-m data.demo": ("  python -m data.demo --output datasets/demo", ("--output",)),
}

PROBE = """
import runpy, sys
sys.argv = [{script!r}, "--help"]
try:
    {run}
except SystemExit as e:
    code = e.code
print("TORCH_IMPORTED" if "torch" in sys.modules else "TORCH_NOT_IMPORTED", code)
print("HEAVY", sorted(m for m in ("torch", "scipy", "skimage", "matplotlib", "tensorboard") if m in sys.modules))
"""


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_is_fast_shows_defaults_and_examples_verbatim(command: str) -> None:
    if command.startswith("-m "):
        module = command[3:]
        code = PROBE.format(script=module, run=f"runpy.run_module({module!r}, run_name='__main__')")
    else:
        code = PROBE.format(script=command, run=f"runpy.run_path({str(ROOT / command)!r}, run_name='__main__')")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    took = time.perf_counter() - t0
    out = proc.stdout
    example, flags = COMMANDS[command]
    assert "TORCH_NOT_IMPORTED 0" in out, out + proc.stderr
    assert "HEAVY []" in out, out  # data.demo imported scipy and scikit-image before parsing (3 s under load)
    # Help is for users: no Sphinx / reST markup from a module docstring.
    assert not re.search(r":(func|class|mod|meth|attr):`|``", out), out
    assert any(line.startswith(example) for line in out.splitlines()), f"example not verbatim in:\n{out}"
    assert "(default:" in out
    for flag in flags:
        assert flag in out, flag
    assert took < 3.0, f"{command} --help took {took:.2f} s"  # < 1 s on an idle machine; CI may be loaded


def test_every_command_turns_a_user_error_into_one_line_and_exit_2(tmp_path, capsys) -> None:
    import report
    import stylize
    import test as test_cli
    import train

    photos, bad_vgg = tmp_path / "photos", tmp_path / "vgg.pth"
    cases = [
        (train.main, ["--config", str(tmp_path / "nope.yaml")], "nope.yaml not found"),
        (test_cli.main, ["--checkpoint", str(tmp_path / "nope.pt"), "--input", str(photos), "--output",
                         str(tmp_path / "o")], "nope.pt"),
        (stylize.main, ["--input", str(tmp_path), "--style", str(tmp_path / "s.png"), "--output",
                        str(tmp_path / "o"), "vgg.weights=random", "optim.stepz=3"], "optim.stepz"),
        (report.main, ["--config", str(ROOT / "experiments" / "report_demo.yaml"), "limit=-1", "--output",
                       str(tmp_path / "r")], "limit"),
        (train.main, [], "give --config FILE"),  # a bare `python train.py` does not start the defaults' 200 epochs
        (train.main, ["--bogus"], "unrecognized arguments: --bogus (see"),  # argparse's own errors: one line too
        (stylize.main, ["--input", str(photos), "--style", str(photos / "p.png"), "--output", str(tmp_path / "o"),
                        f"vgg.weights={bad_vgg}"], "cannot read VGG-19 weights"),  # no usable VGG: no traceback
    ]
    photos.mkdir()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(photos / "p.png")
    bad_vgg.write_bytes(b"not a checkpoint")
    for main, argv, text in cases:
        try:
            status = main(argv)
        except SystemExit as e:  # argparse exits itself
            status = e.code
        assert status == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and text in err and err.count("\n") == 1, err
