"""`make demo`: every method end to end on bundled synthetic data, with both backends.

MVD: writes the synthetic SYSU-MM01 layout, runs ``pre_process_sysu.py`` on it, trains the
MindSpore port's recipe at demo size (``configs/demo.yaml``: ResNet-18 at width 16, 64x32
inputs) once with torch and once with MindSpore from the same seed, evaluates both on the
all/indoor search, and prints one side-by-side table. Chance-level Rank-1 is
1/(number of test identities).
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mean_epoch_seconds(secs):
    later = secs[1:] or secs  # the first epoch includes compilation (MindSpore GRAPH)
    return sum(later) / len(later)


def run(config: str, overrides, backend: str):
    """Train one configuration with one backend through the shared loop; return its summary."""
    import backends
    from common import recipes
    from common.config import load_config
    from common.engine.loop import fit
    cfg = load_config(os.path.join(ROOT, "configs", "mvd_port.yaml") if config is None else config,
                      list(overrides) + [f"runtime.backend={backend}", "train.overwrite=true"])
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
        overrides = [f"data.data_path={data}", f"train.ckpt=mvd_{name}", f"train.log_dir={os.path.join(out, 'logs')}"]
        if epochs:
            overrides.append(f"schedule.epochs={epochs}")
        print(f"== MVD (port recipe) with {name} ==")
        summary = run(config, overrides, name)
        first = summary["rows"][0]
        indoor = next((r for r in summary["rows"] if r["setting"] == "indoor"), None)
        rows.append({"backend": name, "all R1": first["R1"], "all mAP": first["mAP"], "all mINP": first["mINP"],
                     "indoor R1": indoor["R1"] if indoor else float("nan"),
                     "s/epoch": _mean_epoch_seconds(summary["epoch_seconds"])})
    print(f"\nMVD (port recipe) on synthetic SYSU-MM01 ({n_test} test ids, chance Rank-1 {100.0 / n_test:.1f}%)")
    print(format_table(rows, ("backend", "all R1", "all mAP", "all mINP", "indoor R1", "s/epoch")))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_data", help="working folder (datasets and logs)")
    p.add_argument("--ids", type=int, default=32, help="identities per split in the synthetic sets")
    p.add_argument("--backends", default="torch,mindspore")
    p.add_argument("--epochs", type=int, default=None, help="override every demo's epochs (quick checks)")
    a = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    demo_mvd(a.out, a.backends.split(","), a.ids, a.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
