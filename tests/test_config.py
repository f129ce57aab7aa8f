"""Configs: YAML + strict overrides, lists, errors that name the key, the shipped experiment files.

Every key of every training schema has a checked type and every number a checked range; every
mistake is a one-line ConfigError naming the key (train.py turns it into exit status 2).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import train
from methods import TRAINABLE, training_schema
from options.common import load_training_config
from options.config import ConfigError, build, load, to_dict
from options.cyclegan import CycleGANConfig
from options.gatys import load_gatys_config
from options.report import ReportConfig

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


# ---------------------------------------------------------------------------------------------
# The shipped files


def test_monet_yaml_is_the_paper_setting_and_trains_on_every_image() -> None:
    cfg = load_training_config(EXPERIMENTS / "monet.yaml")
    d, m, lo, o, t = cfg.data, cfg.model, cfg.loss, cfg.optim, cfg.train
    assert (d.load_size, d.crop_size, d.preprocess, d.flip, d.batch_size) == (286, 256, "resize_and_crop", True, 1)
    assert d.val_images == 0 and d.subset_A == 0 and d.subset_B == 0  # all 1072 + 6287 images, as the paper
    assert (m.ngf, m.n_blocks, m.ndf, m.n_layers_D) == (64, 9, 64, 3)
    assert (m.norm, m.init, m.init_gain, m.upsample) == ("instance", "normal", 0.02, "transpose")
    assert (lo.gan_mode, lo.lambda_A, lo.lambda_B, lo.lambda_identity) == ("lsgan", 10.0, 10.0, 0.5)
    assert (o.lr, o.beta1, o.beta2, o.lr_policy, o.n_epochs, o.n_epochs_decay) == (2e-4, 0.5, 0.999, "linear", 100, 100)
    assert t.pool_size == 50 and t.d_steps_per_g == 1 and t.d_clip == 0 and t.max_batches_per_epoch == 0


def test_plateau_variant_holds_out_what_it_needs() -> None:
    cfg = load_training_config(EXPERIMENTS / "monet_plateau.yaml")
    assert cfg.optim.lr_policy == "plateau" and cfg.optim.plateau_metric == "cycle_l1" and cfg.data.val_images == 50


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_experiment_file_loads_with_its_schema(path: Path) -> None:
    if path.stem.startswith("gatys"):
        cfg = load_gatys_config(path)
        assert cfg.optim.steps >= 1 and cfg.loss.style_layers
    elif path.stem.startswith("report"):
        cfg = load(ReportConfig, path, [])
        assert cfg.methods and all(m.method for m in cfg.methods)
    else:
        data = __import__("yaml").safe_load(path.read_text())
        cfg = load_training_config(path)
        assert cfg.method == data.get("method", "cyclegan") and cfg.total_epochs >= 1


def test_dry_run_prints_the_resolved_config_and_what_is_held_out(capsys: pytest.CaptureFixture) -> None:
    assert train.main(["--config", str(EXPERIMENTS / "monet.yaml"), "--dry-run", "optim.lr=1e-3"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.001" in out and "n_blocks: 9" in out
    assert "# trains on every image of trainA/ and trainB/ (data.val_images=0)" in out
    assert train.main(["--config", str(EXPERIMENTS / "monet_plateau.yaml"), "--dry-run"]) == 0
    assert "the last 50 images of trainA/ and of trainB/ are held out" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Types, lists, overrides


def test_overrides_types_and_scientific_notation() -> None:
    cfg = load_training_config(None, ["optim.lr=1e-4", "model.ngf=32", "train.amp=bf16", "data.flip=false", "name=x"])
    assert cfg.optim.lr == 1e-4 and cfg.model.ngf == 32 and cfg.train.amp == "bf16" and cfg.data.flip is False
    lam = load_training_config(None, ["loss.lambda_A=5"]).loss.lambda_A
    assert lam == 5.0 and isinstance(lam, float)  # int widened to float
    # YAML 1.1 reads bare off / true as booleans: they still mean the choices.
    assert load_training_config(None, ["train.amp=off"]).train.amp == "off"
    assert load_training_config(None, ["train.compile=true"]).train.compile == "default"
    assert load_training_config(None, ["train.compile=reduce-overhead"]).train.compile == "reduce-overhead"


def test_no_method_key_means_cyclegan_and_round_trips() -> None:
    cfg = load_training_config(EXPERIMENTS / "quickstart.yaml", ["optim.lr=3e-4"])
    assert isinstance(cfg, CycleGANConfig) and cfg.method == "cyclegan"
    assert load_training_config(None, [], base=to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="method: 'pix2pix' is not a trainable method; valid: cyclegan"):
        load_training_config(None, ["method=pix2pix"])


@dataclass
class _Item:
    name: str = ""
    weight: float = 1.0


@dataclass
class _Lists:
    words: list[str] = field(default_factory=lambda: ["a", "b"])
    numbers: list[float] = field(default_factory=list)
    items: list[_Item] = field(default_factory=list)


def test_lists_are_real_yaml_lists_with_indexed_overrides(tmp_path: Path) -> None:
    path = tmp_path / "l.yaml"
    path.write_text("words: [x, y, z]\nnumbers: [1, 2.5]\nitems:\n  - {name: one}\n  - {name: two, weight: 3}\n")
    cfg = load(_Lists, path, ["numbers=[4, 5e-1]", "items.1.weight=0.25", "items.0.name=uno"])
    assert cfg.words == ["x", "y", "z"] and cfg.numbers == [4.0, 0.5]
    assert cfg.items == [_Item("uno", 1.0), _Item("two", 0.25)]
    assert load(_Lists, None, ["words=solo"]).words == ["solo"]  # one value where a list is expected
    with pytest.raises(ConfigError, match=r"items.5: items has 2 entries"):
        load(_Lists, path, ["items.5.weight=1"])
    with pytest.raises(ConfigError, match=r"numbers.1: expected a number, got 'x'"):
        load(_Lists, None, ["numbers=[1, x]"])
    with pytest.raises(ConfigError, match=r"items.0.wieght.*did you mean 'weight'"):
        load(_Lists, None, ["items=[{wieght: 1}]"])


def test_report_methods_entries_are_checked_by_index() -> None:
    cfg = load(ReportConfig, EXPERIMENTS / "report_demo.yaml", ["methods.3.settings=[optim.steps=3]"])
    assert cfg.methods[3].method == "gatys" and cfg.methods[3].settings == ["optim.steps=3"]
    with pytest.raises(ConfigError, match=r"methods.0.alpha: must be in \[0, 1\]"):
        load(ReportConfig, EXPERIMENTS / "report_demo.yaml", ["methods.0.alpha=2"])
    with pytest.raises(ConfigError, match=r"methods.0.method: 'cyclogan' is not a method"):
        load(ReportConfig, EXPERIMENTS / "report_demo.yaml", ["methods.0.method=cyclogan"])


def test_gatys_layers_are_lists() -> None:
    cfg = load_gatys_config(None, ["loss.style_layers=[relu1_1,relu2_1]", "loss.style_layer_weights=[1,3]"])
    assert cfg.loss.style_layers == ["relu1_1", "relu2_1"] and cfg.loss.style_layer_weights == [1.0, 3.0]
    with pytest.raises(ConfigError, match="loss.style_layer_weights: 1 weights for 2 layers"):
        load_gatys_config(None, ["loss.style_layers=[relu1_1,relu2_1]", "loss.style_layer_weights=[1]"])


# ---------------------------------------------------------------------------------------------
# Every key, every mistake


def _leaf_keys(cls: type, prefix: str = "") -> list[tuple[str, typing.Any]]:
    out = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out += _leaf_keys(tp, prefix + f.name + ".")
        else:
            out.append((prefix + f.name, tp))
    return out


# The least a schema's defaults need to be valid (a Johnson network needs a style image).
BASE = {"johnson": ["style.images=[style.png]"]}
LEAVES = [(m, k, tp) for m in TRAINABLE for k, tp in _leaf_keys(training_schema(m)) if k != "method"]


@pytest.mark.parametrize("method,key,tp", LEAVES, ids=[f"{m}:{k}" for m, k, _ in LEAVES])
def test_every_key_has_a_checked_type(method: str, key: str, tp: typing.Any) -> None:
    bad = "{a: 1}" if typing.get_origin(tp) is list else "[1, 2]"
    with pytest.raises(ConfigError) as e:
        load_training_config(None, [f"method={method}", *BASE.get(method, []), f"{key}={bad}"])
    assert str(e.value).startswith(f"{key}"), str(e.value)


NUMERIC = [(m, k) for m, k, tp in LEAVES if tp in (int, float)]


@pytest.mark.parametrize("method,key", NUMERIC, ids=[f"{m}:{k}" for m, k in NUMERIC])
def test_every_numeric_key_has_a_checked_range(method: str, key: str) -> None:
    """No number in a config means anything when negative: each is rejected, naming its key."""
    with pytest.raises(ConfigError) as e:
        load_training_config(None, [f"method={method}", *BASE.get(method, []), f"{key}=-1"])
    assert str(e.value).startswith(f"{key}:"), str(e.value)


MISTAKES = [  # (kind, overrides, key the message must name, extra text it must contain)
    ("unknown top-level key", ["sead=1"], "sead", "did you mean 'seed'"),
    ("unknown nested key", ["optim.lrr=1e-3"], "optim.lrr", "did you mean 'lr'"),
    ("unknown section", ["optimizer.lr=1"], "optimizer", "valid keys"),
    ("string for int", ["data.batch_size=four"], "data.batch_size", "expected an integer"),
    ("float for int", ["data.batch_size=1.5"], "data.batch_size", "expected an integer"),
    ("bool for int", ["model.ngf=true"], "model.ngf", "expected an integer"),
    ("word for bool", ["data.flip=maybe"], "data.flip", "true or false"),
    ("number for string", ["name=5"], "name", "expected a string"),
    ("string for float", ["optim.lr=fast"], "optim.lr", "expected a number"),
    ("NaN", ["optim.lr=.nan"], "optim.lr", "finite"),
    ("infinity", ["loss.lambda_A=.inf"], "loss.lambda_A", "finite"),
    ("bad choice", ["train.amp=fp8"], "train.amp", "bf16"),
    ("bad compile mode", ["train.compile=fast"], "train.compile", "reduce-overhead"),
    ("out of range", ["optim.beta1=1.0"], "optim.beta1", "[0, 1)"),
    ("zero where >= 1", ["checkpoint.keep=0"], "checkpoint.keep", ">= 1"),
    ("crop not a multiple of 4", ["data.crop_size=30", "data.load_size=36"], "data.crop_size", "multiple of 4"),
    ("crop larger than load", ["data.crop_size=300"], "data.crop_size", "larger than data.load_size"),
    ("crop too small for the PatchGAN", ["data.crop_size=16"], "data.crop_size", "data.crop_size >= 24"),
    ("PatchGAN too deep for the crop", ["data.load_size=36", "data.crop_size=32", "model.n_layers_D=5"],
     "data.crop_size", "fewer model.n_layers_D"),
    ("batch > 1 with sizes that vary", ["data.preprocess=none", "data.batch_size=2"], "data.batch_size",
     "one size"),
    ("absurd width", ["model.ngf=100000"], "model.ngf", "[1, 1024]"),
    ("absurd load size", ["data.load_size=100000000"], "data.load_size", "[1, 16384]"),
    ("seed past 2**31", ["seed=4294967296"], "seed", "must be in [0, 2147483647]"),
    ("name too long", ["name=" + "x" * 300], "name", "under 200"),
    ("plateau without validation", ["optim.lr_policy=plateau", "data.val_images=0"], "optim.lr_policy",
     "val_images"),
    ("plateau on FID not every epoch", ["optim.lr_policy=plateau", "optim.plateau_metric=fid"],
     "optim.plateau_metric", "eval.every_epochs=1"),
    ("no epochs at all", ["optim.n_epochs=0", "optim.n_epochs_decay=0"], "optim.n_epochs", ">= 1"),
    ("bad device", ["device=cuda:x"], "device", "cuda:N"),
    ("bad name", ["name=a/b"], "name", "plain folder name"),
    ("section given a value", ["data=3"], "data", "is a section"),
    ("key under a non-section", ["seed.x=1"], "seed", "not a section"),
    ("no '='", ["optim.lr"], "optim.lr", "key.sub=value"),
    ("unparsable value", ["optim.lr=[1,"], "optim.lr", "cannot parse"),
]


@pytest.mark.parametrize("kind,overrides,key,text", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_config_mistakes_name_the_key(kind: str, overrides: list[str], key: str, text: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_training_config(None, overrides)
    msg = str(e.value)
    assert key in msg and text in msg, msg


@pytest.mark.parametrize("content,text", [
    (b"data: 5\n", "data: expected a mapping"),
    (b"optim:\n  lr: [oops\n", "not valid YAML"),
    (b"model:\n  ngff: 8\n", "did you mean 'ngf'"),
    (b"train:\n  amp: half\n", "train.amp: 'half' is not a valid choice"),
    (b"- a\n- b\n", "a config file must be a mapping of keys (key: value), this one holds a list"),
    (b"just a string\n", "this one holds a str"),
    (b"name: caf\xe9\n", "not a UTF-8 text file"),
])
def test_config_file_mistakes_are_one_line(tmp_path: Path, content: bytes, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_training_config(path, ["optim.lr=1e-4"])  # an override after a bad file: still the file's error
    assert text in str(e.value) and "\n" not in str(e.value)


def test_train_cli_reports_config_errors_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train.main(["--dry-run", "optim.lr=-1"]) == 2
    assert "error: optim.lr: must be > 0" in capsys.readouterr().err
    assert train.main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml not found" in capsys.readouterr().err
    assert train.main(["--resume", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "no such run folder" in err
    assert train.main(["--dry-run", "device=mps"]) == 0  # a valid name: the machine is checked when training starts


def test_missing_dataset_message(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = train.main(["--config", str(EXPERIMENTS / "monet.yaml"), f"data.root={tmp_path / 'monet2photo'}",
                       f"log.root={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    for part in ("trainA", "trainB", "testA", "testB", "python -m data.download monet2photo"):
        assert part in err


def test_build_rejects_a_non_mapping_section() -> None:
    with pytest.raises(ConfigError, match="model: expected a mapping"):
        build(CycleGANConfig, {"model": [1, 2]})
