"""Numpy loss specs (SPEC 7) against hand-computed small cases and basic properties."""
import math

import numpy as np
import pytest

from common import losses as L

LN3 = math.log(3.0)
# softmax([0, ln 3]) = [1/4, 3/4]; softmax([0, 0]) = [1/2, 1/2]
KL_T_S = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # KL([.25,.75] || [.5,.5])


# ---------------------------------------------------------------- cross-entropy
def test_cross_entropy_plain_and_smoothed():
    logits = [[0.0, LN3], [0.0, 0.0]]
    labels = [1, 0]
    expected = (-math.log(0.75) + math.log(2.0)) / 2
    assert L.cross_entropy(logits, labels) == pytest.approx(expected, rel=1e-12)
    # epsilon 0.2, C = 2: q = [0.1, 0.9] for row 0, [0.9, 0.1] for row 1
    row0 = -(0.1 * math.log(0.25) + 0.9 * math.log(0.75))
    row1 = -(0.9 * math.log(0.5) + 0.1 * math.log(0.5))
    assert L.cross_entropy(logits, labels, epsilon=0.2) == pytest.approx((row0 + row1) / 2, rel=1e-12)


def test_cross_entropy_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        L.cross_entropy([[0.0, 1.0]], [2])


# ---------------------------------------------------------------- triplet
EMB_1D = [[0.0], [1.0], [3.0], [6.0]]
PIDS = [0, 0, 1, 1]
# distances: d01=1 d02=3 d03=6 d12=2 d13=5 d23=3
# anchors (d_ap, d_an): 0:(1,3) 1:(1,2) 2:(3,2) 3:(3,5)
GAPS = [1 - 3, 1 - 2, 3 - 2, 3 - 5]


def test_triplet_hard_margin():
    expected = sum(max(0.0, g + 0.3) for g in GAPS) / 4  # = 1.3 / 4
    assert expected == pytest.approx(0.325)
    assert L.triplet_batch_hard(EMB_1D, PIDS, margin=0.3) == pytest.approx(expected, rel=1e-12)


def test_triplet_soft_margin():
    expected = sum(math.log(1.0 + math.exp(g)) for g in GAPS) / 4
    assert L.triplet_batch_hard(EMB_1D, PIDS, margin=None) == pytest.approx(expected, rel=1e-12)


def test_triplet_uses_euclidean_distance_with_floor():
    emb = [[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [0.0, 0.0]]
    pids = [0, 1, 0, 1]
    # anchor 0: positive 2 at distance sqrt(1e-12) = 1e-6, hardest negative: min(5, 1e-6) = 1e-6
    # anchor 1: positive 3 at 5, negatives 0/2 at 5 -> gap 0; anchor 2 like 0; anchor 3:
    # positive 1 at 5, negatives 0/2 at 1e-6 -> gap 5 - 1e-6
    expected = (0.3 + 0.3 + 0.3 + (5 - 1e-6 + 0.3)) / 4
    assert L.triplet_batch_hard(emb, pids, margin=0.3) == pytest.approx(expected, rel=1e-12)


def test_triplet_excludes_anchors_without_positive():
    emb, pids = [[0.0], [1.0], [3.0]], [0, 0, 1]
    # anchor 2 has no positive; anchors 0: (1, 3), 1: (1, 2) -> margin 2 gives 0 and 1
    assert L.triplet_batch_hard(emb, pids, margin=2.0) == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError, match="no anchor"):
        L.triplet_batch_hard([[0.0], [1.0]], [0, 1])


# ---------------------------------------------------------------- VKD
def test_kd_kl_hand_value_and_tau_squared():
    assert L.kd_kl([[0.0, 0.0]], [[0.0, LN3]], tau=1.0) == pytest.approx(KL_T_S, rel=1e-12)
    # tau 10 with logits scaled by 10: same probabilities, factor tau^2 = 100
    assert L.kd_kl([[0.0, 0.0]], [[0.0, 10 * LN3]], tau=10.0) == pytest.approx(100 * KL_T_S, rel=1e-12)


def test_kd_kl_is_zero_for_identical_and_nonnegative():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 7))
    assert L.kd_kl(z, z) == pytest.approx(0.0, abs=1e-12)
    assert L.kd_kl(z, rng.normal(size=(5, 7))) > 0


def test_kd_mse():
    assert L.kd_mse([[1.0, 2.0]], [[0.0, 0.0]]) == pytest.approx(2.5)


