"""VKD evaluation sets (follows aimagelab/VKD tools/eval.py, data/datasets.py and the
data/{mars,dukevideoreid,veri}/data_manager.py of the reference).

Four *sides* are built from the test split and shared between protocols (a side's features
are extracted once; protocols hold the very same :class:`EvalSide` objects):

* ``video_query`` / ``video_gallery``: tracklets reduced to ``num_test_images`` frames by the
  deterministic chunked crop (:func:`common.data.temporal.test_chunk_crop`);
* ``image_query`` / ``image_gallery``: one frame per item. MARS and Duke-Video: the FIRST frame
  of every query / gallery tracklet. VeRi (as its reference data manager): the query images of
  ``image_query/``, and every frame of every ``test_track.txt`` tracklet as a gallery image.

Protocols: ``I2V`` (image_query vs video_gallery), ``V2V``, ``I2I``, ``V2I``; the reference
evaluates I2V and V2V on MARS and Duke-Video and all four on VeRi; all four are available for
the three datasets. With gallery augmentation (MARS, reference ``augment_gallery``) the queries
are put IN FRONT of the gallery (video queries before the video gallery, image queries before
the image gallery), as the reference concatenates features; the same-pid same-camera rule of
the metric keeps a query from matching itself.

VeRi video queries follow the reference: for every query image, the FIRST gallery tracklet of
the same vehicle and camera (one video query per query image, so a tracklet can recur); a
query image without such a tracklet is left out with a counted warning. (The parser's own
``load_veri(protocol='V2V')`` prefers the tracklet containing the query image instead.)
"""
import math
import warnings
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from common.data.base import Record, read_image
from common.data.duke_video import load_dukevideo
from common.data.mars import load_mars
from common.data.temporal import test_chunk_crop
from common.data.veri import load_veri
from common.data.video import IMG_TEST_BATCH, PROTOCOLS, TEST_BATCH, settings, test_transform
from common.data.video_base import VideoSplits, first_frames
from common.errors import ConfigError
from common.transforms import VideoTest

SIDES = {"I2V": ("image_query", "video_gallery"), "V2V": ("video_query", "video_gallery"),
         "I2I": ("image_query", "image_gallery"), "V2I": ("video_query", "image_gallery")}


class EvalSide(NamedTuple):
    """One query or gallery list: records (full tracklets, or 1-frame tuples for image sides),
    their pids and 0-based camids, and the frame paths to load for each record."""
    name: str                      # video_query, video_gallery, image_query or image_gallery
    records: List[Record]
    pids: np.ndarray               # int64 (n,)
    camids: np.ndarray             # int64 (n,)
    frames: List[Tuple[str, ...]]  # n tuples of num_test_images (video) or 1 (image) paths


class EvalProtocol(NamedTuple):
    name: str
    query: EvalSide
    gallery: EvalSide


def load_vkd_splits(dataset: str, root: str) -> VideoSplits:
    """Train/query/gallery of a VKD dataset from its folder, WITHOUT gallery augmentation (the
    evaluation adds it itself). VeRi: query = the query images, gallery = the tracklets."""
    name = settings(dataset).name
    if name == "mars":
        return load_mars(root, augmented_gallery=False)
    if name == "dukevideo":
        return load_dukevideo(root, augmented_gallery=False)
    return load_veri(root, "I2V")


def veri_video_queries(query_images: Sequence[Record], tracklets: Sequence[Record]) -> List[Record]:
    """The reference's VeRi video queries (module docstring)."""
    first: Dict[Tuple[int, int], Record] = {}
    for t in tracklets:
        first.setdefault((t.pid, t.camid), t)
    out = [first[(q.pid, q.camid)] for q in query_images if (q.pid, q.camid) in first]
    if len(out) < len(query_images):
        warnings.warn(f"VeRi: {len(query_images) - len(out)} query image(s) have no gallery tracklet of "
                      f"their vehicle and camera; left out of the video queries")
    return out


def _side(name: str, records: List[Record], num_test_images: int) -> EvalSide:
    if name.startswith("video"):
        frames = [tuple(r.path[i] for i in test_chunk_crop(len(r.path), num_test_images)) for r in records]
    else:
        frames = [tuple(r.path[:1]) for r in records]
    return EvalSide(name, list(records), np.array([r.pid for r in records], np.int64).reshape(-1),
                    np.array([r.camid for r in records], np.int64).reshape(-1), frames)


