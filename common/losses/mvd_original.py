"""Numpy reference specs of the losses of the original MVD PyTorch code (Tian et al.,
"Farewell to Mutual Information: Variational Distillation for Cross-Modal Person
Re-Identification", CVPR 2021; repository
FutabaSakuraXD/Farewell-to-Mutual-Information-Variational-Distiilation-for-Cross-Modal-Person-Re-identification,
files utlis.py and reid/trainers.py): the cross-modal rank loss, the Sinkhorn distance of its
"conventional mutual learning" term and its kl_div call used for VSD / VCD.

Every function follows the reference arithmetic, constants included (the ``1e-5``
denominators of the rank loss, the ``1e-8`` / ``1e-6`` guards of the Sinkhorn updates), in
float64, and returns a Python float. Where the paper and this code differ, the code decides.
"""
import numpy as np

from common.losses.classification import as_float64, log_softmax

# Floor under a feature norm (torch.nn.functional.normalize's eps) and under a squared
# distance before its square root (Rank_loss.euclidean_dist).
NORM_EPS = 1e-12
DIST_EPS = 1e-12
# Guard added to the counts / weight sums of the rank loss (utlis.py Rank_loss.rank_loss).
RANK_DEN_EPS = 1e-5
# Guards of the Sinkhorn log-domain updates (utlis.py SinkhornDistance).
SINKHORN_LOG_EPS = 1e-8   # log(mu + 1e-8)
SINKHORN_LSE_EPS = 1e-6   # log(sum exp(.) + 1e-6)


def normalize_rows(x):
    """``x / max(||x||_2, 1e-12)`` row-wise, as torch.nn.functional.normalize(x, dim=1)."""
    return x / np.maximum(np.sqrt((x * x).sum(axis=1, keepdims=True)), NORM_EPS)


def expansion_distances(x):
    """Euclidean distances by the expansion ``|x_i|^2 + |x_j|^2 - 2 x_i.x_j``, clamped at
    1e-12, then sqrt (utlis.py Rank_loss.euclidean_dist, with y = x)."""
    sq = (x * x).sum(axis=1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, DIST_EPS))


def rank_loss(feats, pids, modality, m1=0.9, m2=1.0, a1=2.2, a2=2.0, tval=1.0):
    """Cross-modal rank loss (utlis.py ``Rank_loss``, norm=True; ``modality`` is the
    reference's ``sub``: 0 = RGB image, 1 = IR image). Defaults are mm01.py's
    --margin_1/--margin_2/--alpha_1/--alpha_2 (they override the class defaults
    1.0/1.5/2.4/2.2) and the class's tval.

    Features are L2-normalised, d = :func:`expansion_distances`. For anchor i, positives are
    the other rows with its pid (self excluded), negatives the rows with another pid; each set
    is split into intra-modality (same ``modality`` as i: margin m1, threshold a1) and
    cross-modality (m2, a2). Per anchor::

        sum_pos_intra relu(d + m1 - a1) / (n_pos_intra + 1e-5)
      + sum_pos_cross relu(d + m2 - a2) / (n_pos_cross + 1e-5)
      + sum_neg_intra,d<a1 (a1 - d) w / (sum w + 1e-5),  w = exp(tval (a1 - d))
      + sum_neg_cross,d<a2 (a2 - d) w / (sum w + 1e-5),  w = exp(tval (a2 - d))

    and the loss is the mean over anchors.
    """
    x = normalize_rows(as_float64(feats, "feats", 2))
    pid = np.asarray(pids).reshape(-1)
    sub = np.asarray(modality).reshape(-1)
    n = x.shape[0]
    if pid.shape[0] != n or sub.shape[0] != n:
        raise ValueError(f"rank_loss: {n} feature rows but {pid.shape[0]} pids and "
                         f"{sub.shape[0]} modality entries")
    dist = expansion_distances(x)
    same = pid[:, None] == pid[None, :]
    intra = sub[:, None] == sub[None, :]
    positive = same & ~np.eye(n, dtype=bool)
    negative = ~same
    per_anchor = np.zeros(n)
    for mask_mod, m, a in ((intra, m1, a1), (~intra, m2, a2)):
        pos = positive & mask_mod
        hinge = np.where(pos, np.maximum(dist + m - a, 0.0), 0.0)
        per_anchor += hinge.sum(axis=1) / (pos.sum(axis=1) + RANK_DEN_EPS)
        neg = negative & mask_mod & (dist < a)
        w = np.where(neg, np.exp(tval * np.where(neg, a - dist, 0.0)), 0.0)
        per_anchor += (w * (a - dist)).sum(axis=1) / (w.sum(axis=1) + RANK_DEN_EPS)
    return float(per_anchor.mean())


