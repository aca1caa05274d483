"""VeRi-776 vehicle re-ID parser with the four VKD protocols (SPEC section 2.4).

Assumptions about the files (written down because the SPEC leaves them open):

* Image names look like ``0001_c001_00016450_0.jpg``: vehicle id, then camera ``c001``
  (made 0-based: c001 -> 0), then time stamp and index.
* ``test_track.txt``: one gallery tracklet per line, ``<key> <image> <image> ...``
  separated by white space (a trailing space is fine). The key gives the tracklet's
  vehicle and camera; it is either an image name (the real file repeats the tracklet's
  first image there) or a bare ``0002_c002`` key, and is not itself a frame, as in the
  VKD reference, unless the line holds nothing else. Frames must share the key's vehicle
  and camera and live in ``image_test/``.
* Query images are listed in ``name_query.txt`` and live in ``image_query/``.
* A V2V / V2I query is the gallery tracklet that contains the query image's name, or, if
  none does, the first gallery tracklet of the same vehicle and camera (what the VKD
  reference always takes); a query with neither is left out with a warning.
* The I2I / V2I gallery is every image in ``image_test/`` (sorted), each a 1-frame tuple.
"""
import os
import re
import warnings
from typing import Dict, List, Tuple

from common.data.base import Record, list_images, require_dir
from common.data.video_base import VideoSplits, make_video_splits, read_name_list, require_subdir, split_runs
from common.errors import DatasetLayoutError, ReidError

LAYOUT = ("ROOT/{image_train/, image_test/, image_query/, name_train.txt, name_query.txt, "
          "test_track.txt}; images named like 0001_c001_00016450_0.jpg; each test_track.txt "
          "line '<key> <image> <image> ...'")
PROTOCOLS = ("I2V", "V2V", "I2I", "V2I")

_NAME = re.compile(r"^(\d+)_c(\d+)")


def parse_name(name: str, source: str) -> Tuple[int, int]:
    """``(vehicle id, 0-based camera)`` from a VeRi name or key such as ``0001_c001...``."""
    m = _NAME.match(name)
    if m is None or int(m.group(2)) < 1:
        raise DatasetLayoutError(f"cannot parse '{name}' in '{source}'; expected a name like "
                                 f"0001_c001_00016450_0.jpg or a key like 0001_c001")
    return int(m.group(1)), int(m.group(2)) - 1


def _train_tracklets(root: str) -> List[Record]:
    """All images of one vehicle in one camera form one train tracklet, frames sorted by name."""
    src = os.path.join(root, "name_train.txt")
    folder = require_subdir(root, "image_train", LAYOUT)
    names = sorted(read_name_list(src, LAYOUT))
    keyed = [(n, parse_name(n, src)) for n in names]
    return [Record(tuple(os.path.join(folder, n) for n, _ in run), *run[0][1])
            for run in split_runs(keyed, key=lambda item: item[1])]


def _gallery_tracklets(root: str) -> Tuple[List[Record], List[Tuple[str, ...]]]:
    """One record per line of ``test_track.txt`` plus the frame names of each record."""
    src = os.path.join(root, "test_track.txt")
    folder = require_subdir(root, "image_test", LAYOUT)
    records, frame_names = [], []
    for i, line in enumerate(read_name_list(src, LAYOUT)):
        tokens = line.split()
        key = parse_name(tokens[0], src)
        frames = tuple(tokens[1:]) if len(tokens) > 1 else tuple(tokens)
        for f in frames:
            if parse_name(f, src) != key:
                raise DatasetLayoutError(f"'{src}' line {i + 1}: frame '{f}' is not of the vehicle and "
                                         f"camera of the key '{tokens[0]}'; expected one tracklet per line")
        records.append(Record(tuple(os.path.join(folder, f) for f in frames), *key))
        frame_names.append(frames)
    return records, frame_names


def _query_tracklets(query_names: List[str], gallery: List[Record],
                     frame_names: List[Tuple[str, ...]], src: str) -> List[Record]:
    containing: Dict[str, int] = {}
    first_of: Dict[Tuple[int, int], int] = {}
    for i, (rec, frames) in enumerate(zip(gallery, frame_names)):
        first_of.setdefault((rec.pid, rec.camid), i)
        for f in frames:
            containing.setdefault(f, i)
    out, missing = [], 0
    for q in query_names:
        i = containing.get(q, first_of.get(parse_name(q, src)))
        if i is None:
            missing += 1
        else:
            out.append(gallery[i])
    if missing:
        warnings.warn(f"VeRi: {missing} query image(s) have no gallery tracklet of their vehicle "
                      f"and camera; left out of the video queries")
    return out


def load_veri(root: str, protocol: str = "I2V") -> VideoSplits:
    """Parse VeRi-776 (SPEC 2.4) for one protocol; every record path is a tuple of frames.

    I2V: single-image queries vs tracklet gallery. V2V: query tracklets vs tracklet gallery.
    I2I: single-image queries vs single-image gallery (``image_test/``). V2I: query
    tracklets vs single-image gallery. Train is always the per-(vehicle, camera) tracklets,
    relabelled in ascending raw-id order. See the module docstring for file assumptions.
    """
    proto = str(protocol).upper()
    if proto not in PROTOCOLS:
        raise ReidError(f"unknown VeRi protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    require_dir(root, LAYOUT)
    train = _train_tracklets(root)
    query_src = os.path.join(root, "name_query.txt")
    query_dir = require_subdir(root, "image_query", LAYOUT)
    query_names = read_name_list(query_src, LAYOUT)
    if proto[0] == "I":
        query = [Record((os.path.join(query_dir, n),), *parse_name(n, query_src)) for n in query_names]
    if "V" in proto:  # a tracklet query or a tracklet gallery
        tracks, frame_names = _gallery_tracklets(root)
    if proto[0] == "V":
        query = _query_tracklets(query_names, tracks, frame_names, query_src)
    if proto[2] == "V":
        gallery = tracks
    else:
        test_dir = require_subdir(root, "image_test", LAYOUT)
        gallery = [Record((os.path.join(test_dir, n),), *parse_name(n, test_dir)) for n in list_images(test_dir)]
    return make_video_splits(train, query, gallery)
