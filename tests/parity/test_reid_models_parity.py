"""Torch vs MindSpore forward of the KD-REID models (OSNet, MTDA ResNet-50) from identical
weights, eval and train mode, MindSpore PYNATIVE and GRAPH.

Weights go torch ``state_to_numpy`` -> MindSpore ``load_numpy_state`` after randomising
every tensor (BN statistics included, so eval-mode BN is not an identity). Error measure:
max |ms - torch| / max |torch| per output. Eval mode checks ``(logits, embedding)`` and the
L2-normalised ``extract`` feature against FORWARD_MAX_REL; train mode (batch statistics)
checks the outputs and the updated BN moving statistics against TRAIN_MAX_REL.
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

IMG = (4, 3, 64, 32)
# Tiny OSNet: conv2 keeps two blocks (one with a downsample shortcut, one with identity),
# conv3/conv4 one each, to keep GRAPH compilation short; the real depth is case osnet_x0_25.
TINY_OSNET = dict(num_classes=5, channels=(8, 64, 64, 64), fc_dim=16, blocks=(2, 1, 1))
# (case id, module under backends.<fw>, class name, init kwargs, input shape)
CASES = [
    ("osnet_tiny", "backbones.osnet", "OSNet", TINY_OSNET, IMG),
    ("osnet_no_fc", "backbones.osnet", "OSNet", dict(TINY_OSNET, fc_dim=0, blocks=(1, 1, 1)), IMG),
    ("osnet_x0_25", "backbones.osnet", "OSNet", dict(num_classes=5, channels=(16, 64, 96, 128), fc_dim=32), IMG),
    ("resnet50_w8", "backbones.reid_resnet", "ReIDResNet", dict(num_classes=5, width=8, fc_dim=16), IMG),
]
MODES = {"pynative": "PYNATIVE_MODE", "graph": "GRAPH_MODE"}


@pytest.fixture(autouse=True)
def cpu_pynative():
    select_device("CPU", 0)
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
        if name.endswith("running_var") or (name.endswith(".weight") and value.ndim == 1):
            state[name] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)  # BN var / gamma
        elif name.endswith("running_mean") or name.endswith(".bias"):
            state[name] = rng.normal(0.0, 0.1, value.shape).astype(np.float32)
        else:
            state[name] = value + rng.normal(0.0, 0.01, value.shape).astype(np.float32)
    torch_load(t_net, state)
    ms_load(m_net, torch_state(t_net))
    return t_net, m_net


def max_rel_error(ms_out, torch_out) -> float:
    """max |a - b| / max |b| (scale-relative max error)."""
    ref = np.asarray(torch_out, np.float64)
    return float(np.abs(np.asarray(ms_out, np.float64) - ref).max() / max(np.abs(ref).max(), 1e-12))


def _run_both(t_net, m_net, x, mode, train):
    """[logits, embedding] (+ extract feature in eval) of both networks; MindSpore in ``mode``."""
    t_net.train(train)
    m_net.set_train(train)
    with torch.no_grad():
        t_out = [o.numpy() for o in t_net(torch.from_numpy(x))]
        if not train:
            t_out.append(t_net.extract(torch.from_numpy(x)).numpy())
    ms.set_context(mode=getattr(ms, MODES[mode]))
    try:
        m_out = [o.asnumpy() for o in m_net(ms.Tensor(x))]
        if not train:
            m_out.append(m_net.extract(ms.Tensor(x)).asnumpy())
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert [m.shape for m in m_out] == [t.shape for t in t_out]
    return t_out, [max_rel_error(m, t) for m, t in zip(m_out, t_out)]


def _params():
    """Marked slow (run with ``-m ''``): the full-depth osnet_x0_25, and GRAPH mode of every
    case but osnet_tiny (each GRAPH case compiles twice, eval and train: seconds)."""
    out = []
    for case in CASES:
        for mode in sorted(MODES):
            slow = case[0] == "osnet_x0_25" or (mode == "graph" and case[0] != "osnet_tiny")
            out.append(pytest.param(case, mode, id=f"{case[0]}-{mode}", marks=[pytest.mark.slow] if slow else []))
    return out


@pytest.mark.parametrize("case, mode", _params())
def test_reid_model_forward_parity(case, mode):
    _, module, cls, kwargs, shape = case
    t_net, m_net = _build_pair(module, cls, kwargs)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    t_eval, eval_errors = _run_both(t_net, m_net, x, mode, train=False)
    t_train, train_errors = _run_both(t_net, m_net, x, mode, train=True)
    print(f"{case[0]} {mode} max rel error eval {max(eval_errors):.2e} train {max(train_errors):.2e}")
    expected_dim = kwargs["fc_dim"] or kwargs.get("channels", (0, 0, 0, 8 * 8 * 4))[3]
    assert t_eval[1].shape == (shape[0], expected_dim)
    np.testing.assert_allclose(np.linalg.norm(t_eval[2], axis=1), 1.0, rtol=1e-5)
    assert max(eval_errors) <= FORWARD_MAX_REL, eval_errors
    assert max(train_errors) <= TRAIN_MAX_REL, train_errors
    # train-mode BN differs from eval-mode BN (otherwise the train check would prove nothing)
    assert max_rel_error(t_train[1], t_eval[1]) > 100 * TRAIN_MAX_REL
    # moving statistics updated by the train forward: torch momentum 0.1 == MindSpore 0.9
    t_state, m_state = torch_state(t_net), ms_state(m_net)
    stat_errors = {k: max_rel_error(m_state[k], t_state[k]) for k in t_state
                   if k.endswith(("running_mean", "running_var"))}
    assert max(stat_errors.values()) <= TRAIN_MAX_REL, stat_errors
