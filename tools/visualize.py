"""Pictures of checkpoints and runs.

    python -m tools.visualize ranked CKPT --data-path DIR [--dataset D] [--topk 10]
        [--queries 8 | --query-ids PID ...] [--setting S] [--grid] [--tile H W] [--out DIR] [--backend B]
    python -m tools.visualize cmc RUN [RUN ...] --out FILE.png [--labels L ...] [--setting S] [--epoch N]
    python -m tools.visualize curves RUN [RUN ...] --out FILE.png [--labels L ...]

``ranked``: ranked lists of a checkpoint of either framework (or a VKD run folder), loaded as
test.py loads it (its stored configuration; test.py's flags, ``--set`` and ``--config`` may
change what evaluation may change). Each query is drawn followed by its ``--topk`` nearest
gallery items of one evaluation setting (``--setting``: SYSU-MM01 ``all``/``indoor``, RegDB
``v2t``/``t2v``, VKD ``I2V``/``V2V``/..., KD-REID a data set such as ``cuhk03``; default the
first), a green frame for the query's identity and a red one otherwise, with rank, identity,
camera and the RGB/IR tag on cross-modal data (VKD tracklets: their first frame). One PNG per query,
``OUT/<setting>_q<index>_id<pid>.png``, or all of them in ``OUT/<setting>_ranked.png`` with
``--grid`` (layout: common/viz/ranked.py).

``cmc``: the CMC curves (ranks 1-20) of runs' evaluations, overlaid; RUN is a train.py run
folder or its metrics.jsonl; the last evaluated epoch unless ``--epoch``.
``curves``: every logged loss term, the learning rate and the evaluation metrics per epoch.

Bad input (a missing checkpoint or run folder, a run without metrics) is one line on stderr
and exit status 2.
"""
import os
import sys
from typing import List

from common.errors import CheckpointError, ConfigError

COMMANDS = ("ranked", "cmc", "curves")
DEFAULT_OUT = "ranked_out"


def ranked_parser():
    import test as test_cli
    from common import recipes
    from common.cli import build_parser
    p = build_parser("ranked lists of a checkpoint", test_cli.TEST_FLAGS, tuple(recipes.TEST_ALIASES))
    p.prog = "python -m tools.visualize ranked"
    p.add_argument("--topk", type=int, default=10, help="gallery items per query")
    p.add_argument("--queries", type=int, default=8, help="draw the first query of this many identities")
    p.add_argument("--query-ids", type=int, nargs="+", default=None, help="draw the first query of these identities")
    p.add_argument("--setting", default=None, help="evaluation setting (default: the first)")
    p.add_argument("--grid", action="store_true", help="one PNG with a row per query")
    p.add_argument("--tile", type=int, nargs=2, default=(128, 64), metavar=("H", "W"), help="tile size in pixels")
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    return p


def _folder_method(folder: str) -> str:
    """The method of a run folder given as CKPT (its config.yaml; VKD's layout: vkd)."""
    import yaml
    config = os.path.join(folder, "config.yaml")
    if os.path.isfile(config):
        with open(config, encoding="utf-8") as f:
            name = ((yaml.safe_load(f) or {}).get("method") or {}).get("name")
        if name:
            return "vkd" if name.startswith("vkd") else name
    if os.path.isdir(os.path.join(folder, "chk")):
        return "vkd"
    raise CheckpointError(f"'{folder}' is a folder but not a VKD run folder; pass a checkpoint file "
                          "(<run>/<backend>_best.pth|.ckpt)")


