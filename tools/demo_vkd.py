"""The VKD part of `make demo` (tools/demo.py): on synthetic MARS, per backend, a teacher
trained on tracklets of N=4 frames (``configs/demo_vkd_teacher.yaml``), then a student that
sees M=2 of those views distilled from it (``configs/demo_vkd_student.yaml``); one table
with I2V and V2V Rank-1 / mAP, teacher against student, and seconds per epoch.

VKD's claim (Porrello et al., ECCV 2020, Tab. 1) is that the student closes much of the gap
between image and video queries (I2V); on a few minutes of synthetic data the numbers show
that the pipeline runs and learns, not the paper's gains.
"""
import os

from tools.demo import ROOT, mean_epoch_seconds, run


def demo_vkd(out: str, backend_names, ids: int, epochs=None) -> None:
    from common.data import synthetic
    from common.report import format_table
    data = os.path.join(out, "mars")
    if not os.path.isfile(os.path.join(data, "info", "tracks_test_info.mat")):
        data = synthetic.write("mars", out, ids=ids, seed=0)
    logs = os.path.join(out, "logs")
    rows = []
    for name in backend_names:
        teacher, student = f"vkd_teacher_{name}", f"vkd_student_{name}"
        common = ["--data-path", data, "--set", f"train.log_dir={logs}"] + (["--num_epochs", str(epochs)]
                                                                          if epochs else [])
        print(f"== VKD teacher with {name} ==")
        t = run(["--config", os.path.join(ROOT, "configs", "demo_vkd_teacher.yaml"), "mars", "--exp_name", teacher,
                 *common], name)
        print(f"== VKD student with {name} ==")
        s = run(["--config", os.path.join(ROOT, "configs", "demo_vkd_student.yaml"), "mars",
                 os.path.join(logs, teacher), "--exp_name", student, *common], name)
        for model, summary in (("teacher", t), ("student", s)):
            by = {r["setting"]: r for r in summary["rows"]}
            rows.append({"backend": name, "model": model, "I2V R1": by["I2V"]["R1"], "I2V mAP": by["I2V"]["mAP"],
                         "V2V R1": by["V2V"]["R1"], "V2V mAP": by["V2V"]["mAP"],
                         "s/epoch": mean_epoch_seconds(summary["epoch_seconds"])})
    print(f"\nVKD on synthetic MARS ({ids} test ids, chance Rank-1 {100.0 / ids:.1f}%)")
    print(format_table(rows, ("backend", "model", "I2V R1", "I2V mAP", "V2V R1", "V2V mAP", "s/epoch")))
