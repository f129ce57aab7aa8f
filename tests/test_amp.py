"""``amp: auto`` (utils/device.py): bf16 only where the device computes it natively, fp32 elsewhere;
the choice is printed at start and stored in the run; an explicit bf16 where it is emulated warns
once with the reason (issue 22 item 1). The detection is monkeypatched both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT
from image_corpus import load_script, noise
from PIL import Image

from methods.base import load_method
from models.cyclegan import build_generator
from options.common import load_training_config
from options.config import load
from options.methods import MethodOptions
from options.report import ReportConfig
from utils import device as dev
from utils.device import resolve_amp

CPU = torch.device("cpu")


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU with AVX-512 bf16, PyTorch's kernels at AVX-512, no ISA cap."""
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)


@pytest.fixture
def avx2_cpu(monkeypatch):
    """A CPU without native bf16 (AVX2 only)."""
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"sse4_2", "avx", "avx2", "fma"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)


def test_auto_is_bf16_on_a_cpu_with_native_bf16(bf16_cpu):
    choice = resolve_amp("auto", CPU)
    assert (choice.mode, choice.warning) == ("bf16", "")
    assert choice.describe() == "amp bf16 (auto: the CPU has avx512_bf16)"


def test_auto_is_fp32_on_a_cpu_without_it_and_explicit_bf16_warns_with_the_reason(avx2_cpu):
    assert resolve_amp("auto", CPU).mode == "off"
    assert "no avx512_bf16 or amx_bf16" in resolve_amp("auto", CPU).describe()
    explicit = resolve_amp("bf16", CPU)
    assert explicit.mode == "bf16"  # an explicit value is kept: it still runs
    assert explicit.warning.startswith("WARNING: amp bf16 on cpu: the CPU has no avx512_bf16 or amx_bf16 flag")
    assert "4.2x slower than fp32" in explicit.warning and "\n" not in explicit.warning
    assert resolve_amp("off", CPU).mode == "off" and resolve_amp("fp16", CPU).mode == "fp16"


@pytest.mark.parametrize("isa, mode", [("AVX2", "off"), ("avx512_core", "off"), ("AVX512_CORE_BF16", "bf16"),
                                       ("AVX512_CORE_AMX", "bf16")])
def test_onednn_max_cpu_isa_below_bf16_turns_auto_off(bf16_cpu, monkeypatch, isa, mode):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    choice = resolve_amp("auto", CPU)
    assert choice.mode == mode
    if mode == "off":
        assert f"ONEDNN_MAX_CPU_ISA={isa.upper()} caps oneDNN" in choice.reason
        assert resolve_amp("bf16", CPU).warning


def test_amx_counts_and_capped_aten_kernels_do_not(bf16_cpu, monkeypatch):
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"amx_bf16", "amx_tile"}))
    assert resolve_amp("auto", CPU).reason == "the CPU has amx_bf16"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # ATEN_CPU_CAPABILITY=avx2
    assert resolve_amp("auto", CPU).mode == "off"
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset())  # no /proc/cpuinfo: not known to be fast
    assert resolve_amp("auto", CPU).mode == "off"


@pytest.mark.parametrize("capability, mode", [((8, 0), "bf16"), ((9, 0), "bf16"), ((7, 5), "off")])
def test_auto_on_cuda_follows_the_compute_capability(monkeypatch, capability, mode):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "GPU")
    choice = resolve_amp("auto", torch.device("cuda", 0))
    assert choice.mode == mode and f"compute capability {capability[0]}.{capability[1]}" in choice.reason
    assert bool(resolve_amp("bf16", torch.device("cuda", 0)).warning) == (mode == "off")


@pytest.mark.parametrize("fixture, mode", [("bf16_cpu", "bf16"), ("avx2_cpu", "off")])
def test_a_training_run_stores_what_auto_chose_and_says_it(tiny_config, make_trainer, request, fixture, mode):
    request.getfixturevalue(fixture)
    t = make_trainer(tiny_config("train.amp=auto"))
    assert t.cfg.train.amp == mode
    assert yaml.safe_load((t.run_dir / "config.yaml").read_text())["train"]["amp"] == mode
    assert f"| amp {mode} (auto: " in t._header()
    assert t.state_dict()["config"]["train"]["amp"] == mode  # every checkpoint stores it too
    t.save()
    t.close()
    # Resuming (stored config, or the same auto config on the same machine) changes nothing.
    again = make_trainer(tiny_config("train.amp=auto", f"resume={t.run_dir}"))
    assert again.cfg.train.amp == mode


def test_explicit_bf16_in_training_warns_once_on_a_cpu_without_it(tiny_config, make_trainer, avx2_cpu, capsys,
                                                                  monkeypatch):
    monkeypatch.setattr(dev, "_warned", set())
    make_trainer(tiny_config("train.amp=bf16"))
    make_trainer(tiny_config("train.amp=bf16", "name=second"))
    err = capsys.readouterr().err
    assert err.count("WARNING: amp bf16 on cpu") == 1 and "use train.amp=auto or off" in err


def test_methods_resolve_auto_and_test_py_prints_it(tmp_path, avx2_cpu, capsys):
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(build_generator(ngf=8, n_blocks=1).state_dict(), path)
    method = load_method(MethodOptions(method="cyclegan", checkpoint=str(path), amp="auto"), "cpu")
    assert method.amp == "off" and method.fingerprint()["amp"] == "off"  # the report's reuse key: what ran
    (tmp_path / "in").mkdir()
    Image.fromarray(noise(8, 8)).save(tmp_path / "in" / "a.png")
    code = load_script("test").main(["--checkpoint", str(path), "--input", str(tmp_path / "in"), "--output",
                                     str(tmp_path / "out"), "--amp", "auto", "--device", "cpu", "--no-progress"])
    assert code == 0 and "amp off (auto: the CPU has no avx512_bf16 or amx_bf16 flag: fp32)" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["quickstart", "johnson_demo", "wct_demo", "cut_demo", "fastcut_demo"])
def test_demo_configs_ship_amp_auto(name):
    assert load_training_config(ROOT / "experiments" / f"{name}.yaml", []).train.amp == "auto"


def test_report_demo_runs_its_generator_with_amp_auto():
    cfg = load(ReportConfig, Path(ROOT / "experiments" / "report_demo.yaml"), [])
    assert [m.amp for m in cfg.methods if m.method == "cyclegan"] == ["auto"]
    assert "bf16" not in {m.amp for m in cfg.methods}
