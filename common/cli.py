"""Shared command-line pieces of train.py and test.py: flags mapped onto configuration keys
(the MVD seed's flags, and each recipe's reference flags), the configuration layers, and the
one-line error exit.

Configuration layers, later ones win: the schema defaults, the method's default YAML
(``configs/<recipe default>``), ``--config FILE``, ``--set section.key=value`` (repeatable),
the explicit flags, then ``--method``. With no ``--backend`` and no ``runtime.backend``
setting, the backend comes from ``$REID_BACKEND``, then torch.
"""
import argparse
import os
import sys
from typing import Dict, NamedTuple, Optional, Sequence

from common.errors import ReidError, os_error_message


class Flag(NamedTuple):
    """One command-line flag: its spellings, the dotted config key it sets, its type (or
    'store_true'), and help. ``nargs='+'`` flags set list keys."""
    names: Sequence[str]
    key: str
    type: object
    help: str
    nargs: Optional[str] = None


SEED_FLAGS = (
    Flag(("--dataset",), "data.dataset", str, "dataset (SYSU or RegDB for MVD)"),
    Flag(("--data-path",), "data.data_path", str, "dataset root (SYSU: holds cam1..cam6, exp/ and the .npy files)"),
    Flag(("--trial",), "data.trial", int, "RegDB trial 1..10"),
    Flag(("--optim",), "optim.name", str, "adam or sgd"),
    Flag(("--lr",), "optim.lr", float, "initial learning rate (0.00035 adam, 0.1 sgd)"),
    Flag(("--device-target",), "runtime.device_target", str, "CPU, GPU or Ascend"),
    Flag(("--gpu",), "runtime.gpu", int, "device index"),
    Flag(("--pretrain",), "model.pretrain", str, "ImageNet ResNet checkpoint (.pth or .safetensors)"),
    Flag(("--resume",), "train.resume", str, "checkpoint to resume from (train) or to evaluate (test)"),
    Flag(("--ckpt",), "train.ckpt", str, "experiment tag: logs go to logs/<ckpt>/"),
    Flag(("--epochs",), "schedule.epochs", int, "number of epochs"),
    Flag(("--warmup-steps",), "schedule.warmup_steps", int, "linear warm-up epochs"),
    Flag(("--start-decay",), "schedule.start_decay", int, "epoch (1-based) of the first lr decay"),
    Flag(("--end-decay",), "schedule.end_decay", int, "epoch (1-based) of the last lr decay"),
    Flag(("--loss-func",), "mvd.loss_func", str, "MVD: id, id+tri or id+tri+kldiv"),
    Flag(("--backend",), "runtime.backend", str, "torch or mindspore (default: $REID_BACKEND, then torch)"),
    Flag(("--ms-mode",), "runtime.ms_mode", str, "MindSpore GRAPH or PYNATIVE"),
    Flag(("--seed",), "train.seed", int, "random seed"),
)
AMP = Flag(("--amp",), "runtime.amp", str, "mixed precision of the training step: off, fp16 or bf16")
OVERWRITE = Flag(("--overwrite",), "train.overwrite", "store_true",
                 "allow a fresh run in a run folder that already holds results")
TENSORBOARD = Flag(("--tensorboard",), "train.tensorboard", "store_true",
                   "write TensorBoard scalars (losses, learning rates, evaluation) to <run>/tensorboard/")


def all_flags(extra: Sequence[Flag] = ()) -> Dict[str, Flag]:
    """Every flag by its first spelling: the seed's, then each recipe's ``FLAGS``."""
    from common import recipes
    out = {f.names[0]: f for f in SEED_FLAGS}
    for method in recipes.METHODS:
        for f in getattr(recipes.get(method), "FLAGS", ()):
            if f.names[0] in out and out[f.names[0]].key != f.key:
                raise AssertionError(f"flag {f.names[0]} maps to {out[f.names[0]].key} and {f.key}")
            out.setdefault(f.names[0], f)
    for f in extra:
        out[f.names[0]] = f
    return out


def flag_dest(flag: Flag) -> str:
    """The argparse attribute that holds ``flag``'s value."""
    return "flag_" + flag.key.replace(".", "__")


