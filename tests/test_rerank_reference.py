"""common.metrics.re_ranking against an independent, literal implementation of k-reciprocal
re-ranking (Zhong, Zheng, Cao, Li, "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017) written below from the paper, with the conventions that
common/metrics/rerank.py documents: the joint (Q+G) distance scaled row by row to [0, 1];
N(p, k) = the k+1 nearest items of p, p included; V_p scaled to sum 1; and the two styles:
'paper' (k1/2 rounded up, '>=' in eq. 6, distances as given) and 'zhong', the authors'
released function (input squared, k1/2 = round-half-even, '>').

* N(p, k) and R(p, k) = {g in N(p, k) : p in N(g, k)} (eq. 4);
* R*(p, k1) = R(p, k1) plus every R(q, k1/2), q in R(p, k1), with
  |R(p, k1) & R(q, k1/2)| >= 2/3 |R(q, k1/2)| (eq. 6);
* V_p[g] = exp(-d(p, g)) on R*(p, k1) (eq. 7), then the mean of V over the k2 nearest (eq. 11);
* d_J(p, g) = 1 - sum min(V_p, V_g) / sum max(V_p, V_g) (eq. 10);
* d* = (1 - lambda) d_J + lambda d (eq. 12).

The hand-chosen case has no tied distances: rerank.py breaks ties by index only inside the
k nearest it selects (np.argpartition picks among items tied at the k-th place arbitrarily).
"""
import math

import numpy as np
import pytest

from common.metrics import re_ranking

TOL = 1e-6  # float32 production result vs the float64 reference (distances in [0, 1])

# 3 queries x 5 gallery items in 2-D (squared Euclidean distances, no ties in any row)
QUERY = np.array([[0.0, 0.0], [10.0, 1.0], [4.0, 7.0]])
GALLERY = np.array([[1.2, 0.1], [0.3, 2.1], [11.0, -0.4], [9.1, 3.3], [5.5, 4.6]])
# (k1, k2, lambda): odd and even k1 (k1/2 rounding), k2 = 1 (no query expansion) and > 1,
# k1 beyond the 7 other items (clipped)
SETTINGS = [(2, 1, 0.3), (3, 2, 0.3), (4, 2, 0.5), (5, 3, 0.2), (6, 4, 0.3), (20, 6, 0.3)]


def sq_dist(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).astype(np.float32)


def three_distances(query, gallery):
    return sq_dist(query, gallery), sq_dist(query, query), sq_dist(gallery, gallery)


# ---------------------------------------------------------------- the reference
class KReciprocal:
    """The paper's sets on the joint distance ``d`` (float64, rows scaled by their maximum)."""

    def __init__(self, q_g, q_q, g_g, style="paper"):
        d = np.block([[np.asarray(q_q, np.float64), np.asarray(q_g, np.float64)],
                      [np.asarray(q_g, np.float64).T, np.asarray(g_g, np.float64)]])
        self.style = style
        d = d ** 2 if style == "zhong" else d
        self.d = d / d.max(axis=1, keepdims=True)
        self.n = len(d)
        self.order = [sorted(range(self.n), key=lambda j, p=p: (self.d[p, j], j)) for p in range(self.n)]

    def nearest(self, p, k):
        """N(p, k): the k+1 nearest items (p itself first)."""
        return set(self.order[p][:k + 1])

    def reciprocal(self, p, k):
        """R(p, k) (eq. 4)."""
        return {g for g in self.nearest(p, k) if p in self.nearest(g, k)}

    def expanded(self, p, k1):
        """R*(p, k1) (eq. 6) and the candidates R(q, k1/2) with their decision."""
        zhong = self.style == "zhong"
        base = self.reciprocal(p, k1)
        half = round(k1 / 2) if zhong else math.ceil(k1 / 2)  # Python's round: half to even
        star, decisions = set(base), []
        for q in sorted(base):
            cand = self.reciprocal(q, half)
            accept = len(base & cand) > 2 / 3 * len(cand) if zhong else len(base & cand) >= 2 / 3 * len(cand)
            decisions.append((cand, len(base & cand), accept))
            if accept:
                star |= cand
        return star, decisions


def reference_re_ranking(q_g, q_q, g_g, k1, k2, lam, style="paper"):
    sets = KReciprocal(q_g, q_q, g_g, style)
    n, num_q = sets.n, len(q_q)
    V = np.zeros((n, n))
    for p in range(n):
        for g in sets.expanded(p, k1)[0]:
            V[p, g] = math.exp(-sets.d[p, g])
        V[p] /= V[p].sum()
    V = np.array([V[sets.order[p][:k2]].mean(axis=0) for p in range(n)])  # eq. 11 (k2 = 1: V itself)
    jaccard = np.array([[1.0 - np.minimum(V[p], V[g]).sum() / np.maximum(V[p], V[g]).sum()
                         for g in range(num_q, n)] for p in range(num_q)])
    return (1.0 - lam) * jaccard + lam * sets.d[:num_q, num_q:]


