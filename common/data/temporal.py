"""Frame selection inside tracklets for VKD (follows aimagelab/VKD data/temporal_transforms.py).

All functions work on frame *positions* (0 .. F-1) or on frame path tuples and draw only from
the ``np.random.Generator`` they are given.

Chunked crop with ``S`` frames out of ``F``:

* ``F < S``: the chunks are the single positions ``0, 1, ..., F-1`` followed by ``S - F``
  copies of ``F-1`` (the last frame is repeated), so the crop is deterministic;
* ``F >= S``: ``interval = ceil(F / S)``; the positions ``0 .. F-1`` are padded with copies of
  ``F-1`` to ``interval * S`` entries and cut into ``S`` consecutive chunks of ``interval``
  entries. The padding makes the last chunks hold repeated ``F-1`` entries (e.g. F=9, S=8:
  chunks [0,1] [2,3] [4,5] [6,7] [8,8] [8,8] [8,8] [8,8]), exactly as in the reference.

The test crop takes the first entry of every chunk; the train crop one uniformly drawn entry
of every chunk (so the repeated ``F-1`` entries are drawn as often as they appear).
"""
import math
from typing import List, Sequence

import numpy as np

STRATEGIES = ("chunk", "temporal", "random", "multiview")


def chunks(num_frames: int, size: int) -> np.ndarray:
    """The ``(size, interval)`` int64 table of frame positions described in the module docstring."""
    F, S = int(num_frames), int(size)
    if F < 1 or S < 1:
        raise ValueError(f"a chunked crop needs >= 1 frame and size >= 1, got {F} frames, size {S}")
    if F < S:
        return np.array(list(range(F)) + [F - 1] * (S - F), dtype=np.int64).reshape(S, 1)
    interval = math.ceil(F / S)
    strip = np.array(list(range(F)) + [F - 1] * (interval * S - F), dtype=np.int64)
    return strip.reshape(S, interval)


def test_chunk_crop(num_frames: int, size: int) -> List[int]:
    """Deterministic crop (reference ``TemporalChunkCrop``): the first position of each chunk."""
    return chunks(num_frames, size)[:, 0].tolist()


test_chunk_crop.__test__ = False  # not a pytest test


def random_chunk_crop(num_frames: int, size: int, rng: np.random.Generator) -> List[int]:
    """Train crop (reference ``RandomTemporalChunkCrop``): one uniform entry of each chunk."""
    table = chunks(num_frames, size)
    picks = rng.integers(0, table.shape[1], size=table.shape[0])
    return table[np.arange(table.shape[0]), picks].tolist()


def random_frames(num_frames: int, size: int, rng: np.random.Generator) -> List[int]:
    """Reference ``TemporalRandomFrames``: ``size`` positions drawn without replacement when the
    tracklet has enough frames, else with replacement (in drawn order, not sorted)."""
    return rng.choice(int(num_frames), size=int(size), replace=int(num_frames) < int(size)).tolist()


def multiview_frames(candidates: Sequence[Sequence[str]], size: int, rng: np.random.Generator) -> List[str]:
    """Reference ``MultiViewTemporalTransform`` (the VKD distillation views): the same-identity
    tracklets ``candidates`` (any camera) are put in a random order; view ``i`` is a uniformly
    drawn frame of tracklet ``order[i % len(candidates)]``. So the views come from as many
    different tracklets as possible, cycling through all of them when ``size`` exceeds their
    number. Returns the ``size`` frame paths."""
    if not candidates or size < 1:
        raise ValueError(f"multiview sampling needs >= 1 candidate tracklet and size >= 1, got "
                         f"{len(candidates)} tracklets, size {size}")
    order = rng.permutation(len(candidates))
    out = []
    for i in range(int(size)):
        frames = candidates[int(order[i % len(order)])]
        out.append(frames[int(rng.integers(0, len(frames)))])
    return out


def select_frames(strategy: str, frames: Sequence[str], size: int, rng: np.random.Generator,
                  candidates: Sequence[Sequence[str]] = ()) -> List[str]:
    """``size`` frame paths of one training sample by the reference's ``--train_strategy``:
    'chunk' (teacher default), 'temporal' (deterministic chunks), 'random', or 'multiview'
    (distillation default; draws from ``candidates``, the tracklets of the sample's identity)."""
    if strategy == "chunk":
        return [frames[i] for i in random_chunk_crop(len(frames), size, rng)]
    if strategy == "temporal":
        return [frames[i] for i in test_chunk_crop(len(frames), size)]
    if strategy == "random":
        return [frames[i] for i in random_frames(len(frames), size, rng)]
    if strategy == "multiview":
        return multiview_frames(candidates, size, rng)
    raise ValueError(f"unknown train strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
