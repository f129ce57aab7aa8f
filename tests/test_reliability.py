"""Fault injection: every promise of the "Failure behaviour" section, proved by causing the fault.

Kills (SIGKILL at random moments and in the middle of a checkpoint write), corrupt / truncated /
foreign / pickled checkpoints, a full disk, NaN losses, a corpus of broken and odd images,
config mistakes, and SIGINT / SIGTERM. Subprocess tests are marked ``slow``.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import hashlib
import io
import os
import queue
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import typing
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import train  # noqa: E402
import utils.trainer as trainer_mod  # noqa: E402
from data.demo import DemoSpec, make_demo_dataset  # noqa: E402
from data.image_io import BadImageError, list_images, load_rgb  # noqa: E402
from options.config import Config, ConfigError, load_config  # noqa: E402
from utils.checkpoint import (  # noqa: E402
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_file,
    load_training_checkpoint,
    resolve_checkpoint,
    save_atomic,
)
from utils.trainer import Trainer, TrainingError  # noqa: E402

# Smallest model and data that still run the real loop: 6 train + 2 val images per domain, 32 px.
TINY = [
    "device=cpu", "data.load_size=36", "data.crop_size=32", "data.num_workers=0", "data.val_images=2",
    "model.ngf=4", "model.ndf=8", "model.n_blocks=1", "model.n_layers_D=2", "optim.n_epochs=1",
    "optim.n_epochs_decay=0", "log.progress=false", "log.scalars_every=1", "log.images_every=0",
    "train.pool_size=4",
]
BATCHES_PER_EPOCH = 6  # 8 images - 2 held out for validation, batch size 1


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rel_data") / "demo"
    return make_demo_dataset(root, DemoSpec(size=32, n_train_A=8, n_train_B=8, n_test=2))


def make_cfg(data_root: Path, runs: Path, *overrides: str) -> Config:
    return load_config(None, [f"data.root={data_root}", f"log.root={runs}", "name=run", *TINY, *overrides])


def cli_args(data_root: Path, runs: Path, *overrides: str) -> list[str]:
    return [f"data.root={data_root}", f"log.root={runs}", "name=run", *TINY, *overrides]


@pytest.fixture(scope="module")
def trained_run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 6-step run with checkpoints at steps 2, 4, 6 (copied per test by ``run_copy``)."""
    runs = tmp_path_factory.mktemp("rel_runs")
    Trainer(make_cfg(dataset, runs, "checkpoint.every_steps=2")).fit()
    return runs / "run"


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "runs" / "run"
    shutil.copytree(trained_run, dst)
    return dst


def steps_on_disk(run_dir: Path) -> list[int]:
    return [int(p.stem.split("_")[1]) for p in list_checkpoints(run_dir)]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# =============================================================================================
# Checkpoint files: atomic, versioned, corrupt ones named and skipped, pickles refused


def test_save_atomic_leaves_one_complete_file_with_normal_permissions(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "step_00000001.pt"
    save_atomic({"format": "x", "w": torch.arange(4)}, path)
    save_atomic({"format": "x", "w": torch.arange(5)}, path)  # replaces
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert torch.equal(load_file(path)["w"], torch.arange(5))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


CORRUPTIONS = {
    "truncated": lambda b: b[: len(b) // 2],
    "zero_bytes": lambda b: b"",
    "garbage": lambda b: os.urandom(4096),
    "header_smashed": lambda b: b[:64] + b"\xff" * 64 + b[128:],
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_newest_checkpoint_is_named_and_skipped(run_copy: Path, kind: str) -> None:
    newest = list_checkpoints(run_copy)[-1]
    assert newest.name == "step_00000006.pt"
    newest.write_bytes(CORRUPTIONS[kind](newest.read_bytes()))

    with pytest.warns(UserWarning, match=re.escape(str(newest))):
        path, ckpt = resolve_checkpoint(run_copy)
    assert path.name == "step_00000004.pt" and ckpt["counters"]["step"] == 4

    # Loading that one file on its own is a clear error naming it, not a fallback.
    with pytest.raises(CheckpointError, match=re.escape(str(newest))) as e:
        load_training_checkpoint(newest)
    assert "truncated or corrupt" in str(e.value) or "not a readable checkpoint" in str(e.value)


def test_every_checkpoint_corrupt_is_an_error_listing_each(run_copy: Path) -> None:
    for p in list_checkpoints(run_copy):
        p.write_bytes(p.read_bytes()[:100])
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="every checkpoint") as e:
        latest_checkpoint(run_copy)
    for p in list_checkpoints(run_copy):
        assert str(p) in str(e.value)


def test_resume_run_folder_with_corrupt_newest_continues_from_previous(run_copy: Path, capsys) -> None:
    newest = list_checkpoints(run_copy)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])
    # Resume with the stored config, one more epoch: continues from step 4, not from scratch.
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        rc = train.main(["--resume", str(run_copy), "optim.n_epochs=2"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "resumed from" in out.out and "step_00000004.pt" in out.out and "(epoch 0, step 4)" in out.out
    assert steps_on_disk(run_copy)[-1] == 2 * BATCHES_PER_EPOCH
    for p in list_checkpoints(run_copy):  # the corrupt step 6 was overwritten by a good one
        load_training_checkpoint(p)


def test_resume_single_corrupt_file_exits_2_naming_it(run_copy: Path, capsys) -> None:
    newest = list_checkpoints(run_copy)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])
    assert train.main(["--resume", str(newest)]) == 2
    err = capsys.readouterr().err
    assert str(newest) in err and "truncated or corrupt" in err


