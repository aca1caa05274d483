"""CUHK03 parser, torchreid layout (SPEC section 2.5).

Layout under ``ROOT/cuhk03/``::

    cuhk03_release/cuhk-03.mat                                   (MATLAB v7.3 = HDF5)
    cuhk03_release/cuhk03_new_protocol_config_{detected,labeled}.mat   (MATLAB v5, scipy)
    images_{detected,labeled}/<campus>_<pid:03d>_<view>_<img:02d>.png  (extracted images)
    splits_classic_{detected,labeled}.json                      (optional, written by torchreid)

``cuhk-03.mat`` is HDF5 (MATLAB v7.3). The images are read from ``images_{kind}/``
(torchreid extracts them there with exactly these names); when that folder is missing they
are extracted from ``cuhk-03.mat`` with h5py (a requirement of the project; without it a
:class:`DatasetLayoutError` says what to do). The split (the new protocol's config, or the
classic split's JSON / ``testsets``) is located first, so a missing split file stops the
run before anything is extracted.

New protocol (default; 767/700 ids): the config's ``filelist``/``labels`` with 1-based
``train_idx``/``query_idx``/``gallery_idx``. Pids are the config's global labels; train pids
are relabelled in ascending order. The camera is the view field of the name, minus one
(0 or 1), as in torchreid.

Classic protocol (``classic=True``, 1,367 train / 100 test ids, 20 splits): the test
identities of split ``split_id`` come from ``cuhk-03.mat`` (``testsets``, needs h5py) or
from torchreid's ``splits_classic_{kind}.json`` (the query entries' file names). Query and
gallery are both the whole test list; it must be evaluated with the CUHK03 single-gallery-
shot metric (gallery restricted to the other view, one random image per identity, repeated),
not with the usual query-vs-gallery metric. Pids are ``campus * 1000 + pid`` (pids are
numbered per campus in the release, at most 843).
"""
import json
import os
import shutil
from typing import List, Set, Tuple

import numpy as np

from common.data.base import ImageSplits, Record, list_images, make_splits, require, require_dir
from common.errors import ConfigError, DatasetLayoutError

LAYOUT = ("ROOT/cuhk03/cuhk03_release/cuhk03_new_protocol_config_{detected,labeled}.mat and "
          "ROOT/cuhk03/images_{detected,labeled}/<campus>_<pid:03d>_<view>_<img:02d>.png "
          "(extracted from ROOT/cuhk03/cuhk03_release/cuhk-03.mat)")


def _parse_name(name: str) -> Tuple[int, int, int]:
    """``(campus, pid, view)`` of an extracted image name like ``1_001_1_01.png``."""
    fields = os.path.splitext(os.path.basename(name))[0].split("_")
    try:
        campus, pid, view = int(fields[0]), int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        raise DatasetLayoutError(f"CUHK03 image name {name!r} is not "
                                 f"'<campus>_<pid:03d>_<view>_<img:02d>.png'") from None
    if view not in (1, 2):
        raise DatasetLayoutError(f"CUHK03 image {name!r} has view {view}; expected 1 or 2")
    return campus, pid, view


def _cell_strings(cell) -> List[str]:
    """Flatten a MATLAB cell array of strings as returned by ``scipy.io.loadmat``."""
    out = []
    for item in np.asarray(cell, dtype=object).flatten():
        while isinstance(item, np.ndarray):
            item = item.flatten()[0] if item.size else ""
        out.append(str(item))
    return out


def _extract_with_h5py(mat_path: str, images_dir: str, kind: str) -> None:
    """Write every ``kind`` image of the HDF5 ``cuhk-03.mat`` as PNG into ``images_dir``
    (atomically: a ``.part`` folder renamed at the end). Needs h5py."""
    import h5py
    from common.data.appearance import save
    part = images_dir + ".part"
    shutil.rmtree(part, ignore_errors=True)
    os.makedirs(part)
    with h5py.File(mat_path, "r") as mat:
        for campus, campus_ref in enumerate(mat[kind][0], 1):
            views = mat[campus_ref][:].T  # (pids, 10) references; images 1-5 view 1, 6-10 view 2
            for pid in range(1, views.shape[0] + 1):
                for img_no, ref in enumerate(views[pid - 1], 1):
                    img = mat[ref][:].T
                    if img.ndim != 3 or img.size == 0:
                        continue  # MATLAB leaves missing shots as empty matrices
                    name = f"{campus}_{pid:03d}_{1 if img_no <= 5 else 2}_{img_no:02d}.png"
                    save(np.ascontiguousarray(img, dtype=np.uint8), os.path.join(part, name))
    os.replace(part, images_dir)


def _h5py_available() -> bool:
    try:
        import h5py  # noqa: F401
    except ImportError:
        return False
    return True


