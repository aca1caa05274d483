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
import inspect
import math
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import common.losses as spec
from common.losses.mvd_original import sinkhorn_iterate
from common.losses.mvd_total import MVD_LOSS_FUNCS, MVD_OUTPUT_NAMES, mvd_total
from backends.torch import losses as tl
from tests.parity.conftest import MS_MODES
from tests.parity.tolerances import (GRAD_ATOL_SCALE, GRAD_RTOL, LOSS_VS_SPEC_RTOL,
                                     SINKHORN_GRAD_ATOL_SCALE, SINKHORN_VS_SPEC_RTOL)

ms = pytest.importorskip("mindspore")
from backends.mindspore import losses as ml  # noqa: E402


# Per-case overrides of GRAD_ATOL_SCALE and LOSS_VS_SPEC_RTOL, each explained in
# tests/parity/KNOWN_GAPS.md: every case whose loss runs the Sinkhorn iteration (filled in
# below the table).
GRAD_ATOL_SCALE_OVERRIDES = {}
VALUE_RTOL_OVERRIDES = {}
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


def gen_rank(rng):
    # N = 2B: the B RGB then the B IR images, each pid in both modalities
    pids = rng.permutation(np.array([0, 0, 1, 1], dtype=np.int64))
    return [_f32(rng, 8, D)], (np.concatenate([pids, pids]), np.repeat(np.arange(2), 4))


def gen_rank_random_layout(rng):
    # some anchors lack an intra- or a cross-modality positive: the 1e-5 denominators act alone
    pids = rng.permutation(np.array([0, 0, 0, 1, 1, 1, 2, 2], dtype=np.int64))
    return [_f32(rng, 8, D)], (pids, rng.permutation(np.repeat(np.arange(2), 4)))


def _prob_rows(rng, n, scale):
    z = rng.normal(size=(n, C)) * scale
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def gen_prob_pair(rng):
    return [_prob_rows(rng, B, 2.0), _prob_rows(rng, B, 2.0)], None


def gen_prob_pair_sharp(rng):
    return [_prob_rows(rng, B, 8.0), _prob_rows(rng, B, 8.0)], None


def gen_prob_pair_flat(rng):
    return [_prob_rows(rng, 4, 0.5), _prob_rows(rng, 4, 0.5)], None


MVD16_N = 8  # 2B rows per path


def gen_mvd16(rng):
    outputs = [_f32(rng, MVD16_N, MVD_C, scale=2.0) if "logit" in name
               else _f32(rng, MVD16_N, MVD_F if name.startswith("feat") else MVD_Z)
               for name in MVD_OUTPUT_NAMES]
    pids = rng.permutation(np.array([0, 0, 1, 1], dtype=np.int64))
    return outputs, (np.concatenate([pids, pids]), np.repeat(np.arange(2), 4))


def gen_mvd16_port(rng):
    outputs, (labels, _) = gen_mvd16(rng)
    return outputs, labels


# ---- the table: (case id, loss name, kwargs, generator, pack) ----
# pack 'flat': loss(*floats, *ints, **kwargs); 'mvd': loss(tuple(floats), *ints, **kwargs);
# a generator's ints are None, one int array (labels) or a tuple of int arrays
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
    ("kl_div_original_T2", "kl_div_original", {"T": 2.0}, gen_logit_pair, "flat"),
    ("rank_loss", "rank_loss", {}, gen_rank, "flat"),
    ("rank_loss_random_layout", "rank_loss",
     {"m1": 0.5, "m2": 0.7, "a1": 1.4, "a2": 1.3, "tval": 2.0}, gen_rank_random_layout, "flat"),
    ("sinkhorn", "sinkhorn_distance", {}, gen_prob_pair, "flat"),
    # thresh 0.00295 lies between the errors of iterations 38 and 39 (0.00303, 0.00286) of
    # this case's input, clear of both (test_sinkhorn_cases_stop_where_their_names_say)
    ("sinkhorn_many_iters", "sinkhorn_distance", {"eps": 0.05, "thresh": 0.00295},
     gen_prob_pair_sharp, "flat"),
    ("sinkhorn_max_iter", "sinkhorn_distance", {"eps": 0.05, "thresh": 0.00295, "max_iter": 10},
     gen_prob_pair_sharp, "flat"),
    ("sinkhorn_at_once", "sinkhorn_distance", {}, gen_prob_pair_flat, "flat"),
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
for _func in MVD_LOSS_FUNCS:
    CASES.append((f"mvd_port_{_func}", "mvd_port_total", {"loss_func": _func}, gen_mvd16_port, "mvd"))
