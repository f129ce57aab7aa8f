"""The comparison report on tiny data: every row and column present, self-contained HTML,
grid, metrics.json/md, unavailable metrics labelled, outputs reused, the CLI."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from PIL import Image
from torch import nn

from data.demo import DemoSpec, make_demo_dataset
from models.cyclegan import build_discriminator, build_generator
from options.config import Config
from options.gatys_config import load_gatys_config
from utils.checkpoint import save_atomic
from utils.report import COLUMNS, build_report, dataset_test_set, folder_test_set

GATYS_TINY = ["optim.steps=2", "progress=false", "loss.content_layers=relu2_2", "loss.style_layers=relu1_1,relu2_1",
              "vgg.download=false"]


class TinyFeatures(nn.Module):
    """uint8 (B, 3, H, W) -> (B, 8): stands in for Inception."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x.float() / 127.5 - 1.0)).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    data = make_demo_dataset(tmp / "demo", DemoSpec(size=32, n_train_A=2, n_train_B=2, n_test=4))
    cfg = Config()
    cfg.model.ngf, cfg.model.n_blocks = 8, 1
    torch.manual_seed(0)
    nets = {k: build_generator(ngf=8, n_blocks=1).state_dict() for k in ("G_A", "G_B")}
    nets.update({k: build_discriminator(ndf=8).state_dict() for k in ("D_A", "D_B")})
    save_atomic({"format": "cyclegan-checkpoint", "version": 1, "config": dataclasses.asdict(cfg), "nets": nets},
                tmp / "run" / "checkpoints" / "step_00000001.pt")
    return tmp, data


