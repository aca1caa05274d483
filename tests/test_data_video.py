"""Video dataset parsers (SPEC 2.3, 2.4) against their synthetic layouts, hand-made
miniatures with known answers, and broken layouts."""
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import savemat

from common.data.base import Record
from common.data.duke_video import load_dukevideo
from common.data.mars import load_mars
from common.data.registry import load_video_dataset
from common.data.synthetic_video import write_dukevideo, write_mars, write_veri
from common.data.veri import load_veri
from common.data.video_base import first_frames, split_runs
from common.errors import DatasetLayoutError, ReidError

IDS = 4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("video"))
    return {"mars": write_mars(out, IDS, 0), "duke": write_dukevideo(out, IDS, 0),
            "veri": write_veri(out, IDS, 0)}


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


# ------------------------------------------------------------------------- helpers

def test_split_runs_cuts_on_key_change_only():
    assert split_runs([1, 1, 2, 2, 2, 1], key=lambda x: x) == [[1, 1], [2, 2, 2], [1]]
    assert split_runs([], key=lambda x: x) == []


def test_first_frames_keeps_one_frame_tuple():
    recs = [Record(("a", "b", "c"), 3, 1)]
    assert first_frames(recs) == [Record(("a",), 3, 1)]


# --------------------------------------------------------------------------- MARS

def test_mars_synthetic_splits(roots):
    s = load_mars(roots["mars"])
    assert s.num_train_pids == IDS
    for r in s.train:  # raw train pids 1, 3, 5, ... -> 0, 1, 2, ... (ascending)
        names = [os.path.basename(p) for p in r.path]
        assert r.pid == (int(names[0][:4]) - 1) // 2
        assert {int(n[5]) - 1 for n in names} == {r.camid} and 0 <= r.camid <= 5
        assert 3 <= len(r.path) <= 10 and all(os.path.isfile(p) for p in r.path)
    assert sorted({r.pid for r in s.train}) == list(range(IDS))
    assert sorted(r.pid for r in s.query) == [2, 4, 6, 8]
    assert all(r.pid != -1 for r in s.train + s.query + s.gallery)
    assert 0 in {r.pid for r in s.gallery} and 0 not in {r.pid for r in s.query}
    assert s.gallery[-len(s.query):] == s.query  # augmented gallery: queries appended

    plain = load_mars(roots["mars"], augmented_gallery=False)
    assert plain.gallery == s.gallery[:-len(s.query)]
    assert not set(plain.gallery) & set(plain.query)
    for q in plain.query:  # every query has a cross-camera match in the plain gallery
        assert any(g.pid == q.pid and g.camid != q.camid for g in plain.gallery)


def _hand_mars(root):
    """A MARS miniature with known answers (frames are empty files: never read)."""
    train = ["0005C1T0001F001.jpg", "0005C1T0001F002.jpg",
             "0003C2T0001F001.jpg", "0003C2T0001F002.jpg", "0003C2T0001F003.jpg"]
    test = ["00-1C1T0001F001.jpg", "0000C3T0001F001.jpg",
            "0007C4T0001F001.jpg", "0007C4T0001F002.jpg", "0007C6T0001F001.jpg"]
    for folder, names in (("bbox_train", train), ("bbox_test", test)):
        for n in names:
            _touch(os.path.join(root, folder, n[:4], n))
    info = os.path.join(root, "info")
    os.makedirs(info)
    for fname, names in (("train_name.txt", train), ("test_name.txt", test)):
        with open(os.path.join(info, fname), "w") as f:
            f.write("\n".join(names) + "\n")
    savemat(os.path.join(info, "tracks_train_info.mat"),
            {"track_train_info": np.array([[1, 2, 5, 1], [3, 5, 3, 2]], np.float64)})
    savemat(os.path.join(info, "tracks_test_info.mat"),
            {"track_test_info": np.array([[1, 1, -1, 1], [2, 2, 0, 3], [3, 4, 7, 4], [5, 5, 7, 6]])})
    savemat(os.path.join(info, "query_IDX.mat"), {"query_IDX": np.array([[4]])})
    return str(root)


