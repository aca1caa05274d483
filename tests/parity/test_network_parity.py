"""Torch vs MindSpore network forward from identical weights (SPEC sections 6, 10, 11).

Weights go torch ``state_to_numpy`` -> MindSpore ``load_numpy_state`` (random values, BN
statistics included, so eval-mode BN is not an identity). Error measure: max |ms - torch|
over the output divided by max |torch| (a scale-relative max error; element-wise relative
error is meaningless near zero). MindSpore runs in PYNATIVE and GRAPH mode.
"""
import importlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

from backends.mindspore.device import select_device  # noqa: E402
from backends.mindspore.weights import load_numpy_state as ms_load, state_to_numpy as ms_state  # noqa: E402
from backends.torch.weights import load_numpy_state as torch_load, state_to_numpy as torch_state  # noqa: E402
from tests.parity.tolerances import FORWARD_MAX_REL, TRAIN_MAX_REL  # noqa: E402

SMALL_MVD = dict(num_classes=5, arch="resnet18", width=8, z_dim=16, ib_hidden=(32, 24), cls_hidden=12, dropout=0.0)
IMG = (2, 3, 64, 32)
IMG4 = (4, 3, 64, 32)
# (case id, backend module, class name, init kwargs, input shapes)
CASES = [
    ("resnet18", "backbones.resnet", "ResNet", dict(depth=18, width=8), [IMG]),
    ("resnet50", "backbones.resnet", "ResNet", dict(depth=50, width=8), [IMG]),
    ("resnet18_cam", "backbones.resnet", "ResNet", dict(depth=18, width=8, shallow_cam=True), [IMG]),
    ("bnneck", "heads", "BNNeck", dict(in_dim=16, num_classes=5), [(4, 16)]),
    ("ibhead", "heads", "IBHead", dict(in_dim=16, z_dim=8, hidden=(12, 10)), [(4, 16)]),
    ("ibclassifier", "heads", "IBClassifier", dict(z_dim=8, num_classes=5, hidden=6, dropout=0.0), [(4, 8)]),
    ("reidnet", "reid", "ReIDNet", dict(num_classes=5, arch="resnet18", width=8), [IMG]),
    # 4 images per stream: train-mode BN1d over 2 rows is too ill-conditioned for TRAIN_MAX_REL
    ("mvdnet", "mvd", "MVDNet", SMALL_MVD, [IMG4, IMG4]),
    ("mvdnet_routed_gray_cam", "mvd", "MVDNet", dict(SMALL_MVD, flow="routed", gray_ir=True, shallow_cam=True,
                                                      test_feature="shared"), [IMG4, IMG4]),
]
MODES = {"pynative": "PYNATIVE_MODE", "graph": "GRAPH_MODE"}


@pytest.fixture(autouse=True)
def deterministic_float32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    select_device("CPU", 0)  # idempotent; also caps MindSpore CPU threads
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _build_pair(module, cls, kwargs, seed=0):
    """The same network in both backends, torch weights randomised and copied to MindSpore."""
    torch.manual_seed(seed)
    t_net = getattr(importlib.import_module(f"backends.torch.{module}"), cls)(**kwargs)
    m_net = getattr(importlib.import_module(f"backends.mindspore.{module}"), cls)(**kwargs)
    rng = np.random.default_rng(seed)
    state = {}
    for name, value in torch_state(t_net).items():
        if name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
        elif name.endswith("running_mean") or ".shallow_cam" in "." + name and name.endswith(".scale"):
            state[name] = rng.normal(0.0, 0.1, value.shape).astype(np.float32)
        elif name.endswith(".weight") and value.ndim == 1:  # BN gamma
            state[name] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
        else:
            state[name] = value + rng.normal(0.0, 0.01, value.shape).astype(np.float32)
    torch_load(t_net, state)
    ms_load(m_net, torch_state(t_net))
    return t_net, m_net


def _inputs(shapes, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def max_rel_error(ms_out, torch_out) -> float:
    """max |a - b| / max |b| (scale-relative max error)."""
    ref = np.asarray(torch_out, np.float64)
    return float(np.abs(np.asarray(ms_out, np.float64) - ref).max() / max(np.abs(ref).max(), 1e-12))


def _forward_both(t_net, m_net, arrays, mode, train):
    """Outputs of both networks on the same inputs; MindSpore in ``mode``."""
    t_net.train(train)
    m_net.set_train(train)
    with torch.no_grad():
        t_out = [o.numpy() for o in _as_tuple(t_net(*[torch.from_numpy(a) for a in arrays]))]
    ms.set_context(mode=getattr(ms, MODES[mode]))
    try:
        m_out = [o.asnumpy() for o in _as_tuple(m_net(*[ms.Tensor(a) for a in arrays]))]
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert [m.shape for m in m_out] == [t.shape for t in t_out]
    return [max_rel_error(m, t) for m, t in zip(m_out, t_out)]


def _params(cases):
    """(case, mode) pytest params. Marked slow (run with ``-m ''`` / make test-all): the
    three-encoder MVD cases, and GRAPH mode for bare ResNets (compiling them costs seconds;
    ReIDNet keeps a ResNet-18 in the default GRAPH-mode run)."""
    params = []
    for case in cases:
        for mode in sorted(MODES):
            slow = case[2] == "MVDNet" or (mode == "graph" and case[1] == "backbones.resnet")
            params.append(pytest.param(case, mode, id=f"{case[0]}-{mode}",
                                       marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize("case, mode", _params(CASES))
def test_forward_parity(case, mode):
    """Eval mode (fixed BN statistics) within FORWARD_MAX_REL; then train mode (batch
    statistics) within TRAIN_MAX_REL, including the BN moving statistics it updates."""
    _, module, cls, kwargs, shapes = case
    t_net, m_net = _build_pair(module, cls, kwargs)
    arrays = _inputs(shapes)
    eval_errors = _forward_both(t_net, m_net, arrays, mode, train=False)
    train_errors = _forward_both(t_net, m_net, arrays, mode, train=True)
    print(f"{case[0]} {mode} max rel error eval {max(eval_errors):.2e} train {max(train_errors):.2e}")
    assert max(eval_errors) <= FORWARD_MAX_REL, eval_errors
    assert max(train_errors) <= TRAIN_MAX_REL, train_errors
    # torch momentum 0.1 == MindSpore 0.9, unbiased variance in the moving statistics of both
    t_state, m_state = torch_state(t_net), ms_state(m_net)
    stat_errors = {k: max_rel_error(m_state[k], t_state[k]) for k in t_state
                   if k.endswith(("running_mean", "running_var"))}
    assert max(stat_errors.values(), default=0.0) <= TRAIN_MAX_REL, stat_errors
