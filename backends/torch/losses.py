"""PyTorch losses (SPEC section 7), one per numpy spec in :mod:`common.losses`.

Every function takes torch tensors and returns a scalar tensor (``dmmd`` returns the tuple
``(within, between, global)``), with the same name, signature and value as the spec it
implements. Teacher / observation / source sides are detached where SPEC 7 says so. The
parity suite (``tests/parity/test_loss_parity.py``) checks the values against the float64
specs and the input gradients against the mindspore backend.
"""
import math

import torch
import torch.nn.functional as F

from common.losses.classification import DIST_EPS  # the floors and D-MMD bandwidths live with the specs
from common.losses.domain import NORM_EPS, SIGMAS
from common.losses.mvd_original import (DIST_EPS as RANK_DIST_EPS, RANK_DEN_EPS,
                                        SINKHORN_LOG_EPS, SINKHORN_LSE_EPS)
from common.losses.mvd_total import (MVD_KL_FORMS, MVD_LOSS_FUNCS, MVD_OUTPUT_NAMES,
                                     MVD_PATH_WEIGHTS, MVD_VCD_WEIGHT, MVD_VSD_WEIGHT)

__all__ = ["DIST_EPS", "NORM_EPS", "SIGMAS", "pairwise_squared_distances", "pairwise_distances",
           "cross_entropy", "triplet_batch_hard", "kd_kl", "kd_mse", "distance_preserving", "vsd",
           "vcd", "vml", "kl_div_original", "rank_loss", "sinkhorn_distance", "mmd_kernel", "mmd",
           "dmmd_distance_sets", "dmmd", "cosine_distance_matrix", "cosine_relation_kd", "mvd_loss",
           "mvd_port_total", "mvd_original_total"]



def pairwise_squared_distances(a, b=None):
    """Implements common.losses.pairwise_squared_distances: ``D[i, j] = sum_d (a_i - b_j)^2``
    from explicit differences (exact zeros on the diagonal, no cancellation). Computed in
    float32 whatever the input (``--amp``: float16 rounds the 1e-12 floor of
    :func:`pairwise_distances` to 0, whose square root has an infinite gradient)."""
    a = a.float()
    b = a if b is None else b.float()
    diff = a.unsqueeze(1) - b.unsqueeze(0)
    return (diff * diff).sum(dim=-1)


def pairwise_distances(a, b=None):
    """Implements common.losses.pairwise_distances: ``sqrt(max(sum (a-b)^2, 1e-12))``."""
    return torch.sqrt(torch.clamp_min(pairwise_squared_distances(a, b), DIST_EPS))


def cross_entropy(logits, labels, epsilon=0.0):
    """Implements common.losses.cross_entropy (SPEC 7): label-smoothed CE,
    q = (1 - epsilon) * onehot + epsilon / C, mean over the batch."""
    num_classes = logits.shape[1]
    log_p = F.log_softmax(logits, dim=1)
    q = F.one_hot(labels.long(), num_classes).to(log_p.dtype) * (1.0 - epsilon) + epsilon / num_classes
    return -(q * log_p).sum(dim=1).mean()


def _softplus(x):
    """Stable ``log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))`` (same formula in both backends)."""
    return torch.clamp_min(x, 0.0) + torch.log1p(torch.exp(-torch.abs(x)))


