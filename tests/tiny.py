"""Shared pieces of the end-to-end tests: a tiny synthetic SYSU-MM01 and the flags of a tiny
MVD run (ResNet-18 at width 4, 32x16 inputs, 2 batches per epoch, 1 gallery trial)."""
import pre_process_sysu
from common.data import synthetic

TINY = ["--set", "model.arch=resnet18", "--set", "model.width=4", "--set", "mvd.z_dim=8",
        "--set", "mvd.ib_hidden=[16,8]", "--set", "mvd.cls_hidden=8", "--set", "mvd.dropout=0.0",
        "--set", "data.height=32", "--set", "data.width=16", "--set", "data.num_ids=3",
        "--set", "data.num_pos=2", "--set", "data.max_batches=2", "--set", "data.eval_trials=1",
        "--set", "data.test_batch=64", "--set", "mvd.sinkhorn_iter=20"]


def make_sysu(folder, ids=6, **options) -> str:
    """A synthetic SYSU-MM01 root under ``folder``, preprocessed at 32x16."""
    root = synthetic.write("sysu", str(folder), ids=ids, seed=0, **options)
    pre_process_sysu.preprocess(root, 32, 16, progress=False)
    return root


def train_argv(root, log_dir, backend="torch", recipe="mvd_routed", extra=()):
    """train.py arguments of a tiny 2-epoch run of ``configs/<recipe>.yaml`` into
    ``<log_dir>/t``."""
    return ["--config", f"configs/{recipe}.yaml", "--dataset", "SYSU", "--data-path", root, "--backend", backend,
            "--ckpt", "t", "--set", f"train.log_dir={log_dir}", "--epochs", "2", "--warmup-steps", "1",
            "--ms-mode", "PYNATIVE", *TINY, *extra]
