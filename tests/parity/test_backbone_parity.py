"""Torch vs MindSpore forward of the VKD backbones from identical weights.

Every backbone of the name table (``build_backbone``) at a tiny size, plus the new building
blocks alone (a BAM, a dense block stack, an inverted residual), in eval mode (fixed BN
statistics, FORWARD_MAX_REL) and train mode (batch statistics, TRAIN_MAX_REL, BN moving
statistics included). Weights: torch's, randomised (BN statistics too) and copied to
MindSpore, as in test_network_parity.py, whose helpers this file uses.

Batches have 4 samples: with 2, train-mode BatchNorm in the 100-layer ResNets is so badly
conditioned at width 8 that torch float32 itself differs from torch float64 by up to 7e-3
of the output scale (measured), which no cross-framework rung could absorb; with 4 samples
that drops to ~4e-4.

Default run (about 12 s of CPU): MindSpore PYNATIVE for the eight backbones, GRAPH for
ResNet-18 and the three building blocks (cheap to compile). ``slow``: GRAPH for the other
seven backbones (2-8 s of compilation each). torch runs on one thread here: on these tiny
tensors a second thread only adds synchronisation (100x slower on a loaded machine).
"""
import pytest

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

from backends.mindspore.device import select_device  # noqa: E402
from backends.mindspore.weights import state_to_numpy as ms_state  # noqa: E402
from backends.torch.weights import state_to_numpy as torch_state  # noqa: E402
from tests.parity.test_network_parity import _build_pair, _forward_both, _inputs, max_rel_error  # noqa: E402
from tests.parity.tolerances import FORWARD_MAX_REL, TRAIN_MAX_REL  # noqa: E402

IMG = (4, 3, 64, 32)
TINY_DENSENET = dict(growth_rate=4, num_init_features=8, bn_size=2)
BOTH, PYNATIVE, GRAPH = ("pynative", "graph"), ("pynative",), ("graph",)
# (case id, backend module, callable, init kwargs, input shapes, modes, modes in the default run)
CASES = [
    ("resnet18", "backbones", "build_backbone", dict(name="resnet18", width=8, last_block_relu=False),
     [IMG], BOTH, BOTH),
    ("resnet34_stride2", "backbones", "build_backbone", dict(name="resnet34", width=8, last_stride=2),
     [IMG], BOTH, PYNATIVE),
    ("resnet50", "backbones", "build_backbone", dict(name="resnet50", width=8, last_block_relu=False),
     [IMG], BOTH, PYNATIVE),
    ("resnet101", "backbones", "build_backbone", dict(name="resnet101", width=8, last_block_relu=False),
     [IMG], BOTH, PYNATIVE),
    ("resnet50bam", "backbones", "build_backbone", dict(name="resnet50bam", width=8, last_block_relu=False),
     [IMG], BOTH, PYNATIVE),
    ("resnet101bam", "backbones", "build_backbone", dict(name="resnet101bam", width=8, last_block_relu=False),
     [IMG], BOTH, PYNATIVE),
    ("densenet121", "backbones", "build_backbone", dict(name="densenet121", **TINY_DENSENET), [IMG],
     BOTH, PYNATIVE),
    ("mobilenet", "backbones", "build_backbone", dict(name="mobilenet", width_mult=0.25), [IMG],
     BOTH, PYNATIVE),
    # building blocks alone: GRAPH-mode coverage of every new construct at a small compile cost
    ("bam_module", "backbones.bam", "BAM", dict(channels=32), [(4, 32, 8, 4)], GRAPH, GRAPH),
    ("densenet_2222", "backbones.densenet", "DenseNet", dict(TINY_DENSENET, block_config=(2, 2, 2, 2)),
     [IMG], GRAPH, GRAPH),
    ("inverted_residual", "backbones.mobilenet", "InvertedResidual",
     dict(in_ch=16, out_ch=16, stride=1, expand_ratio=6), [(4, 16, 8, 4)], GRAPH, GRAPH),
]


@pytest.fixture(autouse=True)
def deterministic_float32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: faster, and far faster on a loaded machine
    select_device("CPU", 0)  # idempotent; also caps MindSpore CPU threads
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)
    torch.set_num_threads(threads)


def _params():
    """(case, mode) params; the modes not in a case's default tuple are marked ``slow``."""
    return [pytest.param(case, mode, id=f"{case[0]}-{mode}",
                         marks=[] if mode in case[6] else [pytest.mark.slow])
            for case in CASES for mode in case[5]]


@pytest.mark.parametrize("case, mode", _params())
def test_backbone_forward_parity(case, mode):
    """Eval mode within FORWARD_MAX_REL; train mode within TRAIN_MAX_REL, and the BN moving
    statistics train mode updates (torch momentum 0.1 == MindSpore 0.9) within TRAIN_MAX_REL."""
    _, module, cls, kwargs, shapes = case[:5]
    t_net, m_net = _build_pair(module, cls, kwargs)
    arrays = _inputs(shapes)
    eval_errors = _forward_both(t_net, m_net, arrays, mode, train=False)
    train_errors = _forward_both(t_net, m_net, arrays, mode, train=True)
    print(f"{case[0]} {mode} max rel error eval {max(eval_errors):.2e} train {max(train_errors):.2e}")
    assert max(eval_errors) <= FORWARD_MAX_REL, eval_errors
    assert max(train_errors) <= TRAIN_MAX_REL, train_errors
    t_state, m_state = torch_state(t_net), ms_state(m_net)
    stat_errors = {k: max_rel_error(m_state[k], t_state[k]) for k in t_state
                   if k.endswith(("running_mean", "running_var"))}
    assert stat_errors and max(stat_errors.values()) <= TRAIN_MAX_REL, stat_errors
