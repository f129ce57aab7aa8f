"""Checkpoint files: atomic writes, a full disk, corrupt and foreign files, versions, pickles refused.

Each test causes the fault on purpose and checks what the user sees and that nothing is lost.
"""

from __future__ import annotations

import ast
import errno
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import BATCHES_PER_EPOCH
from helpers import ROOT, sha, steps_on_disk

import train
from options.common import load_training_config
from utils.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_file,
    read_training_checkpoint,
    save_atomic,
)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    """A finished 6-step run with checkpoints at steps 2, 4, 6 (copied per test by ``run_copy``)."""
    from conftest import TINY

    from training import build_trainer

    runs = tmp_path_factory.mktemp("rel_runs")
    cfg = load_training_config(None, [f"data.root={tiny_dataset}", f"log.root={runs}", "name=run", *TINY,
                                      "optim.n_epochs_decay=0", "checkpoint.every_steps=2", "log.images_every=0"])
    build_trainer(cfg).fit()
    return runs / "run"


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "runs" / "run"
    shutil.copytree(trained_run, dst)
    return dst


# ---------------------------------------------------------------------------------------------
# Atomic writes


def test_save_atomic_leaves_one_complete_file_with_normal_permissions(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "step_00000001.pt"
    umask_before = os.umask(0o022)
    os.umask(umask_before)
    save_atomic({"format": "x", "w": torch.arange(4)}, path)
    save_atomic({"format": "x", "w": torch.arange(5)}, path)  # replaces
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert torch.equal(load_file(path)["w"], torch.arange(5))
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask_before  # not mkstemp's 0600


def test_importing_the_checkpoint_module_leaves_the_umask_alone() -> None:
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("checkpoint_copy", ROOT / "utils" / "checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["checkpoint_copy"] = module
    old = os.umask(0o027)
    try:
        spec.loader.exec_module(module)  # runs the module's top level again, in a fresh copy
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)
        del sys.modules["checkpoint_copy"]


def _failing_save(fail_on: set[int], err: int = errno.ENOSPC, record: list | None = None, kind: str = "oserror"):
    """A torch.save that writes a little and then fails on the listed call numbers: with an OSError,
    or as torch's zip writer reports a full disk ("[enforce fail at inline_container.cc] ...")."""
    real = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] in fail_on:
            if record is not None:
                record.append(calls["n"])
            f.write(b"PK\x03\x04 half a checkpoint")
            if kind == "runtime":
                raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing "
                                   "file data/3: file write failed")
            raise OSError(err, os.strerror(err))
        return real(obj, f, *args, **kwargs)

    return save


@pytest.mark.parametrize("where", ["write", "fsync", "torch_runtime_error"])
def test_save_atomic_disk_full_keeps_previous_file(tmp_path: Path, monkeypatch, where: str) -> None:
    path = tmp_path / "checkpoints" / "step_00000002.pt"
    save_atomic({"w": torch.ones(3)}, path)
    before = sha(path)
    if where == "write":
        monkeypatch.setattr(torch, "save", _failing_save({1}))
    elif where == "torch_runtime_error":
        monkeypatch.setattr(torch, "save", _failing_save({1}, kind="runtime"))
        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 10, 10))
    else:
        def no_space(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(CheckpointError, match="disk full|the disk is full") as e:
        save_atomic({"w": torch.zeros(3)}, path)
    assert str(path) in str(e.value)
    assert sha(path) == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_save_atomic_unwritable_folder_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    real_open = os.open

    def denied(path, flags, *args):
        if str(path).endswith(".tmp"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(CheckpointError, match="cannot write checkpoint in .*Permission denied"):
        save_atomic({"w": 1}, tmp_path / "checkpoints" / "step_00000001.pt")


def test_training_survives_a_full_disk(tiny_config, make_trainer, monkeypatch, capsys) -> None:
    """The save at step 4 hits ENOSPC (as torch reports it): a warning, step 2 stays intact, the
    temp file is removed, training goes on, step 6 saves."""
    cfg = tiny_config("checkpoint.every_steps=2", "optim.n_epochs_decay=0", "log.images_every=0")
    trainer = make_trainer(cfg)
    failed: list[int] = []
    step2 = cfg.run_dir / "checkpoints" / "step_00000002.pt"
    hashes: dict[str, str] = {}
    real_save = _failing_save({2}, record=failed, kind="runtime")

    def save(obj, f, *args, **kwargs):
        if step2.exists() and "step2" not in hashes:
            hashes["step2"] = sha(step2)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 10, 10))
    result = trainer.fit()
    err = capsys.readouterr().err
    assert failed == [2]
    assert result.step == BATCHES_PER_EPOCH and not result.stopped_early
    assert "WARNING: cannot write checkpoint" in err and "the disk is full" in err and f"{step2} is intact" in err
    assert steps_on_disk(cfg.run_dir) == [2, 6]
    assert sha(step2) == hashes["step2"]
    assert result.last_checkpoint.name == "step_00000006.pt"
    assert not list((cfg.run_dir / "checkpoints").glob(".*.tmp"))


