"""MVD training and evaluation loop (SPEC 8, MVD; SPEC 9 command line).

A plain loop over epochs with a few calls into the chosen backend (``backends.get(name)``):
``mvd.build_model``, ``optim.build_optimizer``/``set_group_lrs``, ``engine.MVDTrainer``
(``train_step``, ``extract``) and ``checkpoint.save_checkpoint``/``load_checkpoint``. This
module itself imports no framework.

Checkpoints live in ``<log_dir>/<ckpt>/``: ``last`` after every epoch, ``best`` when the
selection metric (Rank-1 of the first evaluation setting group) improves, both written
atomically by the backend; ``config.yaml`` holds the resolved configuration. Resuming
restores model, optimizer, epoch and best score; batches and augmentation draw from
``(seed, epoch, batch)`` and the framework RNG is re-seeded with ``seed + epoch`` at the
start of each epoch, so an interrupted run continues exactly where it stopped.
"""
import os
import time
from collections import defaultdict
from typing import Dict, List

import numpy as np

from common import mvd_data
from common.config import engine_loss_settings, save_config
from common.errors import ReidError
from common.metrics import evaluate_features
from common.report import RunLog, format_table, mean_rows, summarize
from common.schedule import group_lrs, mvd_lr

CKPT_EXT = {"torch": ".pth", "mindspore": ".ckpt"}
COLUMNS = ("setting", "R1", "R10", "R20", "mAP", "mINP")


def checkpoint_path(cfg: dict, backend_name: str, which: str) -> str:
    folder = os.path.join(cfg["train"]["log_dir"], cfg["train"]["ckpt"])
    return os.path.join(folder, f"{backend_name}_{which}{CKPT_EXT[backend_name]}")


def setup_backend(B, cfg: dict) -> None:
    rt = cfg["runtime"]
    B.device.set_mode(rt["ms_mode"])
    B.device.select_device(rt["device_target"], rt["gpu"])
    B.device.set_seed(cfg["train"]["seed"])


class Extractor:
    """Evaluation-only stand-in for a trainer: ``extract`` through ``B.engine.extract``."""

    def __init__(self, B, model):
        self.B, self.model = B, model

    def extract(self, images, modality, batch_size=64):
        return self.B.engine.extract(self.model, images, modality, batch_size)


def extract_all(trainer, images: np.ndarray, modality: str, cfg: dict) -> np.ndarray:
    """Features of uint8 NHWC ``images`` through the test transform, batch by batch."""
    d = cfg["data"]
    feats = [trainer.extract(b, modality, d["test_batch"])
             for b in mvd_data.to_batches(images, d["height"], d["width"], d["test_batch"])]
    return np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)


def evaluate_sets(trainer, sets: List[mvd_data.EvalSet], cfg: dict) -> List[dict]:
    """Rows ``{'setting', R1, R10, R20, mAP, mINP}``: one per setting group (``all``,
    ``indoor``, ``v2t``, ``t2v``) averaged over its trials, then one per trial. Query
    features are extracted once per query array (SYSU shares one query set)."""
    cache: Dict[int, np.ndarray] = {}
    groups: Dict[str, list] = defaultdict(list)
    per_trial = []
    for s in sets:
        key = id(s.query)
        if key not in cache:
            cache[key] = extract_all(trainer, s.query, s.q_modality, cfg)
        gf = extract_all(trainer, s.gallery, s.g_modality, cfg)
        res = evaluate_features(cache[key], gf, s.q_pids, s.g_pids, s.q_cams, s.g_cams,
                                protocol=s.protocol, metric="neg_dot", max_rank=20)
        row = summarize(res)
        groups[s.name.split("/")[0]].append(row)
        per_trial.append({"setting": s.name, **row})
    rows = [{"setting": g, **mean_rows(r)} for g, r in groups.items()]
    return rows + (per_trial if len(per_trial) > len(rows) else [])


def load_eval_sets(cfg: dict, trials: int) -> List[mvd_data.EvalSet]:
    d = cfg["data"]
    return list(mvd_data.test_sets(d["dataset"], d["data_path"], d["height"], d["width"],
                                   trials=range(trials), regdb_trial=d["trial"], seed=cfg["train"]["seed"]))


