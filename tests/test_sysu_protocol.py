"""SYSU-MM01 gallery protocol (common/data/sysu.py): the official rand_perm_cam.mat drives
single- and multi-shot galleries, the seeded draw is the fallback, and every broken
permutation file is one clear DatasetLayoutError. The official kit's reading is
evaluation/gen_utils.py (get_cam_permutation_indices, get_testing_set)."""
import os

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from common.data import synthetic, sysu
from common.errors import ConfigError, DatasetLayoutError

# (cam, pid) -> images; test pids 3 and 7, train pid 2. pid 7 has no cam2 and no cam5.
FOLDERS = {(1, 3): 4, (2, 3): 2, (4, 3): 3, (5, 3): 1, (3, 3): 2, (6, 3): 1,
           (1, 7): 3, (4, 7): 2, (3, 7): 1, (1, 2): 2, (3, 2): 2}


def _tree(root) -> str:
    """Hand-made SYSU tree of empty .jpg files (the gallery code only lists names)."""
    root = str(root)
    for cam in range(1, 7):
        os.makedirs(os.path.join(root, f"cam{cam}"))
    for (cam, pid), n in FOLDERS.items():
        folder = os.path.join(root, f"cam{cam}", f"{pid:04d}")
        os.makedirs(folder)
        for k in range(1, n + 1):
            open(os.path.join(folder, f"{k:04d}.jpg"), "wb").close()
    os.makedirs(os.path.join(root, "exp"))
    for name, text in (("train", "2"), ("val", "2"), ("test", "7,3")):
        with open(os.path.join(root, "exp", f"{name}_id.txt"), "w") as f:
            f.write(text)
    return root


def _rows(n, special):
    """10 rows of 1..n, with rows 0 and 4 replaced by the given permutations."""
    rows = np.tile(np.arange(1, n + 1), (10, 1))
    for r, perm in special.items():
        rows[r] = perm
    return rows


# hand-written permutations: rows 0 and 4 differ from the identity
PERMS = {(1, 3): _rows(4, {0: [3, 1, 4, 2], 4: [2, 4, 1, 3]}),
         (2, 3): _rows(2, {0: [2, 1], 4: [1, 2]}),
         (4, 3): _rows(3, {0: [3, 2, 1], 4: [1, 3, 2]}),
         (5, 3): _rows(1, {}),
         (1, 7): _rows(3, {0: [2, 3, 1], 4: [3, 1, 2]}),
         (4, 7): _rows(2, {0: [1, 2], 4: [2, 1]}),
         (3, 3): _rows(2, {}), (6, 3): _rows(1, {}), (3, 7): _rows(1, {}),
         (1, 2): _rows(2, {}), (3, 2): _rows(2, {})}


def _save(path, perms, variable="rand_perm_cam"):
    """Write perms like the official file: 6x1 cell of (pids x 1) cells; cam cells only as
    long as their largest pid (cam5 stops at pid 3, shorter than the 7 persons)."""
    top = np.empty((6, 1), dtype=object)
    for cam in range(1, 7):
        n = max([pid for c, pid in perms if c == cam], default=0)
        cell = np.empty((n, 1), dtype=object)
        for i in range(n):
            cell[i, 0] = np.asarray(perms.get((cam, i + 1), np.zeros((0, 0))), dtype=np.float64)
        top[cam - 1, 0] = cell
    os.makedirs(os.path.dirname(path), exist_ok=True)
    savemat(path, {variable: top})
    return path


def _names(records):
    return [os.path.relpath(r.path, r.path.rsplit(os.sep, 3)[0]) for r in records]


def j(cam, pid, k):
    return os.path.join(f"cam{cam}", f"{pid:04d}", f"{k:04d}.jpg")


