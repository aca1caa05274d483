"""Identity-balanced batch samplers (SPEC section 3): pure numpy, seeded and rank-aware.

Every sampler is a plain object holding the labels; it never touches data. ``batches(epoch,
rank, world_size)`` returns this rank's batches for one epoch and ``indices(...)`` the same
items flattened.

Randomness and the rank split rule (the same for all samplers):
  * one epoch's full batch list is generated on every rank from
    ``np.random.default_rng(np.random.SeedSequence([seed, epoch]))``, so a given
    (seed, epoch) is reproducible and different epochs draw different batches;
  * rank r takes batches ``r::world_size`` of that list, truncated to
    ``len(list) // world_size`` batches so that every rank runs the same number of steps
    (at most ``world_size - 1`` trailing batches of an epoch are dropped). Ranks therefore get
    disjoint batches (an item may still recur in two batches, as sampling with replacement
    allows).
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch (module docstring): SeedSequence([seed, epoch])."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"sampler seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))


def split_for_rank(batches: list, rank: int, world_size: int) -> list:
    """Rank ``rank``'s share: ``batches[rank::world_size]`` cut to ``len(batches)//world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"expected 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    per_rank = len(batches) // world_size
    if per_rank == 0:
        raise ValueError(f"an epoch has {len(batches)} batches, fewer than world_size={world_size}; "
                         "use fewer ranks or a smaller batch")
    return batches[rank::world_size][:per_rank]


def group_by_pid(pids: Sequence[int]) -> Dict[int, np.ndarray]:
    """Map each pid (ascending) to the int64 array of its item indices (ascending)."""
    arr = np.asarray(pids).reshape(-1)
    if arr.size == 0:
        raise ValueError("sampler: the label list is empty")
    return {int(p): np.flatnonzero(arr == p).astype(np.int64) for p in np.unique(arr)}


def _check_pk(P: int, K: int, n_ids: int, name: str) -> None:
    if P < 1 or K < 1:
        raise ValueError(f"{name}: P and K must be >= 1, got P={P}, K={K}")
    if n_ids < P:
        raise ValueError(f"{name}: P={P} identities per batch but only {n_ids} identities in the data")


class PKSampler:
    """VKD P x K sampler (SPEC 3 "PK sampler (VKD)").

    Items are tracklets labelled by ``pids``. Each epoch the identities are shuffled and cut
    into ``n_ids // P`` groups of P; for each identity K of its items are drawn, without
    replacement when it has >= K items, else with replacement. A batch is identity-major:
    position ``p*K + k`` holds sample k of the batch's p-th identity.
    """

    def __init__(self, pids: Sequence[int], P: int, K: int, seed: int = 0):
        self.by_pid = group_by_pid(pids)
        self.P, self.K, self.seed = int(P), int(K), int(seed)
        _check_pk(self.P, self.K, len(self.by_pid), "PKSampler")

    @property
    def num_batches(self) -> int:
        """Batches in one epoch over all ranks (``n_ids // P``)."""
        return len(self.by_pid) // self.P

    def _epoch_batches(self, epoch: int) -> List[List[int]]:
        rng = epoch_rng(self.seed, epoch)
        ids = np.array(sorted(self.by_pid))
        ids = ids[rng.permutation(len(ids))]
        out = []
        for b in range(self.num_batches):
            batch: List[int] = []
            for pid in ids[b * self.P:(b + 1) * self.P]:
                items = self.by_pid[int(pid)]
                take = rng.choice(items, size=self.K, replace=len(items) < self.K)
                batch.extend(int(i) for i in take)
            out.append(batch)
        return out

    def batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> List[List[int]]:
        """This rank's batches of ``epoch``, each a list of P*K item indices (identity-major)."""
        return split_for_rank(self._epoch_batches(epoch), rank, world_size)

    def indices(self, epoch: int, rank: int = 0, world_size: int = 1) -> List[int]:
        """This rank's batches of ``epoch`` flattened into one index list."""
        return [i for batch in self.batches(epoch, rank, world_size) for i in batch]


class RandomIdentitySampler:
    """torchreid RandomIdentitySampler (SPEC 3), strictly P x K ordered.

    Per pid: its items, padded to K by drawing with replacement when it has fewer, are
    shuffled and cut into K-chunks (an incomplete last chunk is dropped). Then, repeatedly,
    P distinct pids are drawn uniformly among those still holding chunks and each gives its
    next chunk; sampling stops when fewer than P pids hold chunks. Batches are identity-major
    (``p*K + k``) as D-MMD reshapes them to (P, K, D).
    """

    def __init__(self, pids: Sequence[int], P: int, K: int, seed: int = 0):
        self.by_pid = group_by_pid(pids)
        self.P, self.K, self.seed = int(P), int(K), int(seed)
        _check_pk(self.P, self.K, len(self.by_pid), "RandomIdentitySampler")

    def _epoch_batches(self, epoch: int) -> List[List[int]]:
        rng = epoch_rng(self.seed, epoch)
        chunks: Dict[int, List[np.ndarray]] = {}
        for pid in sorted(self.by_pid):
            items = self.by_pid[pid]
            if len(items) < self.K:
                items = rng.choice(items, size=self.K, replace=True)
            items = items[rng.permutation(len(items))]
            n_full = len(items) // self.K
            chunks[pid] = [items[c * self.K:(c + 1) * self.K] for c in range(n_full)]
        out = []
        while True:
            available = [pid for pid in sorted(chunks) if chunks[pid]]
            if len(available) < self.P:
                break
            chosen = rng.choice(np.array(available), size=self.P, replace=False)
            out.append([int(i) for pid in chosen for i in chunks[int(pid)].pop(0)])
        return out

    def batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> List[List[int]]:
        """This rank's batches of ``epoch``, each a list of P*K item indices (identity-major)."""
        return split_for_rank(self._epoch_batches(epoch), rank, world_size)

    def indices(self, epoch: int, rank: int = 0, world_size: int = 1) -> List[int]:
        """This rank's batches of ``epoch`` flattened into one index list."""
        return [i for batch in self.batches(epoch, rank, world_size) for i in batch]


