#!/usr/bin/env python
"""Evaluate a checkpoint (SPEC 9), e.g.

    python test.py --dataset SYSU --data-path DATA --device-target GPU --gpu 0 --resume CKPT

SYSU-MM01: all-search and indoor-search, single-shot, 10 trials (mean and per trial);
RegDB: visible->thermal and thermal->visible of ``--trial``. The model shape comes from the
configuration stored in the checkpoint; a checkpoint of the other framework must be converted
first (``python -m tools.convert_weights``), a neutral ``.safetensors`` loads in either.
"""
import sys

from common.cli import SEED_FLAGS, build_parser, config_from_args, run_main

TEST_FLAGS = {k: SEED_FLAGS[k] for k in ("--dataset", "--data-path", "--trial", "--device-target",
                                          "--gpu", "--resume", "--backend", "--ms-mode", "--seed")}


def main(argv=None) -> int:
    parser = build_parser(__doc__.split("\n")[1], TEST_FLAGS)
    parser.add_argument("--trials", type=int, default=None, help="SYSU gallery trials (default data.eval_trials, 10)")
    parser.add_argument("--per-trial", action="store_true", help="also print every trial's row")
    args = parser.parse_args(argv)

    def go():
        import backends
        from common import mvd_runner
        from common.config import validate
        from common.errors import ReidError
        from common.report import format_table
        cli = config_from_args(args, TEST_FLAGS)
        path = cli["train"]["resume"]
        if not path:
            raise ReidError("no checkpoint given: pass --resume PATH (a .pth, .ckpt or .safetensors file)")
        B = backends.get(cli["runtime"]["backend"])
        extra = B.checkpoint.read_extra(path)
        if "config" not in extra or "num_classes" not in extra:
            raise ReidError(f"'{path}' carries no reid-kd configuration; expected a checkpoint written by train.py")
        cfg = validate(extra["config"])
        cfg["runtime"] = cli["runtime"]
        cfg["train"]["seed"] = cli["train"]["seed"]
        for key in ("dataset", "data_path", "trial"):
            if getattr(args, key, None) is not None:
                cfg["data"][key] = cli["data"][key]
        cfg["data"]["eval_trials"] = args.trials or (10 if cfg["data"]["dataset"] == "SYSU" else 1)
        if not cfg["data"]["data_path"]:
            raise ReidError("no dataset given: pass --data-path DIR")
        mvd_runner.setup_backend(B, cfg)
        model = B.mvd.build_model(cfg["model"], int(extra["num_classes"]))
        B.checkpoint.load_checkpoint(path, model)
        trainer = mvd_runner.Extractor(B, model)
        rows = mvd_runner.evaluate_sets(trainer, mvd_runner.load_eval_sets(cfg, cfg["data"]["eval_trials"]), cfg)
        if not args.per_trial:
            rows = [r for r in rows if "/" not in r["setting"]]
        print(f"{cfg['data']['dataset']} with {B.name}, checkpoint {path}")
        print(format_table(rows, mvd_runner.COLUMNS))
        return 0

    return run_main(go)


if __name__ == "__main__":
    sys.exit(main())
