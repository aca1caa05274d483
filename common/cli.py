"""Shared command-line pieces of train.py and test.py (SPEC 9): the seed's flags mapped onto
configuration keys, ``--config`` / ``--set`` handling, and the one-line error exit."""
import argparse
import os
import sys

from common.config import CHOICES, load_config
from common.errors import ReidError

# seed flag -> (config key, type, help)
SEED_FLAGS = {
    "--dataset": ("data.dataset", str, "SYSU or RegDB"),
    "--data-path": ("data.data_path", str, "dataset root (SYSU: holds cam1..cam6, exp/ and the .npy files)"),
    "--trial": ("data.trial", int, "RegDB trial 1..10"),
    "--optim": ("optim.name", str, "adam or sgd"),
    "--lr": ("optim.lr", float, "initial learning rate (0.00035 adam, 0.1 sgd)"),
    "--device-target": ("runtime.device_target", str, "CPU, GPU or Ascend"),
    "--gpu": ("runtime.gpu", int, "device index"),
    "--pretrain": ("model.pretrain", str, "ImageNet ResNet checkpoint (.pth or .safetensors)"),
    "--resume": ("train.resume", str, "checkpoint to resume from (train) or to evaluate (test)"),
    "--ckpt": ("train.ckpt", str, "experiment tag: logs go to logs/<ckpt>/"),
    "--epochs": ("schedule.epochs", int, "number of epochs"),
    "--warmup-steps": ("schedule.warmup_steps", int, "linear warm-up epochs"),
    "--start-decay": ("schedule.start_decay", int, "epoch of the first lr decay"),
    "--end-decay": ("schedule.end_decay", int, "epoch of the second lr decay"),
    "--loss-func": ("loss.func", str, "id, id+tri or id+tri+kldiv"),
    "--backend": ("runtime.backend", str, "torch or mindspore (default: $REID_BACKEND, then torch)"),
    "--ms-mode": ("runtime.ms_mode", str, "MindSpore GRAPH or PYNATIVE"),
    "--seed": ("train.seed", int, "random seed"),
}


def build_parser(description: str, flags=SEED_FLAGS) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", default=None, help="YAML config (see configs/); flags override it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set optim.weight_decay=1e-4 (repeatable)")
    for flag, (key, typ, text) in flags.items():
        choices = CHOICES.get(key)
        p.add_argument(flag, type=typ, default=None, choices=choices, help=f"{text} [{key}]")
    return p


def config_from_args(args, flags=SEED_FLAGS) -> dict:
    """Defaults <- --config <- --set <- explicit seed flags. With no ``--backend`` and no
    ``runtime.backend`` override, the backend comes from ``$REID_BACKEND``, then torch."""
    from backends import ENV_VAR, resolve_name
    explicit: dict = {}
    for flag, (key, _, _) in flags.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            section, name = key.split(".")
            explicit.setdefault(section, {})[name] = value
    backend_set = "backend" in explicit.get("runtime", {}) or any(
        o.startswith("runtime.backend=") for o in args.overrides)
    if not backend_set and os.environ.get(ENV_VAR):
        explicit.setdefault("runtime", {})["backend"] = resolve_name()
    return load_config(args.config, args.overrides, explicit)


def run_main(fn) -> int:
    """Call ``fn()``; a :class:`ReidError` becomes one ``error: ...`` line and exit code 2."""
    try:
        return fn() or 0
    except ReidError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume logs/<ckpt>/<backend>_last.*", file=sys.stderr)
        return 130
