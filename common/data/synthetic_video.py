"""Miniature MARS, DukeMTMC-VideoReID and VeRi-776 in their real on-disk layouts
(SPEC sections 2, 2.3, 2.4: the synthetic generator).

Each writer takes ``(out, ids, seed)`` and returns the root its parser reads. ``ids``
identities go to train (raw pids 1, 3, 5, ...) and ``ids`` other ones to test (raw pids
2, 4, 6, ...), so the splits are disjoint and the relabelling is visible. Every identity
gets 2-3 tracklets of 3-10 frames, each in a different camera; in the test split the
first tracklet of each identity is the query and the others are gallery, so every query
has a cross-camera match. Images come from :func:`common.data.appearance.render`
(identity strong, camera weak, per-frame noise from one generator seeded by ``seed``).
Persons are 64x32, vehicles 32x32.
"""
import os
import shutil
from typing import List, Tuple

import numpy as np

from common.data.appearance import render, save
from common.errors import ReidError

Tracklet = Tuple[int, int, int]  # (raw pid, 1-based camera, number of frames)


def _plan(rng: np.random.Generator, pids, num_cams: int) -> List[Tracklet]:
    """2-3 tracklets per identity in distinct cameras, 3-10 frames each."""
    plan = []
    for pid in pids:
        n = int(rng.integers(2, 4))
        for cam in sorted(rng.choice(num_cams, size=n, replace=False) + 1):
            plan.append((pid, int(cam), int(rng.integers(3, 11))))
    return plan


def _id_lists(ids: int):
    if int(ids) < 1:
        raise ReidError(f"ids must be a positive number of identities, got {ids}")
    return [1 + 2 * k for k in range(ids)], [2 + 2 * k for k in range(ids)]


MARKER = ".synthetic"  # written into every root this module creates


def _fresh_root(out: str, name: str) -> str:
    """``out/name``, emptied if an earlier run of these writers made it (stale tracklets
    would otherwise be picked up by the folder-scanning parsers); a non-empty folder
    without the marker (perhaps a real dataset) is never touched."""
    root = os.path.join(out, name)
    if os.path.isdir(root) and os.listdir(root):
        if not os.path.isfile(os.path.join(root, MARKER)):
            raise ReidError(f"'{root}' exists, is not empty and was not written by the synthetic "
                            f"generator; choose another --out folder")
        shutil.rmtree(root)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, MARKER), "w") as f:
        f.write("written by common.data.synthetic_video\n")
    return root


def _frame(pid: int, cam: int, rng, path: str, size) -> None:
    save(render(pid, cam - 1, rng, *size), path)


# ----------------------------------------------------------------------------- MARS

def _mars_folder(pid: int) -> str:
    return "00-1" if pid == -1 else f"{pid:04d}"


def _write_mars_split(root: str, folder: str, plan: List[Tracklet], rng) -> Tuple[List[str], np.ndarray]:
    names, rows, per_pid = [], [], {}
    for pid, cam, length in plan:
        t = per_pid[pid] = per_pid.get(pid, 0) + 1
        start = len(names) + 1
        for f in range(1, length + 1):
            name = f"{_mars_folder(pid)}C{cam}T{t:04d}F{f:03d}.jpg"
            _frame(pid, cam, rng, os.path.join(root, folder, name[:4], name), (64, 32))
            names.append(name)
        rows.append([start, len(names), pid, cam])
    return names, np.asarray(rows, np.float64).reshape(-1, 4)  # MATLAB stores doubles


def write_mars(out: str, ids: int = 8, seed: int = 0) -> str:
    """Write ``out/mars`` in the MARS layout (SPEC 2.3), with a junk (pid -1, folder ``00-1``)
    and a distractor (pid 0) tracklet in the test split; return the root."""
    from scipy.io import savemat
    rng = np.random.default_rng(seed)
    train_ids, test_ids = _id_lists(ids)
    root = _fresh_root(out, "mars")
    info = os.path.join(root, "info")
    os.makedirs(info, exist_ok=True)
    train_names, train_rows = _write_mars_split(root, "bbox_train", _plan(rng, train_ids, 6), rng)
    test_plan = [(-1, 1, 4), (0, 2, 3)] + _plan(rng, test_ids, 6)
    test_names, test_rows = _write_mars_split(root, "bbox_test", test_plan, rng)
    query_rows = [i + 1 for i, (pid, _, _) in enumerate(test_plan)  # 1-based
                  if pid > 0 and (i == 0 or test_plan[i - 1][0] != pid)]
    for fname, names in (("train_name.txt", train_names), ("test_name.txt", test_names)):
        with open(os.path.join(info, fname), "w") as f:
            f.write("\n".join(names) + "\n")
    savemat(os.path.join(info, "tracks_train_info.mat"), {"track_train_info": train_rows})
    savemat(os.path.join(info, "tracks_test_info.mat"), {"track_test_info": test_rows})
    savemat(os.path.join(info, "query_IDX.mat"), {"query_IDX": np.asarray([query_rows], np.float64)})
    return root