def sinkhorn_cost_matrix(p, q):
    """``C[i, j] = sum_c |p_ic - q_jc|^2`` (utlis.py SinkhornDistance._cost_matrix, p=2)."""
    diff = p[:, None, :] - q[None, :, :]
    return (diff * diff).sum(axis=-1)


def _log_sum_exp_guarded(a, axis):
    """The reference's ``lse``: ``log(sum exp(a) + 1e-6)`` (no max shift)."""
    return np.log(np.exp(a).sum(axis=axis) + SINKHORN_LSE_EPS)


def sinkhorn_iterate(p, q, eps=0.01, max_iter=100, thresh=0.1):
    """Run the reference's Sinkhorn loop; returns ``(cost, u, v, iterations)``.

    Uniform marginals mu = nu = 1/N (N = rows of ``p``, as in the reference); u = v = 0; each
    iteration: ``u += eps (log(mu + 1e-8) - lse(M))``, then with the new u
    ``v += eps (log(nu + 1e-8) - lse(M^T))``, ``M = (-C + u_i + v_j) / eps``; err =
    ``sum |u - u_prev|``; stop after the first iteration with err < thresh (or max_iter).
    cost = ``sum(exp(M) * C)``.
    """
    p = as_float64(p, "p", 2)
    q = as_float64(q, "q", 2)
    if p.shape != q.shape:
        raise ValueError(f"sinkhorn_distance: p and q must have the same (N, C) shape, "
                         f"got {p.shape} and {q.shape}")
    cost_mat = sinkhorn_cost_matrix(p, q)
    n = p.shape[0]
    log_marginal = np.log(1.0 / n + SINKHORN_LOG_EPS)
    u = np.zeros(n)
    v = np.zeros(n)

    def modified_cost(u, v):
        return (-cost_mat + u[:, None] + v[None, :]) / eps

    iterations = 0
    for _ in range(int(max_iter)):
        u_prev = u
        u = eps * (log_marginal - _log_sum_exp_guarded(modified_cost(u, v), axis=1)) + u
        v = eps * (log_marginal - _log_sum_exp_guarded(modified_cost(u, v), axis=0)) + v
        iterations += 1
        if np.abs(u - u_prev).sum() < thresh:
            break
    cost = float((np.exp(modified_cost(u, v)) * cost_mat).sum())
    return cost, u, v, iterations


def sinkhorn_distance(p, q, eps=0.01, max_iter=100, thresh=0.1):
    """Entropic Wasserstein (Sinkhorn) distance between the rows of ``p`` and ``q`` (N, C)
    (utlis.py ``SinkhornDistance``, 2-D inputs, reduction 'mean' of one value; eps and
    max_iter are its defaults, thresh its hard-coded 1e-1); see :func:`sinkhorn_iterate`.
    The trainer applies it to ``softmax(logit_i)`` and ``softmax(logit_v)`` (reid/trainers.py,
    conventional_ML)."""
    return sinkhorn_iterate(p, q, eps, max_iter, thresh)[0]


def kl_div_original(obs_logits, rep_logits, T=1.0):
    """The reference's VSD / VCD term (reid/trainers.py): ``kl_div(input=softmax(obs / T),
    target=softmax(rep / T))`` with torch's default reduction 'mean' and probabilities, not
    log-probabilities, as ``input``.

    With p = softmax(obs / T) (the observation, detached in the backends) and
    q = softmax(rep / T) (the representation, trained), torch computes the mean over all
    B x C elements of ``q * (log q - p)``. This is not a KL divergence (the paper's eq. 8 is
    :func:`common.losses.mvd.vsd`); its gradient w.r.t. rep is that of -H(q) - <q, p>.
    """
    obs = as_float64(obs_logits, "obs_logits", 2)
    rep = as_float64(rep_logits, "rep_logits", 2)
    if obs.shape != rep.shape:
        raise ValueError(f"kl_div_original: obs_logits and rep_logits must have the same (B, C) "
                         f"shape, got {obs.shape} and {rep.shape}")
    p = np.exp(log_softmax(obs / T))
    log_q = log_softmax(rep / T)
    return float((np.exp(log_q) * (log_q - p)).mean())
