"""Shared pieces of the KD-REID flag tests (tests/test_kdreid_flag_effects*.py) and the
KD-REID ranked-list test: a tiny synthetic data root (Market-1501 source, DukeMTMC-reID
'warm' and CUHK03 'dim' targets, 4 identities each), the command lines of tiny runs (width-8
ResNet-50, an OSNet with channels 8/64/64/64 and one block per stage, 16-d embeddings,
64x32 images, P=2 x K=2) and checkpoints in fremigereau/MTDA_KD_REID's own file layout
(torchreid ``save_checkpoint``: ``{'state_dict': model.state_dict(), 'epoch', 'rank1', ...}``
saved from ``nn.DataParallel``, so every key starts with ``module.``).
"""
import os
from types import SimpleNamespace
from typing import Dict

import numpy as np
import pytest

from common.data import synthetic

TINY_KD = ["--height", "64", "--width", "32", "-b", "4", "--num-instances", "2", "--features", "16",
           "--set", "model.width=8", "--set", "kdreid.osnet_channels=[8,64,64,64]",
           "--set", "kdreid.osnet_blocks=[1,1,1]", "--set", "data.max_batches=2", "--set", "data.test_batch=64",
           "-j", "0", "--ms-mode", "PYNATIVE"]
SIZES = {"resnet50": dict(fc_dim=16, width=8), "osnet_x0_25": dict(fc_dim=16, channels=(8, 64, 64, 64),
                                                                    blocks=(1, 1, 1))}
SOURCE_IDS = 4  # training identities of the synthetic Market-1501 (the source of every tiny run)


def make_data(folder) -> str:
    """The synthetic root: market1501 (source), dukemtmcreid ('warm'), cuhk03 ('dim')."""
    root = str(folder)
    synthetic.write("market1501", root, ids=SOURCE_IDS, seed=0)
    synthetic.write("dukemtmcreid", root, ids=4, seed=1, shift="warm")
    synthetic.write("cuhk03", root, ids=4, seed=2, shift="dim")
    return root


def argv(method: str, root, log_dir, *extra, ckpt: str = "run", backend: str = "torch"):
    """train.py arguments of a tiny ``method`` run on the synthetic root (source market1501)."""
    return ["--method", method, "-ds", "market1501", "--data-dir", str(root), "--ckpt", ckpt, "--backend", backend,
            "--set", f"train.log_dir={log_dir}", *TINY_KD, *extra]


def write_mtda_checkpoint(path, arch: str, num_classes: int = SOURCE_IDS, seed: int = 0) -> Dict[str, np.ndarray]:
    """A tiny ``arch`` network with random weights saved as MTDA's ``model-best.pth.tar``;
    returns its weights under this project's canonical names (for comparison)."""
    import torch
    import backends
    B = backends.get("torch")
    net = B.kdreid.build_net(arch, num_classes, **SIZES[arch])
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in net.state_dict().items():
        v = value.numpy()
        if key.endswith("num_batches_tracked"):
            state[key] = np.array(5, np.int64)
        elif key.endswith("running_var") or (v.ndim == 1 and key.endswith("weight")):
            state[key] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
        else:
            state[key] = (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32)
    torch.save({"state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in state.items()}, "epoch": 30,
                "rank1": 0.5}, str(path))
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def checkpoints(folder) -> SimpleNamespace:
    """MTDA-layout checkpoints: two ResNet-50 teachers (``resnet``), two OSNet files
    (``osnet``; a student and an OSNet teacher), with their weights (``weights[path]``)."""
    os.makedirs(folder, exist_ok=True)
    out = SimpleNamespace(resnet=[], osnet=[], weights={})
    for arch, name, seeds in (("resnet50", "resnet", (1, 2)), ("osnet_x0_25", "osnet", (3, 4))):
        for seed in seeds:
            path = os.path.join(str(folder), f"{arch}_{seed}.pth.tar")
            out.weights[path] = write_mtda_checkpoint(path, arch, seed=seed)
            getattr(out, name).append(path)
    return out


def kd_argv(root, log_dir, ck: SimpleNamespace, *extra, targets=("dukemtmcreid", "cuhk03")):
    """A tiny kd-reid run: OSNet student from ``ck.osnet[0]``, one ResNet-50 teacher per target."""
    return argv("kd-reid", root, log_dir, "-dt", *targets, "-as", "osnet_x0_25", "-at", "resnet50",
                "-mps", ck.osnet[0], "-mpt", *ck.resnet[:len(targets)], *extra)


def state(b, model) -> Dict[str, np.ndarray]:
    """Canonical numpy weights of ``model`` of a built run ``b`` (``vkd_tiny.build_only``)."""
    return b.B.weights.state_to_numpy(model)


# ---------------------------------------------------------------- module fixtures (imported by the flag tests)

@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A tiny synthetic data root (:func:`make_data`), one per test module."""
    return make_data(tmp_path_factory.mktemp("kd_data"))


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    """Reference-layout checkpoints (:func:`checkpoints`), one set per test module."""
    return checkpoints(tmp_path_factory.mktemp("kd_ck"))
