"""Training/evaluation batch loaders for the PyTorch backend over a framework-free batch
source (:mod:`common.data.loader`); the MindSpore twin is backends/mindspore/data.py.

:func:`make_loader` is the one the training loops use. It runs the shared worker pool of
:func:`common.data.loader.iterate` rather than ``torch.utils.data.DataLoader`` because the two
are as fast (``benchmarks/data_speed.py``, synthetic MARS, 256 frames of 256x128 per batch,
one run on a 2-core machine whose load other jobs kept near 10): CPU per frame over all
processes at 1 worker 0.84 ms for the pool, 1.02 ms for DataLoader (0.74 ms in-process);
wall clock 415 vs 339 frames/s at 1 worker, 315 vs 334 at 2. Only the shared pool

* raises a worker's error with its original type AND message (DataLoader keeps the type but
  replaces the message by "Caught X in DataLoader worker process 0 ... Original Traceback",
  so a corrupt frame would no longer be the one-line ``DatasetLayoutError`` of the CLI), and
* gives the MindSpore backend the very same code path, so batches are bit-identical between
  backends by construction (the tests compare them anyway).

:func:`make_native_loader` is the ``DataLoader`` version (map-style dataset whose item i is
batch i, ``batch_size=None``, a worker_init_fn seeding numpy per worker); it yields the same
batches and is kept for comparison (benchmark and parity test).
"""
from typing import Iterator, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.data.loader import epoch_items, iterate

__all__ = ["make_loader", "make_native_loader", "BatchDataset"]


def make_loader(source, epoch: int, workers: int = 0, prefetch: int = 2,
                start: int = 0) -> Iterator[Tuple[np.ndarray, ...]]:
    """Batches ``start ..`` of ``epoch`` as numpy tuples, in order, from ``workers`` worker
    processes (0: in this process) with ``prefetch`` batches ahead per worker."""
    return iterate(source, epoch, workers, prefetch, start)


class BatchDataset(Dataset):
    """Map-style dataset whose item ``i`` is batch ``start + i`` of ``epoch`` of ``source``."""

    def __init__(self, source, epoch: int, start: int = 0):
        self.source, self.epoch, self.start = source, int(epoch), int(start)
        self.items = epoch_items(source, epoch, start)

    def __len__(self) -> int:
        return len(self.items) - self.start

    def __getitem__(self, i: int):
        j = self.start + int(i)
        return tuple(self.source.make_batch(self.epoch, j, self.items[j]))


def _to_tensors(batch):
    # tensors cross the worker boundary through shared memory (numpy arrays would be pickled)
    return tuple(torch.from_numpy(np.array(a, copy=not np.asarray(a).flags.c_contiguous)) for a in batch)


def _seed_numpy(worker_id: int) -> None:
    # batches draw only from their own generator; this keeps any use of numpy's global state
    # in a worker distinct per worker and reproducible from torch's seed
    np.random.seed(torch.initial_seed() % 2 ** 32)


def make_native_loader(source, epoch: int, workers: int = 0, prefetch: int = 2,
                       start: int = 0) -> Iterator[Tuple[np.ndarray, ...]]:
    """The same batches through ``torch.utils.data.DataLoader`` (module docstring)."""
    if workers < 0 or prefetch < 1:
        raise ValueError(f"expected workers >= 0 and prefetch >= 1, got workers={workers}, prefetch={prefetch}")
    loader = DataLoader(BatchDataset(source, epoch, start), batch_size=None, shuffle=False,
                        num_workers=workers, collate_fn=_to_tensors, worker_init_fn=_seed_numpy,
                        prefetch_factor=prefetch if workers else None, persistent_workers=False)
    for batch in loader:
        yield tuple(t.numpy() for t in batch)
