"""Numpy reference specifications of every loss (SPEC section 7).

Plain float64 numpy functions returning Python floats; the torch and mindspore backends
mirror these names and the parity suite checks their values against them.
"""
from common.losses.classification import (cross_entropy, log_softmax, pairwise_distances,
                                          pairwise_squared_distances, softmax,
                                          triplet_batch_hard)
from common.losses.domain import (SIGMAS, cosine_distance_matrix, cosine_relation_kd, dmmd,
                                  dmmd_distance_sets, mmd, mmd_kernel)
from common.losses.mvd import vcd, vml, vsd
from common.losses.mvd_original import kl_div_original, rank_loss, sinkhorn_distance
from common.losses.vkd import distance_preserving, kd_kl, kd_mse, vkd_student_total
from common.losses.mvd_total import mvd_original_total, mvd_port_total, mvd_total

__all__ = [
    "cross_entropy", "triplet_batch_hard", "pairwise_distances", "pairwise_squared_distances",
    "softmax", "log_softmax",
    "kd_kl", "kd_mse", "distance_preserving", "vkd_student_total",
    "vsd", "vcd", "vml", "kl_div_original", "rank_loss", "sinkhorn_distance",
    "SIGMAS", "mmd_kernel", "mmd", "dmmd_distance_sets", "dmmd", "cosine_distance_matrix",
    "cosine_relation_kd", "mvd_total", "mvd_port_total", "mvd_original_total",
]
