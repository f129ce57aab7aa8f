"""Messages say what happened (issue 22 item 4): the stop line's epoch is the progress bar's, epoch
lines give their wall time, no progress bar escape codes in a log file, the documented error is
the real one, refusals come before a model loads, no invented parameter count."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT
from image_corpus import load_script, noise
from PIL import Image

import methods.base
from options.common import load_training_config
from options.config import ConfigError
from utils.translate import FolderJob, run_folder

test_cli = load_script("test")
stylize_cli = load_script("stylize")


def test_the_stop_line_names_the_1_based_epoch_the_bar_showed(tiny_config, make_trainer, capsys):
    t = make_trainer(tiny_config())  # 2 epochs of 6 batches; a stop request is read every 2 steps
    real_step = t.train_step

    def step(batch):
        if t.step == 7:  # the second batch of the second epoch ("epoch 2/2" on the bar)
            t.stop.requested = True
        return real_step(batch)

    t.train_step = step
    result = t.fit()
    out = capsys.readouterr().out
    assert result.stopped_early and result.step == 8
    assert "stopped at epoch 2/2 batch 2/6 (step 8)" in out, out


def test_epoch_lines_give_their_wall_time_and_no_bar_reaches_a_log(tiny_config, make_trainer, capsys):
    t = make_trainer(tiny_config("log.progress=true", "optim.n_epochs_decay=0"))  # stderr is not a terminal here
    t.fit()
    captured = capsys.readouterr()
    assert re.search(r"^epoch 1/1 done \| .* \| step 6 \| \d+\.\d s$", captured.out, re.M), captured.out
    assert "\r" not in captured.err and "\x1b[" not in captured.err and "it/s" not in captured.err


def test_a_folder_run_writes_no_bar_into_a_log(tmp_path, capsys):
    from test_folder_runner import Identity

    (tmp_path / "in").mkdir()
    for i in range(3):
        Image.fromarray(noise(8, 8, seed=i)).save(tmp_path / "in" / f"{i}.png")
    summary = run_folder(Identity(), FolderJob(tmp_path / "in", tmp_path / "out", progress=True))
    assert summary.translated == 3 and capsys.readouterr().err == ""


def test_the_unknown_key_error_docs_quote_is_the_real_one(capsys):
    quoted = re.search(r"`(error: unknown config key [^`]*?)\.\.\.`", (ROOT / "docs" / "failures.md").read_text())
    train = load_script("train")
    assert train.main(["--dry-run", "optim.lrr=1e-3"]) == 2
    assert capsys.readouterr().err.startswith(quoted.group(1))


def test_johnsons_grad_checkpoint_refusal_claims_no_parameter_count():
    with pytest.raises(ConfigError) as e:
        load_training_config(ROOT / "experiments" / "johnson_demo.yaml", ["train.grad_checkpoint=true"])
    assert "train.grad_checkpoint" in str(e.value) and not re.search(r"\d+(\.\d+)? ?M param", str(e.value))


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded before the options were checked")


@pytest.mark.parametrize("case", ["load_size", "output_is_input", "output_is_a_file"])
def test_test_py_refuses_bad_options_before_the_model_loads(tmp_path, capsys, monkeypatch, case):
    monkeypatch.setattr(methods.base, "load_method", _no_model)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(noise(8, 8)).save(src / "a.png")
    (tmp_path / "file").write_text("x")
    out = {"load_size": tmp_path / "out", "output_is_input": src, "output_is_a_file": tmp_path / "file"}[case]
    extra = ["--load-size", "100000"] if case == "load_size" else []
    code = test_cli.main(["--checkpoint", str(tmp_path / "nope.pth"), "--input", str(src), "--output", str(out),
                          "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nope.pth" not in err, err
    assert {"load_size": "--load-size must be in [1, 16384], got 100000", "output_is_input": "is the input folder",
            "output_is_a_file": "is a file; give a folder"}[case] in err


def test_stylize_refuses_an_output_file_before_the_vgg_loads(tmp_path, capsys, monkeypatch):
    import methods.gatys

    monkeypatch.setattr(methods.gatys.GatysMethod, "build", classmethod(_no_model))
    Image.fromarray(noise(8, 8)).save(tmp_path / "a.png")
    (tmp_path / "out.png").write_text("x")
    code = stylize_cli.main(["--input", str(tmp_path / "a.png"), "--style", str(tmp_path / "a.png"), "--output",
                             str(tmp_path / "out.png"), "vgg.weights=random", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2 and f"--output {tmp_path / 'out.png'} is a file; give a folder" in captured.err
    assert (tmp_path / "out.png").read_text() == "x" and "Gatys:" not in captured.out


def test_stylize_help_says_it_resizes_to_512_px():
    help_text = stylize_cli.parse_args.__globals__["__doc__"]
    assert "512 px on its longer side" in help_text and "image.size=0 keeps each content image's size" in help_text