CASES.append(("mvd_port_kldiv_T2_margin0.5", "mvd_port_total",
              {"loss_func": "id+tri+kldiv", "T": 2.0, "margin": 0.5}, gen_mvd16_port, "mvd"))
CASES.append(("mvd_original", "mvd_original_total", {}, gen_mvd16, "mvd"))
CASES.append(("mvd_original_options", "mvd_original_total",
              {"epsilon": 0.2, "m1": 0.5, "m2": 0.7, "a1": 1.4, "a2": 1.3, "T": 3.0, "w_ce": 0.5,
               "w_rank": 2.0, "w_cml": 4.0, "w_vsd": 1.5, "w_vcd": 3.0, "sinkhorn_eps": 0.05,
               "sinkhorn_iter": 50, "sinkhorn_thresh": 0.05}, gen_mvd16, "mvd"))
CASE_IDS = [c[0] for c in CASES]
for _case in CASES:
    if _case[1] in ("sinkhorn_distance", "mvd_original_total"):
        GRAD_ATOL_SCALE_OVERRIDES[_case[0]] = SINKHORN_GRAD_ATOL_SCALE
        VALUE_RTOL_OVERRIDES[_case[0]] = SINKHORN_VS_SPEC_RTOL
# Cases (all runs) and MindSpore runs (case, mode) left to the slow run (make test-all), each
# with a faster relative in the default run: the other loss_func / option rows of the same
# loss, the spec and hand tests.
SLOW_CASES = {"kl_div_original_T2", "rank_loss", "sinkhorn", "sinkhorn_max_iter", "mvd_port_id",
              "mvd_port_id+tri", "mvd_port_id+tri+kldiv", "mvd_original_options"}
SLOW_MS_RUNS = {("mvd_original", "PYNATIVE")}


def _case_params(with_modes):
    """pytest params for the table (x the MindSpore modes), slow ones marked."""
    params = []
    for case in CASES:
        for mode in (MS_MODES if with_modes else (None,)):
            slow = case[0] in SLOW_CASES or (case[0], mode) in SLOW_MS_RUNS
            marks = [pytest.mark.slow] if slow else []
            if with_modes:
                params.append(pytest.param(case, mode, marks=marks, id=f"{mode}-{case[0]}"))
            else:
                params.append(pytest.param(case, marks=marks, id=case[0]))
    return params


def _inputs(case):
    return case[3](np.random.default_rng(zlib.crc32(case[0].encode())))  # stable per case


def _int_list(ints):
    """A generator's int arrays as a list (None -> [], one array -> [it])."""
    if ints is None:
        return []
    return list(ints) if isinstance(ints, tuple) else [ints]


def _spec_fn(name):
    return mvd_total if name == "mvd_loss" else getattr(spec, name)


def _call(fn, tensors, n_float, pack, kwargs):
    """The one calling convention of the table, shared by spec, torch and mindspore."""
    floats = tensors[:n_float]
    rest = tensors[n_float:]
    if pack == "mvd":
        return fn(tuple(floats), *rest, **kwargs)
    return fn(*floats, *rest, **kwargs)


def _flat(out):
    """Every scalar of a loss's result, in order: (total, (terms...)) -> [total, *terms]."""
    if isinstance(out, (tuple, list)):
        return [v for item in out for v in _flat(item)]
    return [out]


def _spec_values(case, floats, labels):
    _, name, kwargs, _, pack = case
    out = _call(_spec_fn(name), list(floats) + _int_list(labels), len(floats), pack, kwargs)
    if isinstance(out, dict):  # dmmd
        out = (out["within"], out["between"], out["global"])
    return np.asarray(_flat(out), dtype=np.float64)


def _scalar(out):
    """The scalar that is differentiated: the total for the MVD totals (first item; the new
    ones return (total, terms), mvd_loss (total, id, tri, kl)), the sum of the three terms for
    dmmd, the loss itself otherwise."""
    if isinstance(out, tuple):
        if len(out) in (2, 4):
            return out[0]
        return out[0] + out[1] + out[2]
    return out


