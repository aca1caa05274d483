"""Numpy reference specs of the domain-adaptation losses (SPEC section 7: "D-MMD" and
"KD-REID (multi-teacher)"; Mekhazni et al., "Unsupervised Domain Adaptation in the
Dissimilarity Space for Person Re-identification", ECCV 2020; Remigereau et al.,
"Knowledge Distillation for Multi-Target Domain Adaptation in Real-Time Person
Re-Identification", ICIP 2022)."""
import numpy as np

from common.losses.classification import as_float64, pairwise_squared_distances

# Kernel bandwidths of the D-MMD mixture kernel (SPEC 7 "D-MMD").
# Floor under a feature norm before L2 normalisation (cosine_distance_matrix).
NORM_EPS = 1e-12
SIGMAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0,
          100.0, 1e3, 1e4, 1e5, 1e6)


def mmd_kernel(a, b):
    """Mixture-of-Gaussians kernel of D-MMD (SPEC 7): ``k(a, b) = sum_sigma exp(-|a-b|^2 / (2 sigma))``
    over :data:`SIGMAS`.

    With 1-D vectors ``a`` and ``b`` it returns the float ``k(a, b)``; with sets ``a`` (n, d)
    and ``b`` (m, d) it returns the (n, m) Gram matrix.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 1 and b.ndim == 1:
        return float(mmd_kernel(a[None, :], b[None, :])[0, 0])
    sq = pairwise_squared_distances(as_float64(a, "a", 2), as_float64(b, "b", 2))
    gram = np.zeros_like(sq)
    for sigma in SIGMAS:
        gram += np.exp(-sq / (2.0 * sigma))
    return gram


def mmd(x, y):
    """Biased squared MMD with diagonals included (SPEC 7 "D-MMD"):
    ``mean k(x, x) + mean k(y, y) - 2 mean k(x, y)`` for sets x (n, d) and y (m, d)."""
    x = as_float64(x, "x", 2)
    y = as_float64(y, "y", 2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd: the two sets have different dims ({x.shape[1]} vs {y.shape[1]})")
    return float(mmd_kernel(x, x).mean() + mmd_kernel(y, y).mean() - 2.0 * mmd_kernel(x, y).mean())


def dmmd_distance_sets(emb, P, K):
    """Within- and between-class distance sets of a P x K batch (SPEC 7 "D-MMD").

    ``emb`` (P*K, D) is identity-major: row ``p*K + k`` is sample k of identity p. Let
    ``D`` be the (P*K, P*K) squared Euclidean distances (no sqrt) and ``block(i, j) =
    D[i*K:(i+1)*K, j*K:(j+1)*K]`` (K x K). Returns ``(within, between)``:

    * within (P*K, K): the rows of block(0, 0), block(1, 1), ..., block(P-1, P-1), in this
      order (each row a K-vector, the zero self-distance included);
    * between (K + (P-1)^2 * K, K): the rows of block(0, 1), then of block(i, j) for
      i = 1..P-1 (outer) and j = 0..P-1, j != i (inner, ascending). Blocks (0, j) for j >= 2
      are not used: this is the reference implementation's order, kept as specified.
    """
    e = as_float64(emb, "emb", 2)
    P, K = int(P), int(K)
    if P < 2 or K < 1 or e.shape[0] != P * K:
        raise ValueError(f"dmmd_distance_sets: expected an identity-major (P*K, D) batch with "
                         f"P >= 2, K >= 1; got {e.shape[0]} rows for P={P}, K={K}")
    dist = pairwise_squared_distances(e)

    def block(i, j):
        return dist[i * K:(i + 1) * K, j * K:(j + 1) * K]

    within = np.concatenate([block(i, i) for i in range(P)], axis=0)
    between_blocks = [block(0, 1)]
    for i in range(1, P):
        between_blocks.extend(block(i, j) for j in range(P) if j != i)
    between = np.concatenate(between_blocks, axis=0)
    return within, between


def dmmd(src_emb, tgt_emb, P, K, global_source_grad=False):
    """The three D-MMD alignment terms (SPEC 7 "D-MMD").

    Returns ``{'within': mmd(within_src, within_tgt), 'between': mmd(between_src, between_tgt),
    'global': mmd(src_emb, tgt_emb)}``; the sets come from :func:`dmmd_distance_sets`
    (source sets are detached in the backends; the target batch is laid out P x K too).

    ``global_source_grad`` changes no value, only the backends' gradients: False detaches the
    source features in the global term too; True lets it reach them, as
    fremigereau/MTDA_KD_REID ``torchreid/losses/maximum_mean_discrepancy.py`` does (it
    detaches only the distance sets ``wcs``/``bcs``).
    """
    within_s, between_s = dmmd_distance_sets(src_emb, P, K)
    within_t, between_t = dmmd_distance_sets(tgt_emb, P, K)
    return {"within": mmd(within_s, within_t),
            "between": mmd(between_s, between_t),
            "global": mmd(src_emb, tgt_emb)}


def cosine_distance_matrix(feats):
    """``Dcos(F) = 1 - F_hat F_hat^T`` with rows L2-normalised (norm floored at 1e-12)."""
    f = as_float64(feats, "feats", 2)
    f_hat = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), NORM_EPS)
    return 1.0 - f_hat @ f_hat.T


def cosine_relation_kd(student_emb, teacher_emb):
    """KD-REID relational distillation (SPEC 7 "KD-REID (multi-teacher)"):
    ``|| Dcos(student) - Dcos(teacher) ||_F`` (Frobenius norm, not squared) on the
    pre-classifier embeddings of one target-domain batch; the teacher is frozen."""
    ds = cosine_distance_matrix(student_emb)
    dt = cosine_distance_matrix(teacher_emb)
    if ds.shape != dt.shape:
        raise ValueError(f"cosine_relation_kd: batch sizes differ ({ds.shape[0]} vs {dt.shape[0]})")
    return float(np.sqrt(((ds - dt) ** 2).sum()))