def triplet_batch_hard(emb, pids, margin=0.3):
    """Implements common.losses.triplet_batch_hard (SPEC 7): batch-hard triplet, hinge with
    ``margin`` or soft margin ``log(1 + exp(d_ap - d_an))`` when ``margin is None``.

    Anchors without a positive or without a negative are excluded from the mean (spec rule);
    if no anchor has both, ValueError, as in the spec (this costs one host sync per call).
    """
    dist = pairwise_distances(emb)
    same = pids.reshape(-1, 1) == pids.reshape(1, -1)
    eye = torch.eye(same.shape[0], dtype=torch.bool, device=same.device)
    positive = same & ~eye
    negative = ~same
    has_pos = positive.any(dim=1)
    has_neg = negative.any(dim=1)
    valid = has_pos & has_neg
    if not bool(valid.any()):
        raise ValueError("triplet_batch_hard: no anchor has both a positive and a negative; "
                         "expected a batch with >= 2 samples of some pid and >= 2 pids")
    # Distances are >= 1e-6 > 0, so a 0 fill never wins the max over a row with a positive.
    d_ap = torch.where(positive, dist, torch.zeros_like(dist)).amax(dim=1)
    d_an = torch.where(negative, dist, torch.full_like(dist, float("inf"))).amin(dim=1)
    d_an = torch.where(has_neg, d_an, torch.zeros_like(d_an))
    gap = d_ap - d_an
    per_anchor = _softplus(gap) if margin is None else torch.relu(gap + float(margin))
    weights = valid.to(per_anchor.dtype)
    return (per_anchor * weights).sum() / weights.sum()


def kd_kl(student_logits, teacher_logits, tau=10.0):
    """Implements common.losses.kd_kl (SPEC 7 "VKD KD"): ``tau^2 * mean_batch KL(p_T || p_S)``,
    p = softmax(z / tau); the teacher is detached."""
    log_ps = F.log_softmax(student_logits / tau, dim=1)
    log_pt = F.log_softmax(teacher_logits.detach() / tau, dim=1)
    return tau * tau * (log_pt.exp() * (log_pt - log_ps)).sum(dim=1).mean()


def kd_mse(student_logits, teacher_logits):
    """Implements common.losses.kd_mse (SPEC 7 "VKD KD" option): mean of ``(z_S - z_T)^2``;
    the teacher is detached."""
    diff = student_logits - teacher_logits.detach()
    return (diff * diff).mean()


def distance_preserving(student_emb, teacher_emb):
    """Implements common.losses.distance_preserving (SPEC 7 "VKD distance preserving"):
    ``0.5 * mean (D_S - D_T)^2`` over squared-distance matrices; the teacher is detached."""
    diff = pairwise_squared_distances(student_emb) - pairwise_squared_distances(teacher_emb.detach())
    return 0.5 * (diff * diff).mean()


def _kl_batchmean(target_logits, input_logits, T):
    log_p_t = F.log_softmax(target_logits / T, dim=1)
    log_p_i = F.log_softmax(input_logits / T, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_i)).sum() / target_logits.shape[0]


def vsd(obs_logits, rep_logits, T=1.0):
    """Implements common.losses.vsd (SPEC 7 "VSD"; MVD eq. 8): ``KL(p(y|obs) || p(y|z))``,
    p = softmax(logits / T), batchmean; the observation side is detached."""
    return _kl_batchmean(obs_logits.detach(), rep_logits, T)


def vcd(obs_v, rep_i, obs_i, rep_v, T=1.0):
    """Implements common.losses.vcd (SPEC 7 "VCD"; MVD eq. 9):
    ``0.5 * vsd(obs_v, rep_i, T) + 0.5 * vsd(obs_i, rep_v, T)`` (observations detached)."""
    return 0.5 * vsd(obs_v, rep_i, T) + 0.5 * vsd(obs_i, rep_v, T)


def vml(rep_v_logits, rep_i_logits):
    """Implements common.losses.vml (SPEC 7 "VML"; MVD eq. 10): Jensen-Shannon divergence
    ``0.5 KL(p || m) + 0.5 KL(q || m)``, m = (p + q) / 2, each KL batchmean; both sides train."""
    log_p = F.log_softmax(rep_v_logits, dim=1)
    log_q = F.log_softmax(rep_i_logits, dim=1)
    p, q = log_p.exp(), log_q.exp()
    log_m = torch.log(0.5 * (p + q))
    bsz = rep_v_logits.shape[0]
    return 0.5 * (p * (log_p - log_m)).sum() / bsz + 0.5 * (q * (log_q - log_m)).sum() / bsz


