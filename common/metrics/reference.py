"""Per-query reference implementation of the SPEC 5 ranking metrics.

``evaluate_loop`` is deliberately plain: one stable argsort per query, then the protocol's
removals, CMC and AP written out exactly as the SPEC 5 table states them. It is the baseline that
the tests and ``benchmarks/eval_speed.py`` compare the vectorised ``evaluate`` against; it is too
slow for real galleries. It shares only input checking and the CUHK03 random priorities with
``common.metrics.ranking``.
"""
import warnings

import numpy as np

from common.errors import ReidError
from common.metrics.ranking import (SYSU_INDOOR_IR_CAM, SYSU_SAME_ROOM_RGB_CAM, check_distances,
                                    check_labels, cuhk03_priorities, parse_options)


def removed_from_ranking(protocol, q_pid, q_cam, ranked_pids, ranked_cams):
    """Mask of the ranked gallery items that the protocol removes for this query (the table of
    :mod:`common.metrics.ranking`; also used by the ranked-list pictures of ``common/viz``)."""
    if protocol in ('market1501', 'cuhk03', 'mars'):
        return (ranked_pids == q_pid) & (ranked_cams == q_cam)
    if protocol == 'sysu' and q_cam == SYSU_INDOOR_IR_CAM:
        return ranked_cams == SYSU_SAME_ROOM_RGB_CAM
    return np.zeros(len(ranked_pids), bool)


def _average_precision(protocol, hit_positions):
    """AP from the 0-based kept-list positions of the hits (market style or MARS trapezoid)."""
    total = 0.0
    n_good = len(hit_positions)
    for i, rank in enumerate(hit_positions):
        precision = (i + 1) / (rank + 1)
        if protocol == 'mars':
            previous = 1.0 if rank == 0 else i / rank
            total += (precision + previous) / 2 / n_good
        else:
            total += precision / n_good
    return total


def _first_per_pid(pids):
    """Mask keeping the first occurrence of every pid in a ranked list."""
    _, first_index = np.unique(pids, return_index=True)
    mask = np.zeros(len(pids), bool)
    mask[first_index] = True
    return mask


def best_per_pid(pids, priority):
    """Mask keeping, for every pid, its item of highest priority (one random shot per pid:
    the CUHK03 single-gallery-shot draw; also used by the ranked-list pictures of ``common/viz``)."""
    order = np.lexsort((-priority, pids))
    group_start = np.r_[True, pids[order][1:] != pids[order][:-1]]
    mask = np.zeros(len(pids), bool)
    mask[order[group_start]] = True
    return mask


def _cmc_curve(matches, max_rank):
    """1 from the first hit onwards, padded with its last value up to ``max_rank``."""
    curve = (np.cumsum(matches) >= 1).astype(np.float64)[:max_rank]
    return np.concatenate([curve, np.full(max_rank - len(curve), curve[-1])])


def evaluate_loop(distmat, q_pids, g_pids, q_camids, g_camids, protocol='market1501', max_rank=50, **kw):
    """Reference (one query at a time) version of :func:`common.metrics.evaluate`; same results."""
    opts = parse_options(protocol, kw)
    distmat = check_distances(distmat)
    if distmat.ndim != 2:
        raise ReidError(f"distmat must be a 2-D (num_query, num_gallery) array, got shape {distmat.shape}")
    if distmat.dtype.kind == 'f' and np.isnan(distmat).any():
        raise ReidError("the distance matrix contains NaN; check the features for NaN/inf before evaluating")
    num_q, num_g = distmat.shape
    q_pids, g_pids, q_camids, g_camids = check_labels(num_q, num_g, q_pids, g_pids, q_camids, g_camids, max_rank)
    max_rank = int(max_rank)
    priorities = cuhk03_priorities(num_g, int(opts['num_repeats']), opts['seed']) if protocol == 'cuhk03' else None
    cmcs, aps, inps = [], [], []
    for q in range(num_q):
        order = np.argsort(distmat[q], kind='stable')
        keep = ~removed_from_ranking(protocol, q_pids[q], q_camids[q], g_pids[order], g_camids[order])
        kept_pids = g_pids[order][keep]
        matches = kept_pids == q_pids[q]
        if not matches.any():
            continue
        hit_positions = np.flatnonzero(matches)
        aps.append(_average_precision(protocol, hit_positions))
        inps.append(len(hit_positions) / (hit_positions[-1] + 1))
        if protocol == 'sysu':
            cmcs.append(_cmc_curve(matches[_first_per_pid(kept_pids)], max_rank))
        elif protocol == 'cuhk03':
            shots = [_cmc_curve(matches[best_per_pid(kept_pids, prio[order][keep])], max_rank)
                     for prio in priorities]
            cmcs.append(np.mean(shots, axis=0))
        else:
            cmcs.append(_cmc_curve(matches, max_rank))
    if not aps:
        raise ReidError(f"none of the {num_q} queries has a valid match in the gallery under protocol "
                        f"'{protocol}'; check that query and gallery pids overlap and camids are 0-based")
    if len(aps) < num_q:
        warnings.warn(f"{num_q - len(aps)} of {num_q} queries have no valid gallery match under protocol "
                      f"'{protocol}' and were skipped", stacklevel=2)
    return {'cmc': np.mean(cmcs, axis=0), 'mAP': float(np.mean(aps)), 'mINP': float(np.mean(inps)),
            'num_valid': len(aps)}
