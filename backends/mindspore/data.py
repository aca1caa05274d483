"""Training/evaluation batch loaders for the MindSpore backend over a framework-free batch
source (:mod:`common.data.loader`); the PyTorch twin is backends/torch/data.py.

:func:`make_loader` is the one the training loops use. It runs the shared worker pool of
:func:`common.data.loader.iterate` rather than ``mindspore.dataset.GeneratorDataset`` because
the two are as fast (``benchmarks/data_speed.py``, synthetic MARS, 256 frames of 256x128 per
batch, one run on a 2-core machine whose load other jobs kept near 10): wall clock 415 / 315
frames/s at 1 / 2 workers for the pool, 485 / 321 for GeneratorDataset (485 in-process; the
same in-process code varied more than that between runs). Only the shared pool

* raises a worker's error with its original type and message (GeneratorDataset turns every
  worker error into ``RuntimeError: Exception thrown from user defined Python function in
  dataset`` with the traceback, so a corrupt frame would no longer be the one-line
  ``DatasetLayoutError`` of the CLI), and
* gives the PyTorch backend the very same code path, so batches are bit-identical between
  backends by construction (the tests compare them anyway).

:func:`make_native_loader` is the ``GeneratorDataset`` version (random-accessible source whose
row i is batch i, ``num_parallel_workers``, ``python_multiprocessing``); it yields the same
batches and is kept for comparison (benchmark and parity test). Its queue depth is
MindSpore's global ``mindspore.dataset.config`` prefetch size, which it leaves unchanged.
"""
from typing import Iterator, Tuple

import numpy as np
import mindspore.dataset as ds

from common.data.loader import epoch_items, iterate

__all__ = ["make_loader", "make_native_loader", "BatchDataset"]


def make_loader(source, epoch: int, workers: int = 0, prefetch: int = 2,
                start: int = 0) -> Iterator[Tuple[np.ndarray, ...]]:
    """Batches ``start ..`` of ``epoch`` as numpy tuples, in order, from ``workers`` worker
    processes (0: in this process) with ``prefetch`` batches ahead per worker."""
    return iterate(source, epoch, workers, prefetch, start)


class BatchDataset:
    """Random-accessible source whose row ``i`` is batch ``start + i`` of ``epoch`` of ``source``."""

    def __init__(self, source, epoch: int, start: int = 0):
        self.source, self.epoch, self.start = source, int(epoch), int(start)
        self.items = epoch_items(source, epoch, start)

    def __len__(self) -> int:
        return len(self.items) - self.start

    def __getitem__(self, i: int):
        j = self.start + int(i)
        return tuple(self.source.make_batch(self.epoch, j, self.items[j]))


def make_native_loader(source, epoch: int, workers: int = 0, prefetch: int = 2,
                       start: int = 0) -> Iterator[Tuple[np.ndarray, ...]]:
    """The same batches through ``mindspore.dataset.GeneratorDataset`` (module docstring)."""
    if workers < 0 or prefetch < 1:
        raise ValueError(f"expected workers >= 0 and prefetch >= 1, got workers={workers}, prefetch={prefetch}")
    data = BatchDataset(source, epoch, start)
    if len(data) == 0:
        return
    gen = ds.GeneratorDataset(data, column_names=list(source.columns), shuffle=False,
                              num_parallel_workers=max(int(workers), 1), python_multiprocessing=workers > 0)
    for row in gen.create_tuple_iterator(output_numpy=True, num_epochs=1):
        yield tuple(row)
