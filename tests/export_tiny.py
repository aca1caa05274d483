"""Tiny checkpoints for the export and FeatureExtractor tests: the configuration of a tiny
MVD (tests/tiny.py's sizes), VKD (tests/vkd_tiny.py's) or KD-REID (tests/test_cli_kdreid.py's)
network, a model of either backend
with random weights of a trained network's scale (so that features differ between images),
saved as train.py saves it (``extra`` with ``config`` and ``num_classes``, what test.py
reads), and exports of it cached for the whole test session."""
import atexit
import os
import shutil
import tempfile
from typing import Dict, Sequence

import numpy as np

import backends
from common import recipes
from common.config import load_config

NUM_CLASSES = 5
MVD_SETS = ("model.arch=resnet18", "model.width=4", "mvd.z_dim=8", "mvd.ib_hidden=[16,8]", "mvd.cls_hidden=8",
            "data.height=32", "data.width=16", "mvd.resize=bilinear")
VKD_SETS = ("model.arch=resnet18", "model.width=4", "data.height=32", "data.width=16")
# KD-REID (tests/test_cli_kdreid.py's sizes): the student of kd-reid is a tiny OSNet
KD_SETS = ("data.height=64", "data.width=32", "kdreid.features=16", "model.width=8", "kdreid.osnet_channels=[8,64,64,64]",
           "kdreid.osnet_blocks=[1,1,1]", "kdreid.arch_student=osnet_x0_25")
SETS = {"mvd": MVD_SETS, "vkd-teacher": VKD_SETS, "kd-reid": KD_SETS}
DATASET = {"mvd": "SYSU", "vkd-teacher": "mars", "kd-reid": "msmt17"}
_CACHE: Dict[tuple, str] = {}
_DIR = []


def tiny_config(method: str = "mvd", sets: Sequence[str] = ()) -> dict:
    """A validated, finalized configuration of a tiny network of ``method``."""
    base = SETS[method]
    data = {"dataset": DATASET[method], "data_path": "/nonexistent/data"}
    cfg = load_config(recipes.default_config(method), [*base, *sets], {"data": data}, method=method)
    recipe = recipes.get(method)
    return recipe.finalize(cfg) if hasattr(recipe, "finalize") else cfg


def _randomize(B, model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    state = B.weights.state_to_numpy(model)
    out = {}
    for k, v in sorted(state.items()):
        if k.endswith(("running_var", "moving_variance")) or (v.ndim == 1 and k.endswith(("weight", "gamma"))):
            out[k] = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
        elif v.dtype.kind == "f":
            scale = np.sqrt(2.0 / np.prod(v.shape[1:])) if v.ndim == 4 else 0.1
            out[k] = (rng.standard_normal(v.shape) * scale).astype(v.dtype)
        else:
            out[k] = v
    B.weights.load_numpy_state(model, out)


def build_model(backend: str, cfg: dict, seed: int = 0):
    """The recipe's test network of ``cfg`` in ``backend`` with random weights."""
    B = backends.get(backend)
    model = recipes.get(cfg["method"]["name"]).build_for_test(cfg, B, NUM_CLASSES)[0]
    _randomize(B, model, seed)
    return B, model


def save_tiny_checkpoint(folder, backend: str = "torch", method: str = "mvd", sets: Sequence[str] = (),
                         extra: dict = None, name: str = "") -> str:
    """A checkpoint as train.py writes it (``extra``: config, num_classes, epoch); ``extra``
    replaces that dict when given (e.g. ``{}`` for one that stores no configuration)."""
    cfg = tiny_config(method, sets)
    B, model = build_model(backend, cfg)
    suffix = ".pth" if backend == "torch" else ".ckpt"
    path = os.path.join(str(folder), (name or f"{method}_{backend}") + suffix)
    info = {"config": cfg, "num_classes": NUM_CLASSES, "epoch": 0} if extra is None else extra
    B.checkpoint.save_checkpoint(path, model, extra=info)
    return path


def _tmpdir() -> str:
    if not _DIR:
        _DIR.append(tempfile.mkdtemp(prefix="reid-export-tests-"))
        atexit.register(shutil.rmtree, _DIR[0], True)
    return _DIR[0]


def cached_checkpoint(backend: str = "torch", method: str = "mvd", sets: Sequence[str] = ()) -> str:
    """:func:`save_tiny_checkpoint`, written once per test session."""
    key = ("ckpt", backend, method, tuple(sets))
    if key not in _CACHE:
        name = f"{method}_{backend}_{len(_CACHE)}"
        _CACHE[key] = save_tiny_checkpoint(_tmpdir(), backend, method, sets, name=name)
    return _CACHE[key]


def cached_export(fmt: str, backend: str = "torch", method: str = "mvd", sets: Sequence[str] = (),
                  modality=None) -> str:
    """``tools.export.export`` of :func:`cached_checkpoint`, written once per test session."""
    from tools.export import export
    key = ("export", fmt, backend, method, tuple(sets), modality)
    if key not in _CACHE:
        out = os.path.join(_tmpdir(), f"{method}_{len(_CACHE)}.{fmt}")
        _CACHE[key] = export(cached_checkpoint(backend, method, sets), out, fmt, modality=modality).path
    return _CACHE[key]