def test_permutation_file_drives_single_and_multi_shot_galleries(tmp_path):
    root = _tree(tmp_path)
    _save(os.path.join(root, "exp", "rand_perm_cam.mat"), PERMS)
    assert sysu.gallery_source(root) == "rand_perm_cam.mat" and sysu.gallery_trials(root) == 10
    # trial 0, single-shot: first entry of row 0 per (pid, cam); pid-major, cams ascending
    gal = sysu.gallery_records(root, "all", trial=0, number_shot=1)
    assert _names(gal) == [j(1, 3, 3), j(2, 3, 2), j(4, 3, 3), j(5, 3, 1), j(1, 7, 2), j(4, 7, 1)]
    assert [(r.pid, r.camid) for r in gal] == [(3, 0), (3, 1), (3, 3), (3, 4), (7, 0), (7, 3)]
    assert _names(sysu.gallery_records(root, "indoor", 4)) == [j(1, 3, 2), j(2, 3, 1), j(1, 7, 3)]
    # multi-shot (10): every entry of the row, in the row's order (folders hold fewer than 10)
    multi = sysu.gallery_records(root, "indoor", trial=4, number_shot=10)
    assert _names(multi) == [j(1, 3, 2), j(1, 3, 4), j(1, 3, 1), j(1, 3, 3), j(2, 3, 1), j(2, 3, 2),
                             j(1, 7, 3), j(1, 7, 1), j(1, 7, 2)]
    two = sysu.gallery_records(root, "all", trial=0, number_shot=2)
    assert _names(two) == [j(1, 3, 3), j(1, 3, 1), j(2, 3, 2), j(2, 3, 1), j(4, 3, 3), j(4, 3, 2),
                           j(5, 3, 1), j(1, 7, 2), j(1, 7, 3), j(4, 7, 1), j(4, 7, 2)]
    assert len(sysu.gallery_records(root, "all", 0, 10)) == len(sysu.gallery_pool(root, "all")) == 15
    assert sysu.gallery_records(root, "all", trial=1) != gal


def test_lookup_order_exp_then_root_then_data_split(tmp_path):
    root = _tree(tmp_path)
    reversed_rows = {k: v[:, ::-1] for k, v in PERMS.items()}
    _save(os.path.join(root, "data_split", "rand_perm_cam.mat"), PERMS)
    assert sysu.rand_perm_path(root) == os.path.join(root, "data_split", "rand_perm_cam.mat")
    assert _names(sysu.gallery_records(root, "indoor", 0))[0] == j(1, 3, 3)
    _save(os.path.join(root, "rand_perm_cam.mat"), reversed_rows)
    assert sysu.rand_perm_path(root) == os.path.join(root, "rand_perm_cam.mat")
    assert _names(sysu.gallery_records(root, "indoor", 0))[0] == j(1, 3, 2)  # row 0 reversed
    _save(os.path.join(root, "exp", "rand_perm_cam.mat"), PERMS)
    assert sysu.rand_perm_path(root) == os.path.join(root, "exp", "rand_perm_cam.mat")
    assert _names(sysu.gallery_records(root, "indoor", 0))[0] == j(1, 3, 3)


def test_seeded_draw_fallback(tmp_path):
    root = _tree(tmp_path)
    assert sysu.rand_perm_path(root) is None and sysu.gallery_source(root) == "seeded draw"
    assert sysu.gallery_trials(root) is None
    gal = sysu.gallery_records(root, "all", trial=2, seed=3)
    # single-shot: one rng.integers(n) per folder in (pid, cam) order, as before this change
    rng = np.random.default_rng([3, 2])
    sizes = [(1, 3, 4), (2, 3, 2), (4, 3, 3), (5, 3, 1), (1, 7, 3), (4, 7, 2)]
    assert _names(gal) == [j(c, p, int(rng.integers(n)) + 1) for c, p, n in sizes]
    multi = sysu.gallery_records(root, "all", trial=2, number_shot=2, seed=3)
    per_folder = {}
    for r in multi:
        per_folder.setdefault((r.pid, r.camid), []).append(r.path)
    assert {k: len(v) for k, v in per_folder.items()} == {(p, c - 1): min(n, 2) for c, p, n in sizes}
    assert all(len(set(v)) == len(v) for v in per_folder.values())
    assert len(sysu.gallery_records(root, "all", 0, 10)) == 15  # all when folders hold fewer
    draws = {tuple(_names(sysu.gallery_records(root, "all", t, 2))) for t in range(6)}
    assert len(draws) > 1 and multi == sysu.gallery_records(root, "all", 2, 2, 3)
    for bad in (0, True, 1.0):
        with pytest.raises(ConfigError, match="number_shot must be a positive integer"):
            sysu.gallery_records(root, "all", 0, bad)


def test_synthetic_writer_rand_perm_file(tmp_path):
    assert synthetic.main(["--layout", "sysu", "--out", str(tmp_path), "--ids", "2", "--rand-perm"]) == 0
    root = os.path.join(str(tmp_path), "SYSU-MM01")
    mat = loadmat(os.path.join(root, "exp", "rand_perm_cam.mat"))["rand_perm_cam"]
    assert mat.shape == (6, 1) and mat.dtype == object
    test = sorted(sysu.read_id_file(os.path.join(root, "exp", "test_id.txt")))
    expected = []
    for pid in test:
        for cam in (1, 2, 4, 5):
            folder = os.path.join(root, f"cam{cam}", f"{pid:04d}")
            if not os.path.isdir(folder):
                continue
            n = len(os.listdir(folder))
            rows = mat[cam - 1][0].squeeze()[pid - 1]  # the kit's indexing: person index pid-1
            assert rows.shape == (10, n)
            assert all(sorted(row) == list(range(1, n + 1)) for row in rows)  # 1-based permutations
            expected.append(os.path.join(folder, f"{int(rows[7][0]):04d}.jpg"))
    assert [r.path for r in sysu.gallery_records(root, "all", trial=7)] == expected
    assert sysu.gallery_source(root) == "rand_perm_cam.mat"
    with pytest.raises(Exception, match="takes no option rand_perm"):
        synthetic.write("regdb", str(tmp_path / "r"), 2, 0, rand_perm=True)