def test_distance_preserving():
    # D_S = [[0,1],[1,0]], D_T = [[0,4],[4,0]]: two entries of (1-4)^2 = 9 over 4 entries, x 0.5
    assert L.distance_preserving([[0.0], [1.0]], [[0.0], [2.0]]) == pytest.approx(2.25, rel=1e-12)


def test_vkd_student_total_sums_its_terms():
    emb = np.array(EMB_1D)
    teacher_emb = 2 * emb  # D_T = 4 D_S, squared distances 1, 9, 36, 4, 25, 9
    dp = 0.5 * 2 * 9 * (1 + 81 + 1296 + 16 + 625 + 81) / 16  # = 1181.25
    student_logits = np.zeros((4, 2))
    teacher_logits = np.array([[0.0, 10 * LN3]] * 4)
    soft_triplet = sum(math.log(1.0 + math.exp(g)) for g in GAPS) / 4
    expected = soft_triplet + math.log(2.0) + 1e-4 * dp + 0.1 * 100 * KL_T_S
    got = L.vkd_student_total(emb, student_logits, teacher_emb, teacher_logits, PIDS)
    assert got == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- MVD
def test_vsd_batchmean_and_temperature():
    obs = [[0.0, LN3], [1.0, 2.0]]
    rep = [[0.0, 0.0], [1.0, 2.0]]
    assert L.vsd(obs, rep) == pytest.approx(KL_T_S / 2, rel=1e-12)
    obs_t2 = [[0.0, 2 * LN3], [2.0, 4.0]]
    rep_t2 = [[0.0, 0.0], [2.0, 4.0]]
    assert L.vsd(obs_t2, rep_t2, T=2.0) == pytest.approx(KL_T_S / 2, rel=1e-12)


def test_vsd_properties():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    assert L.vsd(a, a) == pytest.approx(0.0, abs=1e-12)
    assert L.vsd(a, b) > 0


def test_vcd_halves():
    obs_v, rep_i = [[0.0, LN3]], [[0.0, 0.0]]
    same = [[0.3, -0.2]]
    assert L.vcd(obs_v, rep_i, same, same) == pytest.approx(0.5 * KL_T_S, rel=1e-12)
    # swapping the two (observation, representation) pairs changes nothing
    rng = np.random.default_rng(2)
    a, b, c, d = (rng.normal(size=(3, 5)) for _ in range(4))
    assert L.vcd(a, b, c, d) == pytest.approx(L.vcd(c, d, a, b), rel=1e-12)
    assert L.vcd(a, b, c, d) == pytest.approx(0.5 * L.vsd(a, b) + 0.5 * L.vsd(c, d), rel=1e-12)


def test_vml_jensen_shannon():
    p, q, m = [0.25, 0.75], [0.5, 0.5], [0.375, 0.625]
    kl_pm = sum(pi * math.log(pi / mi) for pi, mi in zip(p, m))
    kl_qm = sum(qi * math.log(qi / mi) for qi, mi in zip(q, m))
    expected = 0.5 * kl_pm + 0.5 * kl_qm
    assert L.vml([[0.0, LN3]], [[0.0, 0.0]]) == pytest.approx(expected, rel=1e-12)
    assert L.vml([[0.0, 0.0]], [[0.0, LN3]]) == pytest.approx(expected, rel=1e-12)  # symmetric
    assert L.vml([[1.0, 2.0]], [[1.0, 2.0]]) == pytest.approx(0.0, abs=1e-12)
    assert expected <= math.log(2.0)


# ---------------------------------------------------------------- MVD, original code's losses
def test_kl_div_original_is_torch_kl_div_on_probabilities():
    # torch kl_div(input=p, target=q), reduction 'mean': mean over B*C of q (log q - p);
    # p = softmax(obs) = [.25, .75] (input), q = softmax(rep) = [.5, .5] (target)
    expected = (0.5 * (math.log(0.5) - 0.25) + 0.5 * (math.log(0.5) - 0.75)) / 2
    assert L.kl_div_original([[0.0, LN3]], [[0.0, 0.0]]) == pytest.approx(expected, rel=1e-12)
    # the temperature divides both sides
    assert L.kl_div_original([[0.0, 2 * LN3]], [[0.0, 0.0]], T=2.0) == pytest.approx(expected, rel=1e-12)
    # swapped roles (the old reading: target = softmax(obs)) give another number
    swapped = (0.25 * (math.log(0.25) - 0.5) + 0.75 * (math.log(0.75) - 0.5)) / 2
    assert abs(expected - swapped) > 0.05
    # mean over all B*C elements: a second identical row leaves the value unchanged
    assert L.kl_div_original([[0.0, LN3]] * 2, [[0.0, 0.0]] * 2) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_equals_reference_label_smoothing():
    """utlis.py CrossEntropyLabelSmooth: ``(-q * log_softmax(z)).mean(0).sum()``, q the smoothed
    one-hot, written out here independently of common.losses."""
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(6, 7)) * 3
    labels = rng.integers(0, 7, size=6)
    for eps in (0.0, 0.1, 0.5):
        q = np.full((6, 7), eps / 7)
        q[np.arange(6), labels] += 1 - eps
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        reference = (-q * log_p).mean(axis=0).sum()
        assert L.cross_entropy(logits, labels, eps) == pytest.approx(reference, rel=1e-12)