def build_parser(description: str, flags: Dict[str, Flag], methods_extra=()) -> argparse.ArgumentParser:
    """A parser with ``--method``, ``--config``, ``--set``, ``--print-config`` and ``flags``;
    choices come from the schema, so a bad value is refused by argparse with its list."""
    from common import recipes
    from common.config import schema
    p = argparse.ArgumentParser(description=description, allow_abbrev=False)
    p.add_argument("positionals", nargs="*", metavar="ARG",
                   help="a reference's positional arguments (VKD: DATASET [TEACHER_FOLDER])")
    p.add_argument("--method", default=None, choices=tuple(recipes.METHODS) + tuple(methods_extra),
                   help="training recipe (common/recipes)")
    p.add_argument("--config", default=None, help="YAML config (see configs/); flags override it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set optim.weight_decay=1e-4 (repeatable)")
    p.add_argument("--print-config", action="store_true",
                   help="print the fully resolved configuration as YAML and exit without touching data")
    known = {}
    for m in recipes.METHODS:
        known.update(schema(m))
    for flag in flags.values():
        section, name = flag.key.split(".")
        key = known.get(section, {}).get(name)
        help_text = f"{flag.help} [{flag.key}]"
        if flag.type == "store_true":
            p.add_argument(*flag.names, dest=flag_dest(flag), action="store_true", default=None, help=help_text)
            continue
        choices = key.choices if key is not None and key.choices and flag.nargs is None else None
        p.add_argument(*flag.names, dest=flag_dest(flag), type=flag.type, default=None, choices=choices,
                       nargs=flag.nargs, help=help_text)
    return p


def explicit_values(args, flags: Dict[str, Flag]) -> dict:
    """The nested ``{section: {key: value}}`` of the flags given on the command line."""
    out: dict = {}
    for flag in flags.values():
        value = getattr(args, flag_dest(flag), None)
        if value is not None:
            section, name = flag.key.split(".")
            out.setdefault(section, {})[name] = value
    return out


def _method_of(args, explicit: dict, user_cfg: dict, fallback: str = "mvd") -> str:
    return (args.method or explicit.get("method", {}).get("name")
            or (user_cfg.get("method") or {}).get("name") or fallback)


def config_from_args(args, flags: Dict[str, Flag], base: Optional[dict] = None) -> dict:
    """The validated configuration of a command line (layers in the module docstring).
    ``base`` replaces the method's default YAML as the bottom layer (test.py: the
    checkpoint's configuration). A recipe with ``positionals(method, values)`` reads the
    reference's positional arguments; with ``finalize(cfg)`` it derives dependent keys."""
    from backends import ENV_VAR, resolve_name
    from common import recipes
    from common.config import load_yaml, merge, resolve, validate
    from common.errors import ConfigError
    explicit = explicit_values(args, flags)
    user = resolve(args.config, args.overrides)
    method = _method_of(args, explicit, user, base["method"]["name"] if base else "mvd")
    method = recipes.TEST_ALIASES.get(method, method)
    recipe = recipes.get(method)
    values = list(getattr(args, "positionals", None) or [])
    if values:
        if not hasattr(recipe, "positionals"):
            raise ConfigError(f"unexpected argument(s) {' '.join(values)}; method {method!r} takes only flags")
        user = merge(user, recipe.positionals(method, values))
    user = merge(user, explicit)
    bottom = base if base is not None else load_yaml(recipes.default_config(method))
    cfg = merge(merge(bottom, user), {"method": {"name": method}})
    backend_set = "backend" in user.get("runtime", {})
    if not backend_set and os.environ.get(ENV_VAR) and base is None:
        cfg = merge(cfg, {"runtime": {"backend": resolve_name()}})
    cfg = validate(cfg)
    return recipe.finalize(cfg) if hasattr(recipe, "finalize") else cfg


def print_config(cfg: dict) -> None:
    from common.config import to_yaml
    sys.stdout.write(to_yaml(cfg))


RANK_ERROR_GRACE_S = 5.0  # how long a rank > 0 waits before it exits on an error


def run_main(fn) -> int:
    """Call ``fn()``; a user-facing problem becomes one ``error: ...`` line and exit code 2;
    Ctrl-C / SIGTERM exit 130 / 143 with the resume command. ``REID_DEBUG=1`` re-raises for
    the full traceback. In a distributed launch only rank 0 prints; the other processes exit
    with the same code quietly, after :data:`RANK_ERROR_GRACE_S` seconds: a launcher stops
    every worker once one has failed, so a rank > 0 that fails first would otherwise cut off
    rank 0 before it prints the (same) error."""
    from common.engine.runtime import launched_rank
    rank = launched_rank()
    code = _run_reporting(fn, rank)
    if code == 2 and rank > 0:
        import time
        time.sleep(RANK_ERROR_GRACE_S)
    return code


def _run_reporting(fn, rank: int) -> int:
    """run_main's body: ``fn()`` with its problems as one line (printed on rank 0 only)."""
    from common.engine.loop import Interrupted
    debug = os.environ.get("REID_DEBUG") == "1"

    def say(text: str) -> None:
        if rank == 0:
            print(text, file=sys.stderr)
    try:
        return fn() or 0
    except ReidError as e:
        if debug:
            raise
        say(f"error: {e}")
        return 2
    except (OSError, UnicodeError) as e:
        if debug:
            raise
        say(f"error: {os_error_message(e)}")
        return 2
    except ValueError as e:
        if debug:
            raise
        say(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__} "
            "(REID_DEBUG=1 shows the traceback)")
        return 2
    except Interrupted as e:
        say(e.message)
        return e.code
    except KeyboardInterrupt:
        say("interrupted")
        return 130