@pytest.fixture()
def no_hub(tmp_path, monkeypatch):
    """An empty torch cache: no pretrained VGG or Inception, as on this offline machine."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def test_test_sets(setup, tmp_path):
    _, data = setup
    test = dataset_test_set(data, "BtoA", limit=3)
    assert [p.parent.name for p in test.inputs] == ["testB"] * 3 and len(test.reference) == 4
    assert [p.parent.name for p in test.ground_truth] == ["testA"] * 3
    assert [p.name for p in test.ground_truth] == [p.name for p in test.inputs]
    rev = dataset_test_set(data, "AtoB")
    assert rev.inputs[0].parent.name == "testA" and rev.ground_truth[0].parent.name == "testB"
    plain = folder_test_set(data / "testB", reference=data / "testA")
    assert plain.ground_truth is None and len(plain.reference) == 4


def test_report_builds_with_every_row_and_column(setup, no_hub):
    tmp, data = setup
    out = tmp / "out"
    # vgg.weights=imagenet with no cached file and no download: the demo's labelled random fallback.
    cfg = load_gatys_config("experiments/gatys_quick.yaml", GATYS_TINY)
    test = dataset_test_set(data, "BtoA")
    style = [data / "trainA" / "0000.png"]
    logs: list[str] = []
    result = build_report(test, tmp / "run", "BtoA", style, out, cfg, device="cpu", allow_download=False,
                          log=logs.append)

    for name in ("index.html", "grid.png", "metrics.json", "metrics.md"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "outputs" / "cyclegan").glob("*.png")) == [f"{i:04d}.png" for i in range(4)]
    assert len(list((out / "outputs" / "gatys").glob("*.png"))) == 4
    assert Image.open(out / "outputs" / "gatys" / "0000.png").size == (32, 32)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    assert metrics["columns"] == list(COLUMNS)
    rows = {r["method"]: r for r in metrics["table"]}
    assert len(rows) == 3
    gatys_row = next(r for m, r in rows.items() if m.startswith("Gatys"))
    assert "random-weight VGG (no pretrained weights available)" in gatys_row["method"]
    for row in metrics["table"]:
        assert list(row) == list(COLUMNS)
        assert row["FID"].startswith("unavailable: ") and row["KID"].startswith("unavailable: ")
        assert float(row["SSIM"]) <= 1.0 and float(row["content loss"]) >= 0
    assert rows["input (unchanged)"]["content loss"] == "0"
    assert float(rows["CycleGAN (step 1)"]["s/image"]) > 0 and rows["CycleGAN (step 1)"]["device"].startswith("cpu")
    assert metrics["counts"] == {"inputs": 4, "reference": 4, "ground_truth": 4}
    assert "Inception" in metrics["fid_unavailable"]
    assert set(metrics["methods"]) == {"input", "cyclegan", "gatys"}
    assert set(metrics["methods"]["gatys"]["per_image"]) == {f"{i:04d}.png" for i in range(4)}

    md = (out / "metrics.md").read_text()
    assert "| " + " | ".join(COLUMNS) + " |" in md and md.count("unavailable: no Inception weights offline") == 6
    assert "random-weight VGG" in md

    page = (out / "index.html").read_text()
    for header in ("input", "CycleGAN (step 1)", "Gatys [random-weight VGG", "ground truth", *COLUMNS):
        assert header in page, header
    srcs = re.findall(r"<img[^>]* src='([^']*)'", page)
    assert len(srcs) == 4 * 4 + 1 and all(s.startswith("data:image/") for s in srcs)  # self-contained

    grid = Image.open(out / "grid.png")
    assert grid.size == (4 * 132 + 4, 22 + 4 * 132 + 4)  # 4 columns, 4 rows of 128 px cells
    assert any("WARNING" in line and "random-weight VGG" in line for line in logs)


def test_report_reuses_outputs_and_computes_fid_with_a_feature_network(setup, no_hub):
    tmp, data = setup
    out = tmp / "out2"
    cfg = load_gatys_config("experiments/gatys_quick.yaml", GATYS_TINY)
    test = dataset_test_set(data, "BtoA")
    style = [data / "trainA" / "0000.png"]
    build_report(test, tmp / "run", "BtoA", style, out, cfg, device="cpu", allow_download=False, log=lambda s: None)
    stamp = (out / "outputs" / "gatys" / "0000.png").stat().st_mtime_ns
    result = build_report(test, tmp / "run", "BtoA", style, out, cfg, device="cpu", allow_download=False,
                          feature_extractor=TinyFeatures(), log=lambda s: None)
    assert result["reused"] == {"cyclegan": True, "gatys": True}
    assert (out / "outputs" / "gatys" / "0000.png").stat().st_mtime_ns == stamp
    assert result["kid_subset_size"] == 4 and result["fid_unavailable"] is None
    for method in ("input", "cyclegan", "gatys"):
        m = result["methods"][method]
        assert m["fid"] >= 0 and m["kid_mean"] is not None
    for row in result["table"]:
        float(row["FID"])
        assert " ± " in row["KID"]
    # A changed Gatys setting reruns Gatys only.
    cfg3 = load_gatys_config("experiments/gatys_quick.yaml", GATYS_TINY + ["optim.steps=1"])
    result = build_report(test, tmp / "run", "BtoA", style, out, cfg3, device="cpu", allow_download=False,
                          feature_extractor=TinyFeatures(), log=lambda s: None)
    assert result["reused"] == {"cyclegan": True, "gatys": False}


def test_report_cli(setup, no_hub, capsys):
    import report as cli

    tmp, data = setup
    args = ["--dataset", str(data), "--checkpoint", str(tmp / "run"), "--direction", "BtoA",
            "--style", str(data / "trainA" / "0000.png"), str(data / "trainA" / "0001.png"),
            "--gatys-config", "experiments/gatys_quick.yaml", "--out", str(tmp / "cli"), "--limit", "2",
            "--no-download", "--device", "cpu", *GATYS_TINY]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("\n| ") >= 3 and "unavailable" in out
    metrics = json.loads((tmp / "cli" / "metrics.json").read_text())
    assert metrics["counts"]["inputs"] == 2 and len(metrics["styles"]) == 2
    assert cli.main([*args[:-len(GATYS_TINY)], "optim.stepz=1"]) == 2
    assert "optim.steps" in capsys.readouterr().err
