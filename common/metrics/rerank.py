"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li: "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017), an option for IMAGE datasets (SPEC 5).

Two conventions (``style``):

* ``'zhong'`` (default): the authors' released ``re_ranking`` function, the one every re-ID
  codebase copies (torchreid ``torchreid/utils/rerank.py``, fremigereau/MTDA_KD_REID), so
  that re-ranked numbers compare with published ones: the input distances are squared
  before step 1 (the function expects Euclidean distances), k1/2 is ``int(np.around(k1 /
  2))`` (round half to even: 10 for k1 = 20 or 21) and the expansion rule is the strict
  ``|R(p, k1) & R(q, k1/2)| > 2/3 |R(q, k1/2)|``. (Ties in the initial ranking: the released
  code's ``np.argsort`` leaves their order unspecified; here they go by index.)
* ``'paper'``: the paper's eq. 6 as written (``>=``), k1/2 rounded up, the input distances
  used as given.

Steps (the paper's description):

1. All N = Q + G items form one set; ``d`` is the N x N original distance, each row divided by its
   maximum so that it lies in [0, 1] (the scaled ``d`` is also the one blended in step 6).
2. N(p, k): the k+1 nearest items of p (p itself included, ascending distance, ties by index).
   R(p, k) = {g in N(p, k) : p in N(g, k)}  (k-reciprocal neighbours, eq. 4).
3. Expansion (eq. 6): R*(p, k1) = R(p, k1) united with every R(q, k1/2), q in R(p, k1), for which
   |R(p, k1) & R(q, k1/2)| >= 2/3 |R(q, k1/2)| (k1/2 and the comparison: see ``style``).
4. Encoding (eq. 7): V_p[g] = exp(-d(p, g)) for g in R*(p, k1), else 0; each V_p is scaled to sum 1.
   Local query expansion (eq. 11): V_p <- mean of V_q over the k2 nearest items q of p (p included).
5. Jaccard distance (eq. 10): d_J(p, g) = 1 - sum min(V_p, V_g) / sum max(V_p, V_g); with unit-sum
   vectors sum max = 2 - sum min.
6. Final distance (eq. 12): d*(p, g) = (1 - lambda) d_J(p, g) + lambda d(p, g).

Cost: O((Q+G)^2) memory (the N x N float32 distance and an N x N boolean neighbour table, about
1.9 GB for Market-1501) and O((Q+G)^2 log k1) time; the encodings V are kept sparse (scipy). Meant
for image galleries (Market-1501, DukeMTMC-reID, CUHK03), not for MSMT17-size galleries.
"""
import numpy as np
import scipy.sparse as sp

from common.errors import ReidError


def _as_matrix(name, arr, shape):
    arr = np.asarray(arr, dtype=np.float32)
    if arr.shape != shape:
        raise ReidError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ReidError(f"{name} must hold finite non-negative distances (use euclidean, sqeuclidean or cosine)")
    return arr


def _nearest(dist, k):
    """(N, k) indices of each row's k smallest entries, ascending (ties by index within the k)."""
    cand = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < dist.shape[1] else \
        np.broadcast_to(np.arange(dist.shape[1]), dist.shape).copy()
    cand_d = np.take_along_axis(dist, cand, axis=1)
    return np.take_along_axis(cand, np.lexsort((cand, cand_d), axis=1), axis=1)


def _reciprocal_sets(neighbours, table):
    """R(p, k) for every p as index arrays, from N(p, k) = ``neighbours[p]``; ``table`` is scratch."""
    num = len(neighbours)
    rows = np.arange(num)[:, None]
    table[:] = False
    table[rows, neighbours] = True
    back = table[neighbours, rows]      # is p among the neighbours of its neighbour?
    return [neighbours[p][back[p]] for p in range(num)]


def _expanded_sets(recip, recip_half, strict: bool):
    """R*(p, k1) of eq. 6 (expansion by the k1/2-reciprocal sets of the members); ``strict``:
    the released code's ``>`` instead of the paper's ``>=``."""
    out = []
    for members in recip:
        member_set = set(members.tolist())
        extended = set(member_set)
        for q in members:
            cand = recip_half[q]
            shared = len(member_set.intersection(cand.tolist()))
            if (shared > 2.0 / 3.0 * len(cand)) if strict else (shared >= 2.0 / 3.0 * len(cand)):
                extended.update(cand.tolist())
        out.append(np.array(sorted(extended), dtype=np.int64))
    return out


STYLES = ("zhong", "paper")


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3, style="zhong"):
    """Re-ranked (Q, G) float32 distance (Zhong et al. 2017, eq. 12; steps and the two
    ``style`` conventions in the module docstring).

    Inputs are non-negative distances between query-gallery, query-query and gallery-gallery
    (Euclidean for ``style='zhong'``, which squares them as the released code does). Memory
    grows as (Q+G)^2.
    """
    if style not in STYLES:
        raise ReidError(f"unknown re-ranking style {style!r}; expected one of {', '.join(STYLES)}")
    q_g = np.asarray(q_g_dist)
    if q_g.ndim != 2:
        raise ReidError(f"q_g_dist must be a 2-D (num_query, num_gallery) array, got shape {q_g.shape}")
    num_q, num_g = q_g.shape
    q_g = _as_matrix('q_g_dist', q_g, (num_q, num_g))
    q_q = _as_matrix('q_q_dist', q_q_dist, (num_q, num_q))
    g_g = _as_matrix('g_g_dist', g_g_dist, (num_g, num_g))
    if int(k1) < 1 or int(k2) < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ReidError(f"re_ranking needs k1 >= 1, k2 >= 1 and 0 <= lambda_value <= 1, got {k1}, {k2}, {lambda_value}")
    num = num_q + num_g
    dist = np.empty((num, num), np.float32)
    dist[:num_q, :num_q], dist[:num_q, num_q:] = q_q, q_g
    dist[num_q:, :num_q], dist[num_q:, num_q:] = q_g.T, g_g
    del q_q, g_g
    if style == "zhong":
        np.square(dist, out=dist)
    dist /= np.maximum(dist.max(axis=1, keepdims=True), np.float32(1e-12))

    half = int(np.around(int(k1) / 2.0)) if style == "zhong" else (int(k1) + 1) // 2
    k1, half = min(int(k1), num - 1), min(half, num - 1)
    ranked = _nearest(dist, min(max(k1 + 1, int(k2)), num))
    table = np.zeros((num, num), bool)
    recip = _reciprocal_sets(ranked[:, :k1 + 1], table)
    recip_half = _reciprocal_sets(ranked[:, :half + 1], table)
    del table
    expanded = _expanded_sets(recip, recip_half, strict=style == "zhong")

    lengths = np.array([len(e) for e in expanded])
    rows = np.repeat(np.arange(num), lengths)
    cols = np.concatenate(expanded)
    weights = np.exp(-dist[rows, cols]).astype(np.float64)
    weights /= np.bincount(rows, weights=weights, minlength=num)[rows]
    encoding = sp.csr_matrix((weights, (rows, cols)), shape=(num, num))
    if int(k2) > 1:
        k2 = min(int(k2), ranked.shape[1])
        expansion = sp.csr_matrix((np.full(num * k2, 1.0 / k2), (np.repeat(np.arange(num), k2),
                                   ranked[:, :k2].ravel())), shape=(num, num))
        encoding = (expansion @ encoding).tocsr()

    gallery_cols = encoding[num_q:].tocsc()     # per dimension t: the gallery items with V_g[t] > 0
    min_sum = np.zeros((num_q, num_g))
    for p in range(num_q):
        start, stop = encoding.indptr[p], encoding.indptr[p + 1]
        dims, vals = encoding.indices[start:stop], encoding.data[start:stop]
        seg = [slice(gallery_cols.indptr[t], gallery_cols.indptr[t + 1]) for t in dims]
        if not seg:
            continue
        g_items = np.concatenate([gallery_cols.indices[s] for s in seg])
        g_vals = np.concatenate([gallery_cols.data[s] for s in seg])
        p_vals = np.repeat(vals, [s.stop - s.start for s in seg])
        min_sum[p] = np.bincount(g_items, weights=np.minimum(g_vals, p_vals), minlength=num_g)
    jaccard = 1.0 - min_sum / (2.0 - min_sum)
    final = (1.0 - lambda_value) * jaccard + lambda_value * dist[:num_q, num_q:]
    return final.astype(np.float32)