def _torch_run(case, floats, labels):
    _, name, kwargs, _, pack = case
    ts = [torch.tensor(f, requires_grad=True) for f in floats]
    extra = [torch.tensor(i) for i in _int_list(labels)]
    out = _call(getattr(tl, name), ts + extra, len(ts), pack, kwargs)
    _scalar(out).backward()
    grads = [np.zeros_like(f) if t.grad is None else t.grad.numpy() for f, t in zip(floats, ts)]
    return np.array([v.item() for v in _flat(out)]), grads


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
    extra = [ms.Tensor(i) for i in _int_list(labels)]
    (_, out), grads = step(*([ms.Tensor(f) for f in floats] + extra))
    if not isinstance(grads, (tuple, list)):  # a single grad_position comes back bare
        grads = (grads,)
    return np.array([float(v.asnumpy()) for v in _flat(out)]), [g.asnumpy() for g in grads]


@pytest.mark.parametrize("case", _case_params(with_modes=False))
def test_torch_value_matches_spec(case):
    floats, labels = _inputs(case)
    values, grads = _torch_run(case, floats, labels)
    np.testing.assert_allclose(values, _spec_values(case, floats, labels),
                               rtol=VALUE_RTOL_OVERRIDES.get(case[0], LOSS_VS_SPEC_RTOL), atol=0)
    # guards the gradient parity below against being vacuous: some input always trains
    assert max(np.abs(g).max() for g in grads) > 1e-4


@pytest.mark.parametrize("case, ms_mode", _case_params(with_modes=True), indirect=["ms_mode"])
def test_mindspore_value_matches_spec_and_grad_matches_torch(case, ms_mode):
    floats, labels = _inputs(case)
    values, grads = _ms_run(case, floats, labels, ms_mode)
    np.testing.assert_allclose(values, _spec_values(case, floats, labels),
                               rtol=VALUE_RTOL_OVERRIDES.get(case[0], LOSS_VS_SPEC_RTOL), atol=0)
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


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
def test_kl_div_original_is_the_literal_torch_kl_div_call():
    """reid/trainers.py calls ``kl_div(input=softmax(obs.detach() / T), target=softmax(rep / T))``
    (reduction 'mean'); both backends give its value and its autograd gradient w.r.t. rep."""
    rng = np.random.default_rng(7)
    obs = _f32(rng, B, 100, scale=2.0)
    rep = _f32(rng, B, 100, scale=2.0)
    for T in (1.0, 3.0):
        r_lit = torch.tensor(rep, requires_grad=True)
        literal = F.kl_div(input=F.softmax(torch.tensor(obs) / T, dim=1),
                           target=F.softmax(r_lit / T, dim=1))
        literal.backward()
        g_lit = r_lit.grad.numpy()
        r = torch.tensor(rep, requires_grad=True)
        value = tl.kl_div_original(torch.tensor(obs), r, T)
        value.backward()
        assert value.item() == pytest.approx(literal.item(), rel=LOSS_VS_SPEC_RTOL)
        assert value.item() == pytest.approx(spec.kl_div_original(obs, rep, T), rel=LOSS_VS_SPEC_RTOL)
        atol = GRAD_ATOL_SCALE * float(np.abs(g_lit).max())
        np.testing.assert_allclose(r.grad.numpy(), g_lit, rtol=GRAD_RTOL, atol=atol)
        v_ms, g_ms = ms.value_and_grad(
            lambda x, T=T: ml.kl_div_original(ms.Tensor(obs), x, T))(ms.Tensor(rep))
        assert float(v_ms.asnumpy()) == pytest.approx(literal.item(), rel=LOSS_VS_SPEC_RTOL)
        np.testing.assert_allclose(g_ms.asnumpy(), g_lit, rtol=GRAD_RTOL, atol=atol)


def test_cross_entropy_is_the_reference_label_smoothing_module():
    """utlis.py CrossEntropyLabelSmooth: targets scattered into a one-hot, smoothed as
    (1 - eps) y + eps / C, loss ``(-targets * log_softmax(z)).mean(0).sum()``; written out here
    in torch, it equals the spec and both backends' cross_entropy (value and gradient)."""
    rng = np.random.default_rng(11)
    logits = _f32(rng, B, C, scale=3.0)
    labels = _labels(rng)
    eps = 0.1
    z_ref = torch.tensor(logits, requires_grad=True)
    targets = torch.zeros(B, C).scatter_(1, torch.tensor(labels).unsqueeze(1), 1)
    targets = (1 - eps) * targets + eps / C
    reference = (-targets * F.log_softmax(z_ref, dim=1)).mean(0).sum()
    reference.backward()
    z = torch.tensor(logits, requires_grad=True)
    value = tl.cross_entropy(z, torch.tensor(labels), eps)
    value.backward()
    assert spec.cross_entropy(logits, labels, eps) == pytest.approx(reference.item(), rel=LOSS_VS_SPEC_RTOL)
    assert value.item() == pytest.approx(reference.item(), rel=LOSS_VS_SPEC_RTOL)
    np.testing.assert_allclose(z.grad.numpy(), z_ref.grad.numpy(), rtol=GRAD_RTOL,
                               atol=GRAD_ATOL_SCALE * float(z_ref.grad.abs().max()))
    v_ms = ml.cross_entropy(ms.Tensor(logits), ms.Tensor(labels), eps)
    assert float(v_ms.asnumpy()) == pytest.approx(reference.item(), rel=LOSS_VS_SPEC_RTOL)


