"""Shared pieces of the VKD tests: a tiny synthetic MARS, the command lines of tiny VKD runs
(ResNet-18 at width 4, 32x16 frames, P=4 x K=2 tracklets x 4 frames, 2 batches an epoch),
and run folders in the exact layout of aimagelab/VKD's released ones.

The reference layout is written from the reference's own structure (model/net.py: the trunk
is ``backbone.features_layers``, a ModuleList of ``Sequential(conv1, bn1, relu, maxpool)``,
``Sequential(layer1)`` .. ``Sequential(layer4)`` for ResNets and the children of
``features`` for MobileNet-V2; ``ClassificationLayer`` holds ``bottleneck`` and
``classifier``; utils/saver.py saves ``torch.save(net.state_dict())`` to ``chk/<name>``,
``params/params.json`` = ``vars(args)`` and ``params/hparams.json`` = TriNet's
``{backbone_type, num_classes, pretrained}``), with torchvision's layer shapes listed here,
NOT from this project's name mapping, so the import tests check that mapping.
"""
import json
import os
from typing import Dict, Tuple

import numpy as np
import pytest

from common.data import synthetic

TINY_VKD = ["--p", "4", "--k", "2", "--num_train_images", "4", "--num_test_images", "4",
            "--set", "model.width=4", "--set", "data.height=32", "--set", "data.width=16",
            "--set", "data.max_batches=2", "--set", "data.test_batch=64", "--pretrained", "False",
            "--ms-mode", "PYNATIVE"]
NUM_IDS = 8


def make_mars(folder, ids: int = NUM_IDS) -> str:
    """A synthetic MARS root (``ids`` training identities) under ``folder``."""
    return synthetic.write("mars", str(folder), ids=ids, seed=0)


def teacher_argv(root, log_dir, backend="torch", exp="teacher", extra=()):
    """train.py arguments of a tiny 2-epoch ResNet-18 teacher into ``<log_dir>/<exp>``."""
    return ["--method", "vkd-teacher", "mars", "--data-path", str(root), "--backend", backend,
            "--backbone", "resnet18", "--num_epochs", "2", "--exp_name", exp, "--set", f"train.log_dir={log_dir}",
            *TINY_VKD, *extra]


def student_argv(root, teacher, log_dir, backend="torch", exp="student", extra=()):
    """train.py arguments of a tiny student of ``teacher`` (2 generations of 2 epochs, M=2)."""
    return ["--method", "vkd-student", "mars", str(teacher), "--data-path", str(root), "--backend", backend,
            "--num_student_images", "2", "--num_generations", "2", "--num_epochs", "2", "--exp_name", exp,
            "--set", f"train.log_dir={log_dir}", *TINY_VKD, *extra]


# ------------------------------------------------------------------ reference layout

def _bn(prefix: str, channels: int) -> Dict[str, Tuple[int, ...]]:
    return {f"{prefix}.{leaf}": (channels,) for leaf in ("weight", "bias", "running_mean", "running_var")} | \
        {f"{prefix}.num_batches_tracked": ()}


def resnet18_shapes(width: int = 64) -> Dict[str, Tuple[int, ...]]:
    """torchvision ``resnet18`` state-dict names and shapes at base width ``width`` (fc included)."""
    out = {"conv1.weight": (width, 3, 7, 7), **_bn("bn1", width)}
    cin = width
    for stage in range(1, 5):
        c = width * 2 ** (stage - 1)
        for block in range(2):
            p = f"layer{stage}.{block}"
            out[f"{p}.conv1.weight"] = (c, cin if block == 0 else c, 3, 3)
            out.update(_bn(f"{p}.bn1", c))
            out[f"{p}.conv2.weight"] = (c, c, 3, 3)
            out.update(_bn(f"{p}.bn2", c))
            if block == 0 and stage > 1:
                out[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
                out.update(_bn(f"{p}.downsample.1", c))
        cin = c
    out["fc.weight"], out["fc.bias"] = (1000, 8 * width), (1000,)
    return out


MOBILENET_V2_SETTINGS = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1))


