"""Loss parity (SPEC section 10, rows 1-2; SPEC 7 losses).

For every loss in the table below:
* the torch and the mindspore (PYNATIVE and GRAPH) values match the float64 numpy spec in
  common.losses with rtol LOSS_VS_SPEC_RTOL;
* the gradients w.r.t. every floating input match between torch and mindspore (both modes)
  element-wise with rtol GRAD_RTOL. Inputs a loss detaches (teacher, observation, source)
  must get an exactly zero gradient in both, so this also checks that both backends detach
  the same inputs.

Absolute floor of the gradient comparison (decision): atol = GRAD_ATOL_SCALE * max|g_torch|
per input tensor, GRAD_ATOL_SCALE = 1e-5 (a tenth of GRAD_RTOL, relative to the tensor's
scale). A fixed atol such as 1e-7 is meaningless across cases whose gradients range from 1e-3
to 1e2; entries that are small only because large terms cancel carry the rounding error of
those terms. Measured over 60 seeds per case (PYNATIVE, seeds other than the fixed ones used here): the
smallest floor that passes together with rtol 1e-4 is <= 1.2e-6 * max|g| in every case
(dmmd, kd_kl and vml are the worst: sums of exp terms, and the MindSpore 2.8 CPU Exp kernel
has a relative error up to 8e-6 against torch's ~1 ulp; see KNOWN_GAPS.md), so 1e-5 keeps a
~8x margin. A detached input has max|g| = 0, hence atol 0: its gradient must be exactly
zero in both backends.
"""
import zlib

import numpy as np
import pytest
import torch

import common.losses as spec
from common.losses.mvd_total import mvd_total
from backends.torch import losses as tl
from tests.parity.tolerances import GRAD_ATOL_SCALE, GRAD_RTOL, LOSS_VS_SPEC_RTOL

ms = pytest.importorskip("mindspore")
from backends.mindspore import losses as ml  # noqa: E402


# Per-case overrides of GRAD_ATOL_SCALE, each explained in tests/parity/KNOWN_GAPS.md (none).
GRAD_ATOL_SCALE_OVERRIDES = {}
B, C, D = 8, 10, 16


# ---- input generators: rng -> (float32 arrays (differentiable), int64 labels or None) ----

def _labels(rng, n=B, num_classes=C):
    return rng.permutation(np.arange(n) % num_classes)[:n].astype(np.int64)


def _pk_pids(rng, pids=(0, 0, 1, 1, 2, 2, 3, 3)):
    return rng.permutation(np.asarray(pids, dtype=np.int64))


def _f32(rng, *shape, scale=1.0, shift=0.0):
    return (rng.normal(size=shape) * scale + shift).astype(np.float32)


def gen_ce(rng):
    return [_f32(rng, B, C, scale=2.0)], _labels(rng)


def gen_triplet(rng):
    return [_f32(rng, B, D)], _pk_pids(rng)


def gen_triplet_singletons(rng):
    # pids 3 and 4 occur once: those anchors have no positive and leave the mean (spec rule)
    return [_f32(rng, B, D)], _pk_pids(rng, (0, 0, 1, 1, 2, 2, 3, 4))


def gen_logit_pair(rng, scale=2.0):
    return [_f32(rng, B, C, scale=scale), _f32(rng, B, C, scale=scale)], None


def gen_logit_pair_wide(rng):
    # tau = 10 flattens the softmax; scale 8 keeps the KL away from float32 cancellation
    return gen_logit_pair(rng, scale=8.0)


def gen_emb_pair(rng):
    return [_f32(rng, B, D), _f32(rng, B, D, scale=0.8, shift=0.3)], None


def gen_vcd(rng):
    return [_f32(rng, B, C, scale=2.0) for _ in range(4)], None


def gen_dmmd(rng):
    # P=3, K=2, D=4; the target is shifted and scaled so every MMD term is O(1)
    return [_f32(rng, 6, 4), _f32(rng, 6, 4, scale=1.5, shift=0.5)], None


MVD_B, MVD_C, MVD_F, MVD_Z = 4, 6, 16, 8