def kl_div_original(obs_logits, rep_logits, T=1.0):
    """Implements common.losses.kl_div_original (original MVD reid/trainers.py VSD / VCD):
    ``kl_div(input=softmax(obs / T), target=softmax(rep / T))``, reduction 'mean' = mean over
    B x C of ``q * (log q - p)``, q = softmax(rep / T), p = softmax(obs / T); obs detached."""
    p = F.softmax(obs_logits.detach() / T, dim=1)
    log_q = F.log_softmax(rep_logits / T, dim=1)
    return (log_q.exp() * (log_q - p)).mean()


def rank_loss(feats, pids, modality, m1=0.9, m2=1.0, a1=2.2, a2=2.0, tval=1.0):
    """Implements common.losses.rank_loss (original MVD utlis.py Rank_loss, vectorised with
    masks): L2-normalised features, expansion distances, intra / cross-modality positive
    hinges over ``n + 1e-5`` and exp-weighted negatives (d < a) over ``sum w + 1e-5``, mean
    over anchors. ``modality`` (N,) is the reference's ``sub`` (0 RGB, 1 IR). Float32 inputs
    (``--amp``: see :func:`pairwise_squared_distances`)."""
    feats = feats.float()
    norms = torch.sqrt((feats * feats).sum(dim=1, keepdim=True))
    x = feats / torch.clamp_min(norms, NORM_EPS)
    sq = (x * x).sum(dim=1)
    dist = torch.sqrt(torch.clamp_min(sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (x @ x.t()),
                                      RANK_DIST_EPS))
    same = pids.reshape(-1, 1) == pids.reshape(1, -1)
    intra = modality.reshape(-1, 1) == modality.reshape(1, -1)
    eye = torch.eye(same.shape[0], dtype=torch.bool, device=same.device)
    positive = same & ~eye
    negative = ~same
    zero = torch.zeros_like(dist)
    per_anchor = torch.zeros_like(dist[:, 0])
    for mask_mod, m, a in ((intra, m1, a1), (~intra, m2, a2)):
        pos = positive & mask_mod
        hinge = torch.where(pos, torch.relu(dist + (m - a)), zero)
        per_anchor = per_anchor + hinge.sum(dim=1) / (pos.sum(dim=1).to(dist.dtype) + RANK_DEN_EPS)
        neg = negative & mask_mod & (dist < a)
        gap = torch.where(neg, a - dist, zero)
        w = torch.where(neg, torch.exp(tval * gap), zero)
        per_anchor = per_anchor + (w * gap).sum(dim=1) / (w.sum(dim=1) + RANK_DEN_EPS)
    return per_anchor.mean()


def _guarded_lse(a, dim):
    """The reference's ``log(sum exp(a) + 1e-6)`` (no max shift)."""
    return torch.log(torch.exp(a).sum(dim=dim) + SINKHORN_LSE_EPS)


def sinkhorn_distance(p, q, eps=0.01, max_iter=100, thresh=0.1):
    """Implements common.losses.sinkhorn_distance (original MVD utlis.py SinkhornDistance on
    (N, C) inputs): log-domain Sinkhorn with uniform marginals, stopping after the first
    iteration whose ``sum |u - u_prev|`` < thresh (one host sync per iteration, as in the
    reference); u and v are not detached, so gradients flow through the iterations."""
    cost = pairwise_squared_distances(p, q)
    log_marginal = math.log(1.0 / p.shape[0] + SINKHORN_LOG_EPS)
    u = torch.zeros_like(cost[:, 0])
    v = torch.zeros_like(cost[0])
    for _ in range(int(max_iter)):
        u_prev = u
        u = eps * (log_marginal - _guarded_lse((u.unsqueeze(1) + v.unsqueeze(0) - cost) / eps, 1)) + u
        v = eps * (log_marginal - _guarded_lse((u.unsqueeze(1) + v.unsqueeze(0) - cost) / eps, 0)) + v
        if (u - u_prev).abs().sum().item() < thresh:
            break
    return (torch.exp((u.unsqueeze(1) + v.unsqueeze(0) - cost) / eps) * cost).sum()