SQRT2 = math.sqrt(2.0)
RANK_EPS = 1e-5  # the reference's guard on every denominator


def test_rank_loss_cross_positives_and_intra_negatives_by_hand():
    # directions (1,0), (0,1), (-1,0), (0,-1) after L2 normalisation
    feats = [[3.0, 0.0], [0.0, 0.5], [-1.0, 0.0], [0.0, -2.0]]
    pids, modality = [0, 0, 1, 1], [0, 1, 1, 0]
    # every anchor: its positive is cross-modal at sqrt 2 (hinge sqrt2 + m2 - a2 = sqrt2 - 1),
    # no intra positive (0 / (0 + 1e-5) = 0); the intra negative at sqrt 2 < a1 = 2.2 has
    # weight e^(a1 - sqrt2); the cross negative at exactly 2 = a2 is not < a2: no cross term.
    w = math.exp(2.2 - SQRT2)
    per_anchor = (SQRT2 - 1.0) / (1 + RANK_EPS) + (2.2 - SQRT2) * w / (w + RANK_EPS)
    assert L.rank_loss(feats, pids, modality) == pytest.approx(per_anchor, rel=1e-12)


def test_rank_loss_intra_positives_and_cross_negatives_by_hand():
    feats = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]
    pids, modality = [0, 0, 1, 1], [0, 0, 1, 1]
    # every anchor: intra positive at 2 (hinge 2 + m1 - a1 = 0.7), two cross negatives at
    # sqrt 2 < a2 = 2.0 with equal weights w = e^(a2 - sqrt2); no cross positive, no intra negative
    w = math.exp(2.0 - SQRT2)
    per_anchor = 0.7 / (1 + RANK_EPS) + (2.0 - SQRT2) * 2 * w / (2 * w + RANK_EPS)
    assert L.rank_loss(feats, pids, modality) == pytest.approx(per_anchor, rel=1e-12)
    # margins and thresholds are parameters: m1 = 0.2 makes the intra hinge 2 + 0.2 - 2.2 = 0
    w1 = math.exp(2.0 - SQRT2)
    assert L.rank_loss(feats, pids, modality, m1=0.2) == pytest.approx(
        (2.0 - SQRT2) * 2 * w1 / (2 * w1 + RANK_EPS), rel=1e-12)


def _rank_loss_by_anchor(feats, pids, sub, m1, m2, a1, a2, tval):
    """Per-anchor loop with boolean indexing, in the order of utlis.py Rank_loss.rank_loss."""
    x = np.asarray(feats, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sq = (x ** 2).sum(axis=1)
    dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * x @ x.T, 1e-12, None))
    pids, sub = np.asarray(pids), np.asarray(sub)
    total = 0.0
    for i in range(len(pids)):
        is_pos = pids == pids[i]
        is_pos[i] = False
        is_neg = pids != pids[i]
        intra = sub == sub[i]
        loss_i = 0.0
        for mod_mask, m, a in ((intra, m1, a1), (~intra, m2, a2)):
            ap = np.clip(dist[i][is_pos & mod_mask] + m - a, 0, None)
            loss_i += ap.sum() / (ap.size + 1e-5)
            an = dist[i][is_neg & mod_mask]
            an = an[an < a]
            weight = np.exp(tval * (a - an))
            loss_i += ((a - an) * weight).sum() / (weight.sum() + 1e-5)
        total += loss_i
    return total / len(pids)


