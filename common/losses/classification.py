"""Numpy reference specs of the identity losses (SPEC section 7: cross-entropy, batch-hard triplet).

Every function takes array-likes, computes in float64 and returns a Python float. The
backends mirror these functions; the parity suite compares their values against these.
Shared numeric helpers (softmax, log-softmax, pairwise distances) live here too.
"""
import numpy as np

# Floor under a squared distance before the square root (SPEC 7, triplet).
DIST_EPS = 1e-12


def as_float64(x, name, ndim):
    """Return ``x`` as a float64 array of ``ndim`` dimensions, or raise a one-line ValueError."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    return arr


def log_softmax(logits, axis=-1):
    """Numerically stable log-softmax along ``axis`` (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(logits, axis=-1):
    """Numerically stable softmax along ``axis`` (float64)."""
    return np.exp(log_softmax(logits, axis=axis))


def pairwise_squared_distances(a, b=None):
    """Squared Euclidean distances ``D[i, j] = sum_d (a_i - b_j)^2`` (SPEC 7; b defaults to a).

    Computed from explicit differences (not the ``|a|^2 + |b|^2 - 2ab`` expansion) so the
    spec value carries no cancellation error; results are exactly 0 on the diagonal.
    """
    a = as_float64(a, "a", 2)
    b = a if b is None else as_float64(b, "b", 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"pairwise distances: feature dims differ ({a.shape[1]} vs {b.shape[1]})")
    diff = a[:, None, :] - b[None, :, :]
    return (diff * diff).sum(axis=-1)


def pairwise_distances(a, b=None):
    """Euclidean distances ``sqrt(max(sum (a-b)^2, 1e-12))`` as in the batch-hard triplet (SPEC 7)."""
    return np.sqrt(np.maximum(pairwise_squared_distances(a, b), DIST_EPS))


def cross_entropy(logits, labels, epsilon=0.0):
    """Cross-entropy with label smoothing (SPEC 7, "Cross-entropy").

    q = (1 - epsilon) * onehot(labels) + epsilon / C; loss = mean over the batch of
    ``-sum_c q_c log softmax(logits)_c``. ``epsilon=0`` is plain cross-entropy.
    """
    z = as_float64(logits, "logits", 2)
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    bsz, num_classes = z.shape
    if y.shape[0] != bsz:
        raise ValueError(f"cross_entropy: {bsz} logit rows but {y.shape[0]} labels")
    if bsz == 0:
        raise ValueError("cross_entropy: empty batch")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"cross_entropy: labels must lie in 0..{num_classes - 1}, got {y.min()}..{y.max()}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"cross_entropy: epsilon must lie in [0, 1], got {epsilon}")
    q = np.full((bsz, num_classes), epsilon / num_classes)
    q[np.arange(bsz), y] += 1.0 - epsilon
    return float(-(q * log_softmax(z)).sum(axis=1).mean())


def triplet_batch_hard(emb, pids, margin=0.3):
    """Batch-hard triplet loss (SPEC 7, "Triplet, batch-hard"; Hermans et al. 2017).

    d = sqrt(max(sum (a-b)^2, 1e-12)). For anchor i: d_ap = max d[i, j] over j != i with the
    same pid, d_an = min d[i, j] over j with another pid. Loss per anchor:
    ``max(0, d_ap - d_an + margin)``, or the soft margin ``log(1 + exp(d_ap - d_an))`` when
    ``margin is None`` (VKD). Mean over anchors.

    Decision: an anchor with no positive (its pid occurs once) or no negative (one pid in the
    batch) has no triplet and is excluded from the mean; if no anchor has both, ValueError.
    (P x K samplers with K >= 2 never produce such anchors.)
    """
    e = as_float64(emb, "emb", 2)
    p = np.asarray(pids).reshape(-1)
    if p.shape[0] != e.shape[0]:
        raise ValueError(f"triplet_batch_hard: {e.shape[0]} embeddings but {p.shape[0]} pids")
    dist = pairwise_distances(e)
    same = p[:, None] == p[None, :]
    positive = same & ~np.eye(len(p), dtype=bool)
    negative = ~same
    valid = positive.any(axis=1) & negative.any(axis=1)
    if not valid.any():
        raise ValueError("triplet_batch_hard: no anchor has both a positive and a negative; "
                         "expected a batch with >= 2 samples of some pid and >= 2 pids")
    d_ap = np.where(positive, dist, -np.inf).max(axis=1)[valid]
    d_an = np.where(negative, dist, np.inf).min(axis=1)[valid]
    if margin is None:
        per_anchor = np.logaddexp(0.0, d_ap - d_an)
    else:
        per_anchor = np.maximum(0.0, d_ap - d_an + float(margin))
    return float(per_anchor.mean())
