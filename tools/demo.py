"""`make demo`: every method end to end on bundled synthetic data, with both backends.

* MVD (``demo_mvd``): writes the synthetic SYSU-MM01 layout, runs ``pre_process_sysu.py``
  on it, trains the MindSpore port's recipe at demo size (``configs/demo.yaml``: ResNet-18
  at width 16, 64x32 inputs) once per backend from the same seed, and prints the all/indoor
  search side by side. Chance-level Rank-1 is 1/(number of test identities).
* VKD (``tools/demo_vkd.py``): a teacher on synthetic MARS, then a student from it, per
  backend; I2V and V2V Rank-1 / mAP, teacher against student.
* KD-REID (``tools/demo_kdreid.py``): synthetic Market-1501 -> DukeMTMC-reID + CUHK03 with a
  domain shift; source training, one D-MMD teacher per target, and the OSNet x0_25 student
  distilled from them.

Every run goes through the command line's own path (``train.py``'s parser and
``common.engine.loop.fit``), so the demo trains exactly what ``train.py`` trains.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("mvd", "vkd", "kd-reid")


def mean_epoch_seconds(secs):
    """Mean seconds per epoch, leaving out the first (it includes MindSpore GRAPH compilation)."""
    later = secs[1:] or secs
    return sum(later) / len(later)


def run(argv, backend: str) -> dict:
    """Train ``train.py`` arguments ``argv`` with ``backend`` through the shared loop (any
    previous run in the same folder is replaced); return the loop's summary."""
    import backends
    import train
    from common import recipes
    from common.cli import config_from_args
    from common.engine.loop import fit
    parser, flags = train.make_parser()
    args = parser.parse_intermixed_args(list(argv) + ["--backend", backend, "--overwrite"])
    cfg = config_from_args(args, flags)
    recipe = recipes.get(cfg["method"]["name"])
    recipe.check(cfg)
    return fit(cfg, backends.get(backend), recipe.build, structure_keys=recipe.STRUCTURE_KEYS)


def demo_mvd(out: str, backend_names, ids: int, epochs=None) -> None:
    import pre_process_sysu
    from common.config import load_config
    from common.data import synthetic, sysu
    from common.report import format_table
    config = os.path.join(ROOT, "configs", "demo.yaml")
    data = os.path.join(out, "SYSU-MM01")  # where synthetic.write puts the sysu layout
    if not os.path.isfile(os.path.join(data, "train_ir_resized_label.npy")):
        t0 = time.time()
        data = synthetic.write("sysu", out, ids=ids, seed=0)
        d = load_config(config)["data"]
        pre_process_sysu.preprocess(data, d["height"], d["width"])
        print(f"synthetic SYSU-MM01 written and preprocessed in {data} ({time.time() - t0:.1f}s)")
    n_test = len(sysu.read_id_file(os.path.join(data, "exp", "test_id.txt")))
    rows = []
    for name in backend_names:
        argv = ["--config", config, "--data-path", data, "--ckpt", f"mvd_{name}",
                "--set", f"train.log_dir={os.path.join(out, 'logs')}"]
        if epochs:
            argv += ["--epochs", str(epochs)]
        print(f"== MVD (port recipe) with {name} ==")
        summary = run(argv, name)
        first = summary["rows"][0]
        indoor = next((r for r in summary["rows"] if r["setting"] == "indoor"), None)
        rows.append({"backend": name, "all R1": first["R1"], "all mAP": first["mAP"], "all mINP": first["mINP"],
                     "indoor R1": indoor["R1"] if indoor else float("nan"),
                     "s/epoch": mean_epoch_seconds(summary["epoch_seconds"])})
    print(f"\nMVD (port recipe) on synthetic SYSU-MM01 ({n_test} test ids, chance Rank-1 {100.0 / n_test:.1f}%)")
    print(format_table(rows, ("backend", "all R1", "all mAP", "all mINP", "indoor R1", "s/epoch")))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_data", help="working folder (datasets and logs)")
    p.add_argument("--ids", type=int, default=None,
                   help="identities per split in the synthetic sets (default: 32 for MVD and VKD, 12 for KD-REID)")
    p.add_argument("--backends", default="torch,mindspore")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, among {', '.join(METHODS)}")
    p.add_argument("--epochs", type=int, default=None, help="override every demo's epochs (quick checks)")
    a = p.parse_args(argv)
    methods = [m for m in a.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; expected among {', '.join(METHODS)}")
    sys.path.insert(0, ROOT)
    names = a.backends.split(",")
    t0 = time.time()
    if "mvd" in methods:
        demo_mvd(a.out, names, a.ids or 32, a.epochs)
    if "vkd" in methods:
        from tools.demo_vkd import demo_vkd
        demo_vkd(a.out, names, a.ids or 32, a.epochs)
    if "kd-reid" in methods:
        from tools.demo_kdreid import demo_kdreid
        demo_kdreid(os.path.join(a.out, "kdreid"), names, a.ids or 12, a.epochs)
    print(f"\ndemo finished in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
