"""common.metrics (SPEC 5): hand-computed protocol cases, vectorised == loop, features, re-ranking
(checked against the paper in test_rerank_reference.py; the eval_speed benchmark in
test_benchmarks_smoke.py)."""
import warnings

import numpy as np
import pytest

from common.errors import ReidError
from common.metrics import (PROTOCOLS, compute_distance, evaluate, evaluate_features, evaluate_loop,
                            re_ranking)
from common.metrics.ranking import cuhk03_priorities

BOTH = [evaluate, evaluate_loop]


def _one_query(dists, g_pids, g_cams, q_pid=1, q_cam=0):
    return np.array([dists], np.float32), [q_pid], g_pids, [q_cam], g_cams


# query pid 1 cam 0; gallery ranked in index order: junk(pid1,cam0), pid2, hit, pid3, hit
MARKET_CASE = _one_query([0.1, 0.2, 0.3, 0.4, 0.5], [1, 2, 1, 3, 1], [0, 1, 1, 0, 2])


@pytest.mark.parametrize('fn', BOTH)
def test_market_junk_removed_ap_cmc_minp(fn):
    res = fn(*MARKET_CASE, protocol='market1501', max_rank=5)
    # kept list: pid2, HIT, pid3, HIT -> hits at 1 and 3
    assert res['mAP'] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert res['mINP'] == pytest.approx(2 / 4)
    np.testing.assert_allclose(res['cmc'], [0, 1, 1, 1, 1])
    assert res['num_valid'] == 1


@pytest.mark.parametrize('fn', BOTH)
def test_regdb_removes_nothing(fn):
    res = fn(*MARKET_CASE, protocol='regdb', max_rank=3)
    # hits at 0, 2, 4 (the same-camera item counts)
    assert res['mAP'] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert res['mINP'] == pytest.approx(3 / 5)
    np.testing.assert_allclose(res['cmc'], [1, 1, 1])


@pytest.mark.parametrize('fn', BOTH)
def test_mars_trapezoidal_ap(fn):
    # hits at kept positions 1 and 3: (1/2)[(1/2 + 0/1)/2 + (2/4 + 1/3)/2] = 1/3
    assert fn(*MARKET_CASE, protocol='mars')['mAP'] == pytest.approx(1 / 3)
    # hits at 0 and 2: (1/2)[(1 + 1)/2 + (2/3 + 1/2)/2] = 19/24 (market would give 5/6)
    case = _one_query([0.1, 0.2, 0.3], [1, 2, 1], [1, 0, 2])
    assert fn(*case, protocol='mars')['mAP'] == pytest.approx(19 / 24)
    assert fn(*case, protocol='market1501')['mAP'] == pytest.approx(5 / 6)


# SYSU gallery (0-based cams): pid2 cam2, pid1 cam2, pid3 cam1, pid3 cam4, pid1 cam1, pid1 cam5
SYSU_GALLERY = ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [2, 1, 3, 3, 1, 1], [1, 1, 0, 3, 0, 4])


@pytest.mark.parametrize('fn', BOTH)
def test_sysu_cam3_query_drops_all_cam2_and_dedups_cmc_only(fn):
    res = fn(*_one_query(*SYSU_GALLERY, q_cam=2), protocol='sysu', max_rank=3)
    # cam2 items of pid 2 AND pid 1 removed -> pid3, pid3, HIT, HIT
    assert res['mAP'] == pytest.approx((1 / 3 + 2 / 4) / 2)      # AP: no de-dup
    assert res['mINP'] == pytest.approx(2 / 4)
    np.testing.assert_allclose(res['cmc'], [0, 1, 1])           # CMC: pid3 once, then the hit


@pytest.mark.parametrize('fn', BOTH)
def test_sysu_cam6_query_keeps_cam2(fn):
    res = fn(*_one_query(*SYSU_GALLERY, q_cam=5), protocol='sysu', max_rank=2)
    # nothing removed: pid2, HIT, pid3, pid3, HIT, HIT
    assert res['mAP'] == pytest.approx((1 / 2 + 2 / 5 + 3 / 6) / 3)
    assert res['mINP'] == pytest.approx(3 / 6)
    np.testing.assert_allclose(res['cmc'], [0, 1])


