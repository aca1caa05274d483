"""YAML configuration with ``_base_`` inheritance, dotted overrides and a checked schema
(fast-reid style).

* The schema is a mapping ``section -> key ->`` :class:`Key` (default, one-line comment,
  choices or numeric range). The sections every method shares live in
  :mod:`common.defaults`; each method's recipe (``common/recipes/<name>.py``) owns one
  section of its own. :func:`schema` assembles the two for a method.
* A key that is not in the schema is rejected with its dotted name (a typo never silently
  does nothing); so is a section that belongs to another method.
* A YAML file may name ``_base_: other.yaml`` (or a list), resolved relative to the file;
  later files, then ``--set section.key=value`` overrides, then explicit command-line flags
  win. Mappings merge key by key.
* Every value is checked against its key's type, choices and range before any data is read;
  floats must be finite.
* :func:`save_config` writes the resolved configuration next to a run's checkpoints.
"""
import copy
import math
import os
from typing import Any, Dict, Iterable, NamedTuple, Optional, Tuple

import yaml

from common.errors import ConfigError


class Key(NamedTuple):
    """One configuration key: its default, a one-line comment, and what it accepts.

    ``choices``: the allowed values; ``lo``/``hi``: inclusive numeric bounds (``lo_open``
    makes ``lo`` exclusive); for a list, the bounds and choices apply to every element and
    ``length`` fixes its length. ``nullable`` lets the value be ``None``."""
    default: Any
    doc: str
    choices: Optional[Tuple] = None
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    length: Optional[int] = None
    nullable: bool = False


def defaults_of(schema: Dict[str, Dict[str, Key]]) -> Dict[str, Dict[str, Any]]:
    """The plain ``section -> key -> default`` mapping of a schema (deep copies)."""
    return {s: {k: copy.deepcopy(key.default) for k, key in keys.items()} for s, keys in schema.items()}


def schema(method: Optional[str] = None) -> Dict[str, Dict[str, Key]]:
    """The shared sections (:data:`common.defaults.BASE`) plus the section of ``method``'s
    recipe (none when ``method`` is None)."""
    from common.defaults import BASE
    out = dict(BASE)
    if method is not None:
        from common.recipes import section_of
        name, keys = section_of(method)
        out[name] = keys
    return out


def merge(base: dict, new: dict) -> dict:
    """``new`` merged into a deep copy of ``base``, mapping by mapping."""
    out = copy.deepcopy(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not UTF-8 text; expected a YAML file") from None
    except IsADirectoryError:
        raise ConfigError(f"config path '{path}' is a directory; expected a YAML file") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file '{path}': {e.strerror or e}") from None


def load_yaml(path: str, _seen: Optional[set] = None) -> dict:
    """Read ``path`` and everything it inherits through ``_base_`` (no schema check yet)."""
    path = os.path.abspath(path)
    _seen = set() if _seen is None else _seen
    if path in _seen:
        raise ConfigError(f"'_base_' cycle through {path}")
    _seen.add(path)
    if not os.path.exists(path):
        raise ConfigError(f"config file '{path}' not found; expected a YAML file such as configs/mvd_port.yaml")
    try:
        data = yaml.safe_load(_read_text(path)) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse '{path}': {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"'{path}' must hold a mapping of sections, got {type(data).__name__}")
    bases = data.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else list(bases)
    merged: dict = {}
    for b in bases:
        merged = merge(merged, load_yaml(os.path.join(os.path.dirname(path), b), _seen))
    return merge(merged, data)


def _type_ok(value: Any, default: Any) -> Tuple[bool, Any]:
    if isinstance(default, bool):
        return isinstance(value, bool), value
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool), value
    if isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        return ok, list(value) if ok else value
    return isinstance(value, type(default)), value


def _describe_range(key: Key) -> str:
    lo = "" if key.lo is None else (f"> {key.lo:g}" if key.lo_open else f">= {key.lo:g}")
    hi = "" if key.hi is None else f"<= {key.hi:g}"
    return " and ".join(p for p in (lo, hi) if p)


def _check_scalar(name: str, value: Any, key: Key) -> None:
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"'{name}' must be one of {', '.join(map(str, key.choices))}; got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"'{name}' must be a finite number; got {value!r}")
        too_low = key.lo is not None and (value <= key.lo if key.lo_open else value < key.lo)
        too_high = key.hi is not None and value > key.hi
        if too_low or too_high:
            raise ConfigError(f"'{name}' must be {_describe_range(key)}; got {value!r}")