def gen_mvd(rng):
    shapes = []
    for rows in (MVD_B, MVD_B, 2 * MVD_B):  # visible, infrared, shared (rgb first)
        shapes += [(rows, MVD_F), (rows, MVD_F), (rows, MVD_C), (rows, MVD_Z), (rows, MVD_C)]
    outputs = [_f32(rng, *s, scale=2.0 if s[1] == MVD_C else 1.0) for s in shapes]
    return outputs, rng.permutation(MVD_B).astype(np.int64)


# ---- the table: (case id, loss name, kwargs, generator, pack) ----
# pack 'flat': loss(*floats[, labels], **kwargs); 'mvd': loss(tuple(floats), labels, **kwargs)
CASES = [
    ("ce_eps0", "cross_entropy", {}, gen_ce, "flat"),
    ("ce_eps0.1", "cross_entropy", {"epsilon": 0.1}, gen_ce, "flat"),
    ("triplet_hinge", "triplet_batch_hard", {"margin": 0.3}, gen_triplet, "flat"),
    ("triplet_soft", "triplet_batch_hard", {"margin": None}, gen_triplet, "flat"),
    ("triplet_singletons", "triplet_batch_hard", {"margin": 0.3}, gen_triplet_singletons, "flat"),
    ("kd_kl_tau10", "kd_kl", {"tau": 10.0}, gen_logit_pair_wide, "flat"),
    ("kd_kl_tau4", "kd_kl", {"tau": 4.0}, gen_logit_pair, "flat"),
    ("kd_mse", "kd_mse", {}, gen_logit_pair, "flat"),
    ("distance_preserving", "distance_preserving", {}, gen_emb_pair, "flat"),
    ("vsd_T1", "vsd", {"T": 1.0}, gen_logit_pair, "flat"),
    ("vsd_T3", "vsd", {"T": 3.0}, gen_logit_pair, "flat"),
    ("vcd", "vcd", {"T": 2.0}, gen_vcd, "flat"),
    ("vml", "vml", {}, gen_logit_pair, "flat"),
    ("kl_div_original", "kl_div_original", {}, gen_logit_pair, "flat"),
    ("dmmd_P3K2", "dmmd", {"P": 3, "K": 2}, gen_dmmd, "flat"),
    ("dmmd_P3K2_global_source_grad", "dmmd", {"P": 3, "K": 2, "global_source_grad": True}, gen_dmmd, "flat"),
    ("cosine_relation_kd", "cosine_relation_kd", {}, gen_emb_pair, "flat"),
]
# every loss_func; kl_form only changes 'id+tri+kldiv', so both forms are crossed with it only
for _func, _form in (("id", "vsd"), ("id+tri", "vsd"), ("id+tri+kldiv", "vsd"),
                     ("id+tri+kldiv", "original")):
    CASES.append((f"mvd_{_func}_{_form}", "mvd_loss",
                  {"loss_func": _func, "kl_form": _form}, gen_mvd, "mvd"))
CASES.append(("mvd_kldiv_T2_vml", "mvd_loss",
              {"loss_func": "id+tri+kldiv", "T": 2.0, "margin": 0.5, "vml_weight": 0.5},
              gen_mvd, "mvd"))
CASE_IDS = [c[0] for c in CASES]


def _inputs(case):
    return case[3](np.random.default_rng(zlib.crc32(case[0].encode())))  # stable per case


def _spec_fn(name):
    return mvd_total if name == "mvd_loss" else getattr(spec, name)


def _call(fn, tensors, n_float, pack, kwargs):
    """The one calling convention of the table, shared by spec, torch and mindspore."""
    floats = tensors[:n_float]
    rest = tensors[n_float:]
    if pack == "mvd":
        return fn(tuple(floats), rest[0], **kwargs)
    return fn(*floats, *rest, **kwargs)


def _spec_values(case, floats, labels):
    _, name, kwargs, _, pack = case
    extra = [] if labels is None else [labels]
    out = _call(_spec_fn(name), list(floats) + extra, len(floats), pack, kwargs)
    if isinstance(out, dict):  # dmmd
        out = (out["within"], out["between"], out["global"])
    return np.atleast_1d(np.asarray(out, dtype=np.float64))