@pytest.mark.parametrize("params", [dict(m1=0.9, m2=1.0, a1=2.2, a2=2.0, tval=1.0),
                                    dict(m1=0.5, m2=0.7, a1=1.4, a2=1.3, tval=2.5)])
def test_rank_loss_matches_a_per_anchor_loop(params):
    rng = np.random.default_rng(6)
    feats = rng.normal(size=(10, 5))
    pids = rng.integers(0, 3, size=10)
    sub = rng.integers(0, 2, size=10)
    expected = _rank_loss_by_anchor(feats, pids, sub, **params)
    assert L.rank_loss(feats, pids, sub, **params) == pytest.approx(expected, rel=1e-12)


def _sinkhorn_symmetric_2x2(d, c, eps, thresh, max_iter=100):
    """Sinkhorn on C = [[d, c], [c, d]] by hand: by symmetry u_0 = u_1 = u and v_0 = v_1 = v, so
    every row and column of exp(M) sums to e^((u+v)/eps) (e^(-d/eps) + e^(-c/eps)) and the
    cost is 2 e^((u+v)/eps) (d e^(-d/eps) + c e^(-c/eps)). Returns (cost, iterations)."""
    row = math.exp(-d / eps) + math.exp(-c / eps)
    log_half = math.log(0.5 + 1e-8)
    u = v = 0.0
    for it in range(1, max_iter + 1):
        u_new = u + eps * (log_half - math.log(math.exp((u + v) / eps) * row + 1e-6))
        v = v + eps * (log_half - math.log(math.exp((u_new + v) / eps) * row + 1e-6))
        err, u = 2 * abs(u_new - u), u_new
        if err < thresh:
            break
    cost = 2 * math.exp((u + v) / eps) * (d * math.exp(-d / eps) + c * math.exp(-c / eps))
    return cost, it


def test_sinkhorn_distance_2x2_by_hand():
    p = [[0.9, 0.1], [0.1, 0.9]]
    q = [[0.6, 0.4], [0.4, 0.6]]  # C = [[0.18, 0.5], [0.5, 0.18]]
    expected, iterations = _sinkhorn_symmetric_2x2(0.18, 0.5, eps=0.01, thresh=0.1)
    assert iterations == 2  # the first update moves u by 0.13 each (err 0.26 > 0.1)
    assert L.sinkhorn_distance(p, q) == pytest.approx(expected, rel=1e-12)
    # the plan puts almost all mass on the cheap diagonal: cost ~ d = 0.18
    assert expected == pytest.approx(0.18, rel=1e-5)
    # max_iter caps the loop: after one iteration the value differs (by ~1e-6 relative)
    one, _ = _sinkhorn_symmetric_2x2(0.18, 0.5, eps=0.01, thresh=0.1, max_iter=1)
    assert abs(one - expected) > 1e-8
    assert L.sinkhorn_distance(p, q, max_iter=1) == pytest.approx(one, rel=1e-12)


def _sinkhorn_by_loops(p, q, eps, max_iter, thresh):
    """utlis.py SinkhornDistance written with scalar loops (rows i of p, columns j of q)."""
    n = len(p)
    cost = [[sum((pi - qj) ** 2 for pi, qj in zip(p[i], q[j])) for j in range(n)] for i in range(n)]
    u, v = [0.0] * n, [0.0] * n
    log_mu = math.log(1.0 / n + 1e-8)
    for _ in range(max_iter):
        u_prev = list(u)
        u = [eps * (log_mu - math.log(sum(math.exp((-cost[i][j] + u[i] + v[j]) / eps)
                                          for j in range(n)) + 1e-6)) + u[i] for i in range(n)]
        v = [eps * (log_mu - math.log(sum(math.exp((-cost[i][j] + u[i] + v[j]) / eps)
                                          for i in range(n)) + 1e-6)) + v[j] for j in range(n)]
        if sum(abs(a - b) for a, b in zip(u, u_prev)) < thresh:
            break
    return sum(math.exp((-cost[i][j] + u[i] + v[j]) / eps) * cost[i][j]
               for i in range(n) for j in range(n))


@pytest.mark.parametrize("eps, scale", [(0.01, 2.0), (0.05, 8.0)])
def test_sinkhorn_distance_matches_scalar_loops(eps, scale):
    rng = np.random.default_rng(8)
    p = L.softmax(rng.normal(size=(5, 4)) * scale)
    q = L.softmax(rng.normal(size=(5, 4)) * scale)
    expected = _sinkhorn_by_loops(p.tolist(), q.tolist(), eps, 100, 0.1)
    assert L.sinkhorn_distance(p, q, eps=eps) == pytest.approx(expected, rel=1e-10)
    # p and q play different roles (rows of C / columns): swapping them changes the value
    assert L.sinkhorn_distance(q, p, eps=eps) != pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------- D-MMD
