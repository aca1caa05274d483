#!/usr/bin/env python
"""Train a re-ID model: ``--method`` (or the ``method.name`` of a YAML under configs/) picks
the recipe; MVD with the seed's command line is the default, e.g.

    python train.py --dataset SYSU --data-path DATA --optim adam --lr 0.00035 \
        --device-target GPU --gpu 0 --pretrain resnet50.pth --backend mindspore

Distributed data parallel (one process per device, each on its own data.num_ids x
data.num_pos batches; common/engine/runtime.py), with this venv's ``bin`` first on PATH:

    torchrun --nproc_per_node 2 train.py ... --backend torch
    msrun --worker_num 2 --local_worker_num 2 --master_port 8118 --log_dir msrun_logs train.py ... --backend mindspore

``--amp fp16|bf16`` trains in mixed precision.
``--config configs/<recipe>.yaml`` picks a configuration; ``--set section.key=value``
overrides any key; explicit flags win over both; ``--print-config`` prints the resolved
configuration and exits.
"""
import sys

from common.cli import AMP, OVERWRITE, TENSORBOARD, all_flags, build_parser, config_from_args, print_config, run_main


def make_parser():
    """(parser, flags) of train.py."""
    flags = all_flags((AMP, OVERWRITE, TENSORBOARD))
    return build_parser(__doc__.split("\n")[0], flags), flags


def main(argv=None) -> int:
    parser, flags = make_parser()
    args = parser.parse_intermixed_args(argv)

    def go():
        from common import recipes
        cfg = config_from_args(args, flags)
        if args.print_config:
            print_config(cfg)
            return 0
        recipe = recipes.get(cfg["method"]["name"])
        recipe.check(cfg)
        import backends
        from common.engine.loop import fit
        B = backends.get(cfg["runtime"]["backend"])
        summary = fit(cfg, B, recipe.build, structure_keys=recipe.STRUCTURE_KEYS)
        if summary["rank"] == 0:  # distributed runs: rank 0 speaks for all
            print(f"done: best {summary['best']:.2f} (epoch {summary['best_epoch']}); {summary['files']}")
        return 0

    return run_main(go)


if __name__ == "__main__":
    sys.exit(main())
