"""Image and cross-modal dataset parsers, their synthetic writers and pre_process_sysu.py
(SPEC sections 2.1, 2.2, 2.5)."""
import collections
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from common.data import cuhk03, regdb, sysu
from common.data import synthetic_image as si
from common.data.appearance import save
from common.data.base import read_image, relabel
from common.data.cuhk03 import load_cuhk03
from common.data.market1501 import load_dukemtmcreid, load_market1501
from common.data.msmt17 import load_msmt17
from common.data.registry import IMAGE_DATASETS, load_image_dataset
from common.errors import ConfigError, DatasetLayoutError, ReidError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_preprocess_module():
    path = os.path.join(REPO, "pre_process_sysu.py")
    spec = importlib.util.spec_from_file_location("pre_process_sysu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ SYSU-MM01, hand-made tree

# (pid, cam) -> number of images. Train ids 5,2 (+ val 9), test ids 7,3; pid 11 is listed
# nowhere. pid 9 has no cam4 folder; pid 7 has no cam5 and no cam6 folder.
MINI_SYSU = {}
for _pid in (2, 5, 9):
    for _cam in range(1, 7):
        if not (_pid == 9 and _cam == 4):
            MINI_SYSU[_pid, _cam] = 2
MINI_SYSU.update({(3, 1): 3, (3, 2): 1, (3, 4): 2, (3, 5): 2, (3, 3): 2, (3, 6): 1,
                  (7, 1): 3, (7, 2): 1, (7, 4): 2, (7, 3): 2, (11, 1): 2})


def _mini_sysu(root):
    rng = np.random.default_rng(0)
    for (pid, cam), n in MINI_SYSU.items():
        folder = os.path.join(root, f"cam{cam}", f"{pid:04d}")
        os.makedirs(folder)
        for k in range(1, n + 1):
            Image.fromarray(rng.integers(0, 255, (12, 6, 3), dtype=np.uint8)).save(
                os.path.join(folder, f"{k:04d}.jpg"))
    os.makedirs(os.path.join(root, "exp"))
    for name, text in (("train", "5,2\n"), ("val", "9"), ("test", "7,3")):
        with open(os.path.join(root, "exp", f"{name}_id.txt"), "w") as f:
            f.write(text)
    return str(root)


def test_sysu_train_records_and_relabel(tmp_path):
    root = _mini_sysu(tmp_path)
    assert sysu.read_id_file(os.path.join(root, "exp", "train_id.txt")) == [5, 2]
    recs = sysu.train_records(root)
    assert {r.pid for r in recs} == {2, 5, 9}
    rgb = [r for r in recs if not sysu.is_ir(r.camid)]
    ir = [r for r in recs if sysu.is_ir(r.camid)]
    assert (len(rgb), len(ir)) == (22, 12)
    assert {r.camid for r in rgb} == {0, 1, 3, 4} and {r.camid for r in ir} == {2, 5}
    assert rgb[0].path == os.path.join(root, "cam1", "0002", "0001.jpg") and rgb[0].camid == 0
    labels = relabel(recs)
    assert [r.pid for r in labels][:12] == [0] * 12 and {r.pid for r in labels} == {0, 1, 2}
    assert all({2: 0, 5: 1, 9: 2}[a.pid] == b.pid for a, b in zip(recs, labels))


def test_sysu_query_and_gallery(tmp_path):
    root = _mini_sysu(tmp_path)
    query = sysu.query_records(root)
    assert len(query) == 5 and {r.camid for r in query} == {2, 5} and {r.pid for r in query} == {3, 7}
    assert len(sysu.gallery_pool(root, "all")) == 14
    assert len(sysu.gallery_pool(root, "indoor")) == 8
    gal = sysu.gallery_records(root, "all", trial=0)
    assert len(gal) == 7 and len(sysu.gallery_records(root, "indoor", trial=0)) == 4
    assert set(collections.Counter((r.pid, r.camid) for r in gal).values()) == {1}
    for r in gal:
        assert os.path.dirname(r.path) == os.path.join(root, f"cam{r.camid + 1}", f"{r.pid:04d}")
    assert gal == sysu.gallery_records(root, "all", trial=0)
    picks = {tuple(r.path for r in sysu.gallery_records(root, "all", trial=t)) for t in range(10)}
    assert len(picks) > 1  # trials draw different images
    again = sysu.gallery_records(root, "all", trial=4, seed=1)
    assert sysu.gallery_records(root, "all", trial=4, seed=1) == again
    with pytest.raises(ReidError, match="all, indoor"):
        sysu.gallery_records(root, "outdoor")


def test_sysu_broken_layouts(tmp_path):
    root = _mini_sysu(tmp_path)
    with open(os.path.join(root, "exp", "val_id.txt"), "w") as f:
        f.write("9,x")
    with pytest.raises(DatasetLayoutError, match="val_id.txt"):
        sysu.train_records(root)
    os.remove(os.path.join(root, "exp", "val_id.txt"))
    with pytest.raises(DatasetLayoutError, match="val_id.txt"):
        sysu.train_records(root)
    os.rename(os.path.join(root, "cam6"), os.path.join(root, "cam6_moved"))
    with pytest.raises(DatasetLayoutError, match="cam6"):
        sysu.query_records(root)
    with pytest.raises(DatasetLayoutError, match="train_rgb_resized_img.npy.*pre_process_sysu.py"):
        sysu.load_preprocessed(root)


def test_pre_process_sysu_round_trip(tmp_path):
    root = _mini_sysu(tmp_path)
    pre = _load_preprocess_module()
    assert pre.main(["--data-path", root, "--height", "16", "--width", "8", "--no-progress"]) == 0
    rgb, rgb_label, ir, ir_label = sysu.load_preprocessed(root)
    assert rgb.shape == (22, 16, 8, 3) and ir.shape == (12, 16, 8, 3)
    assert rgb.dtype == np.uint8 and rgb_label.dtype == np.int64 and ir_label.dtype == np.int64
    assert np.bincount(rgb_label).tolist() == [8, 8, 6] and np.bincount(ir_label).tolist() == [4, 4, 4]
    assert rgb_label[:8].tolist() == [0] * 8 and rgb_label[-1] == 2
    first = Image.open(os.path.join(root, "cam1", "0002", "0001.jpg")).convert("RGB")
    np.testing.assert_array_equal(rgb[0], np.asarray(first.resize((8, 16), Image.LANCZOS)))
    first_ir = Image.open(os.path.join(root, "cam3", "0002", "0001.jpg")).convert("RGB")
    np.testing.assert_array_equal(ir[0], np.asarray(first_ir.resize((8, 16), Image.LANCZOS)))
    assert not [f for f in os.listdir(root) if ".part" in f]
    assert pre.preprocess(root, 16, 8, progress=False) == {"rgb": 22, "ir": 12, "ids": 3}


def test_pre_process_sysu_errors_write_nothing(tmp_path, capsys):
    pre = _load_preprocess_module()
    assert pre.main(["--data-path", str(tmp_path / "nope"), "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    root = _mini_sysu(tmp_path / "sysu")
    os.remove(os.path.join(root, "exp", "train_id.txt"))
    assert pre.main(["--data-path", root, "--no-progress"]) == 2
    assert "train_id.txt" in capsys.readouterr().err
    root = _mini_sysu(tmp_path / "corrupt")
    bad = os.path.join(root, "cam6", "0009", "0002.jpg")  # the very last IR image
    with open(bad, "wb") as f:
        f.write(b"not a jpeg")
    assert pre.main(["--data-path", root, "--height", "16", "--width", "8", "--no-progress"]) == 2
    assert bad in capsys.readouterr().err
    assert sorted(os.listdir(root)) == ["cam1", "cam2", "cam3", "cam4", "cam5", "cam6", "exp"]


def test_synthetic_sysu_matches_parser(tmp_path):
    root = si.write_sysu(str(tmp_path), ids=3, seed=1)
    train = sysu.read_id_file(os.path.join(root, "exp", "train_id.txt"))
    val = sysu.read_id_file(os.path.join(root, "exp", "val_id.txt"))
    test = sysu.read_id_file(os.path.join(root, "exp", "test_id.txt"))
    assert len(train) + len(val) == 3 and len(test) == 3 and not set(train + val) & set(test)
    recs = sysu.train_records(root)
    expected = sum(si.sysu_folder_size(p, c) for p in train + val for c in range(1, 7))
    assert len(recs) == expected and {r.pid for r in recs} == set(train + val)
    assert len(sysu.gallery_records(root, "all")) == 3 * 4 - 1  # smallest test pid lacks cam2

    def colourfulness(records):  # mean spread across the three channels
        return np.mean([np.asarray(Image.open(r.path)).astype(float).std(axis=2).mean() for r in records])

    assert colourfulness(sysu.query_records(root)) < 0.25 * colourfulness(sysu.gallery_records(root))


# ------------------------------------------------------------------------------------ RegDB

def test_regdb_trials_and_directions(tmp_path):
    root = si.write_regdb(str(tmp_path), ids=3, seed=0)
    splits = []
    for trial in (1, 2, 10):
        train_v = regdb.trial_records(root, trial, "train", "visible")
        train_t = regdb.trial_records(root, trial, "train", "thermal")
        test_v = regdb.trial_records(root, trial, "test", "visible")
        assert len(train_v) == len(train_t) == len(test_v) == 9
        assert {r.camid for r in train_v} == {0} and {r.camid for r in train_t} == {1}
        assert {r.pid for r in train_v} == {r.pid for r in train_t}
        assert not {r.pid for r in train_v} & {r.pid for r in test_v}
        assert {r.pid for r in train_v} | {r.pid for r in test_v} == set(range(6))
        assert all(os.path.isfile(r.path) and "Visible" in r.path for r in train_v)
        raw = sorted({r.pid for r in train_v})
        assert [r.pid for r in relabel(train_v)] == [raw.index(r.pid) for r in train_v]
        splits.append(frozenset(r.pid for r in train_v))
    assert len(set(splits)) > 1
    q, g = regdb.test_sets(root, 3, "v2t")
    assert {r.camid for r in q} == {0} and {r.camid for r in g} == {1} and len(q) == len(g) == 9
    q2, g2 = regdb.test_sets(root, 3, "t2v")
    assert q2 == g and g2 == q
    with pytest.raises(ReidError, match="v2t, t2v"):
        regdb.test_sets(root, 3, "x2y")


@pytest.mark.parametrize("trial", [0, 11, -1, 1.0, True, "one", None])
def test_regdb_rejects_bad_trials(tmp_path, trial):
    with pytest.raises(ConfigError, match=r"1\.\.10"):
        regdb.trial_records(str(tmp_path), trial)


def test_regdb_broken_layouts(tmp_path):
    root = si.write_regdb(str(tmp_path), ids=2, seed=0)
    assert len(regdb.trial_records(root, "4", "test", "thermal")) == 6
    missing = os.path.join(root, "idx", "test_thermal_5.txt")
    os.remove(missing)
    with pytest.raises(DatasetLayoutError, match="test_thermal_5.txt"):
        regdb.trial_records(root, 5, "test", "thermal")
    first = regdb.trial_records(root, 6, "train", "visible")[0].path
    os.remove(first)
    with pytest.raises(DatasetLayoutError, match=os.path.basename(first)):
        regdb.trial_records(root, 6, "train", "visible")


# ------------------------------------------------------------------ Market-1501 / Duke / MSMT17

def test_market1501_counts_junk_and_relabel(tmp_path):
    root = si.write_market1501(str(tmp_path), ids=3, seed=0)
    s = load_market1501(root)
    assert (len(s.train), len(s.query), len(s.gallery), s.num_train_pids) == (18, 6, 20, 3)
    folder = os.path.join(root, "market1501", "Market-1501-v15.09.15", "bounding_box_test")
    assert len([f for f in os.listdir(folder) if f.startswith("-1_")]) == 2  # junk on disk ...
    assert all(r.pid != -1 for r in s.gallery)  # ... but dropped
    assert sum(r.pid == 0 for r in s.gallery) == 2  # distractors kept
    raw = sorted({int(os.path.basename(r.path)[:4]) for r in s.train})
    for r in s.train:
        name = os.path.basename(r.path)
        assert r.pid == raw.index(int(name[:4])) and r.camid == int(name[6]) - 1
    assert {r.camid for r in s.train + s.query + s.gallery} <= set(range(6))
    assert {r.pid for r in s.query} == {r.pid for r in s.gallery} - {0}


def test_market1501_flat_layout_and_errors(tmp_path):
    root = si.write_market1501(str(tmp_path), ids=2, seed=3)
    versioned = os.path.join(root, "market1501", "Market-1501-v15.09.15")
    for name in os.listdir(versioned):
        os.rename(os.path.join(versioned, name), os.path.join(root, "market1501", name))
    os.rmdir(versioned)
    assert load_market1501(root).num_train_pids == 2
    bad_camera = os.path.join(root, "market1501", "query", "0001_c7s1_000001_00.jpg")
    save(np.zeros((8, 4, 3), np.uint8), bad_camera)
    with pytest.raises(DatasetLayoutError, match=r"camera 7.*1\.\.6"):
        load_market1501(root)
    os.rename(os.path.join(root, "market1501", "query"), os.path.join(root, "market1501", "q"))
    with pytest.raises(DatasetLayoutError, match=r"market1501.query'"):
        load_market1501(root)
    with pytest.raises(DatasetLayoutError, match="market1501"):
        load_market1501(str(tmp_path / "empty_root_that_does_not_exist"))


def test_corrupt_image_is_reported(tmp_path):
    root = si.write_market1501(str(tmp_path), ids=2, seed=0)
    path = load_market1501(root).train[0].path
    assert read_image(path).shape == (64, 32, 3)
    with open(path, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(DatasetLayoutError, match=os.path.basename(path)):
        read_image(path)


def test_dukemtmcreid(tmp_path):
    root = si.write_dukemtmcreid(str(tmp_path), ids=3, seed=0)
    s = load_dukemtmcreid(root)
    assert (len(s.train), len(s.query), len(s.gallery), s.num_train_pids) == (18, 6, 18, 3)
    assert {r.camid for r in s.train + s.query + s.gallery} <= set(range(8))
    assert sorted({r.pid for r in s.train}) == [0, 1, 2]
    with pytest.raises(DatasetLayoutError, match="DukeMTMC-reID"):
        load_dukemtmcreid(str(tmp_path / "market_only"))


def test_msmt17_release_layout(tmp_path):
    root = si.write_msmt17(str(tmp_path), ids=3, seed=0)
    s = load_msmt17(root)
    assert (len(s.train), len(s.query), len(s.gallery), s.num_train_pids) == (21, 6, 18, 3)
    assert len(load_msmt17(root, include_val=False).train) == 18
    for r in s.train + s.query + s.gallery:
        assert r.camid == int(os.path.basename(r.path).split("_")[2]) - 1
    assert {r.pid for r in s.query} == {r.pid for r in s.gallery} == {0, 1, 2}
    os.remove(os.path.join(root, "msmt17", "MSMT17_V1", "list_val.txt"))
    with pytest.raises(DatasetLayoutError, match="list_val.txt"):
        load_msmt17(root)
    with pytest.raises(DatasetLayoutError, match="MSMT17_V1"):
        load_msmt17(str(tmp_path / "nothing"))


def test_msmt17_market_style(tmp_path):
    root = si.write_msmt17(str(tmp_path), ids=3, seed=0, market_style=True)
    s = load_msmt17(root)
    assert (len(s.train), len(s.query), len(s.gallery), s.num_train_pids) == (18, 6, 18, 3)
    assert {r.pid for r in s.query} == {4, 5, 6} and max(r.camid for r in s.gallery) <= 14


# ---------------------------------------------------------------------------------- CUHK03

def test_cuhk03_new_protocol(tmp_path):
    root = si.write_cuhk03(str(tmp_path), ids=3, seed=0)
    for labeled in (True, False):
        s = load_cuhk03(root, labeled=labeled)
        counts = (len(s.train), len(s.query), len(s.gallery), s.num_train_pids, s.num_train_cams)
        assert counts == (12, 6, 6, 3, 2)
        assert [r.pid for r in s.train] == [0] * 4 + [1] * 4 + [2] * 4
        assert {r.pid for r in s.query} == {r.pid for r in s.gallery} == {4, 5, 6}
        assert [r.camid for r in s.query[:2]] == [0, 1]
        assert ("images_labeled" if labeled else "images_detected") in s.train[0].path
    assert os.path.basename(s.query[0].path) == "2_002_1_01.png"  # identity 4: campus 2, pid 2


def test_cuhk03_classic_split(tmp_path):
    root = si.write_cuhk03(str(tmp_path), ids=3, seed=0)
    s = load_cuhk03(root, classic=True, split_id=1)
    assert s.query == s.gallery and len(s.query) == 12 and len(s.train) == 12 and s.num_train_pids == 3
    test_people = {os.path.basename(r.path)[:5] for r in s.query}
    assert len(test_people) == 3 and not test_people & {os.path.basename(r.path)[:5] for r in s.train}
    assert {r.pid for r in s.query} == {1000 * int(p[0]) + int(p[2:5]) for p in test_people}
    with pytest.raises(ReidError, match="split_id 5"):
        load_cuhk03(root, classic=True, split_id=5)


def test_cuhk03_broken_layouts(tmp_path):
    root = si.write_cuhk03(str(tmp_path), ids=2, seed=0)
    config = os.path.join(root, "cuhk03", "cuhk03_release", "cuhk03_new_protocol_config_detected.mat")
    os.remove(config)
    with pytest.raises(DatasetLayoutError, match="cuhk03_new_protocol_config_detected.mat"):
        load_cuhk03(root, labeled=False)
    images = os.path.join(root, "cuhk03", "images_labeled")
    os.rename(images, images + "_moved")
    with pytest.raises(DatasetLayoutError, match="images_labeled"):
        load_cuhk03(root)
    if not cuhk03._h5py_available():
        with open(os.path.join(root, "cuhk03", "cuhk03_release", "cuhk-03.mat"), "wb") as f:
            f.write(b"HDF5 placeholder")
        with pytest.raises(DatasetLayoutError, match="images_labeled.*h5py"):
            load_cuhk03(root)


# ------------------------------------------------------------------- registry and the CLI

def test_registry(tmp_path):
    root = si.write_dukemtmcreid(str(tmp_path), ids=2, seed=0)
    assert load_image_dataset("DukeMTMCreID", root).num_train_pids == 2
    assert set(IMAGE_DATASETS) == {"market1501", "dukemtmcreid", "msmt17", "cuhk03"}
    with pytest.raises(ReidError, match="cuhk03, dukemtmcreid, market1501, msmt17"):
        load_image_dataset("viper", root)


def test_writer_is_deterministic(tmp_path):
    a = si.write_market1501(str(tmp_path / "a"), ids=2, seed=5)
    b = si.write_market1501(str(tmp_path / "b"), ids=2, seed=5)
    sa, sb = load_market1501(a), load_market1501(b)
    assert [os.path.basename(r.path) for r in sa.gallery] == [os.path.basename(r.path) for r in sb.gallery]
    with open(sa.query[0].path, "rb") as fa, open(sb.query[0].path, "rb") as fb:
        assert fa.read() == fb.read()


def test_synthetic_cli_market1501(tmp_path):
    out = str(tmp_path / "data")
    proc = subprocess.run([sys.executable, "-m", "common.data.synthetic", "--layout", "market1501",
                           "--out", out, "--ids", "2"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == out
    s = load_market1501(out)
    assert (len(s.train), len(s.query), len(s.gallery)) == (12, 4, 14)
