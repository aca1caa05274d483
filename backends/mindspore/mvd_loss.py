"""The MVD training objectives on the network's 16 outputs, MindSpore (``mvd.loss``); mirrors backends/torch/mvd_loss.py.

``objective(settings, flow)`` returns ``(fn, names)`` with ``fn(outputs, labels) -> (total,
term, ...)`` named by ``names``; ``labels`` are the B identity labels of the batch (the RGB and
IR halves share them). The formulas live in ``backends/mindspore/losses.py`` (numpy specs in
``common/losses``):

* ``'port'``: ``mvd_port_total`` (research/cv/MVD/src/models/trainingcell.py) on the 2B rows
  of every path, labels [y; y];
* ``'original'``: ``mvd_original_total`` (reid/trainers.py) with the per-row modality
  [0]*B + [1]*B (the reference's ``sub``);
* ``'routed'``: this project's earlier objective ``mvd_loss`` on the routed flow's outputs.
"""
from mindspore import ops

from common.netspec import MVD_LOSS_TERMS as LOSS_TERMS

from . import losses

__all__ = ["objective"]


def _routed_tuple(outputs):
    """The routed flow's outputs in the 15-tuple layout ``losses.mvd_loss`` reads: (feat_v,
    bn_v, logit_v, z_v, zlogit_v, the same for i, then for the shared encoder on [rgb; ir]).
    The 16 outputs are path-major (v, i, vs, is) x (logit, feat, zlogit, z); pooled
    features are not used by ``mvd_loss``, the BN features stand in."""
    o = outputs
    s = [ops.concat((outputs[8 + k], outputs[12 + k]), axis=0) for k in range(4)]
    return (o[1], o[1], o[0], o[3], o[2], o[5], o[5], o[4], o[7], o[6], s[1], s[1], s[0], s[3], s[2])


def objective(s: dict, flow: str):
    """(fn, names) of the ``mvd`` settings ``s`` for a network of ``flow``."""
    kind = s["loss"]
    names = ("total",) + tuple(LOSS_TERMS[kind])
    if kind == "routed":
        def fn(outputs, labels):
            return losses.mvd_loss(_routed_tuple(outputs), labels, s["loss_func"], s["margin"], s["T"],
                                   s["kl_form"], s["vml_weight"])
        return fn, names
    if flow != "reference":
        raise ValueError(f"mvd.loss={kind!r} needs the reference flow")
    if kind == "port":
        def fn(outputs, labels):
            y = ops.concat((labels, labels), axis=0)
            return losses.mvd_port_total(outputs, y, s["loss_func"], s["margin"], s["T"])
        return fn, names

    def fn(outputs, labels):
        y = ops.concat((labels, labels), axis=0)
        modality = ops.concat((ops.zeros_like(labels), ops.ones_like(labels)), axis=0)
        m1, m2 = s["rank_margins"]
        a1, a2 = s["rank_alphas"]
        return losses.mvd_original_total(outputs, y, modality, s["label_smooth"], m1, m2, a1, a2, s["T"],
                                         1.0, 1.0, s["w_cml"], s["w_vsd"], s["w_vcd"], s["sinkhorn_eps"],
                                         s["sinkhorn_iter"], s["sinkhorn_thresh"])
    return fn, names