def test_final_checkpoint_failing_is_exit_2_not_a_silent_success(tiny_dataset, tmp_path: Path, monkeypatch,
                                                                 capsys) -> None:
    from conftest import TINY

    monkeypatch.setattr(torch, "save", _failing_save(set(range(1, 100))))
    rc = train.main([f"data.root={tiny_dataset}", f"log.root={tmp_path}", "name=run", *TINY,
                     "optim.n_epochs_decay=0", "checkpoint.every_steps=0"])
    err = capsys.readouterr().err
    assert rc == 2 and "disk full" in err and "could not write the final checkpoint at step 6" in err


# ---------------------------------------------------------------------------------------------
# Corrupt, foreign and hostile files

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
        ckpt = read_training_checkpoint(run_copy)
    assert ckpt.path.name == "step_00000004.pt" and ckpt.step == 4
    # Loading that one file on its own is a clear error naming it, not a fallback.
    with pytest.raises(CheckpointError, match=re.escape(str(newest))) as e:
        read_training_checkpoint(newest)
    assert any(s in str(e.value) for s in ("truncated or corrupt", "is empty", "not a PyTorch checkpoint"))


def test_every_checkpoint_corrupt_is_an_error_listing_each(run_copy: Path) -> None:
    for p in list_checkpoints(run_copy):
        p.write_bytes(p.read_bytes()[:100])
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="every checkpoint") as e:
        read_training_checkpoint(run_copy)
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
        read_training_checkpoint(p)


def test_resume_single_corrupt_file_exits_2_naming_it(run_copy: Path, capsys) -> None:
    newest = list_checkpoints(run_copy)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])
    assert train.main(["--resume", str(newest)]) == 2
    err = capsys.readouterr().err
    assert str(newest) in err and "truncated or corrupt" in err and err.count("\n") == 1


@pytest.mark.parametrize("version,hint", [(99, "update the code"), (0, "older")])
def test_other_format_version_gets_a_clear_message(run_copy: Path, version: int, hint: str) -> None:
    path = list_checkpoints(run_copy)[-1]
    ckpt = load_file(path)
    ckpt["version"] = version
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=f"format version {version}") as e:
        read_training_checkpoint(path)
    assert hint in str(e.value) and str(path) in str(e.value)
    # From a run folder too: a version mismatch is not "corrupt", so it is not silently skipped.
    with pytest.raises(CheckpointError, match=f"format version {version}"):
        read_training_checkpoint(run_copy)


def test_bare_state_dict_is_not_resumable(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a full training checkpoint"):
        read_training_checkpoint(path)


def test_text_file_named_like_a_checkpoint_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "step_00000001.pt"
    path.write_text("<html>404 not found</html>")
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint: .* starting with b'<htm'"):
        load_file(path)


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
        "object_in_dict": {"format": "cyclegan-checkpoint", "version": 2, "cfg": Path("x")},
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
    from options.config import ConfigError

    marker = tmp_path / "pwned"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_training_config(cfg)
    assert not marker.exists()


def test_a_newer_unreadable_checkpoint_does_not_delete_what_the_resumed_run_writes(run_copy: Path) -> None:
    """keep=1 and a corrupt step 6: the run resumes from step 4; its new checkpoints (steps 5, 6 ...)
    must survive pruning, which used to keep only the highest step number (the corrupt one)."""
    newest = list_checkpoints(run_copy)[-1]
    newest.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):  # resumes at step 4, ends at 5
        assert train.main(["--resume", str(run_copy), "train.max_batches_per_epoch=5", "checkpoint.keep=1"]) == 0
    assert [p.name for p in list_checkpoints(run_copy)] == ["step_00000005.pt", "step_00000006.pt"]
    assert read_training_checkpoint(run_copy / "checkpoints" / "step_00000005.pt").step == 5
    assert newest.read_bytes() == b"garbage"  # the unreadable one is left for its owner to look at