def check_protocols(protocols) -> Tuple[str, ...]:
    out = tuple(str(p).upper() for p in protocols)
    bad = [p for p in out if p not in SIDES]
    if bad or not out:
        raise ConfigError(f"unknown evaluation protocol(s) {', '.join(bad) or '(none given)'}; "
                          f"expected some of {', '.join(PROTOCOLS)}")
    return out


def eval_protocols(dataset: str, root: str = "", protocols: Optional[Sequence[str]] = None,
                   num_test_images: int = 8, augment_gallery: Optional[bool] = None,
                   splits: Optional[VideoSplits] = None) -> Dict[str, EvalProtocol]:
    """Per protocol (default: the reference's for ``dataset``), the query and gallery sides.

    ``splits`` (from :func:`load_vkd_splits`) saves parsing ``root`` again; ``augment_gallery``
    defaults to the reference's choice (True for MARS only).
    """
    s = settings(dataset)
    wanted = check_protocols(protocols or s.protocols)
    if int(num_test_images) < 1:
        raise ConfigError(f"num_test_images must be >= 1, got {num_test_images}")
    augment = s.augment_gallery if augment_gallery is None else bool(augment_gallery)
    sp = splits if splits is not None else load_vkd_splits(dataset, root)
    if s.name == "veri":
        lists = {"image_query": sp.query, "video_query": lambda: veri_video_queries(sp.query, sp.gallery),
                 "video_gallery": sp.gallery,
                 "image_gallery": [Record((f,), t.pid, t.camid) for t in sp.gallery for f in t.path]}
    else:
        lists = {"video_query": sp.query, "image_query": first_frames(sp.query),
                 "video_gallery": sp.gallery, "image_gallery": first_frames(sp.gallery)}
    cache: Dict[str, List[Record]] = {}

    def raw(name: str) -> List[Record]:
        if name not in cache:
            v = lists[name]
            cache[name] = list(v() if callable(v) else v)
        return cache[name]

    needed = {name for p in wanted for name in SIDES[p]}
    built: Dict[str, EvalSide] = {}
    for name in ("video_query", "image_query", "video_gallery", "image_gallery"):
        if name in needed:
            records = raw(name)
            if augment and name.endswith("gallery"):
                records = raw(name.replace("gallery", "query")) + records
            built[name] = _side(name, records, num_test_images)
    return {p: EvalProtocol(p, built[SIDES[p][0]], built[SIDES[p][1]]) for p in wanted}


class VideoTestBatches:
    """Batch source (:mod:`common.data.loader`) of one evaluation side: ``(frames,)`` float32
    ``(b, S, 3, H, W)`` with the test transform, ``batch_size`` items per batch in side order
    (S = num_test_images for video sides, 1 for image sides). Deterministic: no randomness."""

    columns = ("frames",)

    def __init__(self, frames: Sequence[Tuple[str, ...]], transform: VideoTest, batch_size: int):
        lengths = {len(f) for f in frames}
        if len(lengths) > 1:
            raise ValueError(f"an evaluation side mixes {sorted(lengths)} frames per item; expected one length")
        if int(batch_size) < 1:
            raise ConfigError(f"test batch size must be >= 1, got {batch_size}")
        self.frames, self.transform, self.batch_size = list(frames), transform, int(batch_size)

    def __len__(self) -> int:
        return math.ceil(len(self.frames) / self.batch_size)

    def items(self, epoch: int = 0) -> List[Tuple[int, int]]:
        n, b = len(self.frames), self.batch_size
        return [(s, min(s + b, n)) for s in range(0, n, b)]

    def make_batch(self, epoch: int, index: int, item: Tuple[int, int]) -> Tuple[np.ndarray]:
        start, stop = item
        tf = self.transform
        S = len(self.frames[start]) if stop > start else 0
        out = np.empty((stop - start, S, 3, tf.h, tf.w), np.float32)
        for i in range(start, stop):
            for n, path in enumerate(self.frames[i]):
                out[i - start, n] = tf.one(read_image(path))
        return (out,)


def side_batches(dataset: str, side: EvalSide, batch_size: int = 0, size=None) -> VideoTestBatches:
    """:class:`VideoTestBatches` of ``side`` with ``dataset``'s test transform (input ``size``
    when given); the batch size defaults to the reference's (32 tracklets for video sides, 512
    images for image sides)."""
    default = TEST_BATCH if side.name.startswith("video") else IMG_TEST_BATCH
    return VideoTestBatches(side.frames, test_transform(dataset, size), batch_size or default)
