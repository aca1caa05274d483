#!/usr/bin/env python
"""Train a re-ID model (SPEC 9). MVD with the seed's command line, e.g.

    python train.py --dataset SYSU --data-path DATA --optim adam --lr 0.00035 \
        --device-target GPU --gpu 0 --pretrain resnet50.pth --backend mindspore

``--config configs/<recipe>.yaml`` picks a recipe; ``--set section.key=value`` overrides
any configuration key; explicit flags win over both.
"""
import sys

from common.cli import build_parser, config_from_args, run_main

METHODS = ("mvd",)


def main(argv=None) -> int:
    parser = build_parser(__doc__.split("\n")[1])
    parser.add_argument("--method", default=None, choices=METHODS,
                        help="training recipe (MVD now; VKD and KD-REID arrive with their ports)")
    args = parser.parse_args(argv)

    def go():
        import backends
        from common import mvd_runner
        cfg = config_from_args(args)
        if args.method:
            cfg["method"]["name"] = args.method
        B = backends.get(cfg["runtime"]["backend"])
        summary = mvd_runner.train(cfg, B)
        print(f"done: best Rank-1 {summary['best_R1']:.2f}% ; checkpoints in {summary['run_dir']}")
        return 0

    return run_main(go)


if __name__ == "__main__":
    sys.exit(main())
