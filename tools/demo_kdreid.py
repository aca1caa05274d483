"""KD-REID at demo size (``demo_kdreid``; called by ``tools/demo.py``): synthetic Market-1501
(source) -> synthetic DukeMTMC-reID and CUHK03 (targets, rendered in the 'warm' and 'dim'
dataset styles of ``common.data.appearance.DOMAIN_SHIFTS``: colour mix, contrast, brightness
and per-camera casts), the three steps of the reference's README with each backend:

1. ``source``: a ResNet-50 (width 16, the teachers' network) and an OSNet x0_25 (the
   student's network) trained on the source;
2. ``dmmd``: one D-MMD teacher per target, adapted from the source ResNet-50;
3. ``kd-reid``: the OSNet student, from its source model, distilled from both teachers.

It prints, per backend, the Rank-1 / mAP on each target and their mean for the source models
(no adaptation), each teacher, and the student.

What it shows, honestly: the whole pipeline running end to end with both frameworks on data
with a real domain shift, and how each stage moves the target metrics at this size. It is NOT
a reproduction of the paper's numbers: the networks start from scratch (no ImageNet weights
can be downloaded here, so the source models learn at Adam 1e-3 instead of 3e-4), the synthetic
identities are few, training is a few epochs (D-MMD's MMD terms start at epoch 1 instead of the
reference's 25), the test sets are tiny (a Rank-1 step on Duke is 1/24), and, as in the reference
(MTDA's engines test on the target test set every ``eval_freq`` epochs and keep the best),
the checkpoints kept are chosen on the target test set, which flatters every row alike. The
two backends start from their own random initialisations, so their rows differ; identical-
weight agreement is what the parity suite checks. Chance Rank-1 is about 1 / (test identities)
(CUHK03's classic protocol: single-gallery-shot, a little above).

Measured (12 ids, the defaults; 2 shared CPU cores at load 4-7, so the seconds are inflated):

    model                 torch: duke R1/mAP  cuhk R1/mAP  mean R1   MindSpore: duke  cuhk  mean R1
    source resnet50              8.3 / 12.3    0.4 /  7.4     4.4               12.5  10.0   11.3
    source osnet_x0_25          20.8 / 21.2   19.6 / 22.9    20.2               20.8  28.8   24.8
    D-MMD teacher duke          12.5 / 16.3    2.9 / 10.4     7.7               25.0  16.9   20.9
    D-MMD teacher cuhk03         4.2 / 11.1    7.5 / 13.2     5.8                8.3   5.0    6.7
    KD-REID student osnet       20.8 / 21.3   52.9 / 58.3    36.9               29.2  39.2   34.2

Seconds: torch 182 (of which the two source models 157), MindSpore (GRAPH) 294. Read with
care: the source models reach 12-46 % Rank-1 on the synthetic Market and far less on the shifted
targets; each D-MMD teacher gains on its own target over the source ResNet-50 in torch (in
MindSpore on Duke, not on CUHK03: 5.0 vs 10.0); the student ends best on the mean in both
backends, well above its source model, in part because its distillation steps run it in train
mode on target batches (its BatchNorm statistics adapt to the targets, as in the reference) and
its teachers are weak at this size. Differences of a few points are within the noise of test
sets this small.
"""
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = (("dukemtmcreid", "warm", 1), ("cuhk03", "dim", 2))
SOURCE = "market1501"
# demo size (the networks' real structure, smaller where it costs most)
SIZE = ["data.height=64", "data.width=32", "data.num_pos=2", "kdreid.batch_size=8", "kdreid.features=128",
        "model.width=16", "data.test_batch=128", "data.workers=0", "runtime.ms_mode=GRAPH",
        "train.overwrite=true"]


def write_data(out: str, ids: int) -> str:
    """The three synthetic data sets under ``out/data`` (written once)."""
    from common.data import synthetic
    data = os.path.join(out, "data")
    if not os.path.isdir(os.path.join(data, "cuhk03")):
        synthetic.write(SOURCE, data, ids=ids, seed=0)
        for name, style, seed in TARGETS:
            synthetic.write(name, data, ids=ids, seed=seed, shift=style)
    return data


def _config(method: str, overrides):
    from common import recipes
    from common.config import load_config
    recipe = recipes.get(method)
    cfg = recipe.finalize(load_config(recipes.default_config(method), list(overrides), method=method))
    recipe.check(cfg)
    return cfg, recipe


def train(method: str, overrides, backend: str) -> dict:
    """One train.py run through the shared loop; its summary."""
    import backends
    from common.engine.loop import fit
    cfg, recipe = _config(method, overrides)
    return fit(cfg, backends.get(backend), recipe.build, echo=None, structure_keys=recipe.STRUCTURE_KEYS)