def images_dir(base: str, kind: str) -> str:
    """``ROOT/cuhk03/images_{kind}``, extracting it from ``cuhk-03.mat`` with h5py if needed."""
    folder = os.path.join(base, f"images_{kind}")
    if os.path.isdir(folder):
        return folder
    mat = os.path.join(base, "cuhk03_release", "cuhk-03.mat")
    if not os.path.isfile(mat):
        raise DatasetLayoutError(f"missing '{folder}' (and '{mat}' to extract it from). "
                                 f"Expected layout: {LAYOUT}")
    if not _h5py_available():
        raise DatasetLayoutError(
            f"missing '{folder}': extract the {kind} images of '{mat}' (MATLAB v7.3) there as "
            f"<campus>_<pid:03d>_<view>_<img:02d>.png (torchreid does this), or install h5py")
    _extract_with_h5py(mat, folder, kind)
    return folder


def _new_protocol(base: str, img_dir: str, kind: str) -> ImageSplits:
    from scipy.io import loadmat
    config = require(os.path.join(base, "cuhk03_release",
                                  f"cuhk03_new_protocol_config_{kind}.mat"), LAYOUT)
    try:
        mat = loadmat(config)
        names = _cell_strings(mat["filelist"])
        labels = np.asarray(mat["labels"]).flatten().astype(np.int64)
        idx = {k: np.asarray(mat[f"{k}_idx"]).flatten().astype(np.int64) - 1
               for k in ("train", "query", "gallery")}
    except KeyError as e:
        raise DatasetLayoutError(f"'{config}' lacks key {e}; expected filelist, labels, "
                                 f"train_idx, query_idx, gallery_idx") from None
    except (ValueError, OSError) as e:
        raise DatasetLayoutError(f"cannot read '{config}' ({e}); expected a MATLAB v5 .mat") from None
    if len(names) != len(labels):
        raise DatasetLayoutError(f"'{config}': filelist has {len(names)} entries but labels "
                                 f"has {len(labels)}")
    sets = {}
    for key, rows in idx.items():
        if rows.size and (rows.min() < 0 or rows.max() >= len(names)):
            raise DatasetLayoutError(f"'{config}': {key}_idx outside 1..{len(names)}")
        recs = []
        for i in rows:
            path = require(os.path.join(img_dir, names[i]), LAYOUT)
            recs.append(Record(path, int(labels[i]), _parse_name(names[i])[2] - 1))
        sets[key] = recs
    return make_splits(sets["train"], sets["query"], sets["gallery"])


def _classic_test_pairs(base: str, kind: str, split_id: int) -> Set[Tuple[int, int]]:
    """(campus, pid) pairs of the test identities of classic split ``split_id``."""
    js = os.path.join(base, f"splits_classic_{kind}.json")
    mat = os.path.join(base, "cuhk03_release", "cuhk-03.mat")
    if os.path.isfile(js):
        try:
            with open(js, "r", encoding="utf-8") as f:
                splits = json.load(f)
            entries = splits[split_id]["query"] if 0 <= split_id < len(splits) else None
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetLayoutError(f"cannot read '{js}' ({e}); expected torchreid's list of "
                                     f"splits with 'query' entries [path, pid, camid]") from None
        if entries is None:
            raise ConfigError(f"CUHK03 classic split_id {split_id} not in 0..{len(splits) - 1}")
        return {_parse_name(str(e[0]).replace("\\", "/"))[:2] for e in entries}
    if os.path.isfile(mat) and _h5py_available():
        import h5py
        with h5py.File(mat, "r") as f:
            refs = f["testsets"][0]
            if not 0 <= split_id < len(refs):
                raise ConfigError(f"CUHK03 classic split_id {split_id} not in 0..{len(refs) - 1}")
            pairs = f[refs[split_id]][:].T
        return {(int(c), int(p)) for c, p in pairs}
    raise DatasetLayoutError(f"the classic CUHK03 split needs '{js}' (torchreid writes it) or "
                             f"'{mat}' with h5py installed")


def _classic(img_dir: str, split_id: int, test_pairs: Set[Tuple[int, int]]) -> ImageSplits:
    train, test = [], []
    for name in list_images(img_dir):
        campus, pid, view = _parse_name(name)
        rec = Record(os.path.join(img_dir, name), campus * 1000 + pid, view - 1)
        (test if (campus, pid) in test_pairs else train).append(rec)
    if not test or not train:
        raise DatasetLayoutError(f"classic split {split_id} leaves an empty train or test set "
                                 f"in '{img_dir}'")
    return make_splits(train, test, list(test))


def load_cuhk03(root: str, labeled: bool = True, classic: bool = False,
                split_id: int = 0) -> ImageSplits:
    """CUHK03 (SPEC 2.5), labelled or detected boxes, new protocol or classic split
    ``split_id`` (see the module docstring; classic needs the single-gallery-shot metric).
    Real labelled new protocol: 767 train ids / 7,368 images, 1,400 query, 5,328 gallery."""
    require_dir(root, LAYOUT)
    base = require(os.path.join(root, "cuhk03"), LAYOUT)
    kind = "labeled" if labeled else "detected"
    # the split comes first: a missing split file stops before any image is extracted
    if classic:
        test_pairs = _classic_test_pairs(base, kind, int(split_id))
        return _classic(images_dir(base, kind), int(split_id), test_pairs)
    require(os.path.join(base, "cuhk03_release", f"cuhk03_new_protocol_config_{kind}.mat"), LAYOUT)
    return _new_protocol(base, images_dir(base, kind), kind)