def test_mars_hand_made_known_answers(tmp_path):
    root = _hand_mars(tmp_path / "mars")
    s = load_mars(root, augmented_gallery=False)
    j = os.path.join
    assert s.train == [
        Record((j(root, "bbox_train", "0005", "0005C1T0001F001.jpg"),
                j(root, "bbox_train", "0005", "0005C1T0001F002.jpg")), 1, 0),
        Record(tuple(j(root, "bbox_train", "0003", f"0003C2T0001F00{k}.jpg") for k in (1, 2, 3)), 0, 1)]
    assert (s.num_train_pids, s.num_train_cams) == (2, 2)
    # query_IDX = 4 is 1-based: the 4th row (pid 7, camera 6 -> 5)
    assert s.query == [Record((j(root, "bbox_test", "0007", "0007C6T0001F001.jpg"),), 7, 5)]
    assert [(g.pid, g.camid, len(g.path)) for g in s.gallery] == [(0, 2, 1), (7, 3, 2)]  # junk dropped
    aug = load_mars(root)
    assert aug.gallery == s.gallery + s.query


@pytest.mark.parametrize("victim, needle", [
    ("info/query_IDX.mat", "query_IDX.mat"),
    ("info/test_name.txt", "test_name.txt"),
    ("info/tracks_train_info.mat", "tracks_train_info.mat"),
    ("bbox_test", "bbox_test"),
])
def test_mars_missing_file_names_the_path(tmp_path, victim, needle):
    import shutil
    root = _hand_mars(tmp_path / "mars")
    target = os.path.join(root, victim)
    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    with pytest.raises(DatasetLayoutError, match=needle):
        load_mars(root)


def test_mars_bad_metadata(tmp_path):
    root = _hand_mars(tmp_path / "mars")
    info = os.path.join(root, "info")
    savemat(os.path.join(info, "query_IDX.mat"), {"query_IDX": np.array([[5]])})  # only 4 rows
    with pytest.raises(DatasetLayoutError, match="outside 1..4"):
        load_mars(root)
    savemat(os.path.join(info, "query_IDX.mat"), {"wrong_key": np.array([[4]])})
    with pytest.raises(DatasetLayoutError, match="no variable 'query_IDX'"):
        load_mars(root)
    savemat(os.path.join(info, "query_IDX.mat"), {"query_IDX": np.array([[4]])})
    savemat(os.path.join(info, "tracks_train_info.mat"), {"track_train_info": np.array([[1, 9, 5, 1]])})
    with pytest.raises(DatasetLayoutError, match=r"\[1, 9\] outside"):
        load_mars(root)
    with pytest.raises(DatasetLayoutError, match="is not a folder"):
        load_mars(os.path.join(root, "nope"))


# --------------------------------------------------------------------- Duke-Video

def test_dukevideo_synthetic_splits(roots):
    s = load_dukevideo(roots["duke"])
    assert s.num_train_pids == IDS and sorted({r.pid for r in s.train}) == list(range(IDS))
    for r in s.train + s.query + s.gallery:
        names = [os.path.basename(p) for p in r.path]
        assert {int(n.split("_")[1][1:]) - 1 for n in names} == {r.camid} and 0 <= r.camid <= 7
        assert names == sorted(names) and 3 <= len(names) <= 10
    for r in s.train:
        assert r.pid == (int(os.path.basename(r.path[0])[:4]) - 1) // 2
    assert sorted(r.pid for r in s.query) == [2, 4, 6, 8]
    assert {r.pid for r in s.gallery} == {2, 4, 6, 8}
    assert not set(s.gallery) & set(s.query)  # default: no augmentation (as VKD on Duke)
    aug = load_dukevideo(roots["duke"], augmented_gallery=True)
    assert aug.gallery == s.gallery + s.query


def test_dukevideo_runs_split_on_pid_or_camera_change(tmp_path):
    root = tmp_path / "duke"
    folder_a = root / "train" / "0001" / "0001"
    names_a = ["0001_C1_F0001_X1.jpg", "0001_C1_F0002_X1.jpg", "0001_C2_F0003_X1.jpg",
               "0002_C2_F0004_X1.jpg", "0002_C2_F0005_X1.jpg", "notes.txt"]
    for n in names_a:
        _touch(str(folder_a / n))
    # same pid and camera as the last run of folder_a: still a separate tracklet
    _touch(str(root / "train" / "0002" / "0001" / "0002_C2_F0006_X1.jpg"))
    os.makedirs(root / "query")
    os.makedirs(root / "gallery")
    s = load_dukevideo(str(root))
    assert [(len(r.path), r.pid, r.camid) for r in s.train] == [(2, 0, 0), (1, 0, 1), (2, 1, 1), (1, 1, 1)]
    assert s.train[2].path == (str(folder_a / names_a[3]), str(folder_a / names_a[4]))
    assert (s.num_train_pids, s.num_train_cams, s.query, s.gallery) == (2, 2, [], [])