def train(cfg: dict, B, echo=print) -> dict:
    """Train MVD per ``cfg`` with backend ``B``; return a summary dict (best score, seconds per
    epoch, last evaluation rows)."""
    d, o, s, t = cfg["data"], cfg["optim"], cfg["schedule"], cfg["train"]
    if not d["data_path"]:
        raise ReidError("no dataset given: pass --data-path DIR (for SYSU the folder holding the "
                        "pre_process_sysu.py .npy files and cam1..cam6)")
    setup_backend(B, cfg)
    run_dir = os.path.join(t["log_dir"], t["ckpt"])
    log = RunLog(run_dir, echo)
    rgb, rgb_y, ir, ir_y, num_classes = mvd_data.load_train_arrays(d["dataset"], d["data_path"], d["trial"],
                                                                    d["height"], d["width"])
    loader = mvd_data.CrossModalBatches(rgb, rgb_y, ir, ir_y, d["height"], d["width"], d["num_ids"],
                                        d["num_pos"], t["seed"], d["erasing"], d["grayscale"], d["max_batches"])
    model = B.mvd.build_model(cfg["model"], num_classes)
    if cfg["model"]["pretrain"]:
        B.weights.load_backbone_pretrained(model, cfg["model"]["pretrain"])
    optimizer = B.optim.build_optimizer(model, o["name"], o["lr"], o["weight_decay"], o["momentum"],
                                        o["head_lr_mult"])
    trainer = B.engine.MVDTrainer(model, optimizer, engine_loss_settings(cfg["loss"]),
                                  cfg["runtime"]["ms_mode"])
    start, best, history = 0, -1.0, []
    if t["resume"]:
        extra = B.checkpoint.load_checkpoint(t["resume"], model, optimizer)
        start, best, history = int(extra["epoch"]) + 1, float(extra.get("best", -1.0)), list(extra.get("history", []))
        log.line(f"resumed from {t['resume']} at epoch {start}")
    save_config(cfg, run_dir)
    sets = load_eval_sets(cfg, d["eval_trials"])
    log.line(f"MVD on {d['dataset']} with {B.name}: {num_classes} ids, {len(rgb)} RGB / {len(ir)} IR "
             f"images, {len(loader)} batches per epoch, epochs {start}..{s['epochs'] - 1}")
    from tqdm import tqdm
    rows, epoch_seconds = [], []
    for epoch in range(start, s["epochs"]):
        B.device.set_seed(t["seed"] + epoch)
        lr = mvd_lr(epoch, o["lr"], s["warmup_steps"], s["start_decay"], s["end_decay"], s["decay_factor"])
        B.optim.set_group_lrs(optimizer, group_lrs(lr, o["head_lr_mult"]))
        sums, n, t0 = defaultdict(float), 0, time.time()
        bar = tqdm(loader.epoch(epoch), total=len(loader), desc=f"epoch {epoch}", leave=False)
        for rgb_b, ir_b, y in bar:
            parts = trainer.train_step(rgb_b, ir_b, y)
            for k, v in parts.items():
                sums[k] += v
            n += 1
            bar.set_postfix(loss=f"{parts['total']:.3f}")
        if n == 0:
            raise ReidError("the training set gave no batch; check data.num_ids/num_pos against the dataset")
        secs = time.time() - t0
        epoch_seconds.append(secs)
        means = {k: v / n for k, v in sums.items()}
        log.line(f"epoch {epoch} lr {lr:.2e} " + " ".join(f"{k} {v:.4f}" for k, v in means.items())
                 + f" ({secs:.1f}s)")
        entry = {"epoch": epoch, "lr": lr, "seconds": secs, **means}
        if (epoch + 1) % t["eval_every"] == 0 or epoch + 1 == s["epochs"]:
            rows = evaluate_sets(trainer, sets, cfg)
            log.line("\n" + format_table(rows, COLUMNS))
            entry["eval"] = rows
            score = rows[0]["R1"]
            if score > best:
                best = score
                B.checkpoint.save_checkpoint(checkpoint_path(cfg, B.name, "best"), model, optimizer,
                                             _extra(cfg, epoch, best, history + [entry], num_classes))
        history.append(entry)
        log.record(**entry)
        B.checkpoint.save_checkpoint(checkpoint_path(cfg, B.name, "last"), model, optimizer,
                                     _extra(cfg, epoch, best, history, num_classes))
    return {"best_R1": best, "rows": rows, "epoch_seconds": epoch_seconds, "num_classes": num_classes,
            "run_dir": run_dir}


def _extra(cfg, epoch, best, history, num_classes) -> dict:
    return {"epoch": epoch, "best": best, "config": cfg, "num_classes": num_classes,
            "history": [{k: v for k, v in h.items() if k != "eval"} for h in history]}