def mobilenet_v2_shapes() -> Dict[str, Tuple[int, ...]]:
    """torchvision ``mobilenet_v2`` state-dict names and shapes (classifier included)."""
    out = {"features.0.0.weight": (32, 3, 3, 3), **_bn("features.0.1", 32)}
    index, cin = 1, 32
    for t, c, n in MOBILENET_V2_SETTINGS:
        for _ in range(n):
            p, hidden, j = f"features.{index}.conv", cin * t, 0
            if t != 1:
                out[f"{p}.0.0.weight"] = (hidden, cin, 1, 1)
                out.update(_bn(f"{p}.0.1", hidden))
                j = 1
            out[f"{p}.{j}.0.weight"] = (hidden, 1, 3, 3)
            out.update(_bn(f"{p}.{j}.1", hidden))
            out[f"{p}.{j + 1}.weight"] = (c, hidden, 1, 1)
            out.update(_bn(f"{p}.{j + 2}", c))
            index, cin = index + 1, c
    out["features.18.0.weight"] = (1280, 320, 1, 1)
    out.update(_bn("features.18.1", 1280))
    out["classifier.1.weight"], out["classifier.1.bias"] = (1000, 1280), (1000,)
    return out


def torchvision_to_vkd(arch: str, key: str) -> str:
    """VKD's name (model/net.py ``Backbone.features_layers``) of a torchvision trunk key."""
    if arch == "mobilenet":
        return "backbone.features_layers." + key[len("features."):]
    head, _, rest = key.partition(".")
    if head in ("conv1", "bn1"):
        return f"backbone.features_layers.0.{('conv1', 'bn1').index(head)}.{rest}"
    return f"backbone.features_layers.{int(head[len('layer'):])}.0.{rest}"


def trunk_shapes(arch: str, width: int = 64) -> Dict[str, Tuple[int, ...]]:
    """The backbone keys of ``arch`` (torchvision names, classifier head removed)."""
    if arch == "resnet18":
        return {k: s for k, s in resnet18_shapes(width).items() if not k.startswith("fc.")}
    return {k: s for k, s in mobilenet_v2_shapes().items() if not k.startswith("classifier.")}


