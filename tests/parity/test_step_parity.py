"""Torch vs MindSpore: one full optimizer step and a 20-step loss curve of each MVD recipe
(port, original, routed; SPEC section 10).

From identical weights (torch ``state_to_numpy`` -> MindSpore ``load_numpy_state``) and
identical batches, the MVD step (forward, the recipe's objective, backward, Adam or SGD with
the recipe's two parameter groups) must leave the parameters within STEP_ATOL of each other,
and a 20-step run on fixed synthetic batches must give loss curves within CURVE_REL. MindSpore
runs PYNATIVE and GRAPH (``mindspore.jit`` step); GRAPH compilation takes about half a minute
on a 2-core machine, so those cases are marked slow (a GRAPH step runs in tests/test_graph_mode.py).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

import backends  # noqa: E402
from backends.mindspore.weights import load_numpy_state as ms_load, state_to_numpy as ms_state  # noqa: E402
from backends.torch import optim as torch_optim  # noqa: E402
from backends.torch.weights import state_to_numpy as torch_state  # noqa: E402
from common.config import load_config  # noqa: E402
from common.data.appearance import render  # noqa: E402
from common.param_groups import in_backbone_group  # noqa: E402
from common.recipes import mvd as recipe  # noqa: E402
from common.weights import ms_to_torch_names  # noqa: E402
from tests.parity.tolerances import (CURVE_REL, OPTIMIZER_SAME_GRADS_ATOL, STEP_ATOL, STEP_LOSS_REL,  # noqa: E402
                                     STEP_FLIP_MAX_DIFF_LR, STEP_MAX_FLIPPED_FRACTION, STEP_NOISE_REL)

TINY = ["model.arch=resnet18", "model.width=8", "mvd.z_dim=16", "mvd.ib_hidden=[32,16]", "mvd.cls_hidden=16",
        "mvd.dropout=0.0", "mvd.loss_func=id+tri+kldiv", "mvd.sinkhorn_iter=20"]
NUM_CLASSES = 4
OPTIM = {"adam": dict(lr=3.5e-3, weight_decay=5e-4), "sgd": dict(lr=0.01, weight_decay=5e-4, momentum=0.9)}
MEAN, STD = 0.45, 0.225

try:  # 25 CPU kernel threads by default: far too many on a small shared machine
    ms.device_context.cpu.op_tuning.threads_num(1)
except RuntimeError:
    pass


@pytest.fixture(autouse=True)
def float32_single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.set_num_threads(previous)


def synthetic_batch(step, rng, ids=2, per_id=4):
    """``ids`` identities x ``per_id`` images (B = 8 by default): rendered RGB and IR views
    (common.data.appearance), normalised float32 NCHW, labels int64."""
    labels = np.repeat([(ids * step + j) % NUM_CLASSES for j in range(ids)], per_id).astype(np.int64)

    def images(modality):
        imgs = [render(int(p), i % 2, rng, 64, 32, modality) for i, p in enumerate(labels)]
        return ((np.stack(imgs).astype(np.float32) / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).copy()
    return images("rgb"), images("ir"), labels


def config(name, opt_name="adam", opt_kwargs=None):
    sets = TINY + [f"optim.name={opt_name}"] + [f"optim.{k}={v}" for k, v in (opt_kwargs or OPTIM[opt_name]).items()]
    return load_config(f"configs/{name}.yaml", sets)


def build_pair(name, opt_name, ms_mode, opt_kwargs=None, seed=0):
    """Identical tiny MVD networks of recipe ``name``, optimizers and trainers in both backends."""
    cfg = config(name, opt_name, opt_kwargs)
    tb, mb = backends.get("torch"), backends.get("mindspore")
    torch.manual_seed(seed)
    t_model = tb.mvd.build_model(cfg, NUM_CLASSES)
    m_model = mb.mvd.build_model(cfg, NUM_CLASSES)
    ms_load(m_model, torch_state(t_model))
    t_trainer = tb.mvd.MVDTrainer(t_model, recipe.build_optimizer(cfg, tb, t_model), cfg["mvd"])
    m_trainer = mb.mvd.MVDTrainer(m_model, recipe.build_optimizer(cfg, mb, m_model), cfg["mvd"], ms_mode=ms_mode)
    return t_trainer, m_trainer, cfg


# the ms_mode fixture (tests/conftest.py) sets the MindSpore mode for the whole test
MODES = ["PYNATIVE", pytest.param("GRAPH", marks=pytest.mark.slow)]


STEP_CASES = [("mvd_port", "adam"), ("mvd_port", "sgd"), ("mvd_original", "adam"), ("mvd_routed", "adam"),
              pytest.param("mvd_routed", "sgd", marks=pytest.mark.slow)]
# the shipped default (the port recipe compiled in GRAPH mode) runs against torch in the default run
STEP_PARAMS = [pytest.param(name, opt, mode, marks=[] if mode == "PYNATIVE" or (name, opt) == ("mvd_port", "adam")
                            else [pytest.mark.slow], id=f"{name}-{opt}-{mode}")
               for mode in ("PYNATIVE", "GRAPH") for name, opt in
               [c.values[:2] if hasattr(c, "values") else c for c in STEP_CASES]]


@pytest.mark.parametrize("name, opt_name, ms_mode", STEP_PARAMS, indirect=["ms_mode"])
def test_one_full_step_matches(name, opt_name, ms_mode):
    """Adam may exceed STEP_ATOL on sign-flipped near-zero-gradient elements only (see
    STEP_NOISE_REL in tolerances.py and KNOWN_GAPS.md). The port's SGD is Nesterov."""
    t_trainer, m_trainer, cfg = build_pair(name, opt_name, ms_mode)
    before = torch_state(t_trainer.model)
    batch = synthetic_batch(0, np.random.default_rng(0))
    t_loss = t_trainer.train_step(*batch)
    m_loss = m_trainer.train_step(*batch)
    t_after, m_after = torch_state(t_trainer.model), ms_state(m_trainer.model)
    assert m_loss["total"] == pytest.approx(t_loss["total"], rel=STEP_LOSS_REL)
    lrs = torch_optim.get_group_lrs(t_trainer.optimizer)
    wd = OPTIM[opt_name]["weight_decay"]
    moved, flipped, total, worst = 0.0, 0, 0, 0.0
    # the gradient scale of the step: a tensor whose gradients are all noise (e.g. a Linear
    # bias right before a BatchNorm, which cancels it) has no large element of its own
    g_max = max(float(np.abs(p.grad.numpy()).max()) for p in t_trainer.model.parameters() if p.grad is not None)
    for pname, param in t_trainer.model.named_parameters():
        diff = np.abs(t_after[pname] - m_after[pname])
        total += diff.size
        moved = max(moved, float(np.abs(t_after[pname] - before[pname]).max()))
        over = diff > STEP_ATOL
        if opt_name == "adam" and over.any():
            grad = np.abs(param.grad.numpy() + wd * before[pname])
            lr = lrs[0] if in_backbone_group(pname, cfg["mvd"]["backbone_modules"]) else lrs[1]
            assert (grad[over] < STEP_NOISE_REL * g_max).all(), f"{pname}: a large-gradient element differs"
            assert (diff[over] <= STEP_FLIP_MAX_DIFF_LR * lr).all(), f"{pname}: differs by more than 2 * lr"
            if grad.max() >= STEP_NOISE_REL * g_max:  # a tensor whose every gradient is noise
                flipped += int(over.sum())            # (a bias BatchNorm cancels) flips freely
            diff = diff[~over]
        if diff.size:
            worst = max(worst, float(diff.max()))
    assert moved > 10 * STEP_ATOL  # the step really changed the parameters
    assert flipped <= STEP_MAX_FLIPPED_FRACTION * total, f"{flipped} of {total} elements flipped"
    assert worst <= STEP_ATOL, f"{name}/{opt_name}/{ms_mode}: parameters differ by {worst:.3g} after one step"


