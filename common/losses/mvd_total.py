"""Numpy reference specs of the MVD training objectives (Tian et al., "Farewell to Mutual
Information: Variational Distillation for Cross-Modal Person Re-Identification", CVPR 2021,
eq. 11), built from the common.losses specs:

* :func:`mvd_port_total`: the MindSpore port (mindspore-ai/models research/cv/MVD
  src/models/trainingcell.py), with the original's VSD / VCD added for 'id+tri+kldiv';
* :func:`mvd_original_total`: the original PyTorch code (reid/trainers.py, weights of mm01.py);
* :func:`mvd_total`: the older "routed" 15-output flow (kept until its callers move).

The two new totals take the MVD network's flat 16-tuple in :data:`MVD_OUTPUT_NAMES` order
(every path has the same N = 2B rows: the B RGB then the B IR images of the batch) and return
``(total, terms)``, ``terms`` a tuple of floats named by :data:`MVD_PORT_TERMS` /
:data:`MVD_ORIGINAL_TERMS`; the backends return the same structure of scalar tensors.
"""
import numpy as np

from common.losses.classification import cross_entropy, softmax, triplet_batch_hard
from common.losses.mvd import vml, vsd
from common.losses.mvd_original import kl_div_original, rank_loss, sinkhorn_distance

MVD_LOSS_FUNCS = ("id", "id+tri", "id+tri+kldiv")
MVD_KL_FORMS = ("vsd", "original")
# The MVD network's four paths: v = visible encoder on the colour image x, i = infrared
# encoder on the 3-channel grey copy of x, vs = shared encoder on x, is = shared encoder on
# the grey copy; each path's head gives BNNeck classifier logits, the BN feature, the
# information-bottleneck classifier's logits and the IB code z.
MVD_PATHS = ("v", "i", "vs", "is")
MVD_HEAD_OUTPUTS = ("logit", "feat", "zlogit", "z")
MVD_OUTPUT_NAMES = tuple(f"{o}_{p}" for p in MVD_PATHS for o in MVD_HEAD_OUTPUTS)
# Weight of each path's identity / metric terms (both references: 0.5 v, 0.5 i, 0.25 per
# shared view).
MVD_PATH_WEIGHTS = (0.5, 0.5, 0.25, 0.25)
# Fixed VSD / VCD weights of the port's 'id+tri+kldiv' (= mm01.py's -VSD_loss / -VCD_loss).
MVD_VSD_WEIGHT = 2.0
MVD_VCD_WEIGHT = 2.0
# Names of the terms returned next to the total, in order.
MVD_PORT_TERMS = ("id", "tri", "vsd", "vcd")
MVD_ORIGINAL_TERMS = ("ce", "rank", "cml", "vsd", "vcd")
# The older routed flow's 15 outputs (mvd_total).
MVD_ROUTED_OUTPUT_NAMES = ("feat_v", "bn_v", "logit_v", "z_v", "zlogit_v",
                           "feat_i", "bn_i", "logit_i", "z_i", "zlogit_i",
                           "feat_s", "bn_s", "logit_s", "z_s", "zlogit_s")


