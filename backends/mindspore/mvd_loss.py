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
    # plain Python constants (a compiled MindSpore graph reads them as constants)
    loss_func, margin, temperature, kl_form = s["loss_func"], float(s["margin"]), float(s["T"]), s["kl_form"]
    vml_weight, smooth = float(s["vml_weight"]), float(s["label_smooth"])
    (m1, m2), (a1, a2) = (float(v) for v in s["rank_margins"]), (float(v) for v in s["rank_alphas"])
    w_cml, w_vsd, w_vcd = float(s["w_cml"]), float(s["w_vsd"]), float(s["w_vcd"])
    sk_eps, sk_iter, sk_thresh = float(s["sinkhorn_eps"]), int(s["sinkhorn_iter"]), float(s["sinkhorn_thresh"])
    if kind == "routed":
        def fn(outputs, labels):
            return losses.mvd_loss(_routed_tuple(outputs), labels, loss_func, margin, temperature, kl_form,
                                   vml_weight)
        return fn, names
    if flow != "reference":
        raise ValueError(f"mvd.loss={kind!r} needs the reference flow")
    if kind == "port":
        def fn(outputs, labels):
            y = ops.concat((labels, labels), axis=0)
            total, terms = losses.mvd_port_total(outputs, y, loss_func, margin, temperature)
            return (total,) + tuple(terms)
        return fn, names

    def fn(outputs, labels):
        y = ops.concat((labels, labels), axis=0)
        modality = ops.concat((ops.zeros_like(labels), ops.ones_like(labels)), axis=0)
        total, terms = losses.mvd_original_total(outputs, y, modality, smooth, m1, m2, a1, a2, temperature, 1.0, 1.0,
                                                 w_cml, w_vsd, w_vcd, sk_eps, sk_iter, sk_thresh)
        return (total,) + tuple(terms)
    return fn, names