def _scalar(out):
    """The scalar that is differentiated: the total for mvd_loss (first item), the sum of the
    three terms for dmmd, the loss itself otherwise."""
    if isinstance(out, tuple):
        if len(out) == 4:
            return out[0]
        return out[0] + out[1] + out[2]
    return out


def _torch_run(case, floats, labels):
    _, name, kwargs, _, pack = case
    ts = [torch.tensor(f, requires_grad=True) for f in floats]
    extra = [] if labels is None else [torch.tensor(labels)]
    out = _call(getattr(tl, name), ts + extra, len(ts), pack, kwargs)
    _scalar(out).backward()
    values = out if isinstance(out, tuple) else (out,)
    grads = [np.zeros_like(f) if t.grad is None else t.grad.numpy() for f, t in zip(floats, ts)]
    return np.array([v.item() for v in values]), grads


def _ms_run(case, floats, labels, mode):
    """value_and_grad of the mindspore loss; under GRAPH the step is a mindspore.jit function
    defined here (graph mode compiles from source files only)."""
    _, name, kwargs, _, pack = case
    loss_fn = getattr(ml, name)
    n_float = len(floats)

    def forward(*tensors):
        out = _call(loss_fn, tensors, n_float, pack, kwargs)
        return _scalar(out), out

    grad_fn = ms.value_and_grad(forward, grad_position=tuple(range(n_float)), has_aux=True)

    def step(*tensors):
        return grad_fn(*tensors)

    if mode == "GRAPH":
        step = ms.jit(step)
    extra = [] if labels is None else [ms.Tensor(labels)]
    (_, out), grads = step(*([ms.Tensor(f) for f in floats] + extra))
    values = out if isinstance(out, tuple) else (out,)
    if not isinstance(grads, (tuple, list)):  # a single grad_position comes back bare
        grads = (grads,)
    return np.array([float(v.asnumpy()) for v in values]), [g.asnumpy() for g in grads]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_torch_value_matches_spec(case):
    floats, labels = _inputs(case)
    values, grads = _torch_run(case, floats, labels)
    np.testing.assert_allclose(values, _spec_values(case, floats, labels),
                               rtol=LOSS_VS_SPEC_RTOL, atol=0)
    # guards the gradient parity below against being vacuous: some input always trains
    assert max(np.abs(g).max() for g in grads) > 1e-4


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_mindspore_value_matches_spec_and_grad_matches_torch(case, ms_mode):
    floats, labels = _inputs(case)
    values, grads = _ms_run(case, floats, labels, ms_mode)
    np.testing.assert_allclose(values, _spec_values(case, floats, labels),
                               rtol=LOSS_VS_SPEC_RTOL, atol=0)
    _, torch_grads = _torch_run(case, floats, labels)
    assert len(grads) == len(torch_grads)
    for k, (g_ms, g_t) in enumerate(zip(grads, torch_grads)):
        assert g_ms.shape == g_t.shape, f"input {k}: gradient shape {g_ms.shape} vs {g_t.shape}"
        atol = GRAD_ATOL_SCALE_OVERRIDES.get(case[0], GRAD_ATOL_SCALE) * float(np.abs(g_t).max())
        np.testing.assert_allclose(g_ms, g_t, rtol=GRAD_RTOL, atol=atol,
                                   err_msg=f"{case[0]}: gradient of input {k}")


def test_detached_inputs_get_no_gradient():
    """SPEC 7: teacher (kd_kl, kd_mse, distance_preserving, cosine_relation_kd), observation
    (vsd, vcd, kl_div_original) and source (dmmd) sides are detached; MTDA's D-MMD
    (``global_source_grad``) lets the global term reach the source features."""
    detached = {"kd_kl_tau4": [1], "kd_mse": [1], "distance_preserving": [1],
                "cosine_relation_kd": [1], "vsd_T1": [0], "vcd": [0, 2],
                "kl_div_original": [0], "dmmd_P3K2": [0], "dmmd_P3K2_global_source_grad": [],
                "vml": []}
    for case in CASES:
        if case[0] not in detached:
            continue
        floats, labels = _inputs(case)
        _, grads = _torch_run(case, floats, labels)
        for k, g in enumerate(grads):
            if k in detached[case[0]]:
                assert not g.any(), f"{case[0]}: input {k} should be detached"
            else:
                assert np.abs(g).max() > 1e-4, f"{case[0]}: input {k} should train"


