"""Numpy reference spec of the MVD training objective (SPEC section 7, "MVD totals";
Tian et al., "Farewell to Mutual Information: Variational Distillation for Cross-Modal
Person Re-Identification", CVPR 2021, eq. 11), built from the common.losses specs."""
import numpy as np

from common.losses.classification import cross_entropy, triplet_batch_hard
from common.losses.mvd import kl_div_original, vml, vsd

MVD_LOSS_FUNCS = ("id", "id+tri", "id+tri+kldiv")
MVD_KL_FORMS = ("vsd", "original")
MVD_OUTPUT_NAMES = ("feat_v", "bn_v", "logit_v", "z_v", "zlogit_v",
                    "feat_i", "bn_i", "logit_i", "z_i", "zlogit_i",
                    "feat_s", "bn_s", "logit_s", "z_s", "zlogit_s")


def mvd_total(outputs, labels, loss_func="id+tri", margin=0.3, T=1.0, kl_form="vsd",
              vml_weight=0.0):
    """MVD total loss (SPEC 7 "MVD totals", ``--loss-func``); returns floats
    ``(total, id, tri, kl)``.

    ``outputs`` is the MVD network's 15-tuple in :data:`MVD_OUTPUT_NAMES` order; the v / i
    heads have B rows, the shared heads 2B rows (rgb first, then ir); ``labels`` (B,) and
    y2 = concat(labels, labels):

    * id = 1/2 [CE(logit_v, y) + CE(zlogit_v, y)] + 1/2 [CE(logit_i, y) + CE(zlogit_i, y)]
      + 1/4 CE(logit_s, y2) + 1/4 CE(zlogit_s, y2)
    * tri = triplet_batch_hard(bn_s, y2, margin) if 'tri' in loss_func, else 0
    * kl = 2 [vsd(logit_v, zlogit_v, T) + vsd(logit_i, zlogit_i, T)]
      + 2 vcd(obs_v=logit_s[:B], rep_i=zlogit_s[B:], obs_i=logit_s[B:], rep_v=zlogit_s[:B], T)
      + vml_weight * vml(zlogit_v, zlogit_i)   if loss_func == 'id+tri+kldiv', else 0.
      With kl_form='original' every vsd(a, b), also the two inside vcd, is replaced by
      kl_div_original(a, b) (which has no temperature).
    * total = id + tri + kl
    """
    if loss_func not in MVD_LOSS_FUNCS:
        raise ValueError(f"mvd_total: loss_func must be one of {MVD_LOSS_FUNCS}, got {loss_func!r}")
    if kl_form not in MVD_KL_FORMS:
        raise ValueError(f"mvd_total: kl_form must be one of {MVD_KL_FORMS}, got {kl_form!r}")
    if len(outputs) != len(MVD_OUTPUT_NAMES):
        raise ValueError(f"mvd_total: expected the 15-tuple {MVD_OUTPUT_NAMES}, "
                         f"got {len(outputs)} items")
    out = dict(zip(MVD_OUTPUT_NAMES, (np.asarray(o, dtype=np.float64) for o in outputs)))
    y = np.asarray(labels).reshape(-1)
    bsz = y.shape[0]
    if out["logit_s"].shape[0] != 2 * bsz or out["logit_v"].shape[0] != bsz:
        raise ValueError(f"mvd_total: expected B={bsz} rows in the v/i heads and 2B in the "
                         f"shared heads, got {out['logit_v'].shape[0]} and {out['logit_s'].shape[0]}")
    y2 = np.concatenate([y, y])
    id_loss = (0.5 * (cross_entropy(out["logit_v"], y) + cross_entropy(out["zlogit_v"], y))
               + 0.5 * (cross_entropy(out["logit_i"], y) + cross_entropy(out["zlogit_i"], y))
               + 0.25 * cross_entropy(out["logit_s"], y2)
               + 0.25 * cross_entropy(out["zlogit_s"], y2))
    tri_loss = triplet_batch_hard(out["bn_s"], y2, margin) if "tri" in loss_func else 0.0
    kl_loss = 0.0
    if loss_func == "id+tri+kldiv":
        if kl_form == "vsd":
            def distill(obs, rep):
                return vsd(obs, rep, T)
        else:
            distill = kl_div_original
        logit_s, zlogit_s = out["logit_s"], out["zlogit_s"]
        cross = 0.5 * distill(logit_s[:bsz], zlogit_s[bsz:]) + 0.5 * distill(logit_s[bsz:], zlogit_s[:bsz])
        kl_loss = (2.0 * (distill(out["logit_v"], out["zlogit_v"])
                          + distill(out["logit_i"], out["zlogit_i"])) + 2.0 * cross)
        if vml_weight:
            kl_loss += vml_weight * vml(out["zlogit_v"], out["zlogit_i"])
    return float(id_loss + tri_loss + kl_loss), float(id_loss), float(tri_loss), float(kl_loss)
