#!/usr/bin/env python
"""Evaluate a checkpoint, e.g.

    python test.py --dataset SYSU --data-path DATA --device-target GPU --gpu 0 --resume CKPT

The run configuration stored in the checkpoint is the bottom layer; ``--config``, ``--set``
and the flags may change what evaluation may change (the data, the test feature, the
runtime: each recipe's ``TEST_KEYS``) and nothing else. SYSU-MM01: all-search and
indoor-search over ``data.eval_trials`` galleries (mean, and per trial with
``--per-trial``); RegDB: visible->thermal and thermal->visible of ``--trial``. A checkpoint
of the other framework is converted first (``python -m tools.convert_weights``); a neutral
``.safetensors`` loads in either.
"""
import argparse
import os
import sys
from typing import NamedTuple

from common.cli import Flag, SEED_FLAGS, build_parser, config_from_args, print_config, run_main

TEST_FLAGS = {f.names[0]: f for f in SEED_FLAGS if f.names[0] in (
    "--dataset", "--data-path", "--trial", "--device-target", "--gpu", "--resume", "--backend", "--ms-mode",
    "--seed")}
TEST_FLAGS["--trials"] = Flag(("--trials",), "data.eval_trials", int, "SYSU gallery trials")
TEST_FLAGS["--trinet_chk_name"] = Flag(("--trinet_chk_name",), "vkd.teacher_chk_name", str,
                                       "VKD eval.py: checkpoint name in the run folder's chk/")
for _flag in (Flag(("--num_test_images",), "vkd.num_test_images", int, "VKD eval.py: frames per test tracklet"),
              Flag(("--test_batch",), "data.test_batch", int, "VKD eval.py: tracklets per forward pass"),
              Flag(("--img_test_batch",), "vkd.img_test_batch", int, "VKD eval.py: images per forward pass"),
              Flag(("-j", "--workers"), "data.workers", int, "data-loading worker processes")):
    TEST_FLAGS[_flag.names[0]] = _flag


def make_parser():
    """The parser of test.py."""
    from common import recipes
    parser = build_parser(__doc__.split("\n")[0], TEST_FLAGS, tuple(recipes.TEST_ALIASES))
    parser.add_argument("--per-trial", action="store_true", help="also print every trial's row")
    return parser


class Resolved(NamedTuple):
    """What a checkpoint on a command line resolves to (:func:`resolve`)."""
    cfg: dict          # the checkpoint's configuration with the allowed command-line changes
    B: object          # the backend module
    recipe: object     # the method's recipe module
    num_classes: int
    path: str          # the checkpoint file (a VKD run folder resolves to its checkpoint)


def resolve(args, flags=None) -> Resolved:
    """The configuration, backend, recipe and checkpoint of a test.py-style command line
    (``args`` parsed with ``flags``, default :data:`TEST_FLAGS`): the checkpoint's stored
    configuration is the bottom layer, and only what evaluation may change can change.
    Prints a note for a checkpoint of the original MVD code. Used by test.py and by
    ``tools/visualize.py ranked``."""
    import backends
    from common import mvd_import, recipes
    from common.checkpoint_model import check_test_changes, stored_config
    from common.errors import ConfigError, ReidError
    flags = TEST_FLAGS if flags is None else flags
    try:
        probe = config_from_args(args, flags)
    except ConfigError:
        # --config/--set may name the section of the checkpoint's method, which is not known
        # yet (the default method's schema refuses it): find the checkpoint without them; they
        # are applied on the stored configuration below. An error in a known section (a bad
        # number, an unknown key) is reported now, before anything is read.
        probe = config_from_args(argparse.Namespace(**{**vars(args), "overrides": [], "config": None}), flags)
        sections = {str(o).split("=", 1)[0].split(".", 1)[0] for o in (args.overrides or [])}
        if not args.config and sections <= set(probe):
            raise
    path = probe["train"]["resume"]
    if not path:
        raise ReidError("no checkpoint given: pass --resume PATH (a .pth, .ckpt or .safetensors file, or a "
                        "VKD run folder)")
    B = backends.get(probe["runtime"]["backend"])
    recipe = recipes.get(probe["method"]["name"])
    stored = None
    if os.path.isdir(path) and hasattr(recipe, "test_checkpoint"):
        path, stored = recipe.test_checkpoint(probe)
    extra = recipe.read_extra(path) if hasattr(recipe, "read_extra") else B.checkpoint.read_extra(path)
    stored, num_classes, imported = stored_config(path, extra, stored)
    if imported:
        print(f"note: '{path}' is a checkpoint of the original MVD code: evaluated as configs/"
              f"{mvd_import.CONFIG_FILE} (with your --config/--set/flags, which describe its network)")
    asked = recipes.TEST_ALIASES.get(args.method, args.method) if args.method else None
    if asked and recipes.get(asked) is not recipes.get(stored["method"]["name"]):
        raise ConfigError(f"'{path}' holds a {stored['method']['name']!r} model, not {args.method!r}")
    cfg = config_from_args(args, flags, base=stored)
    cfg["train"]["resume"] = path
    recipe = recipes.get(cfg["method"]["name"])
    if not imported:  # an imported checkpoint stores no configuration: the command line describes its network
        check_test_changes(stored, cfg)
    return Resolved(cfg, B, recipe, num_classes, path)


def load_model(r: Resolved):
    """(model with the checkpoint's weights, evaluate() -> rows): the backend set up from the
    configuration, the recipe's ``build_for_test`` network, the weights of ``r.path``."""
    from common.checkpoint_model import load_weights
    from common.engine.loop import setup_backend
    from common.errors import ReidError
    if not r.cfg["data"]["data_path"]:
        raise ReidError("no dataset given: pass --data-path DIR")
    setup_backend(r.B, r.cfg)
    model, evaluate = r.recipe.build_for_test(r.cfg, r.B, r.num_classes)
    load_weights(r.B, model, r.path, r.cfg)
    return model, evaluate


def main(argv=None) -> int:
    args = make_parser().parse_intermixed_args(argv)

    def go():
        from common.report import format_table
        r = resolve(args)
        if args.print_config:
            print_config(r.cfg)
            return 0
        _, evaluate = load_model(r)
        rows = evaluate()
        if not args.per_trial:
            rows = [row for row in rows if "/" not in row["setting"]]
        print(f"{r.cfg['data']['dataset']} with {r.B.name}, checkpoint {r.path}")
        print(format_table(rows, r.recipe.COLUMNS))
        return 0

    return run_main(go)


if __name__ == "__main__":
    sys.exit(main())