@pytest.mark.parametrize("version,hint", [(99, "update the code"), (0, "older")])
def test_other_format_version_gets_a_clear_message(run_copy: Path, version: int, hint: str) -> None:
    path = list_checkpoints(run_copy)[-1]
    ckpt = load_file(path)
    ckpt["version"] = version
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=f"format version {version}") as e:
        load_training_checkpoint(path)
    assert hint in str(e.value) and str(path) in str(e.value)
    # From a run folder too: a version mismatch is not "corrupt", so it is not silently skipped.
    with pytest.raises(CheckpointError, match=f"format version {version}"):
        resolve_checkpoint(run_copy)


def test_bare_state_dict_is_not_resumable(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a full training checkpoint"):
        load_training_checkpoint(path)


class _Payload:
    """Unpickling this runs ``touch <marker>``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["module", "object_in_dict", "code_execution"])
def test_pickled_objects_are_refused(tmp_path: Path, kind: str) -> None:
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    obj = {
        "module": torch.nn.Linear(2, 2),  # torch.save(model): a pickled module, not a state_dict
        "object_in_dict": {"format": "cyclegan-checkpoint", "version": 1, "cfg": Path("x")},
        "code_execution": {"nets": _Payload(marker)},
    }[kind]
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="weights_only") as e:
        load_file(path)
    assert "pickled" in str(e.value) and str(path) in str(e.value)
    assert not marker.exists()


def _py_files() -> list[Path]:
    skip = {".venv", "runs", "datasets", ".git"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


def test_every_torch_load_is_weights_only_and_yaml_is_safe() -> None:
    offenders = []
    for path in _py_files():
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            name = f"{owner}.{node.func.attr}"
            if name == "torch.load":
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    offenders.append(f"{path}:{node.lineno} torch.load without weights_only=True")
            if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "pickle.load",
                        "pickle.loads"):
                offenders.append(f"{path}:{node.lineno} {name}")
    assert not offenders, "\n".join(offenders)


def test_yaml_config_with_python_tags_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(cfg)
    assert not marker.exists()


# =============================================================================================
# Full disk / unwritable folder


def _failing_save(fail_on: set[int], err: int = errno.ENOSPC, record: list | None = None):
    """A torch.save that writes a little and then fails with ``err`` on the listed call numbers."""
    real = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] in fail_on:
            if record is not None:
                record.append(calls["n"])
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(err, os.strerror(err))
        return real(obj, f, *args, **kwargs)

    return save


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_save_atomic_disk_full_keeps_previous_file(tmp_path: Path, monkeypatch, where: str) -> None:
    path = tmp_path / "checkpoints" / "step_00000002.pt"
    save_atomic({"w": torch.ones(3)}, path)
    before = sha(path)
    if where == "write":
        monkeypatch.setattr(torch, "save", _failing_save({1}))
    else:
        def no_space(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(CheckpointError, match="disk full") as e:
        save_atomic({"w": torch.zeros(3)}, path)
    assert str(path) in str(e.value)
    assert sha(path) == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_save_atomic_unwritable_folder_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(CheckpointError, match="cannot write checkpoint in .*Permission denied"):
        save_atomic({"w": 1}, tmp_path / "checkpoints" / "step_00000001.pt")


def test_training_survives_a_full_disk(dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """The save at step 4 hits ENOSPC: a warning, step 2 stays intact, training goes on, step 6 saves."""
    cfg = make_cfg(dataset, tmp_path, "checkpoint.every_steps=2")
    trainer = Trainer(cfg)
    failed: list[int] = []
    step2 = cfg.run_dir / "checkpoints" / "step_00000002.pt"
    hashes: dict[str, str] = {}
    real_save = _failing_save({2}, record=failed)

    def save(obj, f, *args, **kwargs):
        if step2.exists() and "step2" not in hashes:
            hashes["step2"] = sha(step2)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    result = trainer.fit()
    err = capsys.readouterr().err
    assert failed == [2]
    assert result.step == BATCHES_PER_EPOCH and not result.stopped_early
    assert "WARNING: cannot write checkpoint" in err and "disk full" in err and f"{step2} is intact" in err
    assert steps_on_disk(cfg.run_dir) == [2, 6]
    assert sha(step2) == hashes["step2"]
    assert result.last_checkpoint.name == "step_00000006.pt"
    assert not list((cfg.run_dir / "checkpoints").glob(".*.tmp"))


def test_final_checkpoint_failing_is_an_error_not_a_silent_success(dataset: Path, tmp_path: Path, monkeypatch,
                                                                   capsys) -> None:
    monkeypatch.setattr(torch, "save", _failing_save(set(range(1, 100))))
    rc = train.main(cli_args(dataset, tmp_path, "checkpoint.every_steps=0"))
    err = capsys.readouterr().err
    assert rc == 2
    assert "disk full" in err and "could not write the final checkpoint at step 6" in err


# =============================================================================================
# Non-finite losses


def _nan_generator_losses(monkeypatch, when=lambda n: True) -> dict[str, int]:
    """Make the G loss NaN on the calls where ``when(call_number)`` (the graph stays intact)."""
    real = trainer_mod.generator_losses
    calls = {"n": 0}

    def fake(*args, **kwargs):
        g = real(*args, **kwargs)
        calls["n"] += 1
        if when(calls["n"]):
            g = dataclasses.replace(g, G_A=g.G_A * float("nan"))
        return g

    monkeypatch.setattr(trainer_mod, "generator_losses", fake)
    return calls


def _snapshot(module_or_opt) -> dict:
    if isinstance(module_or_opt, torch.optim.Optimizer):
        sd = module_or_opt.state_dict()
        return {k: {n: (v.clone() if torch.is_tensor(v) else v) for n, v in s.items()} for k, s in sd["state"].items()}
    return {k: v.detach().clone() for k, v in module_or_opt.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            if not _same(x, y):
                return False
        elif torch.is_tensor(x):
            if not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


def _batch(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    batch = next(iter(trainer.loader))
    return trainer._to_device(batch["A"]), trainer._to_device(batch["B"])


def test_nan_generator_loss_skips_the_update(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    trainer = Trainer(make_cfg(dataset, tmp_path, "train.amp=off"))
    real_A, real_B = _batch(trainer)
    trainer.train_step(real_A, real_B)  # one good step, so Adam has moments to protect
    G_before = {n: _snapshot(getattr(trainer, n)) for n in ("G_A", "G_B")}
    D_before = _snapshot(trainer.D_A)
    opt_before = _snapshot(trainer.opt_G)
    pool_before = [len(pool.images) for pool in (trainer.pool_A, trainer.pool_B)]

    _nan_generator_losses(monkeypatch)
    logs = trainer.train_step(real_A, real_B)
    assert logs["nonfinite"] == 1.0 and not np.isfinite(logs["G_total"])
    assert trainer.nonfinite_total == 1 and trainer.nonfinite_streak == 1
    for n in ("G_A", "G_B"):
        assert _same(_snapshot(getattr(trainer, n)), G_before[n]), f"{n} changed on a NaN step"
    assert _same(_snapshot(trainer.opt_G), opt_before), "Adam state of G changed on a NaN step"
    assert all(p.grad is None for p in trainer.G_A.parameters())
    assert not _same(_snapshot(trainer.D_A), D_before), "D's finite update should still happen"
    # Fakes of a skipped G step stay out of the pools (they may be NaN, and would poison D later).
    assert [len(pool.images) for pool in (trainer.pool_A, trainer.pool_B)] == pool_before

    monkeypatch.undo()
    trainer.train_step(real_A, real_B)
    assert trainer.nonfinite_streak == 0 and trainer.nonfinite_total == 1


def test_nonfinite_steps_leave_the_grad_scaler_untouched(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """fp16's GradScaler logic, checked on CPU: a skipped step must neither crash update()
    (it asserts without a prior scaler.step) nor change the scale or its growth tracker."""
    trainer = Trainer(make_cfg(dataset, tmp_path, "train.amp=off"))
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1000)
    real_A, real_B = _batch(trainer)
    trainer.train_step(real_A, real_B)
    state = trainer.scaler.state_dict()

    _nan_generator_losses(monkeypatch)
    real_d = trainer_mod.discriminator_loss
    monkeypatch.setattr(trainer_mod, "discriminator_loss", lambda *a, **k: real_d(*a, **k) * float("inf"))
    D_before = _snapshot(trainer.D_A)
    for _ in range(3):
        trainer.train_step(real_A, real_B)  # G and D both non-finite: no step at all
    assert trainer.scaler.state_dict() == state
    assert trainer.nonfinite_streak == 3
    assert _same(_snapshot(trainer.D_A), D_before)


def test_consecutive_nonfinite_losses_stop_the_run_naming_the_last_good_checkpoint(
        dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    # Steps 1-3 are fine (checkpoint at 2), every step after that is NaN; stop after 2 in a row.
    _nan_generator_losses(monkeypatch, when=lambda n: n > 3)
    rc = train.main(cli_args(dataset, tmp_path, "checkpoint.every_steps=2", "train.max_nonfinite=2",
                             "optim.n_epochs=3"))
    out = capsys.readouterr()
    assert rc == 2
    good = tmp_path / "run" / "checkpoints" / "step_00000004.pt"
    assert "2 consecutive non-finite losses (NaN/Inf) at step 5" in out.err
    assert f"Last good checkpoint: {good}" in out.err
    assert out.err.count("WARNING: non-finite loss") == 2
    ckpt = load_training_checkpoint(good)
    assert ckpt["counters"]["nonfinite_total"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["nets"]["G_A"].values() if v.is_floating_point())


def test_nonfinite_from_the_first_step_says_no_checkpoint_yet(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    _nan_generator_losses(monkeypatch)
    trainer = Trainer(make_cfg(dataset, tmp_path, "train.max_nonfinite=3"))
    with pytest.raises(TrainingError, match="none written yet"):
        trainer.fit()
    assert trainer.step == 3


# =============================================================================================
# Bad and odd images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 100 000 x 100 000 PNG header in a few bytes: over PIL's decompression-bomb limit."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def _gradient(w: int, h: int) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1))


BAD = {  # name -> substring of the reason
    "zero_bytes.jpg": "empty",
    "truncated.jpg": "cannot decode",
    "text_named.jpg": "not a readable image",
    "bomb.png": "too large",
}
ODD = ("cmyk.jpg", "sixteen_bit.png", "palette_alpha.png", "gray.png", "exif_rotated.jpg", "one_pixel.png")


def make_corpus(folder: Path) -> Path:
    """The bad and odd images of the issue, plus a non-image file that must be ignored."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero_bytes.jpg").write_bytes(b"")
    buf = io.BytesIO()
    _gradient(64, 64).save(buf, "JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "text_named.jpg").write_text("this is not a JPEG\n" * 20)
    (folder / "bomb.png").write_bytes(_bomb_png())
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=95)  # pure red
    Image.fromarray(np.full((40, 40), 32896, np.uint16)).save(folder / "sixteen_bit.png")  # 16-bit grey 128
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([0, 0, 255] + [0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 20, 40))  # left half green, right half index 0 = transparent
    pal.save(folder / "palette_alpha.png", transparency=0)
    Image.new("L", (40, 40), 77).save(folder / "gray.png")
    landscape = Image.new("RGB", (60, 30), (0, 0, 255))
    landscape.paste((255, 0, 0), (0, 0, 20, 30))  # red on the left third
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    landscape.save(folder / "exif_rotated.jpg", quality=95, exif=exif)
    Image.new("RGB", (1, 1), (10, 200, 30)).save(folder / "one_pixel.png")
    (folder / "notes.txt").write_text("not an image, not listed\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus")


