"""Numpy reference specs of the VKD losses (SPEC section 7: "VKD KD", "VKD distance
preserving", "VKD student total"; Porrello et al., "Robust Re-Identification by Multiple
Views Knowledge Distillation", ECCV 2020, eqs. 2-4)."""
import numpy as np

from common.losses.classification import (as_float64, cross_entropy, log_softmax,
                                          pairwise_squared_distances, triplet_batch_hard)


def _same_shape(a, b, what):
    if a.shape != b.shape:
        raise ValueError(f"{what}: student and teacher shapes differ ({a.shape} vs {b.shape})")


def kd_kl(student_logits, teacher_logits, tau=10.0):
    """VKD knowledge-distillation term (SPEC 7 "VKD KD"; VKD eq. 2).

    ``tau^2 * mean_batch sum_c p_T (log p_T - log p_S)`` with ``p = softmax(z / tau)``; the
    teacher is a constant (detached in the backends).
    """
    zs = as_float64(student_logits, "student_logits", 2)
    zt = as_float64(teacher_logits, "teacher_logits", 2)
    _same_shape(zs, zt, "kd_kl")
    log_ps = log_softmax(zs / tau)
    log_pt = log_softmax(zt / tau)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(axis=1).mean()
    return float(tau * tau * kl)


def kd_mse(student_logits, teacher_logits):
    """VKD KD option (SPEC 7 "VKD KD", "Option: MSE between logits"): mean over all B x C
    entries of ``(z_S - z_T)^2``."""
    zs = as_float64(student_logits, "student_logits", 2)
    zt = as_float64(teacher_logits, "teacher_logits", 2)
    _same_shape(zs, zt, "kd_mse")
    return float(((zs - zt) ** 2).mean())


def distance_preserving(student_emb, teacher_emb):
    """VKD distance-preserving term (SPEC 7 "VKD distance preserving"; VKD eq. 3).

    D[i, j] = squared Euclidean distance between the batch's embeddings (teacher: mean of N
    frames, student: mean of M frames; the caller passes the already averaged embeddings);
    loss = ``0.5 * mean over all B^2 entries of (D_S - D_T)^2``.
    """
    es = as_float64(student_emb, "student_emb", 2)
    et = as_float64(teacher_emb, "teacher_emb", 2)
    if es.shape[0] != et.shape[0]:
        raise ValueError(f"distance_preserving: batch sizes differ ({es.shape[0]} vs {et.shape[0]})")
    diff = pairwise_squared_distances(es) - pairwise_squared_distances(et)
    return float(0.5 * (diff * diff).mean())


def vkd_student_total(student_emb, student_logits, teacher_emb, teacher_logits, pids,
                      tau=10.0, w_dp=1e-4, w_kd=0.1):
    """VKD student objective (SPEC 7 "VKD student total"; VKD eq. 4).

    ``triplet_batch_hard(e_S, pids, margin=None) + cross_entropy(z_S, pids)
    + w_dp * distance_preserving(e_S, e_T) + w_kd * kd_kl(z_S, z_T, tau)`` (kd_kl already
    includes the tau^2 factor). Labels for the CE are ``pids`` (train pids are 0..C-1).
    """
    return float(triplet_batch_hard(student_emb, pids, margin=None)
                 + cross_entropy(student_logits, pids)
                 + w_dp * distance_preserving(student_emb, teacher_emb)
                 + w_kd * kd_kl(student_logits, teacher_logits, tau))
