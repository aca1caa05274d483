"""Miniature image and cross-modal data sets in their real on-disk layouts (SPEC section 2,
synthetic generator). Used by tests and the demo run through ``python -m common.data.synthetic``.

Every writer is ``write_<name>(out, ids=8, seed=0) -> root``: it writes ``ids`` training and
``ids`` test identities (disjoint), a few 64x32 images per identity and camera rendered by
:func:`common.data.appearance.render` (IR/thermal cameras with ``modality='ir'``), and returns
the root that the matching parser takes. Raw pids are deliberately non-contiguous and id
files unsorted, so the parsers' ascending relabelling is exercised. Same ``seed``, same bytes.

The single-image writers (Market-1501, DukeMTMC-reID, MSMT17, CUHK03) also take
``shift='none'``: a dataset style of :data:`common.data.appearance.DOMAIN_SHIFTS` ('warm',
'dim') applied to every image after rendering (colour mix, contrast, brightness, camera cast),
so that two synthetic sets differ as real domains do. 'none' writes the same bytes as before.
"""
import json
import os
from typing import List, Tuple

import numpy as np

from common.data.appearance import domain_shift, render, save

H, W = 64, 32


def _put(path: str, pid: int, camid: int, rng, modality: str = "rgb", shift: str = "none") -> str:
    save(domain_shift(render(pid, camid, rng, H, W, modality), shift, camid), path)
    return path


def _pick_pids(rng, ids: int, spread: int = 5, start: int = 1) -> Tuple[List[int], List[int]]:
    """``2*ids`` distinct non-contiguous raw pids, split into (train, test), each sorted."""
    if int(ids) < 2:
        raise ValueError(f"ids must be >= 2, got {ids}")
    pool = rng.choice(np.arange(start, start + spread * 2 * ids), 2 * ids, replace=False)
    return sorted(int(p) for p in pool[:ids]), sorted(int(p) for p in pool[ids:])


def _write_lines(path: str, lines) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in lines))


# --------------------------------------------------------------------------- SYSU-MM01 (2.1)

def sysu_folder_size(pid: int, cam: int) -> int:
    """Images the synthetic SYSU writer puts in ``cam<cam>/<pid:04d>/``: 2 or 3."""
    return 2 + (pid + cam) % 2


RAND_PERM_TRIALS = 10  # rows per person in the official rand_perm_cam.mat


def save_rand_perm_cam(path: str, perms) -> str:
    """Write ``path`` in the structure of the official SYSU-MM01 ``rand_perm_cam.mat``:
    variable ``rand_perm_cam``, a 6x1 cell (one per camera) of (P_cam x 1) cells indexed by
    pid-1, each a (trials, n_images) double array of 1-based image indices, empty (0x0) for a
    person without images; ``P_cam`` is the largest pid of that camera in ``perms``.
    ``perms`` maps ``(cam, pid)`` (both 1-based) to that array. Returns ``path``."""
    from scipy.io import savemat
    top = np.empty((6, 1), dtype=object)
    for cam in range(1, 7):
        pids = [pid for c, pid in perms if c == cam]
        cell = np.empty((max(pids, default=0), 1), dtype=object)
        for i in range(cell.shape[0]):
            cell[i, 0] = np.zeros((0, 0))
        for pid in pids:
            cell[pid - 1, 0] = np.asarray(perms[cam, pid], dtype=np.float64)
        top[cam - 1, 0] = cell
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    savemat(path, {"rand_perm_cam": top})
    return path