SIGMAS_BY_HAND = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 5, 10, 15, 20, 25, 30, 35, 100,
                  1e3, 1e4, 1e5, 1e6]


def k_hand(sq_dist):
    return sum(math.exp(-sq_dist / (2 * s)) for s in SIGMAS_BY_HAND)


def test_mmd_kernel_and_sigmas():
    assert list(L.SIGMAS) == SIGMAS_BY_HAND
    assert L.mmd_kernel([0.0, 0.0], [1.0, 1.0]) == pytest.approx(k_hand(2.0), rel=1e-12)
    assert L.mmd_kernel([0.0], [0.0]) == pytest.approx(19.0)
    gram = L.mmd_kernel([[0.0], [1.0]], [[0.0], [2.0], [3.0]])
    assert gram.shape == (2, 3)
    assert gram[1, 2] == pytest.approx(k_hand(4.0), rel=1e-12)


def test_mmd_hand_value_and_zero():
    # single points 0 and 1: 19 + 19 - 2 k(0, 1)
    assert L.mmd([[0.0]], [[1.0]]) == pytest.approx(38 - 2 * k_hand(1.0), rel=1e-12)
    x = np.random.default_rng(3).normal(size=(5, 3))
    assert L.mmd(x, x) == pytest.approx(0.0, abs=1e-12)


EMB_PK = np.array([[0.0], [1.0], [10.0], [12.0], [100.0], [103.0]])  # P=3, K=2, identity-major


def test_dmmd_distance_sets_shapes_and_order():
    within, between = L.dmmd_distance_sets(EMB_PK, P=3, K=2)
    assert within.shape == (6, 2)
    np.testing.assert_array_equal(within, [[0, 1], [1, 0], [0, 4], [4, 0], [0, 9], [9, 0]])
    assert between.shape == (2 + (3 - 1) ** 2 * 2, 2)
    expected_between = [
        [100, 144], [81, 121],        # block (0, 1)
        [100, 81], [144, 121],        # block (1, 0)
        [8100, 8649], [7744, 8281],   # block (1, 2)
        [10000, 9801], [10609, 10404],  # block (2, 0)
        [8100, 7744], [8649, 8281],   # block (2, 1)
    ]
    np.testing.assert_array_equal(between, expected_between)


def test_dmmd_terms():
    src = EMB_PK
    out = L.dmmd(src, src, P=3, K=2)
    assert set(out) == {"within", "between", "global"}
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in out.values())
    # a translated target keeps every distance: only the global term moves
    shifted = L.dmmd(src, src + 0.5, P=3, K=2)
    assert shifted["within"] == pytest.approx(0.0, abs=1e-12)
    assert shifted["between"] == pytest.approx(0.0, abs=1e-12)
    assert shifted["global"] > 0
    # P=2, K=1: x = {0, 1}, y = {1, 2} -> global = (38 - 2 k(0, 2)) / 4
    g = L.dmmd([[0.0], [1.0]], [[1.0], [2.0]], P=2, K=1)["global"]
    assert g == pytest.approx((38 - 2 * k_hand(4.0)) / 4, rel=1e-12)


def test_dmmd_rejects_wrong_layout():
    with pytest.raises(ValueError, match="P\\*K"):
        L.dmmd_distance_sets(EMB_PK, P=4, K=2)


# ---------------------------------------------------------------- KD-REID
def test_cosine_relation_kd():
    student = [[1.0, 0.0], [0.0, 1.0]]
    teacher = [[1.0, 0.0], [1.0, 1.0]]
    # off-diagonal Dcos: 1 vs 1 - 1/sqrt(2); Frobenius of two entries 1/sqrt(2) -> 1
    assert L.cosine_relation_kd(student, teacher) == pytest.approx(1.0, rel=1e-12)
    assert L.cosine_relation_kd(student, 5 * np.array(teacher)) == pytest.approx(1.0, rel=1e-12)
    x = np.random.default_rng(4).normal(size=(6, 8))
    assert L.cosine_relation_kd(x, x) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- MVD totals (16 outputs)
