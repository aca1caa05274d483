"""Market-1501 and DukeMTMC-reID parsers, torchreid layouts (SPEC section 2.5).

Market-1501: ``ROOT/market1501/Market-1501-v15.09.15/`` (or ``ROOT/market1501/`` directly)
holding ``bounding_box_train/``, ``query/``, ``bounding_box_test/`` with names like
``0002_c1s1_000451_03.jpg`` (pid 2, camera 1; cameras 1..6).
DukeMTMC-reID: ``ROOT/dukemtmc-reid/DukeMTMC-reID/`` with the same three folders and names
like ``0001_c2_f0046182.jpg`` (cameras 1..8).

The pid is the integer before the first ``_``, the camera the digits after ``c``. Junk
images (pid -1) are dropped; distractors (pid 0) stay in the gallery. Train pids are
relabelled in ascending raw order by :func:`common.data.base.make_splits`.
"""
import os
import re
from typing import List, Sequence

from common.data.base import ImageSplits, Record, list_images, make_splits, require, require_dir
from common.errors import DatasetLayoutError

MARKET_LAYOUT = ("ROOT/market1501/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/"
                 "<pid:04d>_c<cam>s<seq>_<frame>_<n>.jpg (or the three folders directly in "
                 "ROOT/market1501/); cameras 1..6")
DUKE_LAYOUT = ("ROOT/dukemtmc-reid/DukeMTMC-reID/{bounding_box_train,query,bounding_box_test}/"
               "<pid:04d>_c<cam>_f<frame>.jpg; cameras 1..8")
SPLIT_FOLDERS = ("bounding_box_train", "query", "bounding_box_test")

_NAME = re.compile(r"^(-?\d+)_c(\d+)")


def parse_name(name: str, num_cams: int, layout: str):
    """``(pid, camid0)`` from a Market-style file name (SPEC 2.5); the camera must be in
    1..num_cams. A malformed name raises :class:`DatasetLayoutError`."""
    m = _NAME.match(name)
    if m is None:
        raise DatasetLayoutError(f"image name {name!r} does not start with '<pid>_c<cam>'. "
                                 f"Expected layout: {layout}")
    pid, cam = int(m.group(1)), int(m.group(2))
    if not 1 <= cam <= num_cams:
        raise DatasetLayoutError(f"image {name!r} has camera {cam}; expected 1..{num_cams}")
    return pid, cam - 1


def read_folder(folder: str, num_cams: int, layout: str) -> List[Record]:
    """Records of every image in one Market-style folder, sorted by file name, junk (pid -1)
    dropped (SPEC 2, preamble)."""
    require(folder, layout)
    records = []
    for name in list_images(folder):
        pid, camid = parse_name(name, num_cams, layout)
        if pid != -1:
            records.append(Record(os.path.join(folder, name), pid, camid))
    return records


def load_market_style(dataset_dir: str, num_cams: int, layout: str,
                      folders: Sequence[str] = SPLIT_FOLDERS) -> ImageSplits:
    """Train / query / gallery from the three Market-style folders of ``dataset_dir``."""
    train, query, gallery = (read_folder(os.path.join(dataset_dir, f), num_cams, layout)
                             for f in folders)
    if not train:
        raise DatasetLayoutError(f"no training images in '{os.path.join(dataset_dir, folders[0])}'. "
                                 f"Expected layout: {layout}")
    return make_splits(train, query, gallery)


def load_market1501(root: str) -> ImageSplits:
    """Market-1501 in the torchreid layout (SPEC 2.5): 751 train ids / 12,936 images,
    3,368 query, 15,913 gallery on the real data set."""
    require_dir(root, MARKET_LAYOUT)
    base = os.path.join(root, "market1501")
    versioned = os.path.join(base, "Market-1501-v15.09.15")
    dataset_dir = versioned if os.path.isdir(versioned) else require(base, MARKET_LAYOUT)
    return load_market_style(dataset_dir, 6, MARKET_LAYOUT)


def load_dukemtmcreid(root: str) -> ImageSplits:
    """DukeMTMC-reID in the torchreid layout (SPEC 2.5): 702 train ids / 16,522 images,
    2,228 query, 17,661 gallery on the real data set."""
    require_dir(root, DUKE_LAYOUT)
    dataset_dir = require(os.path.join(root, "dukemtmc-reid", "DukeMTMC-reID"), DUKE_LAYOUT)
    return load_market_style(dataset_dir, 8, DUKE_LAYOUT)
