"""SYSU-MM01 cross-modality parser (SPEC section 2.1).

Layout under ``root``::

    cam1 .. cam6/<pid:04d>/<nnnn>.jpg
    exp/train_id.txt, exp/val_id.txt, exp/test_id.txt   (one comma-separated line of pids)
    train_{rgb,ir}_resized_{img,label}.npy              (written by pre_process_sysu.py)

RGB cameras are 1, 2 (indoor), 4, 5 (outdoor); IR cameras are 3 (indoor) and 6 (outdoor).
Records carry the 0-based camera id (``cam1`` -> 0). Training records keep their raw pids:
callers relabel them with :func:`common.data.base.relabel` (ascending raw pid).

Choices where SPEC is silent: a pid folder missing from one camera is skipped (the real
data set has such gaps); a whole missing ``camN`` folder is an error. The single-shot gallery
draws one image per (pid, camera) folder with ``np.random.default_rng([seed, trial])``,
visiting pids in ascending order and cameras in ascending order, so a trial is reproducible
on any machine.
"""
import os
from typing import List, Tuple

import numpy as np

from common.data.base import Record, list_images, require, require_dir
from common.errors import ConfigError, DatasetLayoutError

LAYOUT = ("ROOT/cam1..cam6/<pid:04d>/<nnnn>.jpg and ROOT/exp/{train_id,val_id,test_id}.txt "
          "(one comma-separated line of pids each); RGB cams 1,2,4,5, IR cams 3,6")

RGB_CAMS = (1, 2, 4, 5)
IR_CAMS = (3, 6)
GALLERY_CAMS = {"all": (1, 2, 4, 5), "indoor": (1, 2)}

NPY_FILES = ("train_rgb_resized_img.npy", "train_rgb_resized_label.npy",
             "train_ir_resized_img.npy", "train_ir_resized_label.npy")


def is_ir(camid0: int) -> bool:
    """True when the 0-based camera id belongs to an IR camera (raw cams 3 and 6; SPEC 2.1)."""
    return camid0 + 1 in IR_CAMS


def read_id_file(path: str) -> List[int]:
    """Parse one ``exp/*_id.txt`` file: comma-separated pids, possibly over several lines
    (SPEC 2.1). A non-integer entry raises :class:`DatasetLayoutError` naming the file."""
    require(path, LAYOUT)
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    pids = []
    for token in text.replace("\n", ",").split(","):
        token = token.strip()
        if not token:
            continue
        try:
            pids.append(int(token))
        except ValueError:
            raise DatasetLayoutError(f"'{path}' holds {token!r}, not a pid; expected one "
                                     f"comma-separated line of integers like '1,2,4'") from None
    return pids


def _ids(root: str, *names: str) -> List[int]:
    """Sorted union of the pids listed in ``exp/<name>_id.txt`` for each name."""
    require_dir(root, LAYOUT)
    pids = set()
    for name in names:
        pids.update(read_id_file(os.path.join(root, "exp", f"{name}_id.txt")))
    return sorted(pids)


def _camera_dir(root: str, cam: int) -> str:
    return require(os.path.join(root, f"cam{cam}"), LAYOUT)


def _folder_images(root: str, cam: int, pid: int) -> List[str]:
    """Sorted image paths of one (camera, pid) folder; empty when the folder is absent."""
    folder = os.path.join(root, f"cam{cam}", f"{pid:04d}")
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, name) for name in list_images(folder)]


def _records(root: str, pids, cams) -> List[Record]:
    """All images of ``pids`` x ``cams``, pid-major then camera then file name."""
    for cam in cams:
        _camera_dir(root, cam)
    out = []
    for pid in pids:
        for cam in cams:
            out.extend(Record(p, pid, cam - 1) for p in _folder_images(root, cam, pid))
    return out


def train_records(root: str) -> List[Record]:
    """Training images of SYSU-MM01 (SPEC 2.1): pids of ``train_id`` ∪ ``val_id``, all six
    cameras, raw pids, 0-based camids. Split modalities with :func:`is_ir`."""
    return _records(root, _ids(root, "train", "val"), sorted(RGB_CAMS + IR_CAMS))


def query_records(root: str) -> List[Record]:
    """Query set (SPEC 2.1): every IR image (cams 3 and 6) of the test pids; the same for
    all-search and indoor-search."""
    return _records(root, _ids(root, "test"), IR_CAMS)


def gallery_records(root: str, mode: str = "all", trial: int = 0, single_shot: bool = True,
                    seed: int = 0) -> List[Record]:
    """Gallery set (SPEC 2.1): RGB images of the test pids from cams 1,2,4,5 (``mode='all'``)
    or cams 1,2 (``mode='indoor'``). Single-shot keeps one image per (pid, camera) folder,
    drawn with ``np.random.default_rng([seed, trial])``; multi-shot keeps every image."""
    if mode not in GALLERY_CAMS:
        raise ConfigError(f"unknown SYSU-MM01 search mode {mode!r}; expected one of "
                          f"{', '.join(sorted(GALLERY_CAMS))}")
    if int(trial) < 0 or int(seed) < 0:
        raise ConfigError(f"trial and seed must be >= 0, got trial={trial}, seed={seed}")
    records = _records(root, _ids(root, "test"), GALLERY_CAMS[mode])
    if not single_shot:
        return records
    rng = np.random.default_rng([int(seed), int(trial)])
    folders = {}
    for r in records:  # records are grouped by (pid, cam) in a fixed order
        folders.setdefault((r.pid, r.camid), []).append(r)
    return [group[int(rng.integers(len(group)))] for group in folders.values()]


def load_preprocessed(root: str, mmap: bool = False) -> Tuple[np.ndarray, np.ndarray,
                                                               np.ndarray, np.ndarray]:
    """Read the four arrays written by ``pre_process_sysu.py`` (SPEC 2.1):
    ``(rgb_img, rgb_label, ir_img, ir_label)``. ``mmap=True`` maps the image arrays read-only
    instead of loading them (the RGB array of the real data set is about 2.8 GB)."""
    require_dir(root, LAYOUT)
    arrays = []
    for name in NPY_FILES:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            raise DatasetLayoutError(f"missing '{path}'; run `python pre_process_sysu.py "
                                     f"--data-path {root}` first")
        arrays.append(np.load(path, mmap_mode="r" if mmap and name.endswith("img.npy") else None))
    rgb_img, rgb_label, ir_img, ir_label = arrays
    for img, label, what in ((rgb_img, rgb_label, "rgb"), (ir_img, ir_label, "ir")):
        if img.ndim != 4 or img.shape[-1] != 3 or label.shape != (img.shape[0],):
            raise DatasetLayoutError(
                f"train_{what}_resized_*.npy in '{root}' disagree (images {img.shape}, labels "
                f"{label.shape}); expected (N,H,W,3) and (N,); re-run pre_process_sysu.py")
    return rgb_img, rgb_label, ir_img, ir_label
