"""``build_optimizer`` of both backends against the update formulas of the torch.optim
documentation (https://pytorch.org/docs/stable/generated/torch.optim.Adam.html and
torch.optim.SGD.html), written out below in float64 numpy, and the parameter-group rule
(common/param_groups.py: [backbone group, head group] at [lr * lr_mults[0], lr * lr_mults[1]];
a parameter is in the backbone group when a module on its path is in ``backbone_modules``).

Three steps with hand-chosen gradients on a tiny model with two groups and two frozen
parameters; weight decay > 0; gradients of 1e-8 on weights at 0 make Adam's first step
``lr * g / (|g| + eps)`` = lr/2, so an epsilon added before the bias correction (MindSpore's
own Adam kernel) is off by ~0.47 lr. MindSpore runs PYNATIVE and, through ``mindspore.jit``
(the ``_ms_stepper`` function of this file), GRAPH.
"""
import numpy as np
import pytest

from tests.parity.tolerances import OPTIMIZER_VS_FORMULA_ATOL

# name, group (None: frozen), initial value, gradients of steps 1..3 (None for frozen ones)
PARAMS = [
    ("backbone.conv.weight", 0, [0.5, -1.0, 0.0], [[0.1, -0.3, 1e-8], [0.2, 0.05, -2e-9], [-0.4, 0.1, 3e-8]]),
    ("backbone.bn.bias", None, [0.25], None),
    ("encoder.backbone.weight", 0, [2.0, 0.0], [[-1.5, -1e-8], [0.5, 1e-8], [0.0, 0.0]]),
    ("backbone_proj.weight", 1, [1.0, -0.5], [[0.3, 0.0], [-0.2, 0.6], [1e-3, -1e-3]]),
    ("neck.backbone", 1, [0.0, 0.75], [[2e-9, -0.8], [0.4, 0.3], [-0.1, 1.0]]),
    ("head.weight", 1, [-0.3, 0.0, 1.2], [[0.05, 1e-8, -0.9], [-0.05, -1e-8, 0.2], [0.6, 5e-9, 0.0]]),
    ("head.bias", None, [0.1], None),
]
STEPS = 3
# non-default values, so a hard-coded default in build_optimizer shows
HYPER = dict(lr=0.01, weight_decay=0.05, momentum=0.8, betas=(0.85, 0.99), lr_mults=(0.5, 5.0),
             backbone_modules=("backbone",))
# torch.optim.Adam documentation default that build_optimizer promises (backends/*/optim.py)
ADAM_EPS = 1e-8


# ---------------------------------------------------------------- the documentation formulas
def adam_doc(theta, grads, lr, weight_decay, betas=HYPER["betas"], eps=ADAM_EPS):
    """torch.optim.Adam (amsgrad=False, maximize=False): parameters after each step."""
    b1, b2 = betas
    theta = np.asarray(theta, np.float64)
    m, v, out = np.zeros_like(theta), np.zeros_like(theta), []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64) + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(theta)
    return out


def sgd_doc(theta, grads, lr, weight_decay, momentum, dampening=0.0, nesterov=False):
    """torch.optim.SGD (maximize=False): parameters after each step."""
    theta = np.asarray(theta, np.float64)
    buf, out = None, []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64) + weight_decay * theta
        if momentum != 0:
            buf = g if t == 1 else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        theta = theta - lr * g
        out.append(theta)
    return out


def expected_trajectories(opt_name, nesterov=False):
    """{name: [parameters after step 1, 2, 3]} for the trainable parameters."""
    lrs = [HYPER["lr"] * m for m in HYPER["lr_mults"]]
    out = {}
    for name, group, init, grads in PARAMS:
        if group is None:
            continue
        if opt_name == "adam":
            out[name] = adam_doc(init, grads, lrs[group], HYPER["weight_decay"])
        else:
            out[name] = sgd_doc(init, grads, lrs[group], HYPER["weight_decay"], HYPER["momentum"],
                                nesterov=nesterov)
    return out


# ---------------------------------------------------------------- the model in either framework
def _tree(container, make_param):
    """The PARAMS model as nested containers built bottom-up (MindSpore names a parameter
    after its path when its cell is attached)."""
    nested = {}
    for name, group, init, _ in PARAMS:
        *path, leaf = name.split(".")
        node = nested
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = (init, group is not None)

    def build(node):
        obj = container()
        for key, value in node.items():
            setattr(obj, key, build(value) if isinstance(value, dict) else make_param(*value))
        return obj
    return build(nested)