def _values(shape, key: str, rng) -> np.ndarray:
    """Random values of a trained network's scale: He-scaled convolutions, BN scales near 1,
    so that features differ between inputs (tiny uniform weights give near-constant features,
    whose rankings are ties)."""
    if key.endswith("num_batches_tracked"):
        return np.array(7, np.int64)
    if key.endswith("running_var") or (len(shape) == 1 and key.endswith("weight")):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    scale = np.sqrt(2.0 / np.prod(shape[1:])) if len(shape) == 4 else 0.1
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def write_vkd_folder(folder, arch: str = "resnet18", num_classes: int = NUM_IDS, width: int = 64,
                     dataset: str = "mars", seed: int = 0) -> Dict[str, np.ndarray]:
    """A run folder exactly as VKD's Saver writes it (random weights); returns the weights
    under this project's canonical names (``num_batches_tracked`` dropped), for comparison."""
    import torch
    rng = np.random.default_rng(seed)
    trunk = trunk_shapes(arch, width)
    feat = 8 * width if arch == "resnet18" else 1280
    vkd_state, canonical = {}, {}
    for key, shape in trunk.items():
        value = _values(shape, key, rng)
        vkd_state[torchvision_to_vkd(arch, key)] = torch.from_numpy(value)
        if not key.endswith("num_batches_tracked"):
            canonical[f"backbone.{key}"] = value
    head = {**_bn("classifier.bottleneck", feat), "classifier.classifier.weight": (num_classes, feat)}
    for key, shape in head.items():
        value = _values(shape, key, rng)
        vkd_state[key] = torch.from_numpy(value)
        if not key.endswith("num_batches_tracked"):
            canonical[key] = value
    for sub in ("chk", "params", "logs"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    torch.save(vkd_state, os.path.join(folder, "chk", "chk_end"))
    with open(os.path.join(folder, "params", "hparams.json"), "w") as f:
        json.dump({"backbone_type": arch, "num_classes": num_classes, "pretrained": True}, f)
    with open(os.path.join(folder, "params", "params.json"), "w") as f:
        json.dump({"dataset_name": dataset, "backbone": arch, "pretrained": True, "p": 8, "k": 4,
                   "num_train_images": 8, "num_test_images": 8, "metric": "euclidean",
                   "exp_name": os.path.basename(str(folder)), "num_epochs": 300, "first_milestone": 100,
                   "step_milestone": 100, "gamma": 0.1, "train_strategy": "chunk"}, f)
    return canonical


def imagenet_file(path, arch: str = "resnet18", width: int = 4, seed: int = 1) -> Dict[str, np.ndarray]:
    """A ``--pretrain`` safetensors file in torchvision layout (random values); returns it."""
    from safetensors.numpy import save_file
    rng = np.random.default_rng(seed)
    shapes = resnet18_shapes(width) if arch == "resnet18" else mobilenet_v2_shapes()
    state = {k: _values(s, k, rng) for k, s in shapes.items()}
    save_file(state, str(path))
    return state


# ------------------------------------------------------------------ flag-effect tests

def two_checkpoint_folder(base, seed: int):
    """A reference-layout ResNet-18 (width 4) folder ``base/run<seed>`` whose chk/ holds
    ``chk_end`` and a different ``chk_alt``; returns (folder, {name: canonical weights})."""
    import shutil
    folder = base / f"run{seed}"
    weights = {"chk_end": write_vkd_folder(folder, "resnet18", NUM_IDS, width=4, seed=seed)}
    other = base / f"other{seed}"
    weights["chk_alt"] = write_vkd_folder(other, "resnet18", NUM_IDS, width=4, seed=seed + 100)
    shutil.copy(other / "chk" / "chk_end", folder / "chk" / "chk_alt")
    return folder, weights


def flag_test_folders(base):
    """Two folders of :func:`two_checkpoint_folder` (``teacher``/``t``, ``student``/``s``) and a
    ``--pretrain`` file (torchvision layout) with its weights (``imagenet``)."""
    from types import SimpleNamespace
    teacher, t_weights = two_checkpoint_folder(base, 0)
    student, s_weights = two_checkpoint_folder(base, 1)
    pretrain = base / "imagenet.safetensors"
    return SimpleNamespace(teacher=teacher, t=t_weights, student=student, s=s_weights, pretrain=pretrain,
                           imagenet=imagenet_file(pretrain))


def build_only(argv):
    """train.py ``argv`` up to the recipe's build: (``run``, ``cfg``, ``B``) of the run the loop
    would train, seeded as the loop seeds it; nothing is trained or written."""
    from types import SimpleNamespace
    import train
    from common.engine import loop
    from common.engine.rundir import RunLog
    built = {}

    def fit_stops_after_build(cfg, B, build, echo=print, structure_keys=()):
        loop.setup_backend(B, cfg)
        built.update(run=build(cfg, B, RunLog(None)), cfg=cfg, B=B)
        return {"best": 0.0, "best_epoch": 0, "files": "", "rank": 0}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "fit", fit_stops_after_build)
        assert train.main(list(argv)) == 0
    return SimpleNamespace(**built)


def assert_same_weights(expected: Dict[str, np.ndarray], got: Dict[str, np.ndarray], keys=None) -> None:
    """``got`` holds exactly ``expected``'s arrays at ``keys`` (default: all of expected's)."""
    keys = sorted(expected) if keys is None else keys
    assert keys and set(keys) <= set(got)
    for k in keys:
        np.testing.assert_array_equal(expected[k], got[k], err_msg=k)


# ---------------------------------------------------------------- module fixtures (imported by the flag tests)

@pytest.fixture(scope="module")
def mars_root(tmp_path_factory):
    """A tiny synthetic MARS (:func:`make_mars`), one per test module."""
    return make_mars(tmp_path_factory.mktemp("mars"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The teacher/student run folders of :func:`flag_test_folders`, one set per test module."""
    return flag_test_folders(tmp_path_factory.mktemp("folders"))