def write_sysu(out: str, ids: int = 8, seed: int = 0, rand_perm: bool = False) -> str:
    """SYSU-MM01 layout (SPEC 2.1) under ``out/SYSU-MM01``: ``cam1..cam6/<pid:04d>/<n:04d>.jpg``
    (2 or 3 images per folder, see :func:`sysu_folder_size`; cams 3 and 6 infrared) and
    ``exp/{train,val,test}_id.txt``. The last ``max(1, ids // 4)`` training ids (in file order)
    go to ``val_id.txt``. The smallest test pid has no ``cam2`` folder, like the gaps in the
    real data set. With ``rand_perm=True`` it also writes ``exp/rand_perm_cam.mat`` (see
    :func:`save_rand_perm_cam`) covering every (camera, pid) folder: row ``r`` of folder
    (cam, pid) is ``default_rng([seed, cam, pid]).permutation(n) + 1``, 10 rows; the images
    are the same bytes either way."""
    rng = np.random.default_rng(seed)
    root = os.path.join(out, "SYSU-MM01")
    train, test = _pick_pids(rng, ids)
    train_order = [int(p) for p in rng.permutation(train)]
    n_val = max(1, ids // 4)
    _write_lines(os.path.join(root, "exp", "train_id.txt"), [",".join(map(str, train_order[:-n_val]))])
    _write_lines(os.path.join(root, "exp", "val_id.txt"), [",".join(map(str, train_order[-n_val:]))])
    _write_lines(os.path.join(root, "exp", "test_id.txt"),
                 [",".join(str(p) for p in rng.permutation(test))])
    perms = {}
    for cam in range(1, 7):
        os.makedirs(os.path.join(root, f"cam{cam}"), exist_ok=True)
        modality = "ir" if cam in (3, 6) else "rgb"
        for pid in train + test:
            if pid == test[0] and cam == 2:
                continue
            n_images = sysu_folder_size(pid, cam)
            for n in range(1, n_images + 1):
                _put(os.path.join(root, f"cam{cam}", f"{pid:04d}", f"{n:04d}.jpg"),
                     pid, cam - 1, rng, modality)
            perm_rng = np.random.default_rng([seed, cam, pid])
            perms[cam, pid] = np.stack([perm_rng.permutation(n_images) + 1
                                        for _ in range(RAND_PERM_TRIALS)])
    if rand_perm:
        save_rand_perm_cam(os.path.join(root, "exp", "rand_perm_cam.mat"), perms)
    return root


# ------------------------------------------------------------------------------ RegDB (2.2)

REGDB_IMAGES = 3  # per identity and modality (the real set has 10)


def write_regdb(out: str, ids: int = 8, seed: int = 0) -> str:
    """RegDB layout (SPEC 2.2) under ``out/RegDB``: ``2*ids`` identities with 3 visible and 3
    thermal ``.bmp`` images each, and ``idx/{train,test}_{visible,thermal}_{1..10}.txt``; trial
    ``t`` splits the identities into halves with ``np.random.default_rng([seed, t])``. The
    label written in the index files is the identity number 0..2*ids-1."""
    rng = np.random.default_rng(seed)
    root = os.path.join(out, "RegDB")
    files = {}
    for pid in range(2 * ids):
        for mod, top, tag in (("visible", "Visible", "v"), ("thermal", "Thermal", "t")):
            rels = []
            for k in range(REGDB_IMAGES):
                rel = f"{top}/{pid + 1}/{tag}_{pid + 1:05d}_{k}.bmp"
                _put(os.path.join(root, top, str(pid + 1), f"{tag}_{pid + 1:05d}_{k}.bmp"),
                     pid, 0 if mod == "visible" else 1, rng, "rgb" if mod == "visible" else "ir")
                rels.append(rel)
            files[pid, mod] = rels
    for trial in range(1, 11):
        perm = np.random.default_rng([seed, trial]).permutation(2 * ids)
        for split, members in (("train", sorted(perm[:ids])), ("test", sorted(perm[ids:]))):
            for mod in ("visible", "thermal"):
                _write_lines(os.path.join(root, "idx", f"{split}_{mod}_{trial}.txt"),
                             [f"{rel} {pid}" for pid in members for rel in files[pid, mod]])
    return root


# --------------------------------------------------------------- Market / Duke / MSMT17 (2.5)

def _camera_plan(rng, num_cams: int) -> List[int]:
    return sorted(int(c) + 1 for c in rng.choice(num_cams, 3, replace=False))


def _market_like(folder_of, name_of, rng, train, test, num_cams, shift="none"):
    """Shared body: per pid 3 cameras; train 2 images per camera; each test pid has one query
    image in its first two cameras and 2 gallery images in each of its three cameras."""
    frame = [0]

    def put(split, pid, cam):
        frame[0] += 1
        path = os.path.join(folder_of(split), name_of(pid, cam, frame[0]))
        _put(path, pid, cam - 1, rng, shift=shift)

    for pid in train:
        for cam in _camera_plan(rng, num_cams):
            for _ in range(2):
                put("train", pid, cam)
    for pid in test:
        cams = _camera_plan(rng, num_cams)
        for cam in cams[:2]:
            put("query", pid, cam)
        for cam in cams:
            for _ in range(2):
                put("gallery", pid, cam)
    return put


def _market_name(pid, cam, frame):
    return f"{'-1' if pid == -1 else f'{pid:04d}'}_c{cam}s1_{frame:06d}_00.jpg"


def write_market1501(out: str, ids: int = 8, seed: int = 0, shift: str = "none") -> str:
    """Market-1501 layout (SPEC 2.5) under ``out/market1501/Market-1501-v15.09.15``; returns
    ``out``. The gallery also holds 2 junk images (pid -1) and 2 distractors (pid 0)."""
    rng = np.random.default_rng(seed)
    base = os.path.join(out, "market1501", "Market-1501-v15.09.15")
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for f in folders.values():
        os.makedirs(os.path.join(base, f), exist_ok=True)
    train, test = _pick_pids(rng, ids)
    put = _market_like(lambda s: os.path.join(base, folders[s]), _market_name, rng, train, test, 6, shift)
    for pid, cam in ((-1, 1), (-1, 4), (0, 2), (0, 5)):
        put("gallery", pid, cam)
    return out


def write_dukemtmcreid(out: str, ids: int = 8, seed: int = 0, shift: str = "none") -> str:
    """DukeMTMC-reID layout (SPEC 2.5) under ``out/dukemtmc-reid/DukeMTMC-reID``, names
    ``<pid:04d>_c<cam>_f<frame:07d>.jpg``, cameras 1..8; returns ``out``."""
    rng = np.random.default_rng(seed)
    base = os.path.join(out, "dukemtmc-reid", "DukeMTMC-reID")
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for f in folders.values():
        os.makedirs(os.path.join(base, f), exist_ok=True)
    train, test = _pick_pids(rng, ids)
    _market_like(lambda s: os.path.join(base, folders[s]),
                 lambda pid, cam, fr: f"{pid:04d}_c{cam}_f{fr:07d}.jpg", rng, train, test, 8, shift)
    return out


def write_msmt17(out: str, ids: int = 8, seed: int = 0, market_style: bool = False, shift: str = "none") -> str:
    """MSMT17 layout (SPEC 2.5) under ``out/msmt17/MSMT17_V1``: ``{train,test}/<pid:04d>/``
    images named ``<pid:04d>_<seq:03d>_<cam:02d>_0303morning_<frame:04d>_0.jpg`` and
    ``list_{train,val,query,gallery}.txt``. Train and test pids both count from 0, as in the
    release; each train pid has one extra image listed in ``list_val.txt``. With
    ``market_style=True`` it writes the Market-style conversion in ``out/msmt17/`` instead
    (test pids offset by ``ids``). Returns ``out``."""
    rng = np.random.default_rng(seed)
    base = os.path.join(out, "msmt17")
    if market_style:
        folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
        for f in folders.values():
            os.makedirs(os.path.join(base, f), exist_ok=True)
        _market_like(lambda s: os.path.join(base, folders[s]),
                     lambda pid, cam, fr: f"{pid:04d}_c{cam}_{fr:06d}.jpg", rng,
                     list(range(1, ids + 1)), list(range(ids + 1, 2 * ids + 1)), 15, shift)
        return out
    release = os.path.join(base, "MSMT17_V1")
    lists = {k: [] for k in ("train", "val", "query", "gallery")}
    frame = 0
    for split, top, offset in (("train", "train", 0), ("test", "test", 5000)):
        for pid in range(ids):
            cams = _camera_plan(rng, 15)
            if split == "train":
                plan = [("train", c) for c in cams for _ in range(2)] + [("val", cams[0])]
            else:
                plan = [("query", c) for c in cams[:2]] + [("gallery", c) for c in cams for _ in range(2)]
            for lst, cam in plan:
                frame += 1
                rel = f"{pid:04d}/{pid:04d}_{frame % 1000:03d}_{cam:02d}_0303morning_{frame:04d}_0.jpg"
                _put(os.path.join(release, top, *rel.split("/")), pid + offset, cam - 1, rng, shift=shift)
                lists[lst].append(f"{rel} {pid}")
    for name, lines in lists.items():
        _write_lines(os.path.join(release, f"list_{name}.txt"), lines)
    return out


# ----------------------------------------------------------------------------- CUHK03 (2.5)

def _cuhk03_identities(ids: int):
    """(campus, pid-in-campus, global label) of ``2*ids`` identities over two campuses."""
    return [(1 + i % 2, 1 + i // 2, i + 1) for i in range(2 * ids)]


def write_cuhk03(out: str, ids: int = 8, seed: int = 0, shift: str = "none", mat: bool = False) -> str:
    """CUHK03 layout (SPEC 2.5) under ``out/cuhk03``: ``images_{detected,labeled}/`` with
    names ``<campus>_<pid:03d>_<view>_<img:02d>.png`` (images 1-2 view 1, 6-7 view 2),
    ``cuhk03_release/cuhk03_new_protocol_config_{detected,labeled}.mat`` (first ``ids``
    identities train; per test identity the first image of each view is a query, the rest
    gallery) and torchreid-style ``splits_classic_{detected,labeled}.json`` with 2 classic
    splits of ``ids`` test identities each. Returns ``out``.

    ``mat=True`` (needs h5py) writes the same images into ``cuhk03_release/cuhk-03.mat`` (the
    release's HDF5 structure, :mod:`common.data.synthetic_cuhk03_mat`, with the classic
    splits as its ``testsets``) instead of the ``images_*`` folders and the JSON splits, as
    the data set comes before torchreid has extracted it."""
    from scipy.io import savemat
    rng = np.random.default_rng(seed)
    base = os.path.join(out, "cuhk03")
    idents = _cuhk03_identities(ids)
    pixels = {}  # mat=True: (kind, campus, pid, image number) -> image
    for kind in ("detected", "labeled"):
        img_dir = os.path.join(base, f"images_{kind}")
        names, labels, roles, owner = [], [], [], []
        for i, (campus, pid, label) in enumerate(idents):
            for img_no in (1, 2, 6, 7):
                view = 1 if img_no <= 5 else 2
                name = f"{campus}_{pid:03d}_{view}_{img_no:02d}.png"
                if mat:
                    pixels[kind, campus, pid, img_no] = domain_shift(render(label, view - 1, rng, H, W), shift,
                                                                     view - 1)
                else:
                    _put(os.path.join(img_dir, name), label, view - 1, rng, shift=shift)
                names.append(name)
                owner.append(i)
                labels.append(label)
                roles.append("train" if i < ids else ("query" if img_no in (1, 6) else "gallery"))
        filelist = np.empty((len(names), 1), dtype=object)
        for j, name in enumerate(names):
            filelist[j, 0] = name
        idx = {r: np.array([[j + 1] for j, x in enumerate(roles) if x == r], dtype=np.float64)
               for r in ("train", "query", "gallery")}
        os.makedirs(os.path.join(base, "cuhk03_release"), exist_ok=True)
        savemat(os.path.join(base, "cuhk03_release", f"cuhk03_new_protocol_config_{kind}.mat"), {
            "filelist": filelist, "labels": np.array(labels, np.float64)[:, None],
            "camId": np.array([[int(n.split("_")[2])] for n in names], np.float64),
            "train_idx": idx["train"], "query_idx": idx["query"], "gallery_idx": idx["gallery"]})
        splits = []
        for split_id in range(2):
            chosen = set(np.random.default_rng([seed, split_id]).permutation(2 * ids)[:ids].tolist())
            test_idents = sorted(chosen)
            train_idents = sorted(set(range(2 * ids)) - chosen)
            test = [[os.path.join(img_dir, n), test_idents.index(o), int(n.split("_")[2]) - 1]
                    for n, o in zip(names, owner) if o in chosen]
            train = [[os.path.join(img_dir, n), train_idents.index(o), int(n.split("_")[2]) - 1]
                     for n, o in zip(names, owner) if o not in chosen]
            splits.append({"train": train, "query": test, "gallery": test,
                           "num_train_pids": len(train_idents), "num_query_pids": ids,
                           "num_gallery_pids": ids})
        if not mat:
            with open(os.path.join(base, f"splits_classic_{kind}.json"), "w", encoding="utf-8") as f:
                json.dump(splits, f)
    if mat:
        from common.data.synthetic_cuhk03_mat import write_cuhk03_mat
        testsets = [[idents[i][:2] for i in sorted(np.random.default_rng([seed, s]).permutation(2 * ids)[:ids])]
                    for s in range(2)]
        write_cuhk03_mat(os.path.join(base, "cuhk03_release", "cuhk-03.mat"), pixels, testsets)
    return out
