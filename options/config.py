"""Typed config trees: dataclasses loaded from YAML, with strict ``key.sub=value`` overrides.

Every command that has a config uses these functions with its own root dataclass (the
schemas live beside this file: :mod:`options.cyclegan`, :mod:`options.gatys`, ...)::

    cfg = load(CycleGANConfig, "experiments/monet.yaml", ["optim.lr=1e-4", "data.batch_size=4"])

Types: ``bool``, ``int``, ``float`` (ints accepted), ``str``, ``Literal[...]`` (a closed set of
choices), nested dataclasses (sections), and lists of any of these, written as YAML lists
(``style_layers: [relu1_1, relu2_1]`` or ``loss.style_layers=[relu1_1,relu2_1]``). A list of
sections is addressed by index in overrides: ``methods.2.alpha=0.6``. Any mistake (unknown key,
wrong type, bad choice, a file that is not a YAML mapping) raises :class:`ConfigError` naming the
key and what is valid; each schema's ``validate()`` adds ranges and cross-key rules with :func:`check`.

The resolved config is stored beside a run (``config.yaml``) and inside every checkpoint.
This module imports no torch (commands answer ``--help`` and ``--dry-run`` without it).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from utils.errors import UserError
from utils.files import write_text_atomic

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A config file or override is wrong; the message names the key and what is valid."""


def check(cond: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` ``"<key>: <message>"`` unless ``cond`` holds."""
    if not cond:
        raise ConfigError(f"{key}: {message}")


# ---------------------------------------------------------------------------------------------
# Types


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _list_item(tp: Any) -> Any | None:
    """``list[X]`` -> X, anything else -> None."""
    return typing.get_args(tp)[0] if typing.get_origin(tp) is list else None


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it (ints widened to float, sections built)."""
    if dataclasses.is_dataclass(tp):
        return build(tp, {} if value is None else value, key + ".")
    item = _list_item(tp)
    if item is not None:
        if value is None:
            return []
        if not isinstance(value, list):
            if dataclasses.is_dataclass(item) or not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"{key}: expected a list, e.g. {key}=[a,b], got {value!r}")
            value = [value]  # a single value where a list is expected: a list of one
        return [_coerce(v, item, f"{key}.{i}") for i, v in enumerate(value)]
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool):  # YAML 1.1 reads a bare off / on / true as a boolean
            if ("on" if value else "off") in choices:
                value = "on" if value else "off"
            elif value and "default" in choices:  # e.g. train.compile: true means the default mode
                value = "default"
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not a valid choice; valid: {', '.join(map(str, choices))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML reads .nan / .inf; no key means anything by them
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp} for {key}")  # a bug in a schema, not user input


def _unknown_key(key: str, valid: Iterable[str]) -> ConfigError:
    valid = list(valid)
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys here: {', '.join(prefix + v for v in valid)}")


def build(cls: type[T], data: Any, prefix: str = "") -> T:
    """A ``cls`` instance from a nested dict; every key and value is checked."""
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "config"
        raise ConfigError(f"{where}: expected a mapping of keys (key: value), got {type(data).__name__} {data!r:.80}")
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise _unknown_key(prefix + str(key), [f.name for f in dataclasses.fields(cls)])
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# YAML files and overrides

_SCI_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _fix_numbers(data: Any) -> Any:
    """YAML 1.1 reads ``2e-4`` (no dot) as a string; turn such strings back into floats."""
    if isinstance(data, dict):
        return {k: _fix_numbers(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_fix_numbers(v) for v in data]
    if isinstance(data, str) and _SCI_NUMBER.match(data.strip()):
        return float(data)
    return data


# Limits on a config file (a config is a few KiB): a "billion laughs" file (aliases of aliases)
# would expand to billions of nodes, a deeply nested one would overflow the stack.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_ALIASES = 100
MAX_YAML_DEPTH = 50
MAX_YAML_NODES = 100_000  # after expanding every alias


class _YAMLLimit(yaml.YAMLError):
    """A config file past one of the limits above, or with a duplicate key; says which."""


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no tags run) that refuses duplicate keys (naming the key and both lines)
    and limits aliases, nesting depth and the size of the alias-expanded document."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                line = self.peek_event().start_mark.line + 1
                raise _YAMLLimit(f"more than {MAX_YAML_ALIASES} aliases (*name), line {line}: a config needs few; "
                                 f"write the values out")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise _YAMLLimit(f"nested deeper than {MAX_YAML_DEPTH} levels (line {line})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: overriding merged keys is fine
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise _YAMLLimit(f"duplicate key {key!r} (lines {first} and {line}): the second would silently "
                                     f"replace the first; keep one")
                seen[key] = line
        return super().construct_mapping(node, deep)


def _check_expanded_size(root: yaml.Node) -> None:
    """Count the nodes and depth of the document with every alias expanded (memoised: aliases share
    nodes, so this is linear in the file); refuse an alias to a node that contains it."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, expanded depth)
    busy: set[int] = set()

    def size(node: yaml.Node) -> tuple[int, int]:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in busy:
            raise _YAMLLimit(f"an alias refers to a value that contains it (line {node.start_mark.line + 1})")
        busy.add(id(node))
        children = (list(node.value) if isinstance(node, yaml.SequenceNode) else
                    [n for kv in node.value for n in kv] if isinstance(node, yaml.MappingNode) else [])
        n, depth = 1, 1
        for child in children:
            cn, cd = size(child)
            n, depth = n + cn, max(depth, cd + 1)
        busy.discard(id(node))
        if n > MAX_YAML_NODES:
            raise _YAMLLimit(f"expands to more than {MAX_YAML_NODES} values through its aliases (a \"billion laughs\" "
                             f"file?); write the values out")
        if depth > MAX_YAML_DEPTH:
            raise _YAMLLimit(f"nested deeper than {MAX_YAML_DEPTH} levels once its aliases are expanded")
        sizes[id(node)] = (n, depth)
        return n, depth

    size(root)


def _safe_load(text: str) -> Any:
    """``yaml.safe_load`` with :class:`_ConfigLoader`'s limits; raises ``yaml.YAMLError``."""
    if len(text) > MAX_YAML_BYTES:
        raise _YAMLLimit(f"{len(text)} characters, more than a config file holds (limit {MAX_YAML_BYTES})")
    loader = _ConfigLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError as e:  # a guard: the depth limit stops nesting well before this
        raise _YAMLLimit("nested too deeply") from e
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping; every failure (including the limits on size, aliases,
    nesting and duplicate keys) is a one-line :class:`ConfigError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found (the shipped ones are in experiments/)")
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes, more than a config file holds (limit "
                              f"{MAX_YAML_BYTES}); is it the right file?")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start}); save it as UTF-8 YAML") from e
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from e
    try:
        data = _safe_load(text)
    except _YAMLLimit as e:
        raise ConfigError(f"{path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys (key: value), this one holds a "
                          f"{type(data).__name__}")
    return _fix_numbers(data)


