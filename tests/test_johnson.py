"""Johnson fast style transfer as a method of the project: training through the shared trainer
(learning, style targets, mid-epoch resume), checkpoints in test.py, PyTorch's fast_neural_style
files, multi-style blending, colour preservation, the report row, config errors. The network and
loss maths are tested in tests/test_johnson_model.py. Tiny: 8 channels, 1 block, 32 px, random VGG."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import legacy_fast_neural_style_file, randomise, stop_after
from PIL import Image

import train
from evaluation.render import write_report
from evaluation.report_data import build_report_data
from methods.base import load_method, open_weights
from models.color import rgb_to_yiq
from models.johnson import TransformerNet
from models.style_losses import style_grams
from models.vgg import layer_names
from options.common import load_training_config
from options.config import ConfigError, build, to_dict
from options.johnson import vgg_layer_names
from options.methods import MethodOptions
from options.report import ReportConfig
from utils.checkpoint import read_training_checkpoint
from utils.errors import DatasetError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["method=johnson", "device=cpu", "data.load_size=32", "data.crop_size=32", "data.num_workers=0",
        "data.val_images=2", "data.batch_size=2", "model.channels=8", "model.n_blocks=1", "vgg.weights=random",
        "style.size=32", "loss.style_layers=[relu1_2,relu2_2]", "optim.n_epochs=2", "log.progress=false",
        "log.scalars_every=2", "log.images_every=3"]


def _load_cli():
    # By path: a plain `import test` can resolve to the standard library's `test` package.
    spec = importlib.util.spec_from_file_location("johnson_test_cli", ROOT / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = _load_cli()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: on a busy 2-core machine intra-op thread hand-offs cost 10-50x the maths."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def johnson_config(tiny_dataset: Path, tmp_path: Path):
    """Factory: a validated tiny Johnson config (content = the demo photos, style = one demo painting)."""

    def make(*overrides: str):
        base = [f"data.root={tiny_dataset / 'trainB'}", f"style.images=[{tiny_dataset / 'trainA' / '0000.png'}]",
                f"log.root={tmp_path / 'runs'}", "name=tiny", *TINY]
        return load_training_config(None, [*base, *overrides])

    return make


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args)


def _u8(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


# ---------------------------------------------------------------------------------------------
# Training


def test_training_lowers_the_held_out_loss(johnson_config, make_trainer):
    cfg = johnson_config("optim.n_epochs=8")  # 3 batches of 2 per epoch: 24 steps
    trainer = make_trainer(cfg)
    before = trainer.validate()
    assert before["loss"] == pytest.approx(before["content"] + before["style"], rel=1e-6)  # weighted terms, tv 0
    result = _quiet(trainer.fit)
    after = result.metrics
    assert result.step == 24 and result.epoch == 8
    # 0.13 .. 0.28 of the untrained loss over seeds 0 .. 2; both terms fall.
    assert after["loss"] < 0.5 * before["loss"], (before, after)
    assert after["style"] < before["style"] and after["content"] < before["content"]


def test_style_targets_single_blended_and_multi(johnson_config, make_trainer, tiny_dataset):
    paintings = [str(tiny_dataset / "trainA" / f"000{i}.png") for i in range(3)]
    styles = f"style.images=[{','.join(paintings)}]"
    blended = make_trainer(johnson_config(styles, "style.weights=[3,1,0]", "name=blend"))
    multi = make_trainer(johnson_config(styles, "style.multi=true", "name=multi"))
    layers = ["relu1_2", "relu2_2"]
    imgs = [torch.from_numpy(_u8(Path(p))).permute(2, 0, 1)[None].float() / 255 for p in paintings]
    one = [style_grams(blended.vgg, [x], None, layers) for x in imgs]
    assert len(blended.style_targets) == 1 and blended.net.arch.n_styles == 1
    for name in layers:  # sum_k b_k G_k with b = (3, 1, 0) / 4: the lecture's multi-style target
        assert torch.allclose(blended.style_targets[0][name], 0.75 * one[0][name] + 0.25 * one[1][name], rtol=1e-5)
    assert len(multi.style_targets) == 3 and multi.net.arch.n_styles == 3
    for k in range(3):
        assert torch.allclose(multi.style_targets[k]["relu2_2"], one[k]["relu2_2"], rtol=1e-5)
    # Cycling: image i takes style (i + epoch) mod 3.
    assert [multi.dataset[(1, i)]["style"] for i in range(6)] == [1, 2, 0, 1, 2, 0]
    logs = multi.train_step(next(iter(multi.loader)))
    assert set(logs) == {"total", "content", "style", "tv", "nonfinite"} and logs["nonfinite"].item() == 0.0
    rows = multi.image_rows()
    assert len(rows["stylized"]) == 1 + 3 and rows["stylized"][0].shape == (1, 3, 32, 32)
    assert multi.image_range == (0.0, 255.0) and 0 <= rows["stylized"][1].min() and rows["stylized"][1].max() <= 255


def test_resume_mid_epoch_reproduces_uninterrupted_run(johnson_config, make_trainer, tmp_path):
    """Stop after 4 of 6 batches of epoch 1, resume: weights, Adam moments, lr and the held-out
    loss equal those of a run that was never interrupted, bit for bit."""
    common = ["deterministic=true", "data.batch_size=1"]
    ref = make_trainer(johnson_config(*common, "name=ref"))
    _quiet(ref.fit)

    cut = make_trainer(johnson_config(*common, "name=cut"))
    stop_after(cut, 4)
    first = _quiet(cut.fit)
    assert first.stopped_early and (first.step, first.epoch) == (4, 0)

    resumed = make_trainer(johnson_config(*common, "name=cut", f"resume={tmp_path / 'runs' / 'cut'}"))
    assert (resumed.step, resumed.batch_in_epoch) == (4, 4)
    result = _quiet(resumed.fit)
    assert result.step == 12 and not result.stopped_early
    a, b = ref.net.state_dict(), resumed.net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = ref.optimizers["transformer"].state_dict()["state"]
    sb = resumed.optimizers["transformer"].state_dict()["state"]
    assert all(torch.equal(sa[i][m], sb[i][m]) for i in sa for m in ("exp_avg", "exp_avg_sq"))
    assert ref.metrics == resumed.metrics and ref.metrics["loss"] > 0


def test_resume_refuses_a_new_style_and_a_missing_style_image(johnson_config, make_trainer, tiny_dataset, tmp_path):
    cfg = johnson_config("optim.n_epochs=1")
    _quiet(make_trainer(cfg).fit)
    other = f"style.images=[{tiny_dataset / 'trainA' / '0001.png'}]"
    code, err = _train_cli(["--resume", str(cfg.run_dir), other, "optim.n_epochs=2"])
    assert code == 2 and "style.images cannot change when resuming" in err
    code, err = _train_cli(["--config", str(_yaml(tmp_path, cfg)), "style.images=[nowhere.png]", "name=x"])
    assert code == 2 and err.strip() == "error: style.images.0: nowhere.png does not exist"


def _yaml(tmp_path: Path, cfg) -> Path:
    import yaml

    path = tmp_path / "j.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    return path


def _train_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = train.main(argv)
    return code, err.getvalue()


def _test_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--no-progress", "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# Checkpoints and test.py


def test_checkpoint_holds_the_config_and_stylizes_in_test_py(johnson_config, make_trainer, tiny_dataset, tmp_path,
                                                             capsys):
    cfg = johnson_config("optim.n_epochs=1")
    trainer = make_trainer(cfg)
    _quiet(trainer.fit)
    ckpt = read_training_checkpoint(cfg.run_dir)
    assert ckpt.method == "johnson" and ckpt.config == to_dict(cfg) and list(ckpt.nets) == ["transformer"]
    assert ckpt.extra == {"vgg": "random-weight VGG (explicitly requested)"}
    from options.methods import MethodOptions

    method = load_method(MethodOptions(checkpoint=str(cfg.run_dir)), "cpu")  # the report's row title:
    assert method.name == "Johnson (step 3) [trained with a random-weight VGG (explicitly requested)]"
    code, out, _ = _test_cli(capsys, "--checkpoint", str(cfg.run_dir), "--input", str(tiny_dataset / "testB"),
                             "--output", str(tmp_path / "out"))
    assert code == 0 and "loaded Johnson network" in out and "step 3" in out and "translated 2" in out
    # The file is the network: pixel for pixel what the trained module gives (rounded to uint8).
    x = torch.from_numpy(_u8(tiny_dataset / "testB" / "0000.png")).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        expected = trainer.net.eval()(x).div(255).clamp(0, 1).mul(255).round()[0].permute(1, 2, 0).numpy()
    assert np.abs(_u8(tmp_path / "out" / "0000.png") - expected).max() <= 1


def test_fast_neural_style_file_with_legacy_keys_stylizes_a_folder(tmp_path, capsys, monkeypatch):
    """candy.pth as `python -m data.download fast_neural_style` leaves it: the examples' layout
    (here with random values and 8 channels), pre-0.4 running stats, raw output clamped."""
    net = randomise(TransformerNet(channels=8, n_blocks=1, output="clamp"), 0).eval()
    monkeypatch.chdir(tmp_path)
    Path("checkpoints/fast_neural_style").mkdir(parents=True)
    torch.save(legacy_fast_neural_style_file(net, 1), "checkpoints/fast_neural_style/candy.pth")
    rng = np.random.default_rng(0)
    _save_png(rng.integers(0, 256, (37, 50, 3)), tmp_path / "in" / "odd.png")
    _save_png(rng.integers(0, 256, (32, 32, 3)), tmp_path / "in" / "square.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, out, err = _test_cli(capsys, "--checkpoint", "candy", "--input", "in", "--output", "out")
    assert code == 0
    assert "(pretrained): TransformerNet c8, 1 blocks, nearest up-sampling, clamp output" in out
    assert "ignored 14 legacy InstanceNorm running-stat keys" in out
    assert "translated 2, skipped 0 (already there), failed 1" in out and "failed: " in err and "broken.png" in err
    assert Image.open(tmp_path / "out" / "odd.png").size == (50, 37)
    # Padded by reflection to 40 x 52, stylized, cropped back: exactly the padded forward pass.
    x = torch.from_numpy(_u8(tmp_path / "in" / "odd.png")).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        full = net(torch.nn.functional.pad(x, (1, 1, 1, 2), mode="reflect"))[..., 1:38, 1:51]
    expected = full.clamp(0, 255).round()[0].permute(1, 2, 0).numpy()
    assert np.abs(_u8(tmp_path / "out" / "odd.png") - expected).max() <= 1
    assert open_weights("candy").method == "johnson"


def test_multi_style_network_blends_with_style_weights(tmp_path, capsys):
    multi = randomise(TransformerNet(channels=8, n_blocks=1, n_styles=3), 2).eval()
    torch.save(multi.state_dict(), tmp_path / "multi.pth")
    # Style 0 on its own: a single-style network with row 0 of every instance norm.
    single = TransformerNet(channels=8, n_blocks=1, output="clamp")
    single.load_state_dict({k: (v[0] if k.split(".")[-2].startswith("in") else v)
                            for k, v in multi.state_dict().items()})
    torch.save(single.state_dict(), tmp_path / "style0.pth")
    rng = np.random.default_rng(1)
    _save_png(rng.integers(0, 256, (32, 40, 3)), tmp_path / "in" / "a.png")

    def run(checkpoint: str, out: str, *extra: str) -> tuple[int, str]:
        code, _, err = _test_cli(capsys, "--checkpoint", str(tmp_path / checkpoint), "--input", str(tmp_path / "in"),
                                 "--output", str(tmp_path / out), "output=tanh", *extra)  # a setting: not clamp
        return code, err

    assert run("style0.pth", "single")[0] == 0
    assert run("multi.pth", "w100", "--style-weights", "1", "0", "0")[0] == 0
    assert run("multi.pth", "w010", "--style-weights", "0", "1", "0")[0] == 0
    assert run("multi.pth", "w550", "--style-weights", "0.5", "0.5", "0")[0] == 0
    s0, w100, w010, w550 = (_u8(tmp_path / d / "a.png") for d in ("single", "w100", "w010", "w550"))
    assert np.abs(w100 - s0).max() <= 1  # one-hot weights: exactly that style's network
    assert np.abs(w550 - w100).mean() > 5 and np.abs(w550 - w010).mean() > 5
    code, err = run("multi.pth", "bad", "--style-weights", "0.5", "0.5")
    assert code == 2 and "2 weight(s) for a network of 3 styles; give 3, e.g. 1 0 0" in err
    assert not (tmp_path / "bad").exists()
    code, err = run("style0.pth", "bad", "--style-weights", "1", "0", "0")
    assert code == 2 and "holds one style, so --style-weights has nothing to blend" in err


def test_preserve_color_keeps_the_contents_chroma(tmp_path):
    net = randomise(TransformerNet(channels=8, n_blocks=1), 3, scale=0.1)
    torch.save(net.state_dict(), tmp_path / "net.pth")
    g = torch.Generator().manual_seed(4)
    low = 0.25 + 0.5 * torch.rand(2, 3, 4, 4, generator=g)  # smooth colourful images, away from black and white
    images = (torch.nn.functional.interpolate(low, size=(36, 28), mode="bilinear") * 255).round().to(torch.uint8)

    def method(preserve: bool):
        opts = MethodOptions(method="johnson", checkpoint=str(tmp_path / "net.pth"), preserve_color=preserve,
                             settings=["output=tanh"])
        return load_method(opts, "cpu")

    kept = method(True)
    a, b = method(False)(images), kept(images)
    assert a.shape == b.shape == images.shape and a.dtype == torch.uint8

    def yiq(x: torch.Tensor) -> torch.Tensor:
        return rgb_to_yiq(x.float() / 255)

    content, stylized, preserved = yiq(images), yiq(a), yiq(b)
    assert (stylized[:, 1:] - content[:, 1:]).abs().mean() > 0.05  # the network changes the colours (0.11)
    # A pure luminance change adds the same to R, G and B, so the content's I and Q survive uint8 rounding.
    assert (preserved[:, 1:] - content[:, 1:]).abs().max() < 1e-4
    assert (preserved[:, :1] - stylized[:, :1]).abs().max() < 0.01  # luminance: the stylized one
    assert kept.settings()["preserve_color"] is True


def _rounding_net(output: str, tmp_path: Path) -> tuple[TransformerNet, Path]:
    """A random network whose outputs spread over [0, 255] (clamp: the last layer scaled and
    shifted, else its raw output sits near 0), saved as a plain state_dict."""
    net = randomise(TransformerNet(channels=8, n_blocks=1, output=output), 6).eval()
    if output == "clamp":
        with torch.no_grad():
            net.deconv3.conv2d.weight.mul_(100.0)
            net.deconv3.conv2d.bias.fill_(128.0)
    torch.save(net.state_dict(), tmp_path / f"{output}.pth")
    return net, tmp_path / f"{output}.pth"


def _johnson(path: Path, *settings: str, preserve: bool = False):
    return load_method(MethodOptions(method="johnson", checkpoint=str(path), settings=list(settings),
                                     preserve_color=preserve), "cpu")


@pytest.mark.parametrize("output", ["clamp", "tanh"])
def test_output_rounding_truncates_as_the_examples_save_image(tmp_path, output):
    """truncate: floor(clamp(y, 0, 255)) of the float output, what the examples' save_image writes
    (astype uint8); round (the default, unchanged): the nearest level; they differ by 0 or 1."""
    net, path = _rounding_net(output, tmp_path)
    images = torch.from_numpy(np.random.default_rng(6).integers(0, 256, (2, 3, 16, 20), dtype=np.uint8))
    with torch.no_grad():
        y = net(images.float()).clamp(0, 255)  # sides multiples of 4: no padding, no crop
    inside = ((y > 0) & (y < 255)).float().mean()
    assert inside > 0.8  # the test means something: most values have a fraction

    default = _johnson(path, f"output={output}")
    rounded = _johnson(path, f"output={output}", "output_rounding=round")(images)
    truncated = _johnson(path, f"output={output}", "output_rounding=truncate")(images)
    assert truncated.dtype == rounded.dtype == torch.uint8 and truncated.shape == images.shape
    assert torch.equal(truncated, y.floor().to(torch.uint8))
    assert np.array_equal(truncated.numpy(), y.numpy().astype("uint8"))  # numpy truncates toward zero
    # Default: the same pixels as before the setting existed (/255, clamp to [0, 1], x255, round).
    before = (y / 255.0).clamp(0, 1).mul(255.0).round().to(torch.uint8)
    assert torch.equal(default(images), before) and torch.equal(rounded, before)
    assert default.settings()["output_rounding"] == "round"
    frac = y - y.floor()
    away_from_ties = (frac - 0.5).abs() > 1e-3  # the /255 round trip may tip an exact .5
    assert torch.equal(rounded[away_from_ties], y.round().to(torch.uint8)[away_from_ties])
    up = rounded.int() - truncated.int()
    assert up.min() == 0 and up.max() == 1
    assert torch.equal((up == 1)[away_from_ties], (frac >= 0.5)[away_from_ties])
    assert 0.3 < (up == 1).float().mean() < 0.7  # about half the values, up to one level

    # Any size: padded, stylized, cropped back, then floored; with --preserve-color too.
    odd = images[..., :13, :19].contiguous()
    a = _johnson(path, f"output={output}", "output_rounding=truncate")(odd)
    b = _johnson(path, f"output={output}")(odd)
    assert a.shape == odd.shape and (b.int() - a.int()).min() == 0 and (b.int() - a.int()).max() == 1
    a = _johnson(path, f"output={output}", "output_rounding=truncate", preserve=True)(images)
    b = _johnson(path, f"output={output}", preserve=True)(images)
    assert (b.int() - a.int()).min() == 0 and (b.int() - a.int()).max() == 1

    with pytest.raises(ConfigError, match="output_rounding"):
        _johnson(path, "output_rounding=floor")


# ---------------------------------------------------------------------------------------------
# The report


def test_report_has_a_johnson_row_and_its_speed_against_gatys(tmp_path, tiny_features):
    from data.demo import DemoSpec, make_demo_dataset

    data = make_demo_dataset(tmp_path / "demo", DemoSpec(size=32, n_train_A=2, n_train_B=2, n_test=3))
    net = randomise(TransformerNet(channels=8, n_blocks=1, output="clamp"), 5, scale=0.1)
    torch.save(net.state_dict(), tmp_path / "candy.pth")
    gatys = ["optim.steps=5", "progress=false", "vgg.weights=random", "loss.content_layers=[relu2_2]",
             "loss.style_layers=[relu1_1,relu2_1]"]
    cfg = build(ReportConfig, {
        "dataset": str(data), "style": [str(data / "trainA" / "0000.png")], "device": "cpu", "download": False,
        "scoring": {"vgg": {"weights": "random"}, "content_layers": ["relu2_2"],
                    "style_layers": ["relu1_1", "relu2_1"]},
        "methods": [{"method": "johnson", "checkpoint": str(tmp_path / "candy.pth")},
                    {"method": "gatys", "config": str(ROOT / "experiments/gatys_quick.yaml"), "settings": gatys}]})
    cfg.validate()
    out = tmp_path / "report"
    report = build_report_data(cfg, out, torch.device("cpu"), feature_extractor=tiny_features, log=lambda s: None)
    result = write_report(report, out)
    rows = {r["method"]: r for r in result["table"]}
    row = rows["Johnson (candy)"]
    for col in ("FID", "PSNR", "SSIM", "content loss", "style loss", "s/image"):
        float(row[col].split()[0])  # a number in every column
    assert float(row["content loss"]) > 0 and float(row["s/image"]) > 0 and row["device"].startswith("cpu")
    ratios = {r["method"]: r for r in result["speed_ratios"]}
    assert ratios["Johnson (candy)"]["against"] == "Gatys" and ratios["Johnson (candy)"]["times_faster"] > 1
    assert row["speed"].endswith("Gatys's")
    assert sorted(p.name for p in (out / "outputs" / "johnson").iterdir()) == ["0000.png", "0001.png", "0002.png",
                                                                               "run.json"]


# ---------------------------------------------------------------------------------------------
# Config


def test_config_mistakes_name_the_key(johnson_config, make_trainer):
    def error(*overrides: str) -> str:
        with pytest.raises(ConfigError) as e:
            johnson_config(*overrides)
        return str(e.value)

    assert error("style.images=[]").startswith("style.images: list at least one style image")
    assert error("loss.style_layers=[relu5_4]").startswith("loss.style_layers: unknown VGG16 layer(s) relu5_4")
    johnson_config("vgg.arch=vgg19", "loss.style_layers=[relu5_4]")  # a VGG-19 name
    assert error("style.multi=true").startswith("style.multi: needs 2 to 256 style.images")
    assert error("style.weights=[1,2]").startswith("style.weights: 2 weights for 1 style image(s)")
    assert error("model.chanels=8").startswith("unknown config key 'model.chanels' (did you mean 'channels'?)")
    assert error("data.crop_size=30").startswith("data.crop_size: must be a multiple of 4")
    assert error("optim.lr_policy=plateau", "data.val_images=0").startswith("optim.lr_policy: plateau steps on")
    assert error("data.demo=true", "data.root=my_photos").startswith("data.root: with data.demo=true it must be a "
                                                                     "folder of the demo dataset")
    with pytest.raises(DatasetError, match=r"data.batch_size=7 x 1 process\(es\) is more than the 6 training"):
        make_trainer(johnson_config("data.batch_size=7"))
    cfg = johnson_config()
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.n_epochs, cfg.optim.n_epochs_decay) == (1e-3, 0.9, 2, 0)
    defaults = load_training_config(None, ["method=johnson", "style.images=[a.png]"])
    assert (defaults.vgg.arch, defaults.loss.content_layers, defaults.loss.style_layers) == \
        ("vgg16", ["relu2_2"], ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
    assert (defaults.loss.content_weight, defaults.loss.style_weight, defaults.model.channels) == (1e5, 4e10, 32)
    for arch in ("vgg16", "vgg19"):  # options/ may not import models/: the two lists must agree
        assert vgg_layer_names(arch) == list(layer_names(arch))


@pytest.mark.parametrize("name", ["johnson_demo", "johnson_monet", "johnson_multi"])
def test_shipped_configs_load(name):
    cfg = load_training_config(ROOT / "experiments" / f"{name}.yaml")
    assert cfg.method == "johnson" and cfg.name == name
    assert cfg.n_styles == (3 if name == "johnson_multi" else 1)