@pytest.mark.parametrize("ms_mode", MODES, indirect=True)
@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_optimizer_update_matches_torch_on_identical_gradients(opt_name, ms_mode):
    """The optimizer alone, on the real model's two parameter groups: two steps driven by
    the same gradients (magnitudes 1e-9..1, so where eps enters matters) in both backends."""
    cfg = config("mvd_port", opt_name)
    tb, mb = backends.get("torch"), backends.get("mindspore")
    torch.manual_seed(0)
    t_model, m_model = tb.mvd.build_model(cfg, NUM_CLASSES), mb.mvd.build_model(cfg, NUM_CLASSES)
    ms_load(m_model, torch_state(t_model))
    t_opt, m_opt = recipe.build_optimizer(cfg, tb, t_model), recipe.build_optimizer(cfg, mb, m_model)
    to_torch = ms_to_torch_names([n for n, _ in m_model.parameters_and_names()])  # BN found by moving_mean
    t_params = {n: p for n, p in t_model.named_parameters() if p.requires_grad}
    assert sorted(to_torch[p.name] for p in m_opt.parameters) == sorted(t_params)

    def apply(grads):
        return m_opt(grads)
    rng = np.random.default_rng(0)
    update = ms.jit(apply) if ms_mode == "GRAPH" else apply
    for _ in range(2):
        grads = {n: (rng.standard_normal(p.shape) * 10.0 ** rng.integers(-9, 1, p.shape)).astype(np.float32)
                 for n, p in t_params.items()}
        for n, p in t_params.items():
            p.grad = torch.from_numpy(grads[n])
        t_opt.step()
        update(tuple(ms.Tensor(grads[to_torch[p.name]]) for p in m_opt.parameters))
    t_after, m_after = torch_state(t_model), ms_state(m_model)
    worst = max(float(np.abs(t_after[n] - m_after[n]).max()) for n in t_params)
    assert worst <= OPTIMIZER_SAME_GRADS_ATOL, f"{opt_name}/{ms_mode}: parameters differ by {worst:.3g}"