def mvd_total(outputs, labels, loss_func="id+tri", margin=0.3, T=1.0, kl_form="vsd",
              vml_weight=0.0):
    """MVD total loss (SPEC 7 "MVD totals", ``--loss-func``); returns floats
    ``(total, id, tri, kl)``.

    ``outputs`` is the routed MVD network's 15-tuple in :data:`MVD_ROUTED_OUTPUT_NAMES` order; the v / i
    heads have B rows, the shared heads 2B rows (rgb first, then ir); ``labels`` (B,) and
    y2 = concat(labels, labels):

    * id = 1/2 [CE(logit_v, y) + CE(zlogit_v, y)] + 1/2 [CE(logit_i, y) + CE(zlogit_i, y)]
      + 1/4 CE(logit_s, y2) + 1/4 CE(zlogit_s, y2)
    * tri = triplet_batch_hard(bn_s, y2, margin) if 'tri' in loss_func, else 0
    * kl = 2 [vsd(logit_v, zlogit_v, T) + vsd(logit_i, zlogit_i, T)]
      + 2 vcd(obs_v=logit_s[:B], rep_i=zlogit_s[B:], obs_i=logit_s[B:], rep_v=zlogit_s[:B], T)
      + vml_weight * vml(zlogit_v, zlogit_i)   if loss_func == 'id+tri+kldiv', else 0.
      With kl_form='original' every vsd(a, b), also the two inside vcd, is replaced by
      kl_div_original(a, b) (temperature 1).
    * total = id + tri + kl
    """
    if loss_func not in MVD_LOSS_FUNCS:
        raise ValueError(f"mvd_total: loss_func must be one of {MVD_LOSS_FUNCS}, got {loss_func!r}")
    if kl_form not in MVD_KL_FORMS:
        raise ValueError(f"mvd_total: kl_form must be one of {MVD_KL_FORMS}, got {kl_form!r}")
    if len(outputs) != len(MVD_ROUTED_OUTPUT_NAMES):
        raise ValueError(f"mvd_total: expected the 15-tuple {MVD_ROUTED_OUTPUT_NAMES}, "
                         f"got {len(outputs)} items")
    out = dict(zip(MVD_ROUTED_OUTPUT_NAMES, (np.asarray(o, dtype=np.float64) for o in outputs)))
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


def _named_outputs(outputs, labels, what):
    """``outputs`` as a name -> float64 array dict, after checking the 16-tuple and N rows."""
    if len(outputs) != len(MVD_OUTPUT_NAMES):
        raise ValueError(f"{what}: expected the 16-tuple {MVD_OUTPUT_NAMES}, got {len(outputs)} items")
    out = dict(zip(MVD_OUTPUT_NAMES, (np.asarray(o, dtype=np.float64) for o in outputs)))
    n = np.asarray(labels).reshape(-1).shape[0]
    for name, arr in out.items():
        if arr.ndim != 2 or arr.shape[0] != n:
            raise ValueError(f"{what}: {name} must be a 2-D array with one row per label "
                             f"({n}), got shape {arr.shape}")
    return out


def _path_sum(term):
    """``sum_p MVD_PATH_WEIGHTS[p] * term(p)`` over :data:`MVD_PATHS`."""
    return sum(w * term(p) for w, p in zip(MVD_PATH_WEIGHTS, MVD_PATHS))


def _vsd_vcd_original(out, T):
    """The original trainer's VSD and VCD (reid/trainers.py), unweighted:
    vsd = kl_div_original(logit_i, zlogit_i, T) + kl_div_original(logit_v, zlogit_v, T);
    vcd = 0.5 kl_div_original(logit_vs, zlogit_is) + 0.5 kl_div_original(logit_is, zlogit_vs)
    (no temperature; each pairs the colour and grey views of the same image)."""
    vsd_term = (kl_div_original(out["logit_i"], out["zlogit_i"], T)
                + kl_div_original(out["logit_v"], out["zlogit_v"], T))
    vcd_term = (0.5 * kl_div_original(out["logit_vs"], out["zlogit_is"])
                + 0.5 * kl_div_original(out["logit_is"], out["zlogit_vs"]))
    return vsd_term, vcd_term