def test_corpus_lists_only_image_files(corpus: Path) -> None:
    names = {p.name for p in list_images(corpus)}
    assert names == set(BAD) | set(ODD)


@pytest.mark.parametrize("name", list(BAD))
def test_bad_image_raises_naming_the_file(corpus: Path, name: str) -> None:
    with pytest.raises(BadImageError) as e:
        load_rgb(corpus / name)
    assert e.value.path == str(corpus / name) and str(corpus / name) in str(e.value)
    assert BAD[name] in e.value.reason


def test_image_over_the_configured_pixel_limit_is_refused(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    _gradient(64, 64).save(path)
    assert load_rgb(path).size == (64, 64)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 px is now over the limit (a warning in PIL)
    with pytest.raises(BadImageError, match="too large"):
        load_rgb(path)


def test_odd_images_are_converted_correctly(corpus: Path) -> None:
    def px(name: str, xy=(0, 0)) -> tuple[int, ...]:
        img = load_rgb(corpus / name)
        assert img.mode == "RGB"
        return img.getpixel(xy)

    r, g, b = px("cmyk.jpg", (20, 20))
    assert r > 230 and g < 25 and b < 25, (r, g, b)
    assert px("sixteen_bit.png") == (128, 128, 128)
    assert px("palette_alpha.png", (5, 5)) == (0, 255, 0)
    assert px("palette_alpha.png", (35, 5)) == (255, 255, 255)  # transparent -> white background
    assert px("gray.png") == (77, 77, 77)
    rotated = load_rgb(corpus / "exif_rotated.jpg")
    assert rotated.size == (30, 60)  # portrait after applying the orientation
    top, bottom = rotated.getpixel((15, 5)), rotated.getpixel((15, 55))
    assert top[0] > 200 and top[2] < 60, top  # the red third is now on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    assert px("one_pixel.png") == (10, 200, 30)


def test_training_skips_bad_images_once_each_and_counts_them(dataset: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    make_corpus(root / "trainA")
    (root / "trainA" / "zz_truncated_val.jpg").write_bytes((root / "trainA" / "truncated.jpg").read_bytes())
    # Sorted, the last two files of trainA are held out for validation: one is the truncated copy.
    bad = {str(root / "trainA" / n) for n in [*BAD, "zz_truncated_val.jpg"]}

    trainer = Trainer(make_cfg(root, tmp_path / "runs"))
    logged: list[dict[str, float]] = []
    real_scalars = trainer.logger.scalars
    trainer.logger.scalars = lambda step, values: (logged.append(dict(values)), real_scalars(step, values))[1]
    result = trainer.fit()
    out = capsys.readouterr()

    n_train_A = len(list_images(root / "trainA")) - 2
    assert result.step == n_train_A  # every A image (good, odd, bad) is visited once, none stops the run
    assert {line.split(": ")[0] for line in trainer.skipped_images} == bad
    warnings_ = [line for line in out.err.splitlines() if line.startswith("WARNING: skipped unreadable image")]
    assert len(warnings_) == len(bad)
    for path in bad:
        assert sum(path + ":" in w for w in warnings_) == 1
    assert logged[-2]["health/skipped_images"] == len(bad)  # (the last entry is the epoch's lr line)
    assert f"skipped images {len(bad)}" in out.out
    assert load_training_checkpoint(result.last_checkpoint)["skipped_images"] == sorted(trainer.skipped_images)


def test_translate_reports_each_bad_image_and_translates_the_rest(trained_run: Path, corpus: Path,
                                                                  tmp_path: Path, capsys) -> None:
    if not (ROOT / "test.py").is_file():
        pytest.skip("test.py (issue 3) is not in this checkout yet")
    import importlib

    test_cli = importlib.import_module("test")
    out_dir = tmp_path / "out"
    rc = test_cli.main(["--checkpoint", str(trained_run), "--input", str(corpus), "--output", str(out_dir),
                        "--device", "cpu", "--no-progress", "--workers", "1"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == 0, text
    for name in BAD:
        assert str(corpus / name) in text, f"{name} not reported:\n{text}"
    for name in ODD:
        produced = list(out_dir.glob(Path(name).stem + ".*"))
        assert produced, f"{name} was not translated:\n{text}"
        img = Image.open(produced[0])
        assert img.size == load_rgb(corpus / name).size
    assert not list(out_dir.glob("zero_bytes*")) and not list(out_dir.glob("notes*"))


# =============================================================================================
# Bad configs and arguments


def _leaf_keys(cls: type = Config, prefix: str = "") -> list[tuple[str, typing.Any]]:
    out = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out += _leaf_keys(tp, prefix + f.name + ".")
        else:
            out.append((prefix + f.name, tp))
    return out


@pytest.mark.parametrize("key,tp", _leaf_keys(), ids=[k for k, _ in _leaf_keys()])
def test_every_key_has_a_checked_type(key: str, tp: typing.Any) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}=[1, 2]"])
    assert str(e.value).startswith(f"{key}:")


NUMERIC = [k for k, tp in _leaf_keys() if tp in (int, float)]


@pytest.mark.parametrize("key", NUMERIC)
def test_every_numeric_key_has_a_checked_range(key: str) -> None:
    """No number in the config means anything when negative: each is rejected, naming its key."""
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}=-1"])
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
    ("out of range", ["optim.beta1=1.0"], "optim.beta1", "[0, 1)"),
    ("zero where >= 1", ["checkpoint.keep=0"], "checkpoint.keep", ">= 1"),
    ("crop not a multiple of 4", ["data.crop_size=30", "data.load_size=36"], "data.crop_size", "multiple of 4"),
    ("crop larger than load", ["data.crop_size=300"], "data.crop_size", "larger than data.load_size"),
    ("plateau without validation", ["optim.lr_policy=plateau", "data.val_images=0"], "optim.lr_policy",
     "val_images"),
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
        load_config(None, overrides)
    msg = str(e.value)
    assert key in msg and text in msg, msg


@pytest.mark.parametrize("yaml_text,key,text", [
    ("data: 5\n", "data", "expected a mapping"),
    ("optim:\n  lr: [oops\n", "", "not valid YAML"),
    ("model:\n  ngff: 8\n", "model.ngff", "did you mean 'ngf'"),
    ("train:\n  amp: half\n", "train.amp", "valid:"),
])
def test_config_file_mistakes_name_the_key(tmp_path: Path, yaml_text: str, key: str, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert key in str(e.value) and text in str(e.value)


def test_train_cli_reports_config_errors_with_exit_2(tmp_path: Path, capsys) -> None:
    assert train.main(["--dry-run", "optim.lr=-1"]) == 2
    assert "error: optim.lr: must be > 0" in capsys.readouterr().err
    assert train.main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml not found" in capsys.readouterr().err
    assert train.main(["--resume", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "does not exist" in err


# =============================================================================================
# Subprocesses: SIGKILL at random moments and mid-write, then resume; SIGINT / SIGTERM


class Proc:
    """A train.py subprocess whose merged output is read line by line in the background."""

    def __init__(self, args: list[str], cwd: Path = ROOT, new_session: bool = False) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.p = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=new_session)
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, pattern: str, timeout: float = 60) -> str | None:
        """The first new line matching ``pattern``; None if the process ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                return None
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 60) -> int:
        rc = self.p.wait(timeout=timeout)
        while (line := self._q.get(timeout=10)) is not None:
            self.lines.append(line)
        return rc

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


KILL_MID_WRITE = """
import io, os, signal, sys
sys.path.insert(0, {root!r})
import torch
real, calls = torch.save, [0]
def save(obj, f, *a, **k):
    calls[0] += 1
    if calls[0] == {nth}:  # write half of this checkpoint, fsync it, then die like a power cut
        buf = io.BytesIO()
        real(obj, buf, *a, **k)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush(); os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return real(obj, f, *a, **k)
torch.save = save
import runpy
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path({train!r}, run_name="__main__")
"""


def _check_run_dir(run_dir: Path) -> list[int]:
    steps = steps_on_disk(run_dir)
    for p in list_checkpoints(run_dir):
        load_training_checkpoint(p)  # every checkpoint on disk loads
    return steps


N_RANDOM_KILLS = 4


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_finishes_the_run(dataset: Path, tmp_path: Path) -> None:
    """One kill in the middle of a checkpoint write, then SIGKILL at 4 random (seeded) moments,
    resuming each time: no checkpoint is ever unreadable, the step never goes backwards, and the
    run ends at exactly the planned step."""
    epochs, keep = 5, 3
    total = epochs * BATCHES_PER_EPOCH
    args = cli_args(dataset, tmp_path, f"optim.n_epochs={epochs}", "checkpoint.every_steps=2",
                    f"checkpoint.keep={keep}")
    run_dir = tmp_path / "run"
    rng = random.Random(1234)
    resumed_steps: list[int] = []
    newest_seen = 0

    # 1. Killed while writing its 3rd checkpoint (step 6): a half-written temp file is left.
    script = tmp_path / "kill_mid_write.py"
    script.write_text(KILL_MID_WRITE.format(root=str(ROOT), nth=3, train=str(ROOT / "train.py")))
    proc = Proc([str(script), *args])
    assert proc.finish(timeout=120) == -signal.SIGKILL, proc.output
    tmps = list((run_dir / "checkpoints").glob(".step_*.tmp"))
    assert len(tmps) == 1 and tmps[0].name.startswith(".step_00000006.pt.")
    assert _check_run_dir(run_dir) == [2, 4]
    newest_seen = 4

    # 2. Four SIGKILLs at random moments, each followed by a resume from the run folder. A moment is
    # "once checkpoint `target` is on disk, plus a random 0-300 ms": random, yet sure to land before
    # the run ends on any machine speed; some land inside a checkpoint write or right at start-up.
    targets = sorted(rng.sample(range(6, total - 8), N_RANDOM_KILLS))
    for target in [*targets, None]:
        proc = Proc(["train.py", "--resume", str(run_dir)])
        line = proc.wait_for(r"^resumed from ")
        step = int(re.search(r"step (\d+)\)", line).group(1))
        assert step == newest_seen, f"resumed at {step}, newest good checkpoint was {newest_seen}"
        assert not resumed_steps or step >= resumed_steps[-1], "the step counter went backwards"
        resumed_steps.append(step)
        if target is None:
            break
        deadline = time.monotonic() + 120
        while (steps_on_disk(run_dir) or [0])[-1] < target and proc.p.poll() is None:
            assert time.monotonic() < deadline, proc.output
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.p.send_signal(signal.SIGKILL)
        assert proc.finish() == -signal.SIGKILL, "the run ended before it could be killed:\n" + proc.output
        steps = _check_run_dir(run_dir)
        assert len(steps) <= keep and steps[-1] >= newest_seen
        newest_seen = steps[-1]
    assert proc.finish(timeout=120) == 0, proc.output
    assert f"done: epoch {epochs}, step {total}" in proc.output
    steps = _check_run_dir(run_dir)
    assert steps[-1] == total and len(steps) <= keep
    assert not list((run_dir / "checkpoints").glob(".*.tmp")), "stale temp files were not cleaned"
    assert resumed_steps == sorted(resumed_steps) and len(resumed_steps) == N_RANDOM_KILLS + 1
    final = load_training_checkpoint(run_dir / "checkpoints" / f"step_{total:08d}.pt")
    assert final["counters"]["epoch"] == epochs and final["counters"]["step"] == total


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_exits_0_and_resumes(dataset: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """A long run with no scheduled checkpoints; the signal saves one and exits 0 within seconds.

    SIGINT goes to the whole process group with a DataLoader worker, as Ctrl-C in a terminal does.
    """
    workers = "1" if sig == signal.SIGINT else "0"
    args = cli_args(dataset, tmp_path, "optim.n_epochs=200", "checkpoint.every_epochs=0",
                    f"data.num_workers={workers}", "data.persistent_workers=true")
    run_dir = tmp_path / "run"

    def interrupt(proc: Proc) -> None:
        proc.wait_for(r"^epoch \d+/200 done")  # training is under way, no checkpoint written yet
        t0 = time.monotonic()
        if sig == signal.SIGINT:
            os.killpg(proc.p.pid, sig)
        else:
            proc.p.send_signal(sig)
        assert proc.finish(timeout=30) == 0, proc.output
        took = time.monotonic() - t0
        assert took < 10, f"took {took:.1f}s to stop"
        assert f"{sig.name} received" in proc.output and "stopped at epoch" in proc.output

    proc = Proc(["train.py", *args], new_session=True)
    interrupt(proc)
    first = _check_run_dir(run_dir)
    assert len(first) == 1 and first[0] >= BATCHES_PER_EPOCH

    proc = Proc(["train.py", "--resume", str(run_dir)], new_session=True)
    line = proc.wait_for(r"^resumed from ")
    assert f"step {first[0]})" in line
    interrupt(proc)
    second = _check_run_dir(run_dir)
    assert second[-1] > first[0]