def mmd_kernel(a, b):
    """Implements common.losses.mmd_kernel for sets a (n, d), b (m, d): the (n, m) Gram matrix
    of ``sum_sigma exp(-|a-b|^2 / (2 sigma))`` over SIGMAS."""
    sq = pairwise_squared_distances(a, b)
    coeff = torch.tensor([-0.5 / s for s in SIGMAS], dtype=sq.dtype, device=sq.device)
    return torch.exp(sq.unsqueeze(-1) * coeff).sum(dim=-1)


def mmd(x, y):
    """Implements common.losses.mmd: biased squared MMD, diagonals included,
    ``mean k(x, x) + mean k(y, y) - 2 mean k(x, y)``."""
    return mmd_kernel(x, x).mean() + mmd_kernel(y, y).mean() - 2.0 * mmd_kernel(x, y).mean()


def dmmd_distance_sets(emb, P, K):
    """Implements common.losses.dmmd_distance_sets: ``(within, between)`` row sets of the
    identity-major P x K batch's squared-distance blocks, in the spec's block order."""
    P, K = int(P), int(K)
    if P < 2 or K < 1 or emb.shape[0] != P * K:
        raise ValueError(f"dmmd_distance_sets: expected an identity-major (P*K, D) batch with "
                         f"P >= 2, K >= 1; got {emb.shape[0]} rows for P={P}, K={K}")
    dist = pairwise_squared_distances(emb)

    def block(i, j):
        return dist[i * K:(i + 1) * K, j * K:(j + 1) * K]

    within = torch.cat([block(i, i) for i in range(P)], dim=0)
    between = [block(0, 1)]
    for i in range(1, P):
        between.extend(block(i, j) for j in range(P) if j != i)
    return within, torch.cat(between, dim=0)


def dmmd(src_emb, tgt_emb, P, K, global_source_grad=False):
    """Implements common.losses.dmmd (SPEC 7 "D-MMD"): returns the tuple
    ``(within, between, global)`` = (mmd of within sets, mmd of between sets,
    mmd(src_emb, tgt_emb)); the source side is detached (sets and features), except the
    source features of the global term when ``global_source_grad`` (MTDA's D-MMD loss)."""
    src = src_emb.detach()
    within_s, between_s = dmmd_distance_sets(src, P, K)
    within_t, between_t = dmmd_distance_sets(tgt_emb, P, K)
    return (mmd(within_s, within_t), mmd(between_s, between_t),
            mmd(src_emb if global_source_grad else src, tgt_emb))


def cosine_distance_matrix(feats):
    """Implements common.losses.cosine_distance_matrix: ``1 - F_hat F_hat^T``, rows
    L2-normalised with the norm floored at 1e-12."""
    norms = torch.sqrt((feats * feats).sum(dim=1, keepdim=True))
    f_hat = feats / torch.clamp_min(norms, NORM_EPS)
    return 1.0 - f_hat @ f_hat.t()


def cosine_relation_kd(student_emb, teacher_emb):
    """Implements common.losses.cosine_relation_kd (SPEC 7 "KD-REID"):
    ``|| Dcos(student) - Dcos(teacher) ||_F``; the teacher is detached."""
    diff = cosine_distance_matrix(student_emb) - cosine_distance_matrix(teacher_emb.detach())
    return torch.sqrt((diff * diff).sum())


