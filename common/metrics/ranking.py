"""Ranking metrics of re-identification: CMC, mAP and mINP (SPEC section 5).

Protocols (camera ids are 0-based; "kept list" = the ranking after the removals):

============  ==========================================  ===========================  =================
protocol      removed from a query's ranking              CMC                          AP
============  ==========================================  ===========================  =================
market1501    gallery items with same pid AND same cam    first hit onwards = 1        precision at hits
cuhk03        as market1501                               single-gallery-shot (below)  on the kept list
mars          as market1501                               as market1501                trapezoidal (below)
sysu          for cam3 queries (camid 2) every cam2       first hit after keeping the  precision at hits
              gallery item (camid 1), whatever its pid    first item of each gallery   of the kept list
                                                          pid                          (no de-dup)
regdb         nothing                                     plain                        precision at hits
============  ==========================================  ===========================  =================

* Ranking = ascending distance, STABLE (ties keep gallery order, as ``np.argsort(kind='stable')``).
* mINP = (#hits) / (0-based position of the last hit + 1), on the kept list.
* MARS AP (VKD): sum over hits i (0-based) at kept position r_i of
  (1/n_good) * (prec_i + prec_{i-1}) / 2, prec_i = (i+1)/(r_i+1), prec_{i-1} = i/r_i (1 if r_i = 0).
* CUHK03 single-gallery-shot: ``num_repeats`` (10) repeats; in each, every pid of the kept list is
  represented by ONE random image. The random draw: per repeat one priority per gallery image
  (``np.random.default_rng(seed).random((num_repeats, G))``); each query keeps, per pid, its
  highest-priority kept image. That is a uniform draw per (query, pid), reproducible, and shared by
  the vectorised code and the loop reference. CMC is averaged over the repeats.
* Queries without a valid match are skipped (``warnings.warn`` counts them); none valid -> ReidError.
* ``max_rank`` larger than the ranked list: the CMC is padded with its last value (never clipped),
  so the result always has ``max_rank`` entries.

How the vectorised kernel works (one chunk of query rows at a time, no per-query loop): every
metric depends only on the ranked positions of each query's same-pid gallery items (hits and
same-camera junk), and the position of an item in the stable order is
#(entries < its value) + #(equal entries at a lower gallery index). For float32 distances only
the entries <= the row's largest same-pid value can precede such an item, so just those are
extracted and sorted as 1-D keys ``row << 32 | order-preserving value bits`` and each item is
located with ``np.searchsorted`` (cost ~ chunk size + the ranked prefix, not a full sort of every
row). Other dtypes (float64, ints) sort whole rows and binary-search them (slower, same result).
Junk ranked before a hit is then subtracted. The SYSU pid de-duplication and the CUHK03 shots
compare (distance, gallery index) pairs. NaN distances raise ReidError (float32: entries of rows
whose query has no same-pid gallery item are not inspected).
"""
import warnings

import numpy as np

from common.errors import ReidError

PROTOCOLS = ('market1501', 'cuhk03', 'mars', 'sysu', 'regdb')
SYSU_INDOOR_IR_CAM = 2      # SYSU-MM01 cam3 (IR, indoor), 0-based
SYSU_SAME_ROOM_RGB_CAM = 1  # SYSU-MM01 cam2 (RGB, same room as cam3), 0-based
_JUNK_PROTOCOLS = ('market1501', 'cuhk03', 'mars')
_OPTIONS = {'num_repeats': 10, 'seed': 0, 'chunk': None}
_CHUNK_ELEMENTS = 1 << 23   # default rows per chunk = this // gallery size


def parse_options(protocol, kw):
    """Validate the protocol name and the extra keywords (``num_repeats``, ``seed``, ``chunk``)."""
    if protocol not in PROTOCOLS:
        raise ReidError(f"unknown evaluation protocol {protocol!r}; expected one of: {', '.join(PROTOCOLS)}")
    unknown = sorted(set(kw) - set(_OPTIONS))
    if unknown:
        raise ReidError(f"unknown evaluate() option(s) {unknown}; expected some of {sorted(_OPTIONS)}")
    opts = dict(_OPTIONS, **kw)
    if int(opts['num_repeats']) < 1:
        raise ReidError(f"num_repeats must be >= 1, got {opts['num_repeats']}")
    return opts


