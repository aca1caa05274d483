"""Query x gallery distances and feature-level evaluation without a full Q x G matrix (SPEC 5).

Metrics (float32 matmul; ``normalize=True`` L2-normalises both sides first):

* ``euclidean``   sqrt(max(|q|^2 + |g|^2 - 2 q.g, 0))
* ``sqeuclidean`` max(|q|^2 + |g|^2 - 2 q.g, 0)            (torchreid's default)
* ``cosine``      1 - q.g / (|q| |g|)                      (VKD; always normalised)
* ``neg_dot``     -q.g                                     (MVD, used with normalize=True)

Normalisation divides the dot products by the norms instead of copying the (possibly huge)
gallery; a zero vector stays zero (its norm is floored at 1e-12). Distances are computed in blocks
of ``chunk`` query rows; ``compute_distance`` and ``evaluate_features`` use the same blocks, so
``evaluate_features(...)`` equals ``evaluate(compute_distance(...))`` bit for bit.
"""
import numpy as np

from common.errors import ReidError
from common.metrics.ranking import RankContext, check_labels, parse_options, rank_chunk, summarize

METRICS = ('euclidean', 'sqeuclidean', 'cosine', 'neg_dot')
_NORM_FLOOR = 1e-12


def _as_features(name, feats):
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise ReidError(f"{name} must be a 2-D (num_items, feature_dim) array, got shape {feats.shape}")
    return np.ascontiguousarray(feats, dtype=np.float32)


class DistanceBlocks:
    """Distances of query rows ``start:stop`` against the whole gallery, one block at a time."""

    def __init__(self, qf, gf, metric='euclidean', normalize=False):
        if metric not in METRICS:
            raise ReidError(f"unknown distance metric {metric!r}; expected one of: {', '.join(METRICS)}")
        self.qf, self.gf = _as_features('qf', qf), _as_features('gf', gf)
        if self.qf.shape[1] != self.gf.shape[1]:
            raise ReidError(f"query and gallery features differ in dimension: {self.qf.shape[1]} vs {self.gf.shape[1]}")
        self.metric = metric
        self.normalize = bool(normalize) or metric == 'cosine'
        q_sq = np.einsum('ij,ij->i', self.qf, self.qf)
        g_sq = np.einsum('ij,ij->i', self.gf, self.gf)
        if self.normalize:
            self.q_scale = (1.0 / np.maximum(np.sqrt(q_sq), _NORM_FLOOR)).astype(np.float32)
            self.g_scale = (1.0 / np.maximum(np.sqrt(g_sq), _NORM_FLOOR)).astype(np.float32)
            q_sq, g_sq = q_sq * self.q_scale ** 2, g_sq * self.g_scale ** 2
        self.q_sq, self.g_sq = q_sq.astype(np.float32), g_sq.astype(np.float32)

    @property
    def shape(self):
        return self.qf.shape[0], self.gf.shape[0]

    def block(self, start, stop):
        """float32 (stop - start, G) distances (metric formulas in the module docstring)."""
        dot = self.qf[start:stop] @ self.gf.T
        if self.normalize:
            dot *= self.q_scale[start:stop, None]
            dot *= self.g_scale[None, :]
        if self.metric == 'cosine':
            np.subtract(np.float32(1.0), dot, out=dot)
        elif self.metric == 'neg_dot':
            np.negative(dot, out=dot)
        else:
            dot *= np.float32(-2.0)
            dot += self.q_sq[start:stop, None]
            dot += self.g_sq[None, :]
            np.maximum(dot, np.float32(0.0), out=dot)
            if self.metric == 'euclidean':
                np.sqrt(dot, out=dot)
        return dot


def compute_distance(qf, gf, metric='euclidean', normalize=False, chunk=512):
    """Full (Q, G) float32 distance matrix between query and gallery features (SPEC 5 'Distances')."""
    blocks = DistanceBlocks(qf, gf, metric, normalize)
    num_q, num_g = blocks.shape
    out = np.empty((num_q, num_g), np.float32)
    step = max(1, int(chunk))
    for s in range(0, num_q, step):
        out[s:s + step] = blocks.block(s, min(s + step, num_q))
    return out


def evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, protocol='market1501', metric='euclidean',
                      max_rank=50, chunk=512, normalize=False, **kw):
    """``evaluate(compute_distance(qf, gf, metric, normalize), ...)`` without the full Q x G matrix.

    Each block of ``chunk`` query rows is computed and ranked at once (SPEC 5: MSMT17-size galleries
    never materialise the whole matrix). Peak memory is about the features plus
    3 x chunk x G x 4 bytes. Extra keywords as for :func:`common.metrics.evaluate`.
    """
    opts = parse_options(protocol, kw)
    blocks = DistanceBlocks(qf, gf, metric, normalize)
    num_q, num_g = blocks.shape
    labels = check_labels(num_q, num_g, q_pids, g_pids, q_camids, g_camids, max_rank)
    ctx = RankContext(*labels, protocol, opts)
    step = max(1, int(chunk))
    parts = []
    for s in range(0, num_q, step):
        stop = min(s + step, num_q)
        parts.append(rank_chunk(ctx, blocks.block(s, stop), np.arange(s, stop)))
    return summarize(parts, protocol, int(max_rank))