def evaluate_on_targets(checkpoint: str, arch: str, overrides, backend: str):
    """Rows (one per target, then the mean) of a checkpoint of ``arch`` on the targets."""
    import backends
    B = backends.get(backend)
    cfg, recipe = _config("dmmd", list(overrides) + [f"kdreid.arch={arch}"])
    num_classes = int(B.checkpoint.read_extra(checkpoint)["num_classes"])
    model, evaluate = recipe.build_for_test(cfg, B, num_classes)
    B.checkpoint.load_checkpoint(checkpoint, model)
    return evaluate()


def _row(model: str, backend: str, rows, seconds: float) -> dict:
    out = {"backend": backend, "model": model}
    for r in rows:
        out[f"{r['setting'][:4]} R1"], out[f"{r['setting'][:4]} mAP"] = r["R1"], r["mAP"]
    out["s"] = seconds
    return out


def demo_kdreid(out: str, backends=("torch", "mindspore"), ids: int = 12, epochs=None) -> list:
    """Run the demo (module docstring) with each of ``backends``; ``epochs`` overrides every
    stage's epochs (source 24, D-MMD 6, KD 6). Returns the table rows (also printed)."""
    from common.report import format_table
    t0 = time.time()
    data = write_data(out, ids)
    print(f"synthetic {SOURCE} -> {', '.join(f'{t} ({s})' for t, s, _ in TARGETS)} in {data} "
          f"({ids} train / {ids} test ids each, {time.time() - t0:.1f}s)")
    e_src, e_da, e_kd = (epochs, epochs, epochs) if epochs else (24, 6, 6)
    targets = [t for t, _, _ in TARGETS]
    table = []
    for name in backends:
        logs = os.path.join(out, "logs", name)
        ext = ".pth" if name == "torch" else ".ckpt"
        common = SIZE + [f"data.data_path={data}", f"runtime.backend={name}", f"train.log_dir={logs}",
                         f"kdreid.source=[{SOURCE}]"]
        on_targets = common + [f"kdreid.targets=[{','.join(targets)}]"]
        best = {}
        print(f"== KD-REID with {name} ==")
        for arch, tag in (("resnet50", "src_resnet50"), ("osnet_x0_25", "src_osnet")):
            t = time.time()
            s = train("source", common + [f"kdreid.arch={arch}", f"train.ckpt={tag}", f"schedule.epochs={e_src}",
                                          f"train.eval_every={e_src}", "optim.lr=0.001"], name)
            best[tag] = os.path.join(s["run_dir"], f"{name}_best{ext}")
            rows = evaluate_on_targets(best[tag], arch, on_targets, name)
            table.append(_row(f"source {arch}", name, rows, time.time() - t))
            print(f"  source {arch}: {s['best']:.1f} R1 on {SOURCE}; {time.time() - t:.0f}s")
        teachers = []
        for target in targets:
            t = time.time()
            s = train("dmmd", common + [f"kdreid.targets=[{target}]", f"kdreid.model_path={best['src_resnet50']}",
                                        f"train.ckpt=dmmd_{target}", f"schedule.epochs={e_da}", "train.eval_every=2",
                                        "kdreid.mmd_start_epoch=1", "kdreid.step_size=100"], name)
            teachers.append(os.path.join(s["run_dir"], f"{name}_best{ext}"))
            table.append(_row(f"D-MMD teacher {target}", name,
                              evaluate_on_targets(teachers[-1], "resnet50", on_targets, name), time.time() - t))
            print(f"  D-MMD teacher {target}: {s['best']:.1f} R1; {time.time() - t:.0f}s")
        t = time.time()
        s = train("kd-reid", on_targets + [f"kdreid.model_path_student={best['src_osnet']}", "kdreid.step_size=100",
                                           f"kdreid.model_path_teachers=[{','.join(teachers)}]", "train.ckpt=kd",
                                           f"schedule.epochs={e_kd}", "train.eval_every=2"], name)
        rows = evaluate_on_targets(os.path.join(s["run_dir"], f"{name}_best{ext}"), "osnet_x0_25", on_targets, name)
        table.append(_row("KD-REID student osnet_x0_25", name, rows, time.time() - t))
        print(f"  KD-REID student: {s['best']:.1f} mean R1; {time.time() - t:.0f}s")
    cols = ["backend", "model"] + [c for t in targets + ["mean"] for c in (f"{t[:4]} R1", f"{t[:4]} mAP")] + ["s"]
    print(f"\nKD-REID on synthetic {SOURCE} -> {' + '.join(targets)} ({ids} test ids per target; chance R1 "
          f"~{100.0 / ids:.0f}%); checkpoints chosen on the target test sets, as the reference")
    print(format_table(table, cols))
    return table


if __name__ == "__main__":  # python -m tools.demo_kdreid [OUT] (the lead wires it into tools/demo.py)
    import sys
    sys.path.insert(0, ROOT)
    demo_kdreid(sys.argv[1] if len(sys.argv) > 1 else "demo_data/kdreid",
                tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else ("torch", "mindspore"))
