"""SYSU-MM01 cross-modality parser (SPEC section 2.1).

Layout under ``root``::

    cam1 .. cam6/<pid:04d>/<nnnn>.jpg
    exp/train_id.txt, exp/val_id.txt, exp/test_id.txt   (one comma-separated line of pids)
    train_{rgb,ir}_resized_{img,label}.npy              (written by pre_process_sysu.py)

RGB cameras are 1, 2 (indoor), 4, 5 (outdoor); IR cameras are 3 (indoor) and 6 (outdoor).
Records carry the 0-based camera id (``cam1`` -> 0). Training records keep their raw pids:
callers relabel them with :func:`common.data.base.relabel` (ascending raw pid).

Choices where SPEC is silent: a pid folder missing from one camera is skipped (the real
data set has such gaps); a whole missing ``camN`` folder is an error.

Gallery (official protocol, evaluation kit ``evaluation/gen_utils.py`` as shipped with e.g.
FutabaSakuraXD/Farewell-to-Mutual-Information-Variational-Distiilation-for-Cross-Modal-Person-
Re-identification): when ``rand_perm_cam.mat`` is present (looked up, in this order, as
``ROOT/exp/rand_perm_cam.mat``, ``ROOT/rand_perm_cam.mat``, ``ROOT/data_split/rand_perm_cam.mat``;
see :func:`rand_perm_path`), trial ``r`` takes, for each test pid and gallery camera, the
first ``number_shot`` entries of row ``r`` of that person's permutation (1-based indices into
the pid's sorted images of that camera; 1 = single-shot, 10 = multi-shot). Without the file
the gallery is a seeded draw: ``np.random.default_rng([seed, trial])`` visits pids in
ascending order and cameras in ascending order and picks one image per (pid, camera) folder
(``rng.integers(n)``) for single-shot, or ``number_shot`` distinct images (``rng.choice``,
kept in file order; all when the folder holds fewer) for multi-shot, so a trial is
reproducible on any machine. :func:`gallery_source` says which one a root uses.
"""
import functools
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from common.data.base import Record, list_images, require, require_dir
from common.errors import ConfigError, DatasetLayoutError, os_error_message

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
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeError) as e:
        raise DatasetLayoutError(f"{os_error_message(e, path)}; expected one comma-separated "
                                 f"line of pids like '1,2,4'") from None
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
    path = require(os.path.join(root, f"cam{cam}"), LAYOUT)
    if not os.path.isdir(path):
        raise DatasetLayoutError(f"'{path}' is a file, expected a folder. Expected layout: {LAYOUT}")
    return path


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


# ------------------------------------------------------------------ gallery (official protocol)

RAND_PERM_NAME = "rand_perm_cam.mat"
# where the permutation file is looked for, first hit wins (see rand_perm_path)
RAND_PERM_PLACES = (("exp", RAND_PERM_NAME), (RAND_PERM_NAME,), ("data_split", RAND_PERM_NAME))
RAND_PERM_FORM = ("a MATLAB v5 .mat file with variable 'rand_perm_cam': a 6x1 cell (one per "
                  "camera) of cells indexed by person (pid-1), each a (trials, n_images) array of "
                  "1-based indices into that pid's sorted images of the camera (empty when it has "
                  "none), as in the official SYSU-MM01 evaluation kit")
SOURCE_FILE = "rand_perm_cam.mat"
SOURCE_SEEDED = "seeded draw"

# [cam-1][pid-1] -> (trials, n_images) int64 array of 1-based indices, or None (no images)
RandPerm = Tuple[Tuple[Optional[np.ndarray], ...], ...]


def rand_perm_path(root: str) -> Optional[str]:
    """Path of the official ``rand_perm_cam.mat`` under ``root``, or None. Looked up as
    ``ROOT/exp/rand_perm_cam.mat``, ``ROOT/rand_perm_cam.mat``, then
    ``ROOT/data_split/rand_perm_cam.mat`` (the kit's own folder); the first that exists wins,
    even when it is broken (it is then reported, not skipped)."""
    for parts in RAND_PERM_PLACES:
        path = os.path.join(root, *parts)
        if os.path.lexists(path):
            return path
    return None


def gallery_source(root: str) -> str:
    """Where :func:`gallery_records` takes the gallery from for ``root``: ``'rand_perm_cam.mat'``
    (the official permutation file, see :func:`rand_perm_path`) or ``'seeded draw'``."""
    return SOURCE_FILE if rand_perm_path(root) else SOURCE_SEEDED