def build_model(backend):
    if backend.name == "torch":
        import torch
        return _tree(torch.nn.Module, lambda v, trainable: torch.nn.Parameter(
            torch.tensor(v, dtype=torch.float32), requires_grad=trainable))
    import mindspore as ms
    return _tree(ms.nn.Cell, lambda v, trainable: ms.Parameter(
        ms.Tensor(np.asarray(v, np.float32)), requires_grad=trainable))


def parameter_values(backend, model):
    if backend.name == "torch":
        return {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    return {p.name: p.asnumpy().copy() for p in model.get_parameters()}


def group_names(backend, model, opt):
    """Parameter names of each optimizer group, in group order."""
    if backend.name == "torch":
        by_id = {id(p): n for n, p in model.named_parameters()}
        return [[by_id[id(p)] for p in g["params"]] for g in opt.param_groups]
    names = [p.name for p in opt.parameters]
    return [names[start:end] for start, end in opt.bounds]


def _ms_stepper(opt, graph):
    """MindSpore: one optimizer step on a tuple of gradients (in ``opt.parameters`` order);
    compiled with ``mindspore.jit`` for GRAPH mode."""
    import mindspore as ms

    def apply(grads):
        return opt(grads)
    return ms.jit(apply) if graph else apply


def stepper(backend, model, opt, graph=False):
    """A function taking {name: gradient} that runs one step of ``opt``."""
    if backend.name == "torch":
        import torch
        params = dict(model.named_parameters())

        def step(grads):
            for name, g in grads.items():
                params[name].grad = torch.tensor(g, dtype=torch.float32)
            opt.step()
        return step
    import mindspore as ms
    run = _ms_stepper(opt, graph)
    return lambda grads: run(tuple(ms.Tensor(np.asarray(grads[p.name], np.float32)) for p in opt.parameters))


# ---------------------------------------------------------------- tests
def check_three_steps(backend, opt_name, graph=False, nesterov=False):
    model = build_model(backend)
    opt = backend.optim.build_optimizer(model, opt_name, nesterov=nesterov, **HYPER)
    step = stepper(backend, model, opt, graph)
    expected = expected_trajectories(opt_name, nesterov)
    initial = parameter_values(backend, model)
    for t in range(STEPS):
        step({name: grads[t] for name, group, _, grads in PARAMS if group is not None})
        got = parameter_values(backend, model)
        for name, trajectory in expected.items():
            np.testing.assert_allclose(got[name], trajectory[t], rtol=0, atol=OPTIMIZER_VS_FORMULA_ATOL,
                                       err_msg=f"{backend.name} {opt_name} step {t + 1}: {name}")
        for name, group, _, _ in PARAMS:
            if group is None:
                np.testing.assert_array_equal(got[name], initial[name], err_msg=f"frozen {name} moved")


@pytest.mark.parametrize("opt_name, nesterov", [("adam", False), ("sgd", False), ("sgd", True)])
def test_update_follows_torch_documentation(backend, opt_name, nesterov):
    """torch eagerly, MindSpore in PYNATIVE mode; SGD also with Nesterov momentum (the MVD
    port's SGD)."""
    check_three_steps(backend, opt_name, nesterov=nesterov)


@pytest.mark.parametrize("ms_mode", ["GRAPH"], indirect=True)
@pytest.mark.parametrize("opt_name, nesterov", [("adam", False), ("sgd", False), ("sgd", True)])
def test_mindspore_graph_update_follows_torch_documentation(opt_name, nesterov, ms_mode):
    import backends
    check_three_steps(backends.get("mindspore"), opt_name, graph=True, nesterov=nesterov)


def test_group_split_rule(backend):
    """Backbone-group parameters first at lr * lr_mults[0], every other trainable one at
    lr * lr_mults[1], frozen
    ones in no group; names like 'backbone_proj.*' or 'neck.backbone' are not backbone."""
    model = build_model(backend)
    want = [[n for n, g, _, _ in PARAMS if g == gid] for gid in (0, 1)]
    assert want == [["backbone.conv.weight", "encoder.backbone.weight"],
                    ["backbone_proj.weight", "neck.backbone", "head.weight"]]
    for name in ("adam", "sgd"):
        opt = backend.optim.build_optimizer(model, name, **HYPER)
        assert group_names(backend, model, opt) == want, name
        assert backend.optim.get_group_lrs(opt) == pytest.approx([0.005, 0.05], rel=1e-6)
    with pytest.raises(ValueError, match="unknown optimizer"):
        backend.optim.build_optimizer(model, "adamw", **HYPER)