def mvd_loss(outputs, labels, loss_func="id+tri", margin=0.3, T=1.0, kl_form="vsd",
             vml_weight=0.0):
    """Implements common.losses.mvd_total (SPEC 7 "MVD totals"); returns
    ``(total, id_loss, tri_loss, kl_loss)`` scalar tensors.

    ``outputs`` is the MVD network's 15-tuple (feat_v, bn_v, logit_v, z_v, zlogit_v, feat_i,
    bn_i, logit_i, z_i, zlogit_i, feat_s, bn_s, logit_s, z_s, zlogit_s); v/i heads have B rows,
    shared heads 2B rows (rgb first); ``labels`` (B,), y2 = concat(labels, labels):

    * id = 1/2 [CE(logit_v, y) + CE(zlogit_v, y)] + 1/2 [CE(logit_i, y) + CE(zlogit_i, y)]
      + 1/4 CE(logit_s, y2) + 1/4 CE(zlogit_s, y2)
    * tri = triplet_batch_hard(bn_s, y2, margin) if 'tri' in loss_func, else 0
    * kl (only for 'id+tri+kldiv') = 2 [vsd(logit_v, zlogit_v, T) + vsd(logit_i, zlogit_i, T)]
      + 2 vcd(obs_v=logit_s[:B], rep_i=zlogit_s[B:], obs_i=logit_s[B:], rep_v=zlogit_s[:B], T)
      + vml_weight * vml(zlogit_v, zlogit_i); with kl_form='original' every vsd(a, b) (also
      inside vcd) is kl_div_original(a, b) (T unused), else 0
    * total = id + tri + kl
    """
    if loss_func not in MVD_LOSS_FUNCS:
        raise ValueError(f"mvd_loss: loss_func must be one of {MVD_LOSS_FUNCS}, got {loss_func!r}")
    if kl_form not in MVD_KL_FORMS:
        raise ValueError(f"mvd_loss: kl_form must be one of {MVD_KL_FORMS}, got {kl_form!r}")
    if len(outputs) != 15:
        raise ValueError(f"mvd_loss: expected the 15-tuple of MVD outputs, got {len(outputs)} items")
    (_, _, logit_v, _, zlogit_v, _, _, logit_i, _, zlogit_i,
     _, bn_s, logit_s, _, zlogit_s) = outputs
    bsz = labels.shape[0]
    y2 = torch.cat([labels, labels], dim=0)
    id_loss = (0.5 * (cross_entropy(logit_v, labels) + cross_entropy(zlogit_v, labels))
               + 0.5 * (cross_entropy(logit_i, labels) + cross_entropy(zlogit_i, labels))
               + 0.25 * cross_entropy(logit_s, y2) + 0.25 * cross_entropy(zlogit_s, y2))
    zero = torch.zeros((), dtype=id_loss.dtype, device=id_loss.device)
    tri_loss = triplet_batch_hard(bn_s, y2, margin) if "tri" in loss_func else zero
    kl_loss = zero
    if loss_func == "id+tri+kldiv":
        if kl_form == "vsd":
            def distill(obs, rep):
                return vsd(obs, rep, T)
        else:
            distill = kl_div_original
        cross = (0.5 * distill(logit_s[:bsz], zlogit_s[bsz:])
                 + 0.5 * distill(logit_s[bsz:], zlogit_s[:bsz]))
        kl_loss = 2.0 * (distill(logit_v, zlogit_v) + distill(logit_i, zlogit_i)) + 2.0 * cross
        if vml_weight:
            kl_loss = kl_loss + vml_weight * vml(zlogit_v, zlogit_i)
    return id_loss + tri_loss + kl_loss, id_loss, tri_loss, kl_loss


def _mvd_paths(outputs, what):
    """The 16-tuple (common.losses.mvd_total.MVD_OUTPUT_NAMES, path-major) as four
    ``(logit, feat, zlogit, z)`` tuples for the paths v, i, vs, is."""
    if len(outputs) != len(MVD_OUTPUT_NAMES):
        raise ValueError(f"{what}: expected the 16-tuple {MVD_OUTPUT_NAMES}, got {len(outputs)} items")
    return tuple(tuple(outputs[4 * k:4 * k + 4]) for k in range(4))


def _vsd_vcd_original(paths, T):
    """The original trainer's unweighted VSD and VCD (common.losses.mvd_total)."""
    (logit_v, _, zlogit_v, _), (logit_i, _, zlogit_i, _), (logit_vs, _, zlogit_vs, _), \
        (logit_is, _, zlogit_is, _) = paths
    vsd_term = kl_div_original(logit_i, zlogit_i, T) + kl_div_original(logit_v, zlogit_v, T)
    vcd_term = 0.5 * kl_div_original(logit_vs, zlogit_is) + 0.5 * kl_div_original(logit_is, zlogit_vs)
    return vsd_term, vcd_term