def parse_override(override: str) -> tuple[str, Any]:
    """``a.b=value`` -> (``"a.b"``, the value parsed as YAML: ``1e-4``, ``true``, ``[a, b]``)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    key, raw = override.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {override!r} has no key before '='")
    try:
        value = _safe_load(raw) if raw.strip() else ""
    except _YAMLLimit as e:
        raise ConfigError(f"{key}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{key}: cannot parse value {raw!r}: {' '.join(str(e).split())}") from e
    return key, _fix_numbers(value)


def apply_override(data: dict[str, Any], override: str, schema: type) -> None:
    """Apply ``a.b.c=value`` to the nested dict ``data``, checking each key against ``schema``."""
    key, value = parse_override(override)
    parts = key.split(".")
    node: Any = data
    tp: Any = schema
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        item = _list_item(tp)
        if item is not None:  # inside a list: the part is an index
            if not (part.isdigit() and isinstance(node, list) and int(part) < len(node)):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(f"{here}: {'.'.join(parts[:i])} has {size} entries; give an index below {size} "
                                  f"or set the whole list")
            idx = int(part)
            if last:
                node[idx] = value
            else:
                if not isinstance(node[idx], dict):
                    node[idx] = {}
                node, tp = node[idx], item
            continue
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"{'.'.join(parts[:i])} is not a section, so {key} does not exist")
        hints = _hints(tp)
        if part not in hints:
            raise _unknown_key(here, [f.name for f in dataclasses.fields(tp)])
        if last:
            if dataclasses.is_dataclass(hints[part]):
                raise ConfigError(f"{key} is a section; set one of its keys, e.g. {key}.<key>=value")
            node[part] = value
        else:
            child = hints[part]
            if _list_item(child) is not None:
                if not isinstance(node.get(part), list):
                    node[part] = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                                  for v in _defaults(tp).get(part, [])]
            elif not isinstance(node.get(part), dict):
                node[part] = {}
            node, tp = node[part], child


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}


def load(schema: type[T], path: str | Path | None = None, overrides: Iterable[str] = (),
         base: dict[str, Any] | None = None) -> T:
    """``base`` (or the YAML file at ``path``, or the defaults) + overrides -> a ``schema``, checked
    by its ``validate()`` (every schema of a command or method has one)."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data = read_yaml(path)
    for override in overrides:
        apply_override(data, override, schema)
    cfg = build(schema, data)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save(cfg: Any, path: str | Path) -> None:
    write_text_atomic(path, to_yaml(cfg))


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (e.g. stored vs resumed)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(prefix + key)
    return out
