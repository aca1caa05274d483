"""MARS video re-ID parser (SPEC section 2.3).

Real sizes: train 625 ids / 8,298 tracklets; query 1,980; gallery 9,330 (SPEC 2.3).
"""
import os
from typing import List, Sequence

import numpy as np

from common.data.base import Record, require, require_dir
from common.data.video_base import VideoSplits, make_video_splits, read_name_list, require_subdir
from common.errors import DatasetLayoutError

LAYOUT = ("ROOT/bbox_train/<pid4>/<name>.jpg, ROOT/bbox_test/<pid4>/<name>.jpg, "
          "ROOT/info/{train_name.txt, test_name.txt, tracks_train_info.mat (key track_train_info), "
          "tracks_test_info.mat (key track_test_info), query_IDX.mat (key query_IDX)}; "
          "names like 0001C1T0001F001.jpg (pid in chars 0-3, camera in char 5; junk folder 00-1)")


def _load_mat(path: str, key: str) -> np.ndarray:
    """Read array ``key`` from a MATLAB file as int64, with one clear error if anything is off."""
    from scipy.io import loadmat
    require(path, LAYOUT)
    try:
        content = loadmat(path)
    except Exception as e:  # scipy raises several types (MatReadError, ValueError, OSError)
        raise DatasetLayoutError(f"cannot read MATLAB file '{path}' ({e}). Expected layout: {LAYOUT}") from None
    if key not in content:
        raise DatasetLayoutError(f"'{path}' has no variable '{key}' (found: "
                                 f"{', '.join(k for k in content if not k.startswith('__'))}). "
                                 f"Expected layout: {LAYOUT}")
    return np.asarray(content[key]).astype(np.int64)


def _track_info(path: str, key: str) -> np.ndarray:
    rows = _load_mat(path, key)
    if rows.size == 0:
        return rows.reshape(0, 4)
    if rows.ndim != 2 or rows.shape[1] != 4:
        raise DatasetLayoutError(f"'{path}' variable '{key}' has shape {rows.shape}; expected "
                                 f"(N, 4) rows [start, end, pid, camid]")
    return rows


def _tracklets(rows: np.ndarray, names: Sequence[str], folder: str, source: str) -> List[Record]:
    """One record per track-info row: frames ``names[start-1:end]`` (1-based, inclusive),
    camid 1..6 made 0-based; junk rows (pid -1) are kept here and dropped by the caller."""
    out = []
    for i, (start, end, pid, camid) in enumerate(rows.tolist()):
        if not 1 <= start <= end <= len(names):
            raise DatasetLayoutError(f"{source} row {i + 1}: frame range [{start}, {end}] outside the "
                                     f"1-based name list of {len(names)} names")
        if camid < 1:
            raise DatasetLayoutError(f"{source} row {i + 1}: camid {camid}; expected 1-based camera ids (1..6)")
        frames = names[start - 1:end]
        if len({n[:4] for n in frames}) != 1 or len({n[5:6] for n in frames}) != 1:
            raise DatasetLayoutError(f"{source} row {i + 1}: frames {frames[0]} .. {frames[-1]} mix "
                                     f"identities or cameras; the name list and track info disagree")
        paths = tuple(os.path.join(folder, n[:4], n) for n in frames)
        out.append(Record(paths, int(pid), int(camid) - 1))
    return out


def load_mars(root: str, augmented_gallery: bool = True) -> VideoSplits:
    """Parse MARS (SPEC 2.3) into tracklet records ``(frame paths, pid, 0-based camid)``.

    ``query_IDX`` (1-based) picks the query rows of the test track info; the gallery is the
    other test rows. Junk pid -1 is dropped, distractor pid 0 stays in the gallery, train
    pids are relabelled in ascending raw-pid order. With ``augmented_gallery`` (default,
    the VKD evaluation) the queries are also appended to the gallery. Frame files are not
    checked one by one (MARS has over a million); only the folders and metadata are.
    """
    require_dir(root, LAYOUT)
    train_dir = require_subdir(root, "bbox_train", LAYOUT)
    test_dir = require_subdir(root, "bbox_test", LAYOUT)
    info = require_subdir(root, "info", LAYOUT)
    train_names = read_name_list(os.path.join(info, "train_name.txt"), LAYOUT)
    test_names = read_name_list(os.path.join(info, "test_name.txt"), LAYOUT)
    train_path = os.path.join(info, "tracks_train_info.mat")
    test_path = os.path.join(info, "tracks_test_info.mat")
    query_path = os.path.join(info, "query_IDX.mat")
    train_rows = _track_info(train_path, "track_train_info")
    test_rows = _track_info(test_path, "track_test_info")
    query_idx = _load_mat(query_path, "query_IDX").ravel() - 1  # 1-based -> 0-based
    if query_idx.size and (query_idx.min() < 0 or query_idx.max() >= len(test_rows)):
        raise DatasetLayoutError(f"'{query_path}' holds indices outside 1..{len(test_rows)} "
                                 f"(the rows of track_test_info); expected 1-based row numbers")
    if len(np.unique(query_idx)) != len(query_idx):
        raise DatasetLayoutError(f"'{query_path}' repeats a query index; expected distinct 1-based rows")

    train = _tracklets(train_rows, train_names, train_dir, train_path)
    test = _tracklets(test_rows, test_names, test_dir, test_path)
    is_query = np.zeros(len(test), bool)
    is_query[query_idx] = True
    query = [test[i] for i in query_idx.tolist()]
    gallery = [t for t, q in zip(test, is_query) if not q]
    return make_video_splits(train, query, gallery, augmented_gallery)
