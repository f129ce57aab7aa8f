"""The CUT / FastCUT training config (options/cut.py): the authors' defaults, --CUT_mode presets that
fill only what a config leaves unset, and one-line errors naming the key."""

from __future__ import annotations

import pytest

from methods import METHODS, training_schema
from options.common import load_training_config, refused_resume_changes
from options.config import ConfigError, to_dict
from options.cut import CUTConfig, cut_discriminator_output_side, encoder_depth


def _cfg(*overrides: str) -> CUTConfig:
    return load_training_config(None, ["method=cut", *overrides])


def test_defaults_are_the_authors() -> None:
    cfg = _cfg()
    assert isinstance(cfg, CUTConfig) and training_schema("cut") is CUTConfig and METHODS["cut"].trainer
    m, lo, o, t, d = cfg.model, cfg.loss, cfg.optim, cfg.train, cfg.data
    assert (m.ngf, m.ndf, m.n_blocks, m.n_layers_D, m.norm) == (64, 64, 9, 3, "instance")
    assert (m.antialias, m.antialias_up, m.dropout, m.init, m.init_gain, m.netF_nc) == (True, True, False, "xavier",
                                                                                         0.02, 256)
    assert (lo.gan_mode, lo.lambda_GAN, lo.nce_layers, lo.nce_T, lo.num_patches) == ("lsgan", 1.0, [0, 4, 8, 12, 16],
                                                                                      0.07, 256)
    assert lo.nce_includes_all_negatives_from_minibatch is False
    assert (o.lr, o.beta1, o.beta2, o.lr_policy) == (2e-4, 0.5, 0.999, "linear") and t.pool_size == 0
    assert (d.load_size, d.crop_size, d.batch_size, d.flip) == (286, 256, 1, True)
    # --CUT_mode CUT: nce_idt on, lambda_NCE 1, no flip; 200 + 200 epochs (train_options.py)
    assert (cfg.mode, lo.lambda_NCE, lo.nce_idt, lo.flip_equivariance) == ("cut", 1.0, True, False)
    assert (o.n_epochs, o.n_epochs_decay, cfg.total_epochs) == (200, 200, 400)


def test_fastcut_mode_fills_only_what_is_unset() -> None:
    fast = _cfg("mode=fastcut")
    assert (fast.loss.lambda_NCE, fast.loss.nce_idt, fast.loss.flip_equivariance) == (10.0, False, True)
    assert (fast.optim.n_epochs, fast.optim.n_epochs_decay) == (150, 50)
    mixed = _cfg("mode=fastcut", "loss.lambda_NCE=5", "loss.nce_idt=true", "optim.n_epochs_decay=10")
    assert (mixed.loss.lambda_NCE, mixed.loss.nce_idt, mixed.loss.flip_equivariance) == (5.0, True, True)
    assert (mixed.optim.n_epochs, mixed.optim.n_epochs_decay) == (150, 10)
    assert _cfg("loss.flip_equivariance=true").loss.nce_idt is True  # mode cut keeps its own defaults
    # The stored (resolved) config is explicit: read back, it is the same whatever mode says.
    again = load_training_config(None, [], base=to_dict(mixed))
    assert to_dict(again) == to_dict(mixed)


@pytest.mark.parametrize("overrides,key,text", [
    (["model.n_blocks=1"], "loss.nce_layers", "layer 16 is beyond the generator's encoder (layers 0 .. 12"),
    (["model.n_blocks=1"], "loss.nce_layers", "e.g. [0, 4, 8, 12]"),
    (["loss.nce_layers=[0,8,4]"], "loss.nce_layers", "strictly increasing"),
    (["loss.nce_layers=[]"], "loss.nce_layers", "at least one"),
    (["loss.nce_layers=[-1,4]"], "loss.nce_layers", ">= 0"),
    (["train.pool_size=50"], "train.pool_size", "must be 0"),
    (["model.output_nc=1"], "loss.nce_idt", "input_nc == model.output_nc"),
    (["mode=CUT"], "mode", "valid: cut, fastcut"),
    (["loss.nce_T=0"], "loss.nce_T", "> 0"),
    (["loss.num_patches=0"], "loss.num_patches", "[1, 65536]"),
    (["model.norm=layer"], "model.norm", "valid: instance, batch, none"),
    (["data.crop_size=16", "data.load_size=16"], "data.crop_size", "data.crop_size >= 24"),
    (["optim.lr_policy=plateau"], "optim.lr_policy", "data.val_images must be > 0"),
])
def test_mistakes_name_the_key(overrides, key, text) -> None:
    with pytest.raises(ConfigError) as e:
        _cfg(*overrides)
    msg = str(e.value)
    assert msg.startswith(key) and text in msg and "\n" not in msg, msg


def test_tiny_settings_and_shapes() -> None:
    cfg = _cfg("model.ngf=8", "model.ndf=8", "model.n_blocks=1", "loss.nce_layers=[0,4,8,12]",
               "data.load_size=36", "data.crop_size=32", "model.n_layers_D=2", "mode=fastcut")
    assert cfg.loss.nce_layers == [0, 4, 8, 12]
    assert encoder_depth(9) == 21 and encoder_depth(1) == 13 and encoder_depth(9, antialias=False) == 19
    # The blur-pooled PatchGAN: 256 -> 30 (as the authors'), 32 -> 2 with 3 layers, 6 with 2.
    assert [cut_discriminator_output_side(c, n) for c, n in ((256, 3), (32, 3), (32, 2))] == [30, 2, 6]
    assert cut_discriminator_output_side(256, 3, antialias=False) == 30


def test_resume_may_not_change_the_networks_or_the_mode() -> None:
    refused = refused_resume_changes("cut", ["mode", "model.ngf", "loss.nce_layers", "train.pool_size",
                                             "loss.lambda_NCE", "optim.lr", "loss.num_patches"])
    assert refused == ["mode", "model.ngf", "loss.nce_layers", "train.pool_size"]