def test_dukevideo_broken_layouts(tmp_path):
    root = tmp_path / "duke"
    _touch(str(root / "train" / "0001" / "0001" / "0001_C1_F0001_X1.jpg"))
    os.makedirs(root / "query")
    with pytest.raises(DatasetLayoutError, match="gallery"):
        load_dukevideo(str(root))
    os.makedirs(root / "gallery")
    _touch(str(root / "train" / "0001" / "0001" / "badname.jpg"))
    with pytest.raises(DatasetLayoutError, match="badname.jpg"):
        load_dukevideo(str(root))


# --------------------------------------------------------------------------- VeRi

def test_veri_four_protocols_on_synthetic(roots):
    root = roots["veri"]
    with open(os.path.join(root, "test_track.txt")) as f:
        n_tracks = sum(1 for line in f if line.strip())
    n_test_images = len(os.listdir(os.path.join(root, "image_test")))
    shapes = {}
    for proto in ("I2V", "V2V", "I2I", "V2I"):
        s = load_veri(root, proto)
        shapes[proto] = (len(s.query), len(s.gallery), max(len(r.path) for r in s.query),
                         max(len(r.path) for r in s.gallery))
        assert s.num_train_pids == IDS and sorted({r.pid for r in s.train}) == list(range(IDS))
        assert sorted(r.pid for r in s.query) == [2, 4, 6, 8]
    assert shapes["I2V"][:3] == (IDS, n_tracks, 1) and shapes["I2V"][3] >= 3
    assert shapes["V2V"][:2] == (IDS, n_tracks) and shapes["V2V"][2] >= 3
    assert shapes["I2I"] == (IDS, n_test_images, 1, 1)
    assert shapes["V2I"][:2] == (IDS, n_test_images) and shapes["V2I"][3] == 1

    i2v, v2v = load_veri(root, "I2V"), load_veri(root, "v2v")
    for qi, qv in zip(i2v.query, v2v.query):
        assert qi.path[0].startswith(os.path.join(root, "image_query"))
        assert os.path.basename(qi.path[0]) in {os.path.basename(p) for p in qv.path}
        assert qv in v2v.gallery and (qi.pid, qi.camid) == (qv.pid, qv.camid)
    for r in i2v.train:  # one tracklet per (vehicle, camera); camera c001 -> 0
        names = [os.path.basename(p) for p in r.path]
        assert {(n[:4], int(n[6:9]) - 1) for n in names} == {(names[0][:4], r.camid)}
        assert r.pid == (int(names[0][:4]) - 1) // 2
    assert len({(r.pid, r.camid) for r in i2v.train}) == len(i2v.train)


def _hand_veri(root):
    test = ["0002_c002_00000010_0.jpg", "0002_c002_00000020_0.jpg",
            "0002_c002_00000500_0.jpg", "0002_c002_00000510_0.jpg", "0002_c003_00000100_0.jpg"]
    for n in test:
        _touch(os.path.join(root, "image_test", n))
    for n in ("0009_c001_00000001_0.jpg", "0009_c001_00000002_0.jpg", "0004_c003_00000001_0.jpg"):
        _touch(os.path.join(root, "image_train", n))
    queries = ["0002_c002_00000510_0.jpg", "0002_c003_00000999_0.jpg", "0002_c004_00000001_0.jpg"]
    for n in queries:
        _touch(os.path.join(root, "image_query", n))
    with open(os.path.join(root, "name_train.txt"), "w") as f:
        f.write("0009_c001_00000002_0.jpg\n0004_c003_00000001_0.jpg\n0009_c001_00000001_0.jpg\n")
    with open(os.path.join(root, "name_query.txt"), "w") as f:
        f.write("\n".join(queries) + "\n")
    with open(os.path.join(root, "test_track.txt"), "w") as f:
        f.write(f"{test[0]} {test[0]} {test[1]} \n0002_c002 {test[2]} {test[3]}\n{test[4]} {test[4]}\n")
    return str(root)