def _kind(a: np.ndarray) -> str:
    return f"{'cell' if a.dtype == object else f'{a.dtype} array'} of shape {a.shape}"


def _bad_perm(path: str, what: str) -> DatasetLayoutError:
    return DatasetLayoutError(f"'{path}' {what}; expected {RAND_PERM_FORM}")


def _is_vector_shape(a: np.ndarray) -> bool:
    return a.size == 0 or (a.ndim == 2 and 1 in a.shape) or a.ndim == 1


def load_rand_perm(path: str) -> RandPerm:
    """Read and check the structure of a ``rand_perm_cam.mat`` (read with ``scipy.io.loadmat``,
    layout of the official kit's ``evaluation/gen_utils.py``); cached per (path, inode, mtime,
    size).
    Returns ``perm[cam-1][pid-1]``: a (trials, n_images) int64 array of 1-based indices, or
    None for a person without images in that camera. Any problem is one DatasetLayoutError."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise DatasetLayoutError(f"cannot read {os_error_message(e, path)}; expected "
                                 f"{RAND_PERM_FORM}") from None
    return _load_rand_perm(path, st.st_ino, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _load_rand_perm(path: str, inode: int, mtime_ns: int, size: int) -> RandPerm:
    from scipy.io import loadmat
    try:
        content = loadmat(path)
    except OSError as e:
        if e.errno is None:  # scipy's own OSError("could not read bytes") on a truncated file
            raise _bad_perm(path, f"is not a readable MATLAB file (truncated? {e})") from None
        raise DatasetLayoutError(f"cannot read {os_error_message(e, path)}; expected "
                                 f"{RAND_PERM_FORM}") from None
    except Exception as e:  # scipy raises MatReadError, ValueError, NotImplementedError (v7.3), ...
        raise _bad_perm(path, f"is not a readable MATLAB file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
    if "rand_perm_cam" not in content:
        found = ", ".join(k for k in content if not k.startswith("__")) or "none"
        raise _bad_perm(path, f"lacks the variable 'rand_perm_cam' (found: {found})")
    top = np.asarray(content["rand_perm_cam"])
    if top.dtype != object or top.size != 6 or not _is_vector_shape(top):
        raise _bad_perm(path, f"holds 'rand_perm_cam' as a {_kind(top)}, not a 6x1 cell")
    cams = []
    for cam, cell in enumerate(top.reshape(-1), 1):
        cell = np.asarray(cell)
        if cell.size and (cell.dtype != object or not _is_vector_shape(cell)):
            raise _bad_perm(path, f"holds a {_kind(cell)} for camera {cam}, not a cell with one "
                                  f"array per person")
        entries = []
        for index, entry in enumerate(cell.reshape(-1)):
            entry = np.asarray(entry)
            if entry.size == 0:
                entries.append(None)
                continue
            if (entry.dtype.kind not in "uif" or entry.ndim != 2
                    or not np.array_equal(entry, np.round(entry))):
                raise _bad_perm(path, f"holds a {_kind(entry)} for camera {cam} pid {index + 1}, "
                                      f"not a (trials, n_images) array of whole numbers")
            entries.append(entry.astype(np.int64))
        cams.append(tuple(entries))
    return tuple(cams)


def _entry(perm: RandPerm, cam: int, pid: int) -> Optional[np.ndarray]:
    cell = perm[cam - 1]
    return cell[pid - 1] if 1 <= pid <= len(cell) else None


def _test_folders(root: str, cams) -> List[Tuple[int, int, List[str]]]:
    """``(pid, cam, sorted image paths)`` of every non-empty gallery folder, pid-major."""
    for cam in cams:
        _camera_dir(root, cam)
    folders = [(pid, cam, _folder_images(root, cam, pid)) for pid in _ids(root, "test") for cam in cams]
    return [f for f in folders if f[2]]


def _uncovered(path: str, perm: RandPerm, folders) -> None:
    missing: Dict[int, List[int]] = {}
    for pid, cam, _ in folders:
        if _entry(perm, cam, pid) is None:
            missing.setdefault(pid, []).append(cam)
    if missing:
        items = [f"pid {pid} (cam{', cam'.join(map(str, cams))})" for pid, cams in missing.items()]
        more = f" and {len(items) - 10} more" if len(items) > 10 else ""
        raise _bad_perm(path, f"has no permutation for test pids that have gallery images: "
                              f"{'; '.join(items[:10])}{more}")


def _file_picks(path: str, folders, trial: int, number_shot: int) -> List[np.ndarray]:
    """0-based image indices per folder: first ``number_shot`` entries of row ``trial``."""
    perm = load_rand_perm(path)
    _uncovered(path, perm, folders)
    picks = []
    for pid, cam, images in folders:
        entry = _entry(perm, cam, pid)
        if trial >= entry.shape[0]:
            raise DatasetLayoutError(
                f"'{path}' holds {entry.shape[0]} trials (rows) for cam{cam} pid {pid}, but trial "
                f"{trial} (0-based) was asked; evaluate at most {entry.shape[0]} trials")
        row = entry[trial, :number_shot]
        bad = row[(row < 1) | (row > len(images))]
        if bad.size:
            raise _bad_perm(path, f"picks image {bad[0]} for cam{cam} pid {pid} in trial {trial}, "
                                  f"but cam{cam}/{pid:04d} holds {len(images)} images (entries "
                                  f"must be 1..{len(images)})")
        picks.append(row - 1)
    return picks


def _seeded_picks(folders, trial: int, number_shot: int, seed: int) -> List[np.ndarray]:
    """0-based image indices per folder drawn with ``default_rng([seed, trial])``."""
    rng = np.random.default_rng([int(seed), int(trial)])
    picks = []
    for _, _, images in folders:
        n = len(images)
        if number_shot == 1:
            picks.append(np.array([rng.integers(n)]))
        elif n <= number_shot:
            picks.append(np.arange(n))
        else:
            picks.append(np.sort(rng.choice(n, number_shot, replace=False)))
    return picks


def gallery_trials(root: str) -> Optional[int]:
    """How many trials the gallery of ``root`` can give: the fewest rows of the permutation
    file's entries for the test pids in the gallery cameras, or None (no limit) for the seeded
    draw."""
    path = rand_perm_path(root)
    if path is None:
        return None
    perm = load_rand_perm(path)
    folders = _test_folders(root, GALLERY_CAMS["all"])
    _uncovered(path, perm, folders)
    return min((_entry(perm, cam, pid).shape[0] for pid, cam, _ in folders), default=0)


def _check_mode(mode: str) -> None:
    if mode not in GALLERY_CAMS:
        raise ConfigError(f"unknown SYSU-MM01 search mode {mode!r}; expected one of "
                          f"{', '.join(sorted(GALLERY_CAMS))}")


def gallery_pool(root: str, mode: str = "all") -> List[Record]:
    """Every gallery candidate (SPEC 2.1): all RGB images of the test pids in cams 1,2,4,5
    (``mode='all'``) or 1,2 (``mode='indoor'``), pid-major, then camera, then file name.
    Each trial's :func:`gallery_records` is a subset of it."""
    _check_mode(mode)
    return _records(root, _ids(root, "test"), GALLERY_CAMS[mode])