def test_sinkhorn_cases_stop_where_their_names_say():
    """The sinkhorn rows of the table: 'at_once' stops after iteration 1, 'many_iters' after
    >= 20, 'max_iter' is cut by max_iter before converging, the default case in between; the
    stopping error is clear of thresh (the same count for thresh x 0.98 and x 1.02), so float32
    rounding cannot move the stop."""
    expected = {"sinkhorn_at_once": (1, 1), "sinkhorn": (2, 10), "sinkhorn_many_iters": (20, 99),
                "sinkhorn_max_iter": (10, 10)}
    for case in CASES:
        if case[0] not in expected:
            continue
        (p, q), _ = _inputs(case)
        kw = {"eps": 0.01, "max_iter": 100, "thresh": 0.1, **case[2]}
        counts = {sinkhorn_iterate(p, q, kw["eps"], kw["max_iter"], kw["thresh"] * f)[3]
                  for f in (0.98, 1.0, 1.02)}
        lo, hi = expected[case[0]]
        assert len(counts) == 1 and lo <= counts.pop() <= hi, case[0]
    # the cap matters: run to convergence, the capped case has another value
    case = next(c for c in CASES if c[0] == "sinkhorn_max_iter")
    (p, q), _ = _inputs(case)
    capped = spec.sinkhorn_distance(p, q, eps=0.05, max_iter=10, thresh=0.00295)
    assert abs(capped - spec.sinkhorn_distance(p, q, eps=0.05, thresh=0.00295)) > 1e-3 * capped


# ---- mvd_port_total on a tiny case worked out by hand ----
# N = 4 rows, labels (0, 0, 1, 1), 2 classes. Every row of a logit tensor is [0, s]: CE =
# mean(-log softmax) = log(1 + e^s) - s / 2. Features are k * (0, 1, 3, 6) (1-D): batch-hard
# gaps (d_ap - d_an) per anchor are k * (-2, -1, 1, -2), triplet = mean max(0, k g + margin).
# kl_div_original on rows [0, a] (obs) and [0, b] (rep) at T: p = softmax([0, a] / T),
# q = softmax([0, b] / T), value = (q_0 (log q_0 - p_0) + q_1 (log q_1 - p_1)) / 2.
HAND_S = {"logit_v": 0.3, "zlogit_v": -0.4, "logit_i": -1.1, "zlogit_i": 1.6,
          "logit_vs": 2.0, "zlogit_vs": -2.5, "logit_is": 0.7, "zlogit_is": 1.2}
HAND_K = {"feat_v": 1.0, "z_v": 0.35, "feat_i": 0.5, "z_i": 1.5,
          "feat_vs": 0.2, "z_vs": 0.6, "feat_is": 0.8, "z_is": 2.0}
HAND_LABELS = np.array([0, 0, 1, 1], dtype=np.int64)


def _hand_ce(name):
    s = HAND_S[name]
    return math.log(1.0 + math.exp(s)) - s / 2


def _hand_tri(name, margin):
    return sum(max(0.0, HAND_K[name] * g + margin) for g in (-2, -1, 1, -2)) / 4


def _hand_kl(obs, rep, T=1.0):
    p1 = 1.0 / (1.0 + math.exp(-HAND_S[obs] / T))
    q1 = 1.0 / (1.0 + math.exp(-HAND_S[rep] / T))
    return sum(qc * (math.log(qc) - pc) for qc, pc in ((1 - q1, 1 - p1), (q1, p1))) / 2