# ---------------------------------------------------------------- tests
def test_hand_worked_case():
    """1-D: query 0, gallery 1 and 3 (Euclidean), k1 = 1, lambda = 1/2.

    Scaled rows: q [0, 1/3, 1], g1 [1/2, 0, 1], g2 [1, 2/3, 0]. N(., 1): q {q, g1}, g1 {g1, q},
    g2 {g2, g1}, so R*(q) = R*(g1) = {q, g1} and R*(g2) = {g2}. With a = e^(-1/3), b = e^(-1/2):
    V_q = [1, a, 0]/(1+a), V_g1 = [b, 1, 0]/(1+b), V_g2 = [0, 0, 1].
    k2 = 1: d*(q, g1) = (1 - (b/(1+b) + a/(1+a)) / (1/(1+a) + 1/(1+b))) / 2 + 1/6, d*(q, g2) = 1.
    k2 = 2: V_q and V_g1 both become their mean, so d_J(q, g1) = 0 and d*(q, g1) = 1/6;
    V_g2 becomes [b/(1+b), 1/(1+b), 1]/2, whose first two entries are the smaller ones
    against V_q, so sum min = 1/2, d_J(q, g2) = 1 - (1/2)/(3/2) = 2/3 and d*(q, g2) = 5/6.
    """
    q_g, q_q, g_g = np.array([[1.0, 3.0]]), np.zeros((1, 1)), np.array([[0.0, 2.0], [2.0, 0.0]])
    a, b = math.exp(-1 / 3), math.exp(-1 / 2)
    jac = 1 - (b / (1 + b) + a / (1 + a)) / (1 / (1 + a) + 1 / (1 + b))
    np.testing.assert_allclose(re_ranking(q_g, q_q, g_g, k1=1, k2=1, lambda_value=0.5, style="paper"),
                               [[jac / 2 + 1 / 6, 1.0]], atol=TOL)
    np.testing.assert_allclose(re_ranking(q_g, q_q, g_g, k1=1, k2=2, lambda_value=0.5, style="paper"),
                               [[1 / 6, 5 / 6]], atol=TOL)


def test_the_case_exercises_the_expansion_rule():
    """Guard on the data: at k1 = 4 some candidate R(q, 2) sits exactly on the 2/3 boundary
    and adds items (so '>' instead of '>=' changes the result), and some is rejected."""
    sets = KReciprocal(*three_distances(QUERY, GALLERY))
    boundary_adds = rejected = 0
    for p in range(sets.n):
        star, decisions = sets.expanded(p, 4)
        base = sets.reciprocal(p, 4)
        boundary_adds += sum(1 for cand, inter, ok in decisions
                             if ok and 3 * inter == 2 * len(cand) and not cand <= base)
        rejected += sum(1 for _, _, ok in decisions if not ok)
    assert boundary_adds > 0 and rejected > 0


@pytest.mark.parametrize("style", ["zhong", "paper"])
@pytest.mark.parametrize("k1, k2, lam", SETTINGS)
def test_matches_the_literal_implementation_on_a_hand_chosen_case(k1, k2, lam, style):
    q_g, q_q, g_g = three_distances(QUERY, GALLERY)
    got = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam, style=style)
    assert got.shape == (3, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference_re_ranking(q_g, q_q, g_g, k1, k2, lam, style), rtol=0, atol=TOL)


@pytest.mark.parametrize("k1", [4, 5])
def test_the_styles_differ_where_the_conventions_do(k1):
    """k1 = 4: the boundary candidates of the guard below ('>' vs '>='); k1 = 5: k1/2 = 2
    (round half to even) vs 3. Squaring alone keeps every neighbour set but changes the weights."""
    q_g, q_q, g_g = three_distances(QUERY, GALLERY)
    zhong = re_ranking(np.sqrt(q_g), np.sqrt(q_q), np.sqrt(g_g), k1=k1, k2=1, style="zhong")
    paper = re_ranking(q_g, q_q, g_g, k1=k1, k2=1, style="paper")  # the same squared distances
    assert np.abs(zhong - paper).max() > 1e-3


def test_defaults_are_k1_20_k2_6_lambda_0_3():
    """Defaults of the paper (k1 = 20, k2 = 6, lambda = 0.3) on 8 x 32 clustered random
    features: enough items that k1 = 20 is not clipped."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, 6)) * 2.0
    query = centres[np.arange(8)] + rng.standard_normal((8, 6))
    gallery = centres[np.repeat(np.arange(8), 4)] + rng.standard_normal((32, 6))
    q_g, q_q, g_g = three_distances(query, gallery)
    np.testing.assert_allclose(re_ranking(q_g, q_q, g_g), reference_re_ranking(q_g, q_q, g_g, 20, 6, 0.3, "zhong"),
                               rtol=0, atol=TOL)
    with pytest.raises(Exception, match="style"):
        re_ranking(q_g, q_q, g_g, style="other")
