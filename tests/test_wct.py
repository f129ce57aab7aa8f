"""WCT / AdaIN as complete methods: decoder training through the trainer (learning, checkpoints,
exact mid-epoch resume), test.py with style images (blends, alpha, degenerate styles, bad
files, AdaIN's relu4_1 rule), the encoder's identity, and the report rows. Random-weight VGG,
tiny decoders (width 1/8), 32 px images. Model-level tests are in tests/test_wct_model.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import stop_after
from PIL import Image

import test as test_cli
from data.image_io import pad_to_multiple, pil_to_uint8, uint8_to_unit
from methods.base import MethodError, load_method
from models import wct as wct_model
from models.color import preserve_color
from models.feature_transforms import adain, feature_stats
from options.common import load_training_config
from options.config import ConfigError
from options.methods import MethodOptions
from options.wct import LEVELS
from utils.checkpoint import list_checkpoints, read_training_checkpoint

TINY_WCT = [
    "device=cpu", "data.load_size=36", "data.crop_size=32", "data.batch_size=2", "data.num_workers=0",
    "data.val_images=2", "vgg.weights=random", "model.width=0.125", "optim.lr=1e-3", "log.progress=false",
    "log.scalars_every=2", "log.images_every=3",
]  # 6 training images of the tiny demo's trainB, batch 2: 3 batches per epoch


def wct_config(data: Path, runs: Path, *overrides: str):
    base = [f"data.root={data / 'trainB'}", f"log.root={runs}", "method=wct", "name=wct", *TINY_WCT]
    return load_training_config(None, [*base, *overrides])


def _save(img: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def trained(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """One tiny decoder run for the module: 30 steps; held-out errors before and after."""
    from training import build_trainer

    cfg = wct_config(tiny_dataset, tmp_path_factory.mktemp("wct_runs"), "optim.n_epochs=5", "optim.n_epochs_decay=5")
    trainer = build_trainer(cfg)
    before = trainer.validate()
    result = trainer.fit()
    return cfg.run_dir, before, result.metrics, trainer


@pytest.fixture(scope="module")
def images(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Content images of odd sizes with one unreadable file; style images (two paintings, a flat
    colour, an 8x8 one); a file that is not an image."""
    tmp = tmp_path_factory.mktemp("wct_images")
    photo = np.asarray(Image.open(tiny_dataset / "testB" / "0000.png").convert("RGB"))
    g = np.random.default_rng(0)
    folder = tmp / "content"
    _save(np.asarray(Image.fromarray(photo).resize((37, 23))), folder / "a.png")
    _save(np.asarray(Image.fromarray(photo).resize((19, 41))), folder / "b.png")
    (folder / "broken.png").write_bytes(b"not a png at all")
    return {
        "content": folder,
        "style_a": tiny_dataset / "trainA" / "0000.png",
        "style_b": tiny_dataset / "trainA" / "0001.png",
        "flat": _save(np.full((20, 24, 3), (200, 40, 90)), tmp / "flat.png"),
        "tiny": _save(g.integers(0, 256, (8, 8, 3)), tmp / "tiny.png"),
        "bad": _write(tmp / "bad.jpg", b"\x00junk"),
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _read(path: Path) -> torch.Tensor:
    return pil_to_uint8(Image.open(path).convert("RGB"))


def _run_test_py(run: Path, content: Path, out: Path, *args: str) -> int:
    return test_cli.main(["--checkpoint", str(run), "--input", str(content), "--output", str(out), "--device", "cpu",
                          "--no-progress", "--workers", "1", *args])


# ---------------------------------------------------------------------------------------------
# Config


def test_config_mistakes_name_the_key(tiny_dataset: Path, tmp_path: Path) -> None:
    assert LEVELS == wct_model.LEVELS  # options keep their own copy (they import no models)
    for override, key in (("model.levels=[relu4_2]", "model.levels"), ("data.crop_size=40", "data.crop_size"),
                          ("model.width=0", "model.width"), ("loss.feature_weight=-1", "loss.feature_weight"),
                          ("optim.lr_policy=plateau data.val_images=0", "optim.lr_policy"),
                          ("model.widht=1", "model.width")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            wct_config(tiny_dataset, tmp_path, *override.split())
    cfg = wct_config(tiny_dataset, tmp_path)
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.loss.feature_weight, cfg.model.levels) == (1e-3, 0.9, 1.0, list(LEVELS))


# ---------------------------------------------------------------------------------------------
# Training


def test_trained_decoders_reconstruct_better_and_checkpoint_every_level(trained) -> None:
    run, before, after, trainer = trained
    # Held-out pixel MSE, untrained -> 30 steps. Seeds 0-3 give ratios 0.11-0.61 per level (relu5_1
    # sees 2x2 maps at 32 px) and 0.21-0.36 on average; untrained decoders sit near 0.25 (black images).
    for level in LEVELS:
        assert after[f"pixel_{level}"] < 0.75 * before[f"pixel_{level}"], (level, before, after)
    assert after["pixel"] == pytest.approx(sum(after[f"pixel_{lv}"] for lv in LEVELS) / 5)
    assert after["pixel"] < 0.5 * before["pixel"] and before["pixel"] > 0.1
    ckpt = read_training_checkpoint(run)
    assert ckpt.method == "wct" and ckpt.step == 30 and set(ckpt.nets) == {"decoders"}
    assert {k.split(".")[0] for k in ckpt.nets["decoders"]} == set(LEVELS)
    assert ckpt.nets["decoders"]["relu2_1.body.conv2_1.weight"].shape == (8, 128, 3, 3)  # 64 x 1/8 out, 128 in
    assert list(ckpt.optim) == ["decoders"] and ckpt.config["vgg"]["resolved"] == "random"
    rows = trainer.image_rows()["reconstruction"]  # input | relu1_1 ... relu5_1, in [0, 1]
    assert len(rows) == 6 and all(r.shape == (2, 3, 32, 32) and 0 <= r.min() and r.max() <= 1 for r in rows)


def test_resume_mid_epoch_reproduces_uninterrupted_run(tiny_dataset: Path, tmp_path: Path, make_trainer) -> None:
    """Stop after 4 steps (epoch 2, batch 1 of 3), resume from the run folder: decoders, Adam
    moments, lr and validation equal those of a run never interrupted, bit for bit."""
    common = ["deterministic=true", "optim.n_epochs=1", "optim.n_epochs_decay=1", "model.levels=[relu1_1,relu3_1]"]
    ref = make_trainer(wct_config(tiny_dataset, tmp_path, *common, "name=ref"))
    ref.fit()

    cut = make_trainer(wct_config(tiny_dataset, tmp_path, *common, "name=cut"))
    stop_after(cut, 4)
    first = cut.fit()
    assert first.stopped_early and (first.step, first.epoch) == (4, 1)

    resumed = make_trainer(wct_config(tiny_dataset, tmp_path, *common, "name=cut", f"resume={tmp_path / 'cut'}"))
    assert (resumed.step, resumed.batch_in_epoch) == (4, 1)
    result = resumed.fit()
    assert result.step == 6 and not result.stopped_early
    a, b = ref.decoders.state_dict(), resumed.decoders.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = ref.optimizers["decoders"].state_dict()["state"], resumed.optimizers["decoders"].state_dict()["state"]
    assert all(torch.equal(sa[i][m], sb[i][m]) for i in sa for m in ("exp_avg", "exp_avg_sq"))
    assert ref.optimizers["decoders"].param_groups[0]["lr"] == resumed.optimizers["decoders"].param_groups[0]["lr"]
    assert ref.metrics == resumed.metrics and set(ref.metrics) == {"pixel", "pixel_relu1_1", "pixel_relu3_1"}
    assert [p.name for p in list_checkpoints(tmp_path / "cut")][-1] == "step_00000006.pt"


def test_random_fallback_is_recorded_and_a_missing_encoder_is_refused(tiny_dataset: Path, tmp_path: Path,
                                                                      make_trainer, monkeypatch, capsys) -> None:
    """vgg.weights=imagenet offline: the demo's random fallback is stored as vgg.resolved=random
    and named; a run that used ImageNet weights is never stylized with another encoder."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty torch cache
    cfg = wct_config(tiny_dataset, tmp_path / "runs", "vgg.weights=imagenet", "vgg.download=false",
                     "vgg.random_if_unavailable=true", "model.levels=[relu1_1]", "data.val_images=0")
    trainer = make_trainer(cfg)
    trainer.save()
    assert "random-weight VGG" in capsys.readouterr().err
    ckpt = read_training_checkpoint(cfg.run_dir)
    assert (ckpt.config["vgg"]["weights"], ckpt.config["vgg"]["resolved"]) == ("imagenet", "random")
    # The same run file, as if its decoders had been trained on ImageNet weights: test.py must not fall back.
    obj = torch.load(ckpt.path, weights_only=True)
    obj["config"]["vgg"]["resolved"] = "imagenet"
    torch.save(obj, tmp_path / "imagenet_run.pt")
    with pytest.raises(MethodError, match="encoder cannot be rebuilt.*imagenet"):
        load_method(MethodOptions(method="wct", checkpoint=str(tmp_path / "imagenet_run.pt"),
                                  settings=["transform=whiten"]), "cpu")


# ---------------------------------------------------------------------------------------------
# test.py


def test_test_py_blends_two_styles_on_odd_sizes_and_skips_a_bad_file(trained, images, tmp_path, capsys) -> None:
    run = trained[0]
    style = ["--style", str(images["style_a"]), str(images["style_b"])]
    rc = _run_test_py(run, images["content"], tmp_path / "out", *style, "--style-weights", "0.7", "0.3",
                      "--alpha", "0.6")
    assert rc == 0
    assert "failed:" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    opts = MethodOptions(method="auto", checkpoint=str(run), style=[str(images["style_a"]), str(images["style_b"])],
                         style_weights=[0.7, 0.3], alpha=0.6)
    method = load_method(opts, "cpu")
    assert method.key == "wct" and method.name == "WCT [random-weight VGG]" and method.levels == list(LEVELS)[::-1]
    for name, size in (("a.png", (23, 37)), ("b.png", (41, 19))):
        got = _read(tmp_path / "out" / name)
        assert got.shape == (3, *size)
        assert torch.equal(got, method(_read(images["content"] / name).unsqueeze(0))[0])
    # The blend matters: the other weighting gives other images.
    other = load_method(MethodOptions(**{**opts.__dict__, "style_weights": [0.3, 0.7]}), "cpu")
    x = _read(images["content"] / "a.png").unsqueeze(0)
    assert (other(x).float() - method(x).float()).abs().mean() > 0.5


def test_alpha_zero_gives_the_decoders_reconstruction(trained, images, tmp_path) -> None:
    run = trained[0]
    assert _run_test_py(run, images["content"], tmp_path / "out", "--style", str(images["style_a"]),
                        "--alpha", "0") == 0
    method = load_method(MethodOptions(checkpoint=str(run), style=[str(images["style_a"])]), "cpu")
    x = uint8_to_unit(_read(images["content"] / "a.png").unsqueeze(0))
    with torch.no_grad():  # coarse to fine, each level decoding its own encoding of the previous image
        h, w = x.shape[-2:]
        y, top, left = pad_to_multiple(x, 16, 16)
        for level in method.levels:
            y = method.decoders[level](wct_model.encode(method.encoder, y, level))
        y = y[..., top:top + h, left:left + w].clamp(0, 1)
    got = uint8_to_unit(_read(tmp_path / "out" / "a.png"))
    assert (got - y[0]).abs().max() <= 1 / 255 + 1e-6


def test_flat_and_tiny_styles_do_not_crash(trained, images, tmp_path) -> None:
    """A one-colour style (zero covariance) and an 8x8 style (a 1x1 relu5_1 map) stylize finite images."""
    run = trained[0]
    for style in ("flat", "tiny"):
        out = tmp_path / style
        assert _run_test_py(run, images["content"], out, "--style", str(images[style])) == 0
        assert _read(out / "b.png").shape == (3, 41, 19)
    # --preserve-color: the stylized luminance with the content's chroma (models.color), as by hand
    assert _run_test_py(run, images["content"], tmp_path / "kept", "--style", str(images["flat"]),
                        "--preserve-color") == 0
    content, plain, kept = (uint8_to_unit(_read(p / "a.png")).unsqueeze(0)
                            for p in (images["content"], tmp_path / "flat", tmp_path / "kept"))
    assert (kept - preserve_color(plain, content)).abs().max() <= 2 / 255
    assert (kept - plain).abs().max() > 4 / 255


def test_adain_through_test_py(trained, images, tmp_path) -> None:
    run = trained[0]
    assert _run_test_py(run, images["content"], tmp_path / "out", "eps=1e-5", "--method", "adain", "--style",
                        str(images["style_a"])) == 0
    method = load_method(MethodOptions(method="adain", checkpoint=str(run), style=[str(images["style_a"])]), "cpu")
    assert method.levels == ["relu4_1"] and method.name == "AdaIN [random-weight VGG]"
    x = uint8_to_unit(_read(images["content"] / "a.png").unsqueeze(0))
    s = uint8_to_unit(_read(images["style_a"]).unsqueeze(0))
    with torch.no_grad():  # Huang & Belongie: decode AdaIN(Phi(c), Phi(s)) at relu4_1
        h, w = x.shape[-2:]
        y, top, left = pad_to_multiple(x, 8, 8)
        f = adain(wct_model.encode(method.encoder, y, "relu4_1"),
                  feature_stats(wct_model.encode(method.encoder, s, "relu4_1")))
        y = method.decoders["relu4_1"](f)[..., top:top + h, left:left + w].clamp(0, 1)
    assert (uint8_to_unit(_read(tmp_path / "out" / "a.png")) - y[0]).abs().max() <= 1 / 255 + 1e-6
    # bf16 autocast: the same image to within bf16 rounding
    fast = load_method(MethodOptions(method="adain", checkpoint=str(run), style=[str(images["style_a"])],
                                     amp="bf16"), "cpu")
    got = fast(_read(images["content"] / "a.png").unsqueeze(0))
    assert got.dtype == torch.uint8 and got.shape == (1, 3, 23, 37)
    assert (uint8_to_unit(got[0]) - y[0]).abs().mean() < 0.01


def test_errors_exit_2_with_a_message(tiny_dataset, trained, images, tmp_path, make_trainer, capsys) -> None:
    run = trained[0]
    cfg = wct_config(tiny_dataset, tmp_path / "runs", "model.levels=[relu1_1,relu2_1]", "data.val_images=0")
    make_trainer(cfg).save()
    capsys.readouterr()
    style = ["--style", str(images["style_a"])]
    cases = [
        ((cfg.run_dir, "--method", "adain", *style), "AdaIN needs a relu4_1 decoder"),
        ((cfg.run_dir, "levels=[relu3_1]", *style), "levels: .* no decoder for relu3_1"),
        ((run, "levels=[relu9_1]", *style), "levels: unknown level"),
        ((run, *style, "levels=[relu4_1]"), "key=value setting written after --style"),
        ((run, "--style", str(images["bad"])), "style image .*bad.jpg cannot be read"),
        ((run,), "WCT needs at least one style image"),
    ]
    for (ckpt, *args), message in cases:
        assert _run_test_py(ckpt, images["content"], tmp_path / "never", *args) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert __import__("re").search(message, err), err
    assert not (tmp_path / "never").exists()


# ---------------------------------------------------------------------------------------------
# Report


def test_report_has_wct_and_adain_rows_with_numbers(trained, tiny_dataset, tmp_path, tiny_features) -> None:
    from evaluation.render import markdown_table
    from evaluation.report_data import build_report_data
    from options.config import load
    from options.report import ReportConfig

    run = trained[0]
    cfg = load(ReportConfig, None, [
        f"dataset={tiny_dataset}", f"style=[{tiny_dataset / 'trainA' / '0000.png'}]", "device=cpu", "download=false",
        f"methods=[{{method: wct, checkpoint: {run}, alpha: 0.8}}, {{method: adain, checkpoint: {run}}}]",
        "scoring.vgg.weights=random", "scoring.content_layers=[relu2_1]", "scoring.style_layers=[relu1_1,relu2_1]",
    ])
    data = build_report_data(cfg, tmp_path / "report", torch.device("cpu"), feature_extractor=tiny_features,
                             log=lambda _: None)
    rows = {r.method: r for r in data.rows}
    assert set(rows) == {"input", "baseline", "wct", "adain"}
    for key in ("wct", "adain"):
        r = rows[key]
        assert all(np.isfinite(v) for v in (r.psnr, r.ssim, r.content_loss, r.style_loss, r.seconds_per_image))
        assert r.seconds_per_image > 0 and r.content_loss > 0 and r.fid is not None
    table = markdown_table(data)
    assert "| WCT [random-weight VGG] |" in table and "| AdaIN [random-weight VGG] |" in table
    assert data.runs[0].settings["alpha"] == 0.8 and data.runs[1].settings["levels"] == ["relu4_1"]
    assert data.runs[0].run_dir == run  # the report plots the decoder run's curves