def test_veri_hand_made_query_tracklets(tmp_path):
    root = _hand_veri(tmp_path / "VeRi")
    with pytest.warns(UserWarning, match="1 query image"):
        s = load_veri(root, "V2V")
    # train: sorted names grouped by (vehicle, camera); raw 4 -> 0, 9 -> 1
    assert [(len(r.path), r.pid, r.camid) for r in s.train] == [(1, 0, 2), (2, 1, 0)]
    assert [os.path.basename(p) for p in s.train[1].path] == ["0009_c001_00000001_0.jpg",
                                                              "0009_c001_00000002_0.jpg"]
    assert [(len(g.path), g.pid, g.camid) for g in s.gallery] == [(2, 2, 1), (2, 2, 1), (1, 2, 2)]
    # query 1 lies in the 2nd tracklet (bare key line); query 2 falls back to the first
    # (vehicle 2, camera c003) tracklet; query 3 (camera c004) has none and is left out
    assert s.query == [s.gallery[1], s.gallery[2]]
    i2i = load_veri(root, "I2I")
    assert [os.path.basename(g.path[0]) for g in i2i.gallery] == sorted(os.listdir(os.path.join(root, "image_test")))
    assert [(q.pid, q.camid) for q in i2i.query] == [(2, 1), (2, 2), (2, 3)]


def test_veri_errors(tmp_path):
    root = _hand_veri(tmp_path / "VeRi")
    with pytest.raises(ReidError, match="I2V, V2V, I2I, V2I"):
        load_veri(root, "X2Y")
    with open(os.path.join(root, "test_track.txt"), "a") as f:
        f.write("0002_c002 0003_c002_00000001_0.jpg\n")
    with pytest.raises(DatasetLayoutError, match="0003_c002_00000001_0.jpg"):
        load_veri(root, "I2V")
    os.remove(os.path.join(root, "test_track.txt"))
    with pytest.raises(DatasetLayoutError, match="test_track.txt"):
        load_veri(root, "I2V")
    os.rename(os.path.join(root, "image_query"), os.path.join(root, "moved"))
    with pytest.raises(DatasetLayoutError, match="image_query"):
        load_veri(root, "I2I")


# ------------------------------------------------------------ registry and the CLI

def test_registry_dispatches_video_loaders(roots):
    assert load_video_dataset("MARS", roots["mars"]) == load_mars(roots["mars"])
    assert load_video_dataset("veri", roots["veri"], protocol="I2I") == load_veri(roots["veri"], "I2I")
    with pytest.raises(ReidError, match="dukevideo, mars, veri"):
        load_video_dataset("ilids", roots["mars"])


def test_writer_is_deterministic(tmp_path):
    a, b = write_mars(str(tmp_path / "a"), 2, 3), write_mars(str(tmp_path / "b"), 2, 3)
    with open(os.path.join(a, "info", "train_name.txt")) as f:
        first = f.readline().strip()
    for rel in (os.path.join("info", "test_name.txt"), os.path.join("bbox_train", first[:4], first)):
        with open(os.path.join(a, rel), "rb") as fa, open(os.path.join(b, rel), "rb") as fb:
            assert fa.read() == fb.read()


def test_writer_rewrites_its_own_root_but_not_foreign_ones(tmp_path):
    root = write_dukevideo(str(tmp_path), 3, 0)
    assert write_dukevideo(str(tmp_path), 1, 0) == root
    assert sorted(os.listdir(os.path.join(root, "train"))) == ["0001"]  # no stale ids left
    foreign = tmp_path / "other" / "VeRi"
    _touch(str(foreign / "keep.txt"))
    with pytest.raises(ReidError, match="not written by the synthetic generator"):
        write_veri(str(tmp_path / "other"), 1, 0)
    assert os.path.isfile(foreign / "keep.txt")


def test_synthetic_cli_writes_mars(tmp_path):
    out = str(tmp_path / "cli")
    res = subprocess.run([sys.executable, "-m", "common.data.synthetic", "--layout", "mars",
                          "--out", out, "--ids", "2"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    root = res.stdout.strip()
    assert root == os.path.join(out, "mars")
    s = load_mars(root)
    assert s.num_train_pids == 2 and len(s.query) == 2