def write_ranked(args) -> List[str]:
    """Write the ranked-list pictures of ``args`` (module docstring); return their paths."""
    import test as test_cli
    from common.cli import flag_dest
    from common.viz import ranked
    given = list(args.positionals)
    if len(given) > 1:
        raise ConfigError(f"ranked takes one checkpoint, got {' '.join(given)}")
    resume = flag_dest(test_cli.TEST_FLAGS["--resume"])
    ckpt = given[0] if given else getattr(args, resume)
    if not ckpt:
        raise ConfigError("no checkpoint given: python -m tools.visualize ranked CKPT --data-path DIR")
    if not os.path.exists(ckpt):
        raise CheckpointError(f"checkpoint '{ckpt}' not found; expected a .pth/.ckpt/.safetensors file written "
                              "by train.py (or a VKD run folder)")
    if min(args.tile) < 8:
        raise ConfigError(f"--tile must be at least 8 8, got {args.tile[0]} {args.tile[1]}")
    setattr(args, resume, ckpt)
    args.positionals = []
    if os.path.isdir(ckpt) and not args.method:
        args.method = _folder_method(ckpt)
    r = test_cli.resolve(args)
    if args.print_config:
        from common.cli import print_config
        print_config(r.cfg)
        return []
    if not hasattr(r.recipe, "ranked_inputs"):
        raise ConfigError(f"method {r.cfg['method']['name']!r} has no ranked lists yet (its recipe lacks "
                          "ranked_inputs)")
    model, _ = test_cli.load_model(r)

    def select(q_pids):
        return ranked.pick_queries(q_pids, args.queries, args.query_ids)
    rs = r.recipe.ranked_inputs(r.cfg, r.B, model, select=select, setting=args.setting)
    rows = ranked.top_k(rs, args.topk)
    os.makedirs(args.out, exist_ok=True)
    name = rs.setting.replace("/", "_")
    pictures = [(os.path.join(args.out, f"{name}_ranked.png"), rows)] if args.grid else [
        (os.path.join(args.out, f"{name}_q{int(rs.q_index[row.query])}_id{int(rs.q_pids[row.query])}.png"), [row])
        for row in rows]
    written = []
    for path, part in pictures:
        picture, _ = ranked.draw(rs, part, tuple(args.tile))
        picture.save(path)
        written.append(path)
        print(path, flush=True)
    return written


def _plot_parser(command: str):
    import argparse
    p = argparse.ArgumentParser(prog=f"python -m tools.visualize {command}", allow_abbrev=False,
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="train.py run folder or its metrics.jsonl")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--labels", nargs="+", default=None, help="legend label of each run (default: folder names)")
    if command == "cmc":
        p.add_argument("--setting", default=None, help="evaluation setting (default: the first row)")
        p.add_argument("--epoch", type=int, default=None, help="evaluated epoch (default: the last)")
    return p


def _load_runs(args):
    from common.viz.plots import load_run
    if args.labels is not None and len(args.labels) != len(args.runs):
        raise ConfigError(f"--labels gives {len(args.labels)} label(s) for {len(args.runs)} run(s); give one per run")
    labels = args.labels or [None] * len(args.runs)
    return [load_run(path, label) for path, label in zip(args.runs, labels)]


def write_cmc(args) -> str:
    from common.viz import plots
    curves = [plots.cmc_curve(run, args.setting, args.epoch) for run in _load_runs(args)]
    plots.draw_cmc(curves, args.out)
    print(args.out, flush=True)
    return args.out


def write_curves(args) -> str:
    from common.viz import plots
    plots.draw_curves(plots.training_panels(_load_runs(args)), args.out)
    print(args.out, flush=True)
    return args.out


def main(argv=None) -> int:
    from common.cli import run_main
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        if argv and argv[0] in ("-h", "--help"):
            print(__doc__)
            return 0
        print(f"error: expected a command, one of {', '.join(COMMANDS)} (python -m tools.visualize COMMAND -h)",
              file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "ranked":
        args = ranked_parser().parse_intermixed_args(rest)
        return run_main(lambda: write_ranked(args) and 0)
    args = _plot_parser(command).parse_args(rest)
    return run_main(lambda: (write_cmc if command == "cmc" else write_curves)(args) and 0)


if __name__ == "__main__":
    sys.exit(main())
