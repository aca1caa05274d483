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


def test_kl_div_original_formula():
    # target = softmax(obs) = [.25, .75], input = softmax(rep) = [.5, .5]; mean over 2 elements
    expected = (0.25 * (math.log(0.25) - 0.5) + 0.75 * (math.log(0.75) - 0.5)) / 2
    assert L.kl_div_original([[0.0, LN3]], [[0.0, 0.0]]) == pytest.approx(expected, rel=1e-12)


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