def check_labels(num_q, num_g, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Return the four label arrays as int64 after checking their shapes (one entry per row/column)."""
    if int(max_rank) < 1:
        raise ReidError(f"max_rank must be a positive integer, got {max_rank!r}")
    if num_q == 0 or num_g == 0:
        raise ReidError(f"cannot evaluate with {num_q} queries and {num_g} gallery items; both must be non-empty")
    out = []
    for name, arr, n, what in (('q_pids', q_pids, num_q, 'query'), ('g_pids', g_pids, num_g, 'gallery item'),
                               ('q_camids', q_camids, num_q, 'query'), ('g_camids', g_camids, num_g, 'gallery item')):
        a = np.asarray(arr)
        if a.ndim != 1 or a.shape[0] != n:
            raise ReidError(f"{name} must be a 1-D array with one entry per {what} ({n}), got shape {a.shape}")
        if a.dtype.kind not in 'iub':
            if a.dtype.kind != 'f' or not np.all(a == np.round(a)):
                raise ReidError(f"{name} must hold integer ids, got dtype {a.dtype}")
        out.append(a.astype(np.int64))
    return out


def check_distances(block):
    """Return a real-valued distance block (other dtypes are cast to float64)."""
    block = np.asarray(block)
    return block if block.dtype.kind in 'fiu' else block.astype(np.float64)


def cuhk03_priorities(num_g, num_repeats, seed):
    """Per-repeat random priority of each gallery image for the CUHK03 single-gallery-shot draw."""
    return np.random.default_rng(seed).random((num_repeats, num_g))


class RankContext:
    """What every chunk of queries shares: labels, pid grouping of the gallery, protocol data."""

    def __init__(self, q_pids, g_pids, q_camids, g_camids, protocol, opts):
        self.q_pids, self.g_pids, self.q_camids, self.g_camids = q_pids, g_pids, q_camids, g_camids
        self.protocol = protocol
        self.pid_perm = np.argsort(g_pids, kind='stable')
        self.pid_sorted = g_pids[self.pid_perm]
        self.upids, self.ustarts = np.unique(self.pid_sorted, return_index=True)
        if protocol == 'sysu':
            self.sysu_cols = np.flatnonzero(g_camids != SYSU_SAME_ROOM_RGB_CAM)
            self.sysu_pid_groups = {}
            for key, cols in (('all', np.arange(len(g_pids))), ('indoor', self.sysu_cols)):
                perm = np.argsort(g_pids[cols], kind='stable')
                starts = np.unique(g_pids[cols][perm], return_index=True)[1]
                self.sysu_pid_groups[key] = (perm, starts)
        if protocol == 'cuhk03':
            self.priorities = cuhk03_priorities(len(g_pids), int(opts['num_repeats']), opts['seed'])
            # per repeat, each pid's highest-priority gallery column (used for every other pid)
            self.best_cols = np.empty((len(self.priorities), len(self.upids)), np.int64)
            for r, prio in enumerate(self.priorities):
                order = np.lexsort((-prio[self.pid_perm], self.pid_sorted))
                self.best_cols[r] = self.pid_perm[order[self.ustarts]]

    def same_pid_pairs(self, qp):
        """(row, column) of every gallery item sharing the pid of query row ``row``; columns ascend."""
        lo = np.searchsorted(self.pid_sorted, qp, 'left')
        counts = np.searchsorted(self.pid_sorted, qp, 'right') - lo
        rows = np.repeat(np.arange(len(qp)), counts)
        shift = np.repeat(lo - (np.cumsum(counts) - counts), counts)
        return rows, self.pid_perm[np.arange(len(rows)) + shift]


def _count_below(sorted_rows, rows, vals, inclusive):
    """Vectorised binary search: per pair, #entries of ``sorted_rows[row]`` < val (<= if inclusive)."""
    n = sorted_rows.shape[1]
    lo = np.zeros(len(rows), np.int64)
    hi = np.full(len(rows), n, np.int64)
    for _ in range(int(n).bit_length()):
        mid = (lo + hi) >> 1
        probe = sorted_rows[rows, np.minimum(mid, n - 1)]
        cond = (probe <= vals) if inclusive else (probe < vals)
        active = lo < hi
        lo = np.where(active & cond, mid + 1, lo)
        hi = np.where(active & ~cond, mid, hi)
    return lo


def _ordered_bits(vals):
    """uint64 whose unsigned order is the numeric order of float32 ``vals`` (-0.0 counts as 0.0)."""
    bits = (vals + np.float32(0.0)).view(np.uint32)
    flip = np.where(bits >> np.uint32(31), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
    return (bits ^ flip).astype(np.uint64)


def _nan_error():
    return ReidError("the distance matrix contains NaN; check the features for NaN/inf before evaluating")


def _positions_by_sort(dist, rows, cols, vals):
    """Any dtype: sort every row, then binary-search each pair's value (#entries below it)."""
    if dist.dtype.kind == 'f' and np.isnan(dist).any():
        raise _nan_error()
    sorted_rows = np.sort(dist, axis=1)
    below = _count_below(sorted_rows, rows, vals, inclusive=False)
    return below, _count_below(sorted_rows, rows, vals, inclusive=True)


def _positions_by_prefix(dist, rows, cols, vals):
    """float32: only entries <= the row's largest pair value can rank before a pair, so only those
    are extracted and sorted, as one 1-D array of keys (row << 32 | value bits)."""
    num_r, num_g = dist.shape
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    threshold = np.full(num_r, -np.inf, np.float32)
    threshold[rows[starts]] = np.maximum.reduceat(vals, starts)
    selected = np.greater(dist, threshold[:, None])
    np.logical_not(selected, out=selected)          # <= threshold, or NaN (caught just below)
    flat = np.where(selected.ravel())[0]
    del selected
    sel_vals = dist.ravel()[flat]
    if np.isnan(sel_vals).any():
        raise _nan_error()
    sel_rows = flat // num_g
    keys = sel_rows.astype(np.uint64) << np.uint64(32)
    keys |= _ordered_bits(sel_vals)
    keys.sort()
    counts = np.bincount(sel_rows, minlength=num_r)
    row_start = (np.cumsum(counts) - counts)[rows]
    needles = (rows.astype(np.uint64) << np.uint64(32)) | _ordered_bits(vals)
    below = np.searchsorted(keys, needles, 'left') - row_start
    return below, np.searchsorted(keys, needles, 'right') - row_start


def stable_positions(dist, rows, cols):
    """0-based position of item ``cols`` in the stable ascending ranking of row ``rows`` of ``dist``.

    ``rows`` must be non-decreasing. Work is split into row blocks of about 8M entries.
    """
    out = np.zeros(len(rows), np.int64)
    num_g = dist.shape[1]
    step = max(1, _CHUNK_ELEMENTS // max(num_g, 1))
    index = np.arange(num_g)
    for a in range(0, dist.shape[0] if len(rows) else 0, step):
        ps, pe = np.searchsorted(rows, [a, a + step])
        if ps == pe:
            continue
        block, b_rows, b_cols = np.ascontiguousarray(dist[a:a + step]), rows[ps:pe] - a, cols[ps:pe]
        vals = block[b_rows, b_cols]
        find = _positions_by_prefix if block.dtype == np.float32 else _positions_by_sort
        below, upto = find(block, b_rows, b_cols, vals)
        tied = np.flatnonzero(upto - below > 1)   # ties: equal values at a lower gallery index first
        tie_step = max(1, step // 8)
        for s in range(0, len(tied), tie_step):
            t = tied[s:s + tie_step]
            equal_before = (block[b_rows[t]] == vals[t][:, None]) & (index < b_cols[t][:, None])
            below[t] += equal_before.sum(axis=1)
        out[ps:pe] = below
    return out


def _ranked_before(dist_rows, cols, ref_vals, ref_cols):
    """Boolean (R, len(cols)): is column ``cols[j]`` ranked before the reference item of each row."""
    return (dist_rows < ref_vals[:, None]) | ((dist_rows == ref_vals[:, None]) & (cols < ref_cols[:, None]))


def _sysu_groups(ctx, qc):
    """SYSU: (row mask, gallery columns or None=all, pid-group key) for outdoor/indoor queries."""
    indoor = qc == SYSU_INDOOR_IR_CAM
    return ((~indoor, None, 'all'), (indoor, ctx.sysu_cols, 'indoor'))


def rank_chunk(ctx, dist, q_index):
    """Per-query results for one chunk of distance rows (shared by evaluate and evaluate_features).

    Returns ``(valid, ap, inp, cmc_pos)``: whether the query has a valid match, its AP, its INP,
    and the 0-based position of its first hit in the CMC list (shape ``(R, n_shots)``; n_shots is
    ``num_repeats`` for cuhk03 and 1 otherwise).
    """
    dist = check_distances(dist)
    num_r = dist.shape[0]
    qp, qc = ctx.q_pids[q_index], ctx.q_camids[q_index]
    rows, cols = ctx.same_pid_pairs(qp)
    junk = np.zeros(len(rows), bool)
    if ctx.protocol in _JUNK_PROTOCOLS:
        junk = ctx.g_camids[cols] == qc[rows]
    if ctx.protocol == 'sysu':
        groups = _sysu_groups(ctx, qc)
        drop = groups[1][0][rows] & (ctx.g_camids[cols] == SYSU_SAME_ROOM_RGB_CAM)
        rows, cols, junk = rows[~drop], cols[~drop], junk[~drop]
        pos = np.zeros(len(rows), np.int64)
        for mask, gcols, _ in groups:
            members = np.flatnonzero(mask)
            pick = np.flatnonzero(mask[rows])
            if len(members) == 0 or len(pick) == 0:
                continue
            local_row = (np.cumsum(mask) - 1)[rows[pick]]
            sub = dist[members] if gcols is None else dist[np.ix_(members, gcols)]
            local_col = cols[pick] if gcols is None else np.searchsorted(gcols, cols[pick])
            pos[pick] = stable_positions(sub, local_row, local_col)
    else:
        pos = stable_positions(dist, rows, cols)

    # positions in the kept list: subtract the junk ranked before each hit of the same row
    order = np.lexsort((pos, rows))
    rows, cols, pos, junk = rows[order], cols[order], pos[order], junk[order]
    junk_excl = np.cumsum(junk) - junk
    junk_before = junk_excl - junk_excl[np.searchsorted(rows, rows, 'left')]
    hit = ~junk
    h_rows, h_cols, h_pos = rows[hit], cols[hit], pos[hit] - junk_before[hit]

    n_good = np.bincount(h_rows, minlength=num_r)
    valid = n_good > 0
    rank_in_hits = np.arange(len(h_rows)) - np.searchsorted(h_rows, h_rows, 'left')
    precision = (rank_in_hits + 1) / (h_pos + 1)
    if ctx.protocol == 'mars':
        previous = np.where(h_pos == 0, 1.0, rank_in_hits / np.maximum(h_pos, 1))
        precision = (precision + previous) / 2
    ap = np.bincount(h_rows, weights=precision, minlength=num_r) / np.maximum(n_good, 1)
    vrows = np.flatnonzero(valid)
    first = np.searchsorted(h_rows, vrows, 'left')
    last = np.searchsorted(h_rows, vrows, 'right') - 1
    inp = np.zeros(num_r)
    inp[vrows] = n_good[vrows] / (h_pos[last] + 1)

    n_shots = len(ctx.priorities) if ctx.protocol == 'cuhk03' else 1
    cmc_pos = np.full((num_r, n_shots), np.iinfo(np.int64).max)
    if ctx.protocol == 'sysu':
        cmc_pos[vrows, 0] = _sysu_dedup_positions(ctx, dist, qc, vrows, h_cols[first])
    elif ctx.protocol == 'cuhk03':
        cmc_pos[vrows] = _cuhk03_positions(ctx, dist, qp, vrows, h_rows, h_cols, first)
    else:
        cmc_pos[vrows, 0] = h_pos[first]
    return valid, ap, inp, cmc_pos


def _sysu_dedup_positions(ctx, dist, qc, vrows, first_cols):
    """SYSU CMC position = number of other pids with an item ranked before the first hit."""
    out = np.zeros(len(vrows), np.int64)
    for mask, gcols, key in _sysu_groups(ctx, qc):
        members, ref_cols = vrows[mask[vrows]], first_cols[mask[vrows]]
        if len(members) == 0:
            continue
        gcols = np.arange(dist.shape[1]) if gcols is None else gcols
        sub = dist[np.ix_(members, gcols)]
        before = _ranked_before(sub, gcols[None, :], dist[members, ref_cols], ref_cols)
        perm, starts = ctx.sysu_pid_groups[key]
        out[mask[vrows]] = np.logical_or.reduceat(before[:, perm], starts, axis=1).sum(axis=1)
    return out


def _cuhk03_positions(ctx, dist, qp, vrows, h_rows, h_cols, first):
    """CUHK03 single-gallery-shot CMC positions, shape (len(vrows), num_repeats)."""
    out = np.zeros((len(vrows), len(ctx.priorities)), np.int64)
    other_pid = ctx.upids[None, :] != qp[vrows][:, None]
    for r, prio in enumerate(ctx.priorities):
        own = h_cols[np.lexsort((-prio[h_cols], h_rows))[first]]   # own pid: best kept hit
        shots = ctx.best_cols[r]
        before = _ranked_before(dist[np.ix_(vrows, shots)], shots[None, :], dist[vrows, own], own)
        out[:, r] = (before & other_pid).sum(axis=1)
    return out


def summarize(parts, protocol, max_rank):
    """Combine per-chunk results into ``{'cmc', 'mAP', 'mINP', 'num_valid'}`` (SPEC 5)."""
    valid = np.concatenate([p[0] for p in parts])
    ap = np.concatenate([p[1] for p in parts])[valid]
    inp = np.concatenate([p[2] for p in parts])[valid]
    cmc_pos = np.concatenate([p[3] for p in parts])[valid]
    num_valid, num_q = int(valid.sum()), len(valid)
    if num_valid == 0:
        raise ReidError(f"none of the {num_q} queries has a valid match in the gallery under protocol "
                        f"'{protocol}'; check that query and gallery pids overlap and camids are 0-based")
    if num_valid < num_q:
        warnings.warn(f"{num_q - num_valid} of {num_q} queries have no valid gallery match under protocol "
                      f"'{protocol}' and were skipped", stacklevel=3)
    hist = np.bincount(np.minimum(cmc_pos, max_rank).ravel(), minlength=max_rank + 1)[:max_rank]
    return {'cmc': np.cumsum(hist) / cmc_pos.size, 'mAP': float(ap.mean()),
            'mINP': float(inp.mean()), 'num_valid': num_valid}


def evaluate(distmat, q_pids, g_pids, q_camids, g_camids, protocol='market1501', max_rank=50, **kw):
    """CMC / mAP / mINP of a query x gallery distance matrix under ``protocol`` (SPEC 5 table).

    Extra keywords: ``num_repeats`` (10) and ``seed`` (0) for the cuhk03 single-gallery-shot CMC;
    ``chunk`` = query rows per chunk (default: about 8M matrix entries per chunk).
    Returns ``{'cmc': float ndarray[max_rank] in 0..1, 'mAP': float, 'mINP': float, 'num_valid': int}``.
    """
    opts = parse_options(protocol, kw)
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ReidError(f"distmat must be a 2-D (num_query, num_gallery) array, got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    labels = check_labels(num_q, num_g, q_pids, g_pids, q_camids, g_camids, max_rank)
    ctx = RankContext(*labels, protocol, opts)
    step = int(opts['chunk'] or max(1, _CHUNK_ELEMENTS // num_g))
    parts = [rank_chunk(ctx, distmat[s:s + step], np.arange(s, min(s + step, num_q)))
             for s in range(0, num_q, step)]
    return summarize(parts, protocol, int(max_rank))
