"""Config loading: YAML + overrides, errors that name the key, the shipped experiment files."""

from __future__ import annotations

from pathlib import Path

import pytest

import train
from options.config import ConfigError, config_from_dict, config_to_dict, load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_monet_yaml_is_the_paper_setting() -> None:
    cfg = load_config(EXPERIMENTS / "monet.yaml")
    d, m, lo, o, t = cfg.data, cfg.model, cfg.loss, cfg.optim, cfg.train
    assert (d.load_size, d.crop_size, d.preprocess, d.flip, d.batch_size) == (286, 256, "resize_and_crop", True, 1)
    assert (m.ngf, m.n_blocks, m.ndf, m.n_layers_D) == (64, 9, 64, 3)
    assert (m.norm, m.init, m.init_gain) == ("instance", "normal", 0.02)
    assert (lo.gan_mode, lo.lambda_A, lo.lambda_B, lo.lambda_identity) == ("lsgan", 10.0, 10.0, 0.5)
    assert (o.lr, o.beta1, o.beta2, o.lr_policy, o.n_epochs, o.n_epochs_decay) == (2e-4, 0.5, 0.999, "linear", 100, 100)
    assert t.pool_size == 50 and t.d_steps_per_g == 1 and t.d_clip == 0 and t.max_batches_per_epoch == 0


def test_all_experiment_files_load() -> None:
    for path in EXPERIMENTS.glob("*.yaml"):
        if path.stem.startswith("gatys"):
            continue  # a different schema (stylize.py)
        load_config(path)


def test_plateau_variant() -> None:
    cfg = load_config(EXPERIMENTS / "monet_plateau.yaml")
    assert cfg.optim.lr_policy == "plateau" and cfg.data.val_images > 0


def test_overrides_types_and_scientific_notation() -> None:
    cfg = load_config(None, ["optim.lr=1e-4", "model.ngf=32", "train.amp=bf16", "data.flip=false", "name=x"])
    assert cfg.optim.lr == 1e-4 and cfg.model.ngf == 32 and cfg.train.amp == "bf16" and cfg.data.flip is False
    assert load_config(None, ["loss.lambda_A=5"]).loss.lambda_A == 5.0  # int widened to float


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("optim.lrr=1", ["optim.lrr", "did you mean 'lr'", "optim.lr_D"]),
        ("bogus=1", ["bogus", "valid keys", "data"]),
        ("model.norm=group", ["model.norm", "instance, batch, none"]),
        ("data.crop_size=300", ["data.crop_size", "data.load_size"]),
        ("optim.lr=-0.1", ["optim.lr", "> 0"]),
        ("model.ngf=abc", ["model.ngf", "integer"]),
        ("data.flip=3", ["data.flip", "true or false"]),
        ("data.crop_size=30", ["data.crop_size", "multiple of 4"]),
        ("train.amp=fp8", ["train.amp", "off, bf16, fp16"]),
        ("optim.lr_policy=plateau", None),  # valid: val_images defaults to 50
        ("data", ["data", "key.sub=value"]),
        ("data=1", ["data is a section"]),
    ],
)
def test_bad_overrides_name_the_key(override: str, names: list[str] | None) -> None:
    if names is None:
        load_config(None, [override])
        return
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    for name in names:
        assert name in str(err.value)


def test_unknown_key_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  ngff: 3\n")
    with pytest.raises(ConfigError, match=r"model\.ngff.*did you mean 'ngf'"):
        load_config(path)


def test_plateau_without_validation_is_refused() -> None:
    with pytest.raises(ConfigError, match="data.val_images"):
        load_config(None, ["optim.lr_policy=plateau", "data.val_images=0"])


def test_round_trip_through_dict() -> None:
    cfg = load_config(EXPERIMENTS / "quickstart.yaml", ["optim.lr=3e-4"])
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_dry_run_prints_resolved_config(capsys: pytest.CaptureFixture) -> None:
    assert train.main(["--config", str(EXPERIMENTS / "monet.yaml"), "--dry-run", "optim.lr=1e-3"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.001" in out and "n_blocks: 9" in out


def test_cli_error_exit_code(capsys: pytest.CaptureFixture) -> None:
    assert train.main(["--config", str(EXPERIMENTS / "monet.yaml"), "optim.lr=-1"]) == 2
    assert "optim.lr" in capsys.readouterr().err


def test_missing_dataset_message(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = train.main(["--config", str(EXPERIMENTS / "monet.yaml"), f"data.root={tmp_path / 'monet2photo'}",
                       f"log.root={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2
    for part in ("trainA", "trainB", "testA", "testB", "python -m data.download monet2photo"):
        assert part in err