def test_mvd_loss_components_and_unused_heads():
    """total = id + tri + kl; 'id' has tri = kl = 0; heads not in the loss get no gradient."""
    case = next(c for c in CASES if c[0] == "mvd_id+tri+kldiv_vsd")
    floats, labels = _inputs(case)
    values, grads = _torch_run(case, floats, labels)
    assert values[0] == pytest.approx(values[1] + values[2] + values[3], rel=1e-6)
    assert values[2] > 0 and values[3] > 0
    used = {2, 4, 7, 9, 11, 12, 14}  # logit_v, zlogit_v, logit_i, zlogit_i, bn_s, logit_s, zlogit_s
    for k, g in enumerate(grads):
        assert bool(g.any()) == (k in used), f"mvd output {k}"
    id_case = next(c for c in CASES if c[0] == "mvd_id_vsd")
    values, _ = _torch_run(id_case, *_inputs(id_case))
    assert values[2] == 0.0 and values[3] == 0.0 and values[0] == values[1]


@pytest.mark.parametrize("bad", ["id+kldiv", "tri", ""])
def test_mvd_loss_rejects_unknown_loss_func(bad):
    floats, labels = gen_mvd(np.random.default_rng(0))
    with pytest.raises(ValueError, match="loss_func"):
        mvd_total(floats, labels, loss_func=bad)
    with pytest.raises(ValueError, match="loss_func"):
        tl.mvd_loss(tuple(torch.tensor(f) for f in floats), torch.tensor(labels), loss_func=bad)
    with pytest.raises(ValueError, match="loss_func"):
        ml.mvd_loss(tuple(ms.Tensor(f) for f in floats), ms.Tensor(labels), loss_func=bad)


def test_triplet_without_any_valid_anchor():
    """Spec and torch raise ValueError; mindspore returns 0 (graph mode cannot raise on a
    tensor value; recorded in tests/parity/KNOWN_GAPS.md)."""
    emb = np.random.default_rng(0).normal(size=(4, D)).astype(np.float32)
    pids = np.arange(4, dtype=np.int64)  # all singletons: no positives anywhere
    with pytest.raises(ValueError, match="no anchor"):
        spec.triplet_batch_hard(emb, pids)
    with pytest.raises(ValueError, match="no anchor"):
        tl.triplet_batch_hard(torch.tensor(emb), torch.tensor(pids))
    assert float(ml.triplet_batch_hard(ms.Tensor(emb), ms.Tensor(pids)).asnumpy()) == 0.0


def test_kl_div_original_gradient_is_tiny_next_to_vsd():
    """SPEC 7: the original code's kl_div on probabilities gives almost no gradient, which is
    why kl_form='original' is off by default. Its gradient w.r.t. the representation logits
    is p_rep * (p_obs - <p_rep, p_obs>) / (B*C), against (p_rep - p_obs) / B for vsd: about
    1/C^2 smaller. With C = 100 (scale of the real class counts) expect a ratio < 1e-2."""
    rng = np.random.default_rng(7)
    obs = _f32(rng, B, 100, scale=2.0)
    rep = _f32(rng, B, 100, scale=2.0)
    norms = {}
    for name, fn in (("vsd", tl.vsd), ("original", tl.kl_div_original)):
        r = torch.tensor(rep, requires_grad=True)
        fn(torch.tensor(obs), r).backward()
        norms[name] = float(r.grad.norm())
    assert norms["vsd"] > 1e-2
    assert norms["original"] < 1e-2 * norms["vsd"]
    # the mindspore backend has the same property
    ms_norms = {}
    for name, fn in (("vsd", ml.vsd), ("original", ml.kl_div_original)):
        g = ms.grad(lambda r, fn=fn: fn(ms.Tensor(obs), r))(ms.Tensor(rep)).asnumpy()
        ms_norms[name] = float(np.linalg.norm(g))
    np.testing.assert_allclose([ms_norms["vsd"], ms_norms["original"]],
                               [norms["vsd"], norms["original"]], rtol=GRAD_RTOL)