def _hand_port_total(loss_func, margin, T):
    id_loss = (0.5 * (_hand_ce("logit_v") + _hand_ce("zlogit_v"))
               + 0.5 * (_hand_ce("logit_i") + _hand_ce("zlogit_i"))
               + 0.25 * (_hand_ce("logit_vs") + _hand_ce("zlogit_vs"))
               + 0.25 * (_hand_ce("logit_is") + _hand_ce("zlogit_is")))
    tri = vsd = vcd = 0.0
    if "tri" in loss_func:
        tri = (0.5 * (_hand_tri("feat_v", margin) + _hand_tri("z_v", margin))
               + 0.5 * (_hand_tri("feat_i", margin) + _hand_tri("z_i", margin))
               + 0.25 * (_hand_tri("feat_vs", margin) + _hand_tri("z_vs", margin))
               + 0.25 * (_hand_tri("feat_is", margin) + _hand_tri("z_is", margin)))
    if loss_func == "id+tri+kldiv":
        vsd = _hand_kl("logit_i", "zlogit_i", T) + _hand_kl("logit_v", "zlogit_v", T)
        vcd = 0.5 * _hand_kl("logit_vs", "zlogit_is") + 0.5 * _hand_kl("logit_is", "zlogit_vs")
    return [id_loss + tri + 2 * vsd + 2 * vcd, id_loss, tri, vsd, vcd]


def _hand_outputs():
    outputs = []
    for name in MVD_OUTPUT_NAMES:
        if name in HAND_S:
            outputs.append(np.tile(np.array([[0.0, HAND_S[name]]], dtype=np.float32), (4, 1)))
        else:
            outputs.append((HAND_K[name] * np.array([[0.0], [1.0], [3.0], [6.0]])).astype(np.float32))
    return outputs


@pytest.mark.parametrize("loss_func", MVD_LOSS_FUNCS)
def test_mvd_port_total_by_hand(loss_func):
    """Weights 0.5 / 0.5 / 0.25 / 0.25 per path, VSD at T on each modality branch, VCD at T = 1
    pairing logit_vs with zlogit_is and logit_is with zlogit_vs, total = id + tri + 2 vsd + 2 vcd:
    every term differs between paths, so a changed weight or pairing changes the numbers."""
    margin, T = 0.3, 2.0
    expected = _hand_port_total(loss_func, margin, T)
    outputs = _hand_outputs()
    got = _flat(spec.mvd_port_total(outputs, HAND_LABELS, loss_func, margin, T))
    np.testing.assert_allclose(got, expected, rtol=1e-6)  # float32 rounds s and k (6e-8)
    t_out = tl.mvd_port_total(tuple(torch.tensor(o) for o in outputs), torch.tensor(HAND_LABELS),
                              loss_func, margin, T)
    np.testing.assert_allclose([v.item() for v in _flat(t_out)], expected, rtol=LOSS_VS_SPEC_RTOL)
    m_out = ml.mvd_port_total(tuple(ms.Tensor(o) for o in outputs), ms.Tensor(HAND_LABELS),
                              loss_func, margin, T)
    np.testing.assert_allclose([float(v.asnumpy()) for v in _flat(m_out)], expected,
                               rtol=LOSS_VS_SPEC_RTOL)
    if loss_func == "id+tri+kldiv":
        assert min(abs(t) for t in expected[1:]) > 0.05  # no term is negligible


# The references' defaults (mm01.py; utlis.py SinkhornDistance; trainingcell.py / train.py of
# the port), written out independently of the code.
REFERENCE_DEFAULTS = {
    "rank_loss": {"m1": 0.9, "m2": 1.0, "a1": 2.2, "a2": 2.0, "tval": 1.0},
    "sinkhorn_distance": {"eps": 0.01, "max_iter": 100, "thresh": 0.1},
    "kl_div_original": {"T": 1.0},
    "cross_entropy": {"epsilon": 0.0},
    "mvd_port_total": {"loss_func": "id+tri", "margin": 0.3, "T": 1.0},
    "mvd_original_total": {"epsilon": 0.1, "m1": 0.9, "m2": 1.0, "a1": 2.2, "a2": 2.0, "T": 1.0,
                           "w_ce": 1.0, "w_rank": 1.0, "w_cml": 8.0, "w_vsd": 2.0, "w_vcd": 2.0,
                           "sinkhorn_eps": 0.01, "sinkhorn_iter": 100, "sinkhorn_thresh": 0.1},
}


@pytest.mark.parametrize("name", sorted(REFERENCE_DEFAULTS))
def test_signatures_and_defaults_agree(name):
    """Spec, torch and mindspore take the same parameters with the same defaults, and the
    defaults are the references' values."""
    sigs = [[(p.name, p.default) for p in inspect.signature(getattr(mod, name)).parameters.values()]
            for mod in (spec, tl, ml)]
    assert sigs[0] == sigs[1] == sigs[2]
    defaults = {k: v for k, v in sigs[0] if v is not inspect.Parameter.empty}
    assert defaults == REFERENCE_DEFAULTS[name]