def test_mvd_output_names_are_path_major():
    from common.losses.mvd_total import MVD_OUTPUT_NAMES
    assert MVD_OUTPUT_NAMES == (
        "logit_v", "feat_v", "zlogit_v", "z_v", "logit_i", "feat_i", "zlogit_i", "z_i",
        "logit_vs", "feat_vs", "zlogit_vs", "z_vs", "logit_is", "feat_is", "zlogit_is", "z_is")


def _mvd16(rng, n=8, classes=5):
    from common.losses.mvd_total import MVD_OUTPUT_NAMES
    return {name: rng.normal(size=(n, classes if "logit" in name else 6)) * 2
            for name in MVD_OUTPUT_NAMES}


def test_mvd_original_total_is_the_trainers_weighted_sum():
    """reid/trainers.py: 0.5 / 0.5 / 0.25 / 0.25 per path (v, i, vs, is) for CE and rank loss,
    CML = Sinkhorn(softmax(logit_i), softmax(logit_v)), VSD on each modality branch at T,
    VCD pairing each shared view's observation with the other view's representation at T=1."""
    from common.losses.mvd_total import MVD_OUTPUT_NAMES
    o = _mvd16(np.random.default_rng(9))
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    sub = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    kw = dict(epsilon=0.2, m1=0.8, m2=1.1, a1=2.0, a2=1.9, T=3.0)
    w = dict(w_ce=1.5, w_rank=0.7, w_cml=5.0, w_vsd=3.0, w_vcd=0.5)
    sk = dict(sinkhorn_eps=0.05, sinkhorn_iter=40, sinkhorn_thresh=0.05)
    total, terms = L.mvd_original_total(tuple(o[k] for k in MVD_OUTPUT_NAMES), y, sub, **kw, **w, **sk)

    def ce(name):
        return L.cross_entropy(o[name], y, 0.2)

    def rank(name):
        return L.rank_loss(o[name], y, sub, 0.8, 1.1, 2.0, 1.9)

    def kl(obs, rep, T=1.0):
        return L.kl_div_original(o[obs], o[rep], T)

    expected_ce = (0.5 * (ce("logit_v") + ce("zlogit_v")) + 0.5 * (ce("logit_i") + ce("zlogit_i"))
                   + 0.25 * (ce("logit_vs") + ce("zlogit_vs")) + 0.25 * (ce("logit_is") + ce("zlogit_is")))
    expected_rank = (0.5 * (rank("feat_v") + rank("z_v")) + 0.5 * (rank("feat_i") + rank("z_i"))
                     + 0.25 * (rank("feat_vs") + rank("z_vs")) + 0.25 * (rank("feat_is") + rank("z_is")))
    expected_cml = L.sinkhorn_distance(L.softmax(o["logit_i"]), L.softmax(o["logit_v"]), 0.05, 40, 0.05)
    expected_vsd = kl("logit_i", "zlogit_i", 3.0) + kl("logit_v", "zlogit_v", 3.0)
    expected_vcd = 0.5 * kl("logit_vs", "zlogit_is") + 0.5 * kl("logit_is", "zlogit_vs")
    expected = (expected_ce, expected_rank, expected_cml, expected_vsd, expected_vcd)
    np.testing.assert_allclose(terms, expected, rtol=1e-12)
    assert total == pytest.approx(1.5 * expected_ce + 0.7 * expected_rank + 5.0 * expected_cml
                                  + 3.0 * expected_vsd + 0.5 * expected_vcd, rel=1e-12)
    # the defaults are mm01.py's: CE 1, rank 1, CML 8, VSD 2, VCD 2
    total_d, terms_d = L.mvd_original_total(tuple(o[k] for k in MVD_OUTPUT_NAMES), y, sub)
    assert total_d == pytest.approx(sum(wt * t for wt, t in zip((1, 1, 8, 2, 2), terms_d)), rel=1e-12)


def test_mvd_totals_reject_wrong_outputs():
    rng = np.random.default_rng(10)
    from common.losses.mvd_total import MVD_OUTPUT_NAMES
    o = _mvd16(rng)
    outputs = tuple(o[k] for k in MVD_OUTPUT_NAMES)
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    with pytest.raises(ValueError, match="16-tuple"):
        L.mvd_port_total(outputs[:15], y)
    with pytest.raises(ValueError, match="one row per label"):
        L.mvd_original_total(outputs, y[:6], np.zeros(6))
    with pytest.raises(ValueError, match="loss_func"):
        L.mvd_port_total(outputs, y, loss_func="id+kldiv")
