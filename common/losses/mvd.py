"""Numpy reference specs of the MVD distillation losses (SPEC section 7: VSD, VCD, VML;
Tian et al., "Farewell to Mutual Information: Variational Distillation for Cross-Modal
Person Re-Identification", CVPR 2021, eqs. 8-10)."""
import numpy as np

from common.losses.classification import as_float64, log_softmax


def _pair(a, b, names):
    x = as_float64(a, names[0], 2)
    y = as_float64(b, names[1], 2)
    if x.shape != y.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same (B, C) shape, "
                         f"got {x.shape} and {y.shape}")
    return x, y


def vsd(obs_logits, rep_logits, T=1.0):
    """Variational self-distillation (SPEC 7 "MVD ... (VSD)"; MVD eq. 8).

    ``KL(p(y|obs) || p(y|z))`` with ``p = softmax(logits / T)``, batchmean reduction:
    ``sum_{b,c} p_obs (log p_obs - log p_rep) / B``. The observation side is the target
    (detached in the backends).
    """
    obs, rep = _pair(obs_logits, rep_logits, ("obs_logits", "rep_logits"))
    log_p_obs = log_softmax(obs / T)
    log_p_rep = log_softmax(rep / T)
    return float((np.exp(log_p_obs) * (log_p_obs - log_p_rep)).sum() / obs.shape[0])


def vcd(obs_v, rep_i, obs_i, rep_v, T=1.0):
    """Variational cross-distillation (SPEC 7 "Variational cross-distillation (VCD)"; MVD eq. 9).

    The visible observation teaches the infrared representation and vice versa, half each:
    ``0.5 * vsd(obs_v, rep_i, T) + 0.5 * vsd(obs_i, rep_v, T)``.
    """
    return float(0.5 * vsd(obs_v, rep_i, T) + 0.5 * vsd(obs_i, rep_v, T))


def vml(rep_v_logits, rep_i_logits):
    """Variational mutual learning (SPEC 7 "VML"; MVD eq. 10): Jensen-Shannon divergence.

    p = softmax(rep_v), q = softmax(rep_i), m = (p + q) / 2;
    ``0.5 * KL(p || m) + 0.5 * KL(q || m)``, each KL batchmean (sum over classes and batch,
    divided by B).
    """
    zv, zi = _pair(rep_v_logits, rep_i_logits, ("rep_v_logits", "rep_i_logits"))
    log_p = log_softmax(zv)
    log_q = log_softmax(zi)
    p, q = np.exp(log_p), np.exp(log_q)
    log_m = np.log(0.5 * (p + q))
    bsz = zv.shape[0]
    kl_pm = (p * (log_p - log_m)).sum() / bsz
    kl_qm = (q * (log_q - log_m)).sum() / bsz
    return float(0.5 * kl_pm + 0.5 * kl_qm)

