"""YAML configuration with ``_base_`` inheritance and dotted overrides (fast-reid style).

* :data:`DEFAULTS` is the schema: every key a run may set, with its default. A key that is
  not in it is rejected with its dotted name (a typo never silently does nothing).
* A YAML file may name ``_base_: other.yaml`` (or a list), resolved relative to the file;
  later files and then command-line overrides win. Mappings merge key by key.
* Overrides are ``section.key=value`` strings; the value is parsed as YAML (``3e-4``,
  ``[1, 2]``, ``true``) and must have the type of the default (ints are accepted for floats).
* :func:`save_config` writes the resolved configuration next to a run's checkpoints.
"""
import copy
import os
from typing import Any, Dict, Iterable, Optional

import yaml

from common.errors import ConfigError

DEFAULTS: Dict[str, Dict[str, Any]] = {
    "method": {"name": "mvd"},
    "model": {"name": "mvd", "depth": 50, "width": 64, "last_stride": 1, "z_dim": 512,
              "ib_hidden": [1000, 500], "cls_hidden": 256, "dropout": 0.5,
              "gray_ir": False, "shallow_cam": False, "pretrain": "",
              "test_feature": "shared"},
    "data": {"dataset": "SYSU", "data_path": "", "height": 288, "width": 144, "trial": 1,
             "num_ids": 8, "num_pos": 4, "erasing": False, "grayscale": False,
             "workers": 2, "test_batch": 64, "eval_trials": 10, "max_batches": 0},
    "optim": {"name": "adam", "lr": 3.5e-4, "weight_decay": 5e-4, "momentum": 0.9,
              "head_lr_mult": 10.0},
    "schedule": {"epochs": 80, "warmup_steps": 5, "start_decay": 15, "end_decay": 27,
                 "decay_factor": 0.5},
    "loss": {"func": "id+tri", "margin": 0.3, "T": 1.0, "kl_form": "vsd", "vml_weight": 0.0},
    "train": {"seed": 0, "ckpt": "toy", "log_dir": "logs", "eval_every": 1, "resume": ""},
    "runtime": {"backend": "torch", "device_target": "CPU", "gpu": 0, "ms_mode": "GRAPH"},
}

CHOICES = {
    "optim.name": ("adam", "sgd"),
    "loss.func": ("id", "id+tri", "id+tri+kldiv"),
    "loss.kl_form": ("vsd", "original"),
    "runtime.backend": ("torch", "mindspore"),
    "runtime.device_target": ("CPU", "GPU", "Ascend"),
    "runtime.ms_mode": ("GRAPH", "PYNATIVE"),
    "data.dataset": ("SYSU", "RegDB"),
    "model.name": ("mvd", "reid"),
    "model.depth": (18, 34, 50, 101),
    "model.test_feature": ("shared", "concat", "all"),
}


def engine_loss_settings(loss: dict) -> dict:
    """A ``loss`` config section in the training engines' terms (``func`` -> ``loss_func``)."""
    out = dict(loss)
    out["loss_func"] = out.pop("func")
    return out


def model_settings() -> dict:
    """Default network settings of the backends' ``build_model`` (the ``model`` section
    without the file path ``pretrain``), so a missing key means the same thing everywhere."""
    return {k: copy.deepcopy(v) for k, v in DEFAULTS["model"].items() if k != "pretrain"}


def _merge(base: dict, new: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, f"{where}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_yaml(path: str, _seen: Optional[set] = None) -> dict:
    """Read ``path`` and everything it inherits through ``_base_`` (no schema check yet)."""
    path = os.path.abspath(path)
    _seen = set() if _seen is None else _seen
    if path in _seen:
        raise ConfigError(f"'_base_' cycle through {path}")
    _seen.add(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' not found; expected a YAML file such as configs/mvd_sysu.yaml")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse '{path}': {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"'{path}' must hold a mapping of sections, got {type(data).__name__}")
    bases = data.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else list(bases)
    merged: dict = {}
    for b in bases:
        merged = _merge(merged, load_yaml(os.path.join(os.path.dirname(path), b), _seen))
    return _merge(merged, data)


def _check_value(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"'{key}' must be {type(default).__name__} (default {default!r}), got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"'{key}' must be one of {', '.join(map(str, CHOICES[key]))}; got {value!r}")
    return value


def validate(cfg: dict, schema: dict = DEFAULTS) -> dict:
    """Fill defaults, reject unknown sections/keys by dotted name, check types and choices."""
    out = copy.deepcopy(schema)
    for section, values in cfg.items():
        if section not in schema:
            raise ConfigError(f"unknown config section '{section}'; known: {', '.join(schema)}")
        if not isinstance(values, dict):
            raise ConfigError(f"config section '{section}' must be a mapping")
        for k, v in values.items():
            if k not in schema[section]:
                raise ConfigError(f"unknown config key '{section}.{k}'; known keys of '{section}': "
                                  f"{', '.join(schema[section])}")
            out[section][k] = _check_value(f"{section}.{k}", v, schema[section][k])
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
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    return {parts[0]: {parts[1]: value}}


def load_config(path: Optional[str] = None, overrides: Iterable[str] = (), extra: Optional[dict] = None) -> dict:
    """Resolved configuration: defaults <- YAML file (with bases) <- ``overrides`` strings <-
    ``extra`` (a nested dict, e.g. the explicit command-line flags, which win)."""
    cfg: dict = load_yaml(path) if path else {}
    for item in overrides:
        cfg = _merge(cfg, parse_override(item))
    if extra:
        cfg = _merge(cfg, extra)
    return validate(cfg)


def save_config(cfg: dict, folder: str, name: str = "config.yaml") -> str:
    """Write the resolved configuration atomically into ``folder``; return its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.replace(tmp, path)
    return path