def mvd_port_total(outputs, labels, loss_func="id+tri", margin=0.3, T=1.0):
    """Total of the MindSpore MVD port (trainingcell.py ``CriterionWithNet``); returns
    ``(total, (id, tri, vsd, vcd))`` (:data:`MVD_PORT_TERMS`).

    With w = :data:`MVD_PATH_WEIGHTS` over the paths p = v, i, vs, is and ``labels`` (N,):

    * id = sum_p w_p [CE(logit_p) + CE(zlogit_p)] (plain cross-entropy);
    * tri = sum_p w_p [triplet(feat_p) + triplet(z_p)] (batch-hard, ``margin``, unnormalised
      features) if 'tri' in loss_func, else 0;
    * vsd, vcd = the original's terms (:func:`_vsd_vcd_original`, VSD at temperature T) if
      loss_func == 'id+tri+kldiv' (not in the port, whose --loss_func stops at 'id+tri'),
      else 0;
    * total = id + tri + 2 vsd + 2 vcd.
    """
    if loss_func not in MVD_LOSS_FUNCS:
        raise ValueError(f"mvd_port_total: loss_func must be one of {MVD_LOSS_FUNCS}, got {loss_func!r}")
    out = _named_outputs(outputs, labels, "mvd_port_total")
    y = np.asarray(labels).reshape(-1)
    id_loss = _path_sum(lambda p: cross_entropy(out[f"logit_{p}"], y)
                        + cross_entropy(out[f"zlogit_{p}"], y))
    tri_loss = vsd_term = vcd_term = 0.0
    if "tri" in loss_func:
        tri_loss = _path_sum(lambda p: triplet_batch_hard(out[f"feat_{p}"], y, margin)
                             + triplet_batch_hard(out[f"z_{p}"], y, margin))
    if loss_func == "id+tri+kldiv":
        vsd_term, vcd_term = _vsd_vcd_original(out, T)
    total = id_loss + tri_loss + MVD_VSD_WEIGHT * vsd_term + MVD_VCD_WEIGHT * vcd_term
    return float(total), (float(id_loss), float(tri_loss), float(vsd_term), float(vcd_term))


def mvd_original_total(outputs, labels, modality, epsilon=0.1, m1=0.9, m2=1.0, a1=2.2, a2=2.0,
                       T=1.0, w_ce=1.0, w_rank=1.0, w_cml=8.0, w_vsd=2.0, w_vcd=2.0,
                       sinkhorn_eps=0.01, sinkhorn_iter=100, sinkhorn_thresh=0.1):
    """Total of the original MVD trainer (reid/trainers.py ``Trainer._forward`` and
    ``BaseTrainer.train``; defaults from mm01.py); returns ``(total, (ce, rank, cml, vsd,
    vcd))`` (:data:`MVD_ORIGINAL_TERMS`).

    With w = :data:`MVD_PATH_WEIGHTS`, ``labels`` (N,) and ``modality`` (N,) (0 RGB, 1 IR; the
    reference's ``sub``):

    * ce = sum_p w_p [CE_eps(logit_p) + CE_eps(zlogit_p)] (label smoothing ``epsilon``);
    * rank = sum_p w_p [rank_loss(feat_p) + rank_loss(z_p)] (m1, m2, a1, a2; tval 1);
    * cml = sinkhorn_distance(softmax(logit_i), softmax(logit_v), sinkhorn_eps,
      sinkhorn_iter, sinkhorn_thresh);
    * vsd, vcd = :func:`_vsd_vcd_original` (VSD at temperature T, VCD at 1);
    * total = w_ce ce + w_rank rank + w_cml cml + w_vsd vsd + w_vcd vcd.
    """
    out = _named_outputs(outputs, labels, "mvd_original_total")
    y = np.asarray(labels).reshape(-1)
    ce = _path_sum(lambda p: cross_entropy(out[f"logit_{p}"], y, epsilon)
                   + cross_entropy(out[f"zlogit_{p}"], y, epsilon))
    rank = _path_sum(lambda p: rank_loss(out[f"feat_{p}"], y, modality, m1, m2, a1, a2)
                     + rank_loss(out[f"z_{p}"], y, modality, m1, m2, a1, a2))
    cml = sinkhorn_distance(softmax(out["logit_i"]), softmax(out["logit_v"]),
                            sinkhorn_eps, sinkhorn_iter, sinkhorn_thresh)
    vsd_term, vcd_term = _vsd_vcd_original(out, T)
    total = w_ce * ce + w_rank * rank + w_cml * cml + w_vsd * vsd_term + w_vcd * vcd_term
    return float(total), (float(ce), float(rank), float(cml), float(vsd_term), float(vcd_term))