def mvd_port_total(outputs, labels, loss_func="id+tri", margin=0.3, T=1.0):
    """Implements common.losses.mvd_port_total (MindSpore port trainingcell.py, plus the
    original's VSD / VCD for 'id+tri+kldiv'); returns ``(total, (id, tri, vsd, vcd))``:
    id = sum_p w_p [CE(logit_p) + CE(zlogit_p)], tri = sum_p w_p [triplet(feat_p) +
    triplet(z_p)], w = (0.5, 0.5, 0.25, 0.25) over v, i, vs, is; total = id + tri + 2 vsd + 2 vcd."""
    if loss_func not in MVD_LOSS_FUNCS:
        raise ValueError(f"mvd_port_total: loss_func must be one of {MVD_LOSS_FUNCS}, got {loss_func!r}")
    paths = _mvd_paths(outputs, "mvd_port_total")
    id_loss = sum(w * (cross_entropy(logit, labels) + cross_entropy(zlogit, labels))
                  for w, (logit, _, zlogit, _) in zip(MVD_PATH_WEIGHTS, paths))
    zero = torch.zeros_like(id_loss)
    tri_loss = vsd_term = vcd_term = zero
    if "tri" in loss_func:
        tri_loss = sum(w * (triplet_batch_hard(feat, labels, margin) + triplet_batch_hard(z, labels, margin))
                       for w, (_, feat, _, z) in zip(MVD_PATH_WEIGHTS, paths))
    if loss_func == "id+tri+kldiv":
        vsd_term, vcd_term = _vsd_vcd_original(paths, T)
    total = id_loss + tri_loss + MVD_VSD_WEIGHT * vsd_term + MVD_VCD_WEIGHT * vcd_term
    return total, (id_loss, tri_loss, vsd_term, vcd_term)


def mvd_original_total(outputs, labels, modality, epsilon=0.1, m1=0.9, m2=1.0, a1=2.2, a2=2.0,
                       T=1.0, w_ce=1.0, w_rank=1.0, w_cml=8.0, w_vsd=2.0, w_vcd=2.0,
                       sinkhorn_eps=0.01, sinkhorn_iter=100, sinkhorn_thresh=0.1):
    """Implements common.losses.mvd_original_total (original MVD reid/trainers.py, mm01.py
    weights); returns ``(total, (ce, rank, cml, vsd, vcd))``: label-smoothed CE and rank_loss
    with the path weights, cml = sinkhorn_distance(softmax(logit_i), softmax(logit_v)),
    total = w_ce ce + w_rank rank + w_cml cml + w_vsd vsd + w_vcd vcd."""
    paths = _mvd_paths(outputs, "mvd_original_total")
    ce = sum(w * (cross_entropy(logit, labels, epsilon) + cross_entropy(zlogit, labels, epsilon))
             for w, (logit, _, zlogit, _) in zip(MVD_PATH_WEIGHTS, paths))
    rank = sum(w * (rank_loss(feat, labels, modality, m1, m2, a1, a2)
                    + rank_loss(z, labels, modality, m1, m2, a1, a2))
               for w, (_, feat, _, z) in zip(MVD_PATH_WEIGHTS, paths))
    logit_v, logit_i = paths[0][0], paths[1][0]
    cml = sinkhorn_distance(F.softmax(logit_i, dim=1), F.softmax(logit_v, dim=1),
                            sinkhorn_eps, sinkhorn_iter, sinkhorn_thresh)
    vsd_term, vcd_term = _vsd_vcd_original(paths, T)
    total = w_ce * ce + w_rank * rank + w_cml * cml + w_vsd * vsd_term + w_vcd * vcd_term
    return total, (ce, rank, cml, vsd_term, vcd_term)