def _bad(tmp_path, name, write):
    root = _tree(tmp_path / name)
    path = os.path.join(root, "exp", "rand_perm_cam.mat")
    write(path)
    with pytest.raises(DatasetLayoutError) as info:
        sysu.gallery_records(root, "all", trial=0)
    message = str(info.value)
    assert "\n" not in message and path in message
    return message


def test_broken_permutation_files_are_one_line(tmp_path):
    def text(path):
        with open(path, "w") as f:
            f.write("not a mat file")

    msg = _bad(tmp_path, "text", text)
    assert "not a readable MATLAB file" in msg and "6x1 cell" in msg  # the expected form
    assert "is a directory" in _bad(tmp_path, "dir", os.makedirs)
    msg = _bad(tmp_path, "var", lambda p: _save(p, PERMS, variable="perm"))
    assert "lacks the variable 'rand_perm_cam' (found: perm)" in msg
    msg = _bad(tmp_path, "numeric", lambda p: savemat(p, {"rand_perm_cam": np.zeros((6, 1))}))
    assert "float64 array of shape (6, 1), not a 6x1 cell" in msg
    five = np.empty((5, 1), dtype=object)
    for i in range(5):
        five[i, 0] = np.zeros((0, 0))
    msg = _bad(tmp_path, "5x1", lambda p: savemat(p, {"rand_perm_cam": five}))
    assert "cell of shape (5, 1), not a 6x1 cell" in msg
    numeric_cam = np.empty((6, 1), dtype=object)
    for i in range(6):
        numeric_cam[i, 0] = np.ones((3, 2))
    assert "for camera 1, not a cell" in _bad(tmp_path, "numcam",
                                              lambda p: savemat(p, {"rand_perm_cam": numeric_cam}))
    halves = {**PERMS, (4, 7): PERMS[4, 7] + 0.5}
    assert "camera 4 pid 7" in _bad(tmp_path, "frac", lambda p: _save(p, halves))


def test_out_of_range_entry_names_camera_pid_and_trial(tmp_path):
    too_big = {**PERMS, (4, 3): _rows(3, {0: [4, 1, 2]})}
    msg = _bad(tmp_path, "big", lambda p: _save(p, too_big))
    assert "picks image 4 for cam4 pid 3 in trial 0" in msg and "1..3" in msg
    zero = {**PERMS, (1, 7): _rows(3, {0: [0, 1, 2]})}
    assert "picks image 0 for cam1 pid 7 in trial 0" in _bad(tmp_path, "zero", lambda p: _save(p, zero))


def test_uncovered_test_pids_are_named(tmp_path):
    missing = {k: v for k, v in PERMS.items() if k not in ((4, 7), (2, 3), (1, 7))}
    msg = _bad(tmp_path, "missing", lambda p: _save(p, missing))
    assert "no permutation for test pids that have gallery images: pid 3 (cam2); pid 7 (cam1, cam4)" in msg
    root = _tree(tmp_path / "ok")  # an entry for a pid without images is harmless
    _save(os.path.join(root, "exp", "rand_perm_cam.mat"), {**PERMS, (2, 7): _rows(2, {})})
    assert len(sysu.gallery_records(root, "all", 0)) == 6


def test_trials_beyond_the_file_rows_are_an_error(tmp_path):
    root = _tree(tmp_path)
    short = {**PERMS, (4, 7): PERMS[4, 7][:3]}
    _save(os.path.join(root, "exp", "rand_perm_cam.mat"), short)
    assert sysu.gallery_trials(root) == 3
    assert len(sysu.gallery_records(root, "all", trial=2)) == 6
    with pytest.raises(DatasetLayoutError, match=r"holds 3 trials \(rows\) for cam4 pid 7, but trial 3"):
        sysu.gallery_records(root, "all", trial=3)
    assert len(sysu.gallery_records(root, "indoor", trial=9)) == 3  # cam4 is not in indoor search