class CrossModalIdentitySampler:
    """MVD cross-modal IdentitySampler (SPEC 3; defaults B=8 identities x P=4 pairs).

    With N = max(#rgb, #ir) an epoch has ``N // (B*P) + 1`` batches. Per batch, B identities
    are chosen without replacement; per identity P RGB and P IR item indices are drawn with
    replacement. Item i of a batch is ``(rgb_idx[i], ir_idx[i], labels[i])``, id-major
    (position ``b*P + p``), so the model input is [B*P RGB | B*P IR] in the same identity
    order. Identities are those present in both modalities (SYSU and RegDB train ids always
    are); ``labels`` are the label values themselves.
    """

    def __init__(self, rgb_labels: Sequence[int], ir_labels: Sequence[int], B: int = 8,
                 P: int = 4, seed: int = 0, extra_batch: bool = True):
        self.extra_batch = bool(extra_batch)
        self.rgb_by_pid = group_by_pid(rgb_labels)
        self.ir_by_pid = group_by_pid(ir_labels)
        self.ids = np.array(sorted(set(self.rgb_by_pid) & set(self.ir_by_pid)), dtype=np.int64)
        self.B, self.P, self.seed = int(B), int(P), int(seed)
        if self.B < 1 or self.P < 1:
            raise ValueError(f"CrossModalIdentitySampler: B and P must be >= 1, got B={B}, P={P}")
        if len(self.ids) < self.B:
            raise ValueError(f"CrossModalIdentitySampler: B={self.B} identities per batch but only "
                             f"{len(self.ids)} identities have both RGB and IR images")
        self.n_items = max(len(np.asarray(rgb_labels).reshape(-1)),
                           len(np.asarray(ir_labels).reshape(-1)))

    @property
    def num_batches(self) -> int:
        """Batches in one epoch over all ranks: ``N // (B*P) + 1``, N = max(#rgb, #ir)
        (``extra_batch=False``: ``N // (B*P)``, what the MindSpore port's loader yields after
        ``drop_remainder``)."""
        return self.n_items // (self.B * self.P) + int(self.extra_batch)

    def _epoch_batches(self, epoch: int) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rng = epoch_rng(self.seed, epoch)
        out = []
        for _ in range(self.num_batches):
            chosen = rng.choice(self.ids, size=self.B, replace=False)
            rgb, ir = [], []
            for pid in chosen:
                rgb.append(rng.choice(self.rgb_by_pid[int(pid)], size=self.P, replace=True))
                ir.append(rng.choice(self.ir_by_pid[int(pid)], size=self.P, replace=True))
            labels = np.repeat(chosen, self.P).astype(np.int64)
            out.append((np.concatenate(rgb).astype(np.int64), np.concatenate(ir).astype(np.int64),
                        labels))
        return out

    def batches(self, epoch: int, rank: int = 0, world_size: int = 1):
        """This rank's batches of ``epoch``: a list of ``(rgb_idx, ir_idx, labels)`` int64
        arrays, each of shape (B*P,), aligned position by position."""
        return split_for_rank(self._epoch_batches(epoch), rank, world_size)

    def indices(self, epoch: int, rank: int = 0, world_size: int = 1) -> List[Tuple[int, int, int]]:
        """This rank's items of ``epoch`` flattened: a list of ``(rgb_idx, ir_idx, label)``."""
        return [(int(r), int(i), int(y)) for rgb, ir, lab in self.batches(epoch, rank, world_size)
                for r, i, y in zip(rgb, ir, lab)]


class EpochCrossModalSampler(CrossModalIdentitySampler):
    """The original MVD code's ``CamRandomIdentitySampler`` (reid/utils/data/sampler.py),
    regrouped into [B*P RGB | B*P IR] batches: every epoch visits every identity once in a
    random order (an epoch permutation); per identity P RGB and P IR items are drawn without
    replacement when it has at least P of them, else with replacement; consecutive groups of
    B identities form the batches (``n_ids // B`` per epoch, the last partial group dropped
    as the reference's ``drop_last``)."""

    @property
    def num_batches(self) -> int:
        return len(self.ids) // self.B

    def _epoch_batches(self, epoch: int) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rng = epoch_rng(self.seed, epoch)
        order = self.ids[rng.permutation(len(self.ids))]
        out = []
        for b in range(self.num_batches):
            chosen = order[b * self.B:(b + 1) * self.B]
            rgb, ir = [], []
            for pid in chosen:
                for pool, dest in ((self.rgb_by_pid[int(pid)], rgb), (self.ir_by_pid[int(pid)], ir)):
                    dest.append(rng.choice(pool, size=self.P, replace=len(pool) < self.P))
            out.append((np.concatenate(rgb).astype(np.int64), np.concatenate(ir).astype(np.int64),
                        np.repeat(chosen, self.P).astype(np.int64)))
        return out
