"""MSMT17 parser, torchreid layout (SPEC section 2.5).

Two layouts are accepted, detected in this order:

1. the original release ``ROOT/msmt17/MSMT17_V1/{train,test}/`` with
   ``list_{train,val,query,gallery}.txt`` (lines ``"<pid:04d>/<name>.jpg <pid>"``, paths
   relative to ``train/`` for train and val, to ``test/`` for query and gallery). Names look
   like ``0000_000_01_0303morning_0015_0.jpg``; the camera is the third ``_`` field
   (1..15), so ``camid = int(name.split('_')[2]) - 1``.
2. the Market-style conversion ``ROOT/msmt17/{bounding_box_train,query,bounding_box_test}/``
   with names ``<pid:04d>_c<cam>_...jpg``.

Training uses the train list plus the val list (``include_val=True``, as the brief of this
project asks; the val identities are train identities). Pass ``include_val=False`` for the
conventional 30,248-image training set.
"""
import os
from typing import List

from common.data.base import ImageSplits, Record, make_splits, path_label_lines, require, require_dir
from common.data.market1501 import load_market_style
from common.errors import DatasetLayoutError

NUM_CAMS = 15
LAYOUT = ("ROOT/msmt17/MSMT17_V1/{train,test}/<pid:04d>/<pid>_<seq>_<cam:02d>_<...>.jpg with "
          "ROOT/msmt17/MSMT17_V1/list_{train,val,query,gallery}.txt ('<relpath> <pid>' lines), "
          "or the Market-style conversion ROOT/msmt17/{bounding_box_train,query,bounding_box_test}/")


def read_list(list_path: str, image_dir: str) -> List[Record]:
    """Records of one ``list_*.txt`` file (SPEC 2.5), in file order; every listed image
    must exist and its camera field must be in 1..15."""
    require(list_path, LAYOUT)
    records = []
    expected = "<pid:04d>/<pid>_<seq>_<cam:02d>_<...>.jpg <pid>"
    for lineno, rel, pid in path_label_lines(list_path, expected):
        try:
            cam = int(os.path.basename(rel).split("_")[2])
        except (IndexError, ValueError):
            raise DatasetLayoutError(f"'{list_path}' line {lineno} names {rel!r}; expected "
                                     f"'{expected}'") from None
        if not 1 <= cam <= NUM_CAMS:
            raise DatasetLayoutError(f"'{list_path}' line {lineno}: camera {cam} not in "
                                     f"1..{NUM_CAMS}")
        path = require(os.path.join(image_dir, *rel.split("/")), LAYOUT)
        if pid != -1:
            records.append(Record(path, pid, cam - 1))
    return records


def load_msmt17(root: str, include_val: bool = True) -> ImageSplits:
    """MSMT17 (SPEC 2.5): 1,041 train ids / 30,248 train (+2,373 val) images, 11,659 query,
    82,161 gallery on the real data set. See the module docstring for the two layouts."""
    require_dir(root, LAYOUT)
    base = os.path.join(root, "msmt17")
    release = os.path.join(base, "MSMT17_V1")
    if not os.path.isdir(release) and os.path.isdir(os.path.join(base, "bounding_box_train")):
        return load_market_style(base, NUM_CAMS, LAYOUT)
    require(release, LAYOUT)
    train_dir = require(os.path.join(release, "train"), LAYOUT)
    test_dir = require(os.path.join(release, "test"), LAYOUT)

    def lst(name):
        return os.path.join(release, f"list_{name}.txt")

    train = read_list(lst("train"), train_dir)
    if include_val:
        train += read_list(lst("val"), train_dir)
    if not train:
        raise DatasetLayoutError(f"'{lst('train')}' lists no images. Expected layout: {LAYOUT}")
    return make_splits(train, read_list(lst("query"), test_dir), read_list(lst("gallery"), test_dir))