# ----------------------------------------------------------------------- Duke-Video

def _write_duke_split(split_dir: str, plan: List[Tracklet], rng) -> None:
    per_pid = {}
    for pid, cam, length in plan:
        t = per_pid[pid] = per_pid.get(pid, 0) + 1
        folder = os.path.join(split_dir, f"{pid:04d}", f"{t:04d}")
        for f in range(1, length + 1):
            _frame(pid, cam, rng, os.path.join(folder, f"{pid:04d}_C{cam}_F{f:04d}_X{t}{f:04d}.jpg"), (64, 32))


def write_dukevideo(out: str, ids: int = 8, seed: int = 0) -> str:
    """Write ``out/DukeMTMC-VideoReID`` in the Duke-Video layout (SPEC 2.4; cameras C1..C8);
    the first tracklet of each test identity goes to ``query/``, the rest to ``gallery/``."""
    rng = np.random.default_rng(seed)
    train_ids, test_ids = _id_lists(ids)
    root = _fresh_root(out, "DukeMTMC-VideoReID")
    _write_duke_split(os.path.join(root, "train"), _plan(rng, train_ids, 8), rng)
    test_plan = _plan(rng, test_ids, 8)
    firsts = [i for i, t in enumerate(test_plan) if i == 0 or test_plan[i - 1][0] != t[0]]
    _write_duke_split(os.path.join(root, "query"), [test_plan[i] for i in firsts], rng)
    _write_duke_split(os.path.join(root, "gallery"),
                      [t for i, t in enumerate(test_plan) if i not in firsts], rng)
    os.makedirs(os.path.join(root, "query"), exist_ok=True)
    os.makedirs(os.path.join(root, "gallery"), exist_ok=True)
    return root


# --------------------------------------------------------------------------- VeRi

def _write_veri_split(folder: str, plan: List[Tracklet], rng) -> List[List[str]]:
    """Write every tracklet's frames (time stamps increasing); return the names per tracklet."""
    tracks, stamp = [], 10000
    for pid, cam, length in plan:
        names = []
        for j in range(length):
            stamp += int(rng.integers(5, 40))
            name = f"{pid:04d}_c{cam:03d}_{stamp:08d}_{j % 2}.jpg"
            _frame(pid, cam, rng, os.path.join(folder, name), (32, 32))
            names.append(name)
        tracks.append(names)
    return tracks


def write_veri(out: str, ids: int = 8, seed: int = 0) -> str:
    """Write ``out/VeRi`` in the VeRi-776 layout (SPEC 2.4): ``test_track.txt`` lines are
    ``<first image> <image> <image> ... `` and the query of each test vehicle is the first
    frame of its first tracklet, copied into ``image_query/``."""
    rng = np.random.default_rng(seed)
    train_ids, test_ids = _id_lists(ids)
    root = _fresh_root(out, "VeRi")
    train_tracks = _write_veri_split(os.path.join(root, "image_train"), _plan(rng, train_ids, 20), rng)
    test_plan = _plan(rng, test_ids, 20)
    test_tracks = _write_veri_split(os.path.join(root, "image_test"), test_plan, rng)
    query_names = []
    for i, (pid, cam, _) in enumerate(test_plan):
        if i == 0 or test_plan[i - 1][0] != pid:
            name = test_tracks[i][0]
            os.makedirs(os.path.join(root, "image_query"), exist_ok=True)
            shutil.copyfile(os.path.join(root, "image_test", name), os.path.join(root, "image_query", name))
            query_names.append(name)
    with open(os.path.join(root, "name_train.txt"), "w") as f:
        f.write("".join(n + "\n" for names in train_tracks for n in names))
    with open(os.path.join(root, "name_query.txt"), "w") as f:
        f.write("".join(n + "\n" for n in query_names))
    with open(os.path.join(root, "test_track.txt"), "w") as f:
        f.write("".join(" ".join([names[0]] + names) + " \n" for names in test_tracks))
    return root