@pytest.mark.parametrize('fn', BOTH)
def test_cuhk03_single_gallery_shot(fn):
    # pid2 has two images ranked before the hit: one shot per pid -> the hit is 2nd, never 3rd
    case = _one_query([0.1, 0.2, 0.3, 0.4], [2, 2, 1, 3], [1, 1, 1, 1])
    res = fn(*case, protocol='cuhk03', max_rank=3)
    np.testing.assert_allclose(res['cmc'], [0, 1, 1])
    assert res['mAP'] == pytest.approx(1 / 3)                   # AP on the full kept list
    assert fn(*case, protocol='market1501', max_rank=3)['cmc'][1] == 0


@pytest.mark.parametrize('fn', BOTH)
def test_cuhk03_random_shot_of_the_query_pid(fn):
    # pid1 at 0.1 and 0.3, pid2 at 0.2: rank-1 iff the drawn pid1 shot is the 0.1 one
    case = _one_query([0.1, 0.2, 0.3], [1, 2, 1], [1, 1, 1])
    prio = cuhk03_priorities(3, 10, 0)
    res = fn(*case, protocol='cuhk03', max_rank=2)
    np.testing.assert_allclose(res['cmc'], [np.mean(prio[:, 0] > prio[:, 2]), 1])
    many = fn(*case, protocol='cuhk03', max_rank=2, num_repeats=400, seed=3)
    assert 0.4 < many['cmc'][0] < 0.6


@pytest.mark.parametrize('fn', BOTH)
def test_query_without_match_is_skipped_with_warning(fn):
    dist = np.array([[0.1, 0.2], [0.3, 0.4]], np.float32)
    with pytest.warns(UserWarning, match='1 of 2 queries'):
        res = fn(dist, [1, 7], [1, 2], [0, 0], [1, 1], protocol='market1501', max_rank=2)
    assert res['num_valid'] == 1 and res['mAP'] == pytest.approx(1.0)


@pytest.mark.parametrize('fn', BOTH)
def test_all_queries_skipped_raises(fn):
    # the only same-pid item is same-camera junk
    with pytest.raises(ReidError, match='none of the 1 queries'):
        fn(np.array([[0.5]]), [1], [1], [0], [0], protocol='market1501')


@pytest.mark.parametrize('fn', BOTH)
def test_bad_protocol_nan_and_shapes_raise(fn):
    with pytest.raises(ReidError, match='market1501, cuhk03, mars, sysu, regdb'):
        fn(*MARKET_CASE, protocol='viper')
    with pytest.raises(ReidError, match='NaN'):
        fn(np.array([[np.nan, 0.1]], np.float32), [1], [1, 2], [0], [1, 1])
    with pytest.raises(ReidError, match='g_pids'):
        fn(np.zeros((1, 2)), [1], [1, 2, 3], [0], [1, 1])


@pytest.mark.parametrize('fn', BOTH)
def test_max_rank_beyond_gallery_pads_with_last_value(fn):
    res = fn(*MARKET_CASE, max_rank=8)
    np.testing.assert_allclose(res['cmc'], [0, 1, 1, 1, 1, 1, 1, 1])


def _random_case(rng, float_type, ties):
    num_q, num_g = int(rng.integers(5, 40)), int(rng.integers(5, 90))
    num_ids, num_cams = int(rng.integers(2, 10)), int(rng.integers(1, 7))
    labels = (rng.integers(0, num_ids, num_q), rng.integers(0, num_ids, num_g),
              rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g))
    dist = rng.integers(-3, 4, (num_q, num_g)) * 0.5 if ties else rng.standard_normal((num_q, num_g))
    return (dist.astype(float_type),) + labels


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_vectorised_equals_loop_on_random_data(protocol):
    rng = np.random.default_rng(PROTOCOLS.index(protocol))
    checked = 0
    for trial in range(24):
        case = _random_case(rng, (np.float32, np.float64)[trial % 2], ties=trial % 3 == 0)
        max_rank = int(rng.integers(1, 30))
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            try:
                ref = evaluate_loop(*case, protocol=protocol, max_rank=max_rank)
            except ReidError:
                with pytest.raises(ReidError):
                    evaluate(*case, protocol=protocol, max_rank=max_rank)
                continue
            for chunk in (None, 4):
                got = evaluate(*case, protocol=protocol, max_rank=max_rank, chunk=chunk)
                np.testing.assert_allclose(got['cmc'], ref['cmc'], atol=1e-6)
                assert abs(got['mAP'] - ref['mAP']) < 1e-6 and abs(got['mINP'] - ref['mINP']) < 1e-6
                assert got['num_valid'] == ref['num_valid']
                checked += 1
    assert checked >= 20


