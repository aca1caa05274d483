"""Evaluation-speed benchmark for common.metrics (SPEC 5: vectorised, chunked metrics).

Part ``market``: Market-1501-size random data (3,368 queries x 15,913 gallery, 750 ids + 2,793
distractors of pid 0, 6 cameras, seeded). Features are identity centres plus noise (64-d), so
every query has several same-pid gallery items and the ranking quality is that of a reasonable
model (mAP ~0.77, mINP ~0.3). ``evaluate`` (vectorised) is timed against ``evaluate_loop`` (per
query) on the same float32 distance matrix; CMC, mAP and mINP must agree to 1e-6.
Target: >= 30x faster than the loop.

Part ``msmt``: MSMT17-size feature-level run (11,659 x 82,161, 2048-d float32, 3,060 ids,
15 cameras) through ``evaluate_features`` (euclidean), in a child process so that its peak
resident memory (``ru_maxrss``) is not polluted by the Market part. Target: < 2 GB peak RSS.

Usage: python benchmarks/eval_speed.py [--quick] [--part {market,msmt,all}]
(--quick: small sizes, a few seconds, for the smoke test).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from common.metrics import compute_distance, evaluate, evaluate_features, evaluate_loop  # noqa: E402

SIZES = {  # (num_query, num_gallery, num_ids, num_distractors, num_cams, feature_dim, noise)
    'market': (3368, 15913, 750, 2793, 6, 64, 1.0),
    'market_quick': (300, 1500, 60, 200, 6, 64, 1.0),
    'msmt': (11659, 82161, 3060, 0, 15, 2048, 3.0),
    'msmt_quick': (500, 4000, 150, 0, 15, 128, 1.5),
}
MARKET_TARGET_RATIO = 30.0
MSMT_TARGET_MB = 2048.0


def make_labels(rng, num_q, num_g, num_ids, num_distractors, num_cams):
    """Query/gallery pids and 0-based cameras; pid 0 = distractors (gallery only)."""
    g_pids = np.concatenate([np.zeros(num_distractors, np.int64),
                             rng.integers(1, num_ids + 1, num_g - num_distractors)])
    q_pids = rng.integers(1, num_ids + 1, num_q)
    return q_pids, g_pids, rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)


def make_features(rng, pids, centres, noise, block=8192):
    """float32 features = centre of the pid + Gaussian noise, written block by block (no big temps)."""
    out = np.empty((len(pids), centres.shape[1]), np.float32)
    for s in range(0, len(pids), block):
        part = rng.standard_normal((min(block, len(pids) - s), centres.shape[1]), dtype=np.float32)
        part *= np.float32(noise)
        part += centres[pids[s:s + block]]
        out[s:s + block] = part
    return out


def make_data(key, seed=0):
    num_q, num_g, num_ids, num_distr, num_cams, dim, noise = SIZES[key]
    rng = np.random.default_rng(seed)
    q_pids, g_pids, q_cams, g_cams = make_labels(rng, num_q, num_g, num_ids, num_distr, num_cams)
    centres = rng.standard_normal((num_ids + 1, dim), dtype=np.float32) * np.float32(np.sqrt(64.0 / dim))
    return (make_features(rng, q_pids, centres, noise * np.sqrt(64.0 / dim)),
            make_features(rng, g_pids, centres, noise * np.sqrt(64.0 / dim)), q_pids, g_pids, q_cams, g_cams)


def run_market(quick):
    """Time evaluate vs evaluate_loop on the same distance matrix; return a result row."""
    key = 'market_quick' if quick else 'market'
    qf, gf, q_pids, g_pids, q_cams, g_cams = make_data(key)
    distmat = compute_distance(qf, gf, 'euclidean')
    args = (distmat, q_pids, g_pids, q_cams, g_cams, 'market1501', 50)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fast = evaluate(*args)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    slow = evaluate_loop(*args)
    loop_time = time.perf_counter() - start
    diff = max(float(np.abs(fast['cmc'] - slow['cmc']).max()), abs(fast['mAP'] - slow['mAP']),
               abs(fast['mINP'] - slow['mINP']))
    print(f"[market] {distmat.shape[0]}x{distmat.shape[1]}: evaluate {min(times):.3f}s (runs: "
          f"{', '.join(f'{t:.3f}' for t in times)}), evaluate_loop {loop_time:.2f}s, "
          f"speed-up {loop_time / min(times):.1f}x; mAP {fast['mAP']:.4f} R1 {fast['cmc'][0]:.4f} "
          f"mINP {fast['mINP']:.4f}; max |vectorised - loop| = {diff:.2e}")
    if diff > 1e-6 or fast['num_valid'] != slow['num_valid']:
        raise SystemExit(f"MISMATCH between evaluate and evaluate_loop: max difference {diff:.3e}")
    return {'part': 'market', 'size': f"{distmat.shape[0]}x{distmat.shape[1]}", 'vectorised_s': min(times),
            'loop_s': loop_time, 'ratio': loop_time / min(times), 'max_diff': diff}


def msmt_child(quick):
    """Runs in its own process: evaluate_features on MSMT17-size data; prints one JSON line."""
    key = 'msmt_quick' if quick else 'msmt'
    qf, gf, q_pids, g_pids, q_cams, g_cams = make_data(key)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    start = time.perf_counter()
    res = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, 'market1501', 'euclidean')
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({'part': 'msmt', 'size': f"{len(qf)}x{len(gf)}x{qf.shape[1]}", 'time_s': elapsed,
                      'peak_rss_mb': peak, 'rss_after_data_mb': rss_data,
                      'features_mb': (qf.nbytes + gf.nbytes) / 2 ** 20, 'mAP': res['mAP'],
                      'rank1': float(res['cmc'][0]), 'mINP': res['mINP']}))


def run_msmt(quick):
    cmd = [sys.executable, os.path.abspath(__file__), '--msmt-child'] + (['--quick'] if quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"MSMT child failed (exit {proc.returncode}):\n{proc.stderr}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"[msmt] {row['size']}: evaluate_features {row['time_s']:.2f}s, peak RSS {row['peak_rss_mb']:.0f} MB "
          f"(features alone {row['features_mb']:.0f} MB, after generating them {row['rss_after_data_mb']:.0f} MB); "
          f"mAP {row['mAP']:.4f} R1 {row['rank1']:.4f} mINP {row['mINP']:.4f}")
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='small sizes (smoke test, a few seconds)')
    parser.add_argument('--part', choices=('market', 'msmt', 'all'), default='all')
    parser.add_argument('--msmt-child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.msmt_child:
        return msmt_child(args.quick)
    rows = []
    if args.part in ('market', 'all'):
        rows.append(run_market(args.quick))
    if args.part in ('msmt', 'all'):
        rows.append(run_msmt(args.quick))
    print('\npart    size                 time (s)    compare                           target')
    for r in rows:
        if r['part'] == 'market':
            ok = 'met' if r['ratio'] >= MARKET_TARGET_RATIO else 'MISSED'
            print(f"market  {r['size']:<20} {r['vectorised_s']:>8.3f}    loop {r['loop_s']:.2f}s = "
                  f"{r['ratio']:.1f}x slower{'':<6} >= {MARKET_TARGET_RATIO:.0f}x: {ok}")
        else:
            ok = 'met' if r['peak_rss_mb'] < MSMT_TARGET_MB else 'MISSED'
            print(f"msmt    {r['size']:<20} {r['time_s']:>8.2f}    peak RSS {r['peak_rss_mb']:.0f} MB{'':<14}"
                  f"< {MSMT_TARGET_MB:.0f} MB: {ok}")
    if args.quick:
        print('(--quick: sizes are small; targets apply to the full sizes only)')


if __name__ == '__main__':
    main()
