"""Shared pieces of the video (tracklet) dataset parsers (SPEC sections 2, 2.3, 2.4).

A video record is a :class:`common.data.base.Record` whose ``path`` is a tuple of frame
paths (a tracklet, in temporal order); a single image used as a query or gallery item is a
1-frame tuple, so every video split holds records of one shape.
"""
import os
from typing import Callable, Hashable, List, NamedTuple, Sequence, TypeVar

from common.data.base import Record, relabel, require
from common.errors import DatasetLayoutError

T = TypeVar("T")


class VideoSplits(NamedTuple):
    """train / query / gallery tracklet lists plus the number of train identities and cameras."""
    train: List[Record]
    query: List[Record]
    gallery: List[Record]
    num_train_pids: int
    num_train_cams: int


def make_video_splits(train: Sequence[Record], query: Sequence[Record], gallery: Sequence[Record],
                      augmented_gallery: bool = False) -> VideoSplits:
    """Relabel train pids (ascending raw pid), drop junk pid -1 everywhere (SPEC 2), keep
    distractor pid 0, and count train identities and cameras.

    ``augmented_gallery=True`` appends the query tracklets to the end of the gallery (the
    MARS evaluation quirk, SPEC 2.3: otherwise some queries have no match; the same-pid,
    same-camera rule of the metric keeps a query from matching its own copy). The VKD
    reference concatenates the queries *before* the gallery; the order only matters for
    exact distance ties.
    """
    train = relabel(train)
    query = [r for r in query if r.pid != -1]
    gallery = [r for r in gallery if r.pid != -1]
    if augmented_gallery:
        gallery = gallery + query
    return VideoSplits(train, query, gallery, len({r.pid for r in train}),
                       len({r.camid for r in train}))


def first_frames(records: Sequence[Record]) -> List[Record]:
    """Each tracklet reduced to its first frame (a 1-frame tuple): the image queries of the
    image-to-video protocol on MARS / Duke-Video as the VKD reference builds them (SPEC 2.3)."""
    return [Record(tuple(r.path[:1]), r.pid, r.camid) for r in records]


def split_runs(items: Sequence[T], key: Callable[[T], Hashable]) -> List[List[T]]:
    """Cut ``items`` into maximal runs of consecutive elements sharing ``key(item)``
    (SPEC 2.4: a tracklet is a run of consecutive sorted files with one pid and camera)."""
    runs: List[List[T]] = []
    last = object()
    for item in items:
        k = key(item)
        if not runs or k != last:
            runs.append([])
            last = k
        runs[-1].append(item)
    return runs


def read_name_list(path: str, layout: str) -> List[str]:
    """Non-empty lines of a text file, stripped (one file name or one record per line)."""
    require(path, layout)
    with open(path, "r", encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def require_subdir(root: str, name: str, layout: str) -> str:
    """``root/name`` if it is a folder, else a DatasetLayoutError naming it and the layout."""
    path = os.path.join(root, name)
    if not os.path.isdir(path):
        raise DatasetLayoutError(f"missing folder '{path}'. Expected layout: {layout}")
    return path