CURVES = [("mvd_port", 5), ("mvd_original", 3), ("mvd_routed", 3)] + [
    pytest.param(name, 20, marks=pytest.mark.slow) for name in ("mvd_port", "mvd_original", "mvd_routed")]


@pytest.mark.parametrize("ms_mode", MODES, indirect=True)
@pytest.mark.parametrize("name, steps", CURVES)
def test_twenty_step_loss_curves_agree(name, steps, ms_mode):
    """Adam at lr 1e-4 on batches of 2 ids x 4 images: a torch run from weights perturbed by
    1e-6 (relative) stays within ~2.4e-3 of the unperturbed one over 20 steps, so this
    set-up is not chaotic at the CURVE_REL scale (lr 3.5e-4 or 4-image batches are: ~1e-1).
    The default run has 5 steps of the port and 3 of the two others; 20 each in the slow run."""
    rng = np.random.default_rng(1)
    batches = [synthetic_batch(k, rng) for k in range(4)]
    t_trainer, m_trainer, _ = build_pair(name, "adam", ms_mode, dict(lr=1e-4, weight_decay=5e-4))
    t_curve, m_curve = [], []
    for step in range(steps):
        batch = batches[step % len(batches)]
        t_curve.append(t_trainer.train_step(*batch)["total"])
        m_curve.append(m_trainer.train_step(*batch)["total"])
    t_curve, m_curve = np.array(t_curve), np.array(m_curve)
    rel = np.abs(m_curve - t_curve) / np.abs(t_curve)
    if steps >= 20:
        assert t_curve[-4:].mean() < 0.9 * t_curve[:4].mean()  # it trains
    assert rel.max() <= CURVE_REL, f"loss curves differ by {rel.max():.3g} (relative); torch {t_curve}, ms {m_curve}"
