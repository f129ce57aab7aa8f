"""A config file can neither hang nor crash a command, nor silently lose a section (hostile round 3):
aliases, nesting and size are limited, duplicate keys are an error naming the key and both lines."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from image_corpus import ROOT

from options.config import ConfigError, parse_override, read_yaml

LAUGHS = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
          + "".join(f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text", [
    LAUGHS,  # 9**9 strings through 80 aliases, ~500 bytes
    "a: " + "[" * 5000 + "]" * 5000 + "\n",  # RecursionError before
    "".join("  " * i + f"k{i}:\n" for i in range(300)),
    "a: &a [*a]\n",  # an alias inside itself
    "x: 1\n" + "#" * (2 << 20) + "\n",  # 2 MiB
], ids=["billion-laughs", "deep-list", "deep-mapping", "recursive-alias", "huge"])
def test_hostile_yaml_is_a_quick_one_line_error_naming_the_file(tmp_path, text):
    path = _write(tmp_path, text)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        read_yaml(path)
    assert time.perf_counter() - t0 < 5 and str(path) in str(e.value) and "\n" not in str(e.value)


def test_hostile_override_value_is_an_error():
    with pytest.raises(ConfigError):
        parse_override("x=" + LAUGHS.replace("\n", ", ").join("{}"))  # the same laughs as a flow mapping
    assert parse_override("x=[&a [1, 2], *a]") == ("x", [[1, 2], [1, 2]])  # a few aliases are fine


@pytest.mark.parametrize("text, key, lines", [
    ("optim:\n  lr: 0.1\nseed: 3\noptim:\n  lr: 0.2\n", "optim", ("1", "4")),
    ("optim:\n  lr: 0.1\n  beta1: 0.5\n  lr: 0.2\n", "lr", ("2", "4")),
])
def test_duplicate_keys_are_an_error_naming_the_key_and_both_lines(tmp_path, text, key, lines):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        read_yaml(path)
    msg = str(e.value)
    assert repr(key) in msg and all(n in msg for n in lines) and str(path) in msg


def test_merge_keys_may_be_overridden(tmp_path):
    path = _write(tmp_path, "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  x: 3\n")
    assert read_yaml(path)["derived"] == {"x": 3, "y": 2}


@pytest.mark.slow
def test_train_py_with_a_billion_laughs_config_exits_2_quickly(tmp_path):
    path = _write(tmp_path, LAUGHS)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(path), "--dry-run"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert p.returncode == 2 and time.perf_counter() - t0 < 60, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