def gallery_records(root: str, mode: str = "all", trial: int = 0, number_shot: int = 1,
                    seed: int = 0) -> List[Record]:
    """Gallery of one trial (SPEC 2.1; official kit ``evaluation/gen_utils.py``
    ``get_testing_set``): for each test pid (ascending) and camera of ``mode`` (cams 1,2,4,5
    for ``'all'``, 1,2 for ``'indoor'``) that holds images, ``number_shot`` of them (1 =
    single-shot, 10 = multi-shot; all when the folder holds fewer). Taken from row ``trial``
    of ``rand_perm_cam.mat`` when the root has one (:func:`rand_perm_path`), else drawn with
    ``np.random.default_rng([seed, trial])``; :func:`gallery_source` tells which."""
    _check_mode(mode)
    if isinstance(number_shot, (bool, np.bool_)) or not isinstance(number_shot, (int, np.integer)) \
            or number_shot < 1:
        raise ConfigError(f"number_shot must be a positive integer (1 = single-shot, 10 = "
                          f"multi-shot), got {number_shot!r}; gallery_pool() lists every image")
    if int(trial) < 0 or int(seed) < 0:
        raise ConfigError(f"trial and seed must be >= 0, got trial={trial}, seed={seed}")
    folders = _test_folders(root, GALLERY_CAMS[mode])
    path = rand_perm_path(root)
    if path is not None:
        picks = _file_picks(path, folders, int(trial), int(number_shot))
    else:
        picks = _seeded_picks(folders, int(trial), int(number_shot), seed)
    return [Record(images[int(i)], pid, cam - 1)
            for (pid, cam, images), idx in zip(folders, picks) for i in idx]

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