def check_value(name: str, value: Any, key: Key) -> Any:
    """``value`` converted to the key's type (ints accepted for floats, tuples for lists) and
    checked against its choices and range; ConfigError naming ``name`` otherwise."""
    if value is None and key.nullable:
        return None
    ok, value = _type_ok(value, key.default)
    if not ok:
        raise ConfigError(f"'{name}' must be {type(key.default).__name__} (default {key.default!r}), "
                          f"got {value!r}")
    if isinstance(value, list):
        if key.length is not None and len(value) != key.length:
            raise ConfigError(f"'{name}' must hold {key.length} values; got {value!r}")
        item_default = key.default[0] if key.default else None
        for i, item in enumerate(value):
            if item_default is not None:
                item_ok, item = _type_ok(item, item_default)
                if not item_ok:
                    raise ConfigError(f"'{name}[{i}]' must be {type(item_default).__name__}; got {item!r}")
                value[i] = item
            _check_scalar(f"{name}[{i}]", item, key)
        return value
    _check_scalar(name, value, key)
    return value


def validate(cfg: dict, sch: Optional[Dict[str, Dict[str, Key]]] = None) -> dict:
    """Fill defaults, reject unknown sections/keys by dotted name, check types, choices and
    ranges. ``sch`` defaults to the schema of ``cfg['method']['name']`` (or 'mvd')."""
    if sch is None:
        method = (cfg.get("method") or {}).get("name", "mvd") if isinstance(cfg.get("method"), dict) else "mvd"
        sch = schema(method)
    out = defaults_of(sch)
    for section, values in cfg.items():
        if section not in sch:
            from common.recipes import owner_of_section
            owner = owner_of_section(section)
            if owner:
                raise ConfigError(f"config section '{section}' belongs to method(s) {owner}, but the "
                                  f"method is {out['method']['name']!r}; set --method or remove it")
            raise ConfigError(f"unknown config section '{section}'; known: {', '.join(sch)}")
        if not isinstance(values, dict):
            raise ConfigError(f"config section '{section}' must be a mapping")
        for k, v in values.items():
            if k not in sch[section]:
                raise ConfigError(f"unknown config key '{section}.{k}'; known keys of '{section}': "
                                  f"{', '.join(sch[section])}")
            out[section][k] = check_value(f"{section}.{k}", v, sch[section][k])
    return out


def parse_override(item: str) -> dict:
    """``'optim.lr=3e-4'`` -> ``{'optim': {'lr': 0.0003}}`` (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like section.key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override key '{key}' must be section.key (e.g. optim.lr)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # YAML reads "3e-4" as a string; accept numeric strings for numeric keys.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") or value.lower() in ("nan", "inf", "-inf") \
                else int(value)
        except ValueError:
            pass
    return {parts[0]: {parts[1]: value}}


def resolve(path: Optional[str] = None, overrides: Iterable[str] = (), extra: Optional[dict] = None,
            method: Optional[str] = None) -> dict:
    """Unvalidated merge: YAML file (with bases) <- ``overrides`` strings <- ``extra`` (a
    nested dict, e.g. the explicit command-line flags) <- ``method`` (when given)."""
    cfg: dict = load_yaml(path) if path else {}
    for item in overrides:
        cfg = merge(cfg, parse_override(item))
    if extra:
        cfg = merge(cfg, extra)
    if method:
        cfg = merge(cfg, {"method": {"name": method}})
    return cfg


def load_config(path: Optional[str] = None, overrides: Iterable[str] = (), extra: Optional[dict] = None,
                method: Optional[str] = None) -> dict:
    """Resolved and validated configuration: defaults <- YAML file (with bases) <-
    ``overrides`` strings <- ``extra`` (explicit flags, which win) <- ``method``."""
    return validate(resolve(path, overrides, extra, method))


def to_yaml(cfg: dict) -> str:
    """The configuration as YAML text, sections in schema order."""
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


def save_config(cfg: dict, folder: str, name: str = "config.yaml") -> str:
    """Write the resolved configuration atomically into ``folder``; return its path."""
    from common.checkpoint_io import atomic_output
    path = os.path.join(folder, name)
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(to_yaml(cfg))
    return path