def _features(rng, q_pids, g_pids, dim=8, noise=0.8):
    """Query and gallery features: a shared centre per pid plus Gaussian noise."""
    centres = rng.standard_normal((int(max(q_pids.max(), g_pids.max())) + 1, dim))
    return tuple((centres[p] + noise * rng.standard_normal((len(p), dim))).astype(np.float32)
                 for p in (q_pids, g_pids))


def test_compute_distance_formulas():
    rng = np.random.default_rng(0)
    qf, gf = rng.standard_normal((4, 6)), rng.standard_normal((5, 6))
    sq = ((qf[:, None, :] - gf[None, :, :]) ** 2).sum(-1)
    qn, gn = qf / np.linalg.norm(qf, axis=1, keepdims=True), gf / np.linalg.norm(gf, axis=1, keepdims=True)
    expected = {'euclidean': np.sqrt(sq), 'sqeuclidean': sq, 'cosine': 1 - qn @ gn.T, 'neg_dot': -qf @ gf.T}
    for metric, want in expected.items():
        got = compute_distance(qf, gf, metric, chunk=3)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=metric)
    np.testing.assert_allclose(compute_distance(qf, gf, 'neg_dot', normalize=True), -qn @ gn.T, atol=1e-5)
    with pytest.raises(ReidError, match='unknown distance metric'):
        compute_distance(qf, gf, 'manhattan')


@pytest.mark.parametrize('metric', ['euclidean', 'sqeuclidean', 'cosine', 'neg_dot'])
def test_evaluate_features_equals_evaluate_of_distances(metric):
    rng = np.random.default_rng(1)
    q_pids, g_pids = rng.integers(0, 12, 70), rng.integers(0, 12, 300)
    q_cams, g_cams = rng.integers(0, 4, 70), rng.integers(0, 4, 300)
    qf, gf = _features(rng, q_pids, g_pids)
    for protocol in ('market1501', 'sysu', 'cuhk03'):
        for normalize in (False, True):
            full = evaluate(compute_distance(qf, gf, metric, normalize, chunk=16), q_pids, g_pids, q_cams, g_cams,
                            protocol, 20)
            feat = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, protocol, metric, 20, chunk=16,
                                     normalize=normalize)
            np.testing.assert_allclose(feat['cmc'], full['cmc'], atol=1e-6)
            assert abs(feat['mAP'] - full['mAP']) < 1e-6 and abs(feat['mINP'] - full['mINP']) < 1e-6


def _rerank_toy(seed):
    rng = np.random.default_rng(seed)
    g_pids, q_pids = np.repeat(np.arange(30), 8), np.repeat(np.arange(30), 2)
    g_cams, q_cams = rng.integers(0, 4, len(g_pids)), rng.integers(4, 6, len(q_pids))
    qf, gf = _features(rng, q_pids, g_pids, dim=16)
    # Euclidean: the released re-ranking function (the default style) squares its input
    dists = [compute_distance(a, b, 'euclidean') for a, b in ((qf, gf), (qf, qf), (gf, gf))]
    return dists, (q_pids, g_pids, q_cams, g_cams)


def test_re_ranking_shape_finite_and_helps_on_clusters():
    for seed in range(2):
        (q_g, q_q, g_g), labels = _rerank_toy(seed)
        final = re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3)
        assert final.shape == q_g.shape and final.dtype == np.float32 and np.isfinite(final).all()
        assert final.min() >= 0 and final.max() <= 1 + 1e-6
        before, after = evaluate(q_g, *labels)['mAP'], evaluate(final, *labels)['mAP']
        assert after > before + 0.02, (before, after)
    only_original = re_ranking(q_g, q_q, g_g, lambda_value=1.0)
    np.testing.assert_allclose(only_original, q_g ** 2 / np.maximum(q_g.max(1), q_q.max(1))[:, None] ** 2, rtol=1e-5)
    paper = re_ranking(q_g, q_q, g_g, lambda_value=1.0, style="paper")
    np.testing.assert_allclose(paper, q_g / np.maximum(q_g.max(1), q_q.max(1))[:, None], rtol=1e-5)


def test_re_ranking_is_permutation_equivariant():
    (q_g, q_q, g_g), _ = _rerank_toy(5)
    rng = np.random.default_rng(0)
    qp, gp = rng.permutation(q_g.shape[0]), rng.permutation(q_g.shape[1])
    base = re_ranking(q_g, q_q, g_g)
    permuted = re_ranking(q_g[qp][:, gp], q_q[qp][:, qp], g_g[gp][:, gp])
    np.testing.assert_allclose(permuted, base[qp][:, gp], atol=1e-6)
    with pytest.raises(ReidError, match='non-negative'):
        re_ranking(-q_g, q_q, g_g)
