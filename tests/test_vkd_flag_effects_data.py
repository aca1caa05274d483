"""The effect of the VKD flags that shape the training data and the evaluation (the other
flags, and the table :data:`VKD_EFFECTS` of them all: tests/test_vkd_flag_effects.py), each
passed on the command line of train.py / test.py on a tiny synthetic MARS
(tests/vkd_tiny.py). The recipe's loaders are driven from the run ``vkd_tiny.build_only``
returns (train.py stopped at the recipe's build), through the backend's ``make_loader``."""
import numpy as np
import pytest

import backends
import test as test_cli
from common.data import video as video_data
from common.data.temporal import chunks, test_chunk_crop
from common.recipes import vkd as vkd_recipe
from vkd_tiny import assert_same_weights as _same, build_only as _build, folders, mars_root, \
    student_argv, teacher_argv  # noqa: F401 (folders, mars_root: module fixtures)


def _student_argv(mars_root, folders, tmp_path, *extra):
    return student_argv(mars_root, folders.teacher, tmp_path, extra=["--num_generations", "1", *extra])


# ---------------------------------------------------------------- the training data

def test_p_k_and_num_train_images_shape_the_training_batches(mars_root, tmp_path):
    """--p 3 --k 2 --num_train_images 5: batches of 3 identities x 2 tracklets (identity-major)
    x 5 frames."""
    b = _build(teacher_argv(mars_root, tmp_path, extra=["--p", "3", "--k", "2", "--num_train_images", "5"]))
    batches = list(b.run.batches(0))
    assert len(batches) == 2
    for frames, pids, _ in batches:
        assert frames.shape == (6, 5, 3, 32, 16)
        by_id = pids.reshape(3, 2)
        assert (by_id == by_id[:, :1]).all() and len(set(by_id[:, 0])) == 3


def test_num_student_images_picks_the_students_views(mars_root, folders, tmp_path):
    """--num_train_images 5 --num_student_images 3: the teacher sees 5 views, the student 3
    distinct ones of the same augmented frames."""
    b = _build(_student_argv(mars_root, folders, tmp_path, "--num_train_images", "5", "--num_student_images", "3"))
    seen = []

    class Recorder:
        def train_step(self, frames, student_frames, pids):
            seen.append((frames, student_frames))
            return {}
    b.run.trainer = Recorder()
    batch = next(iter(b.run.batches(0)))
    b.run.train_step(batch)
    frames, idx = batch[0], batch[3]
    assert frames.shape[1] == 5 and idx.shape == (8, 3)
    assert all(len(set(row)) == 3 and set(row) <= set(range(5)) for row in idx.tolist())
    teacher_in, student_in = seen[0]
    assert teacher_in is frames and student_in.shape == (8, 3) + frames.shape[2:]
    for i in range(8):
        np.testing.assert_array_equal(student_in[i], frames[i, idx[i]])


def _frames_read(b, mp):
    """The frame files the recipe's training loader reads for batch 0 of epoch 0, as
    (record index, position in the tracklet) per sample and view."""
    where = {path: (r, n) for r, rec in enumerate(b.run.loader.records) for n, path in enumerate(rec.path)}
    paths = []
    read = video_data.read_image

    def spy(path, *args, **kwargs):
        paths.append(path)
        return read(path, *args, **kwargs)
    mp.setattr(video_data, "read_image", spy)
    batch = next(iter(b.run.batches(0)))
    n = batch[0].shape[1]
    return batch[1], [[where[p] for p in paths[i:i + n]] for i in range(0, len(paths), n)]


@pytest.mark.parametrize("strategy", ["chunk", "temporal", "random", "multiview"])
def test_train_strategy_chooses_the_frames_of_each_sample(strategy, mars_root, tmp_path):
    """VKD data/temporal_transforms.py: chunk = one random frame of each of N chunks,
    temporal = the first frame of each chunk, random = N frames anywhere (not a chunk crop),
    multiview = frames of the identity's different tracklets (VKD's distillation views)."""
    b = _build(teacher_argv(mars_root, tmp_path, extra=["--train_strategy", strategy]))
    records = b.run.loader.records
    with pytest.MonkeyPatch.context() as mp:
        pids, samples = _frames_read(b, mp)
    assert len(samples) == 8
    in_chunks, is_temporal = [], []
    for pid, views in zip(pids, samples):
        tracklets = {r for r, _ in views}
        assert {records[r].pid for r in tracklets} == {pid}
        if strategy == "multiview":
            assert tracklets == {r for r, rec in enumerate(records) if rec.pid == pid}
            continue
        assert len(tracklets) == 1
        frames, positions = len(records[views[0][0]].path), [n for _, n in views]
        table = chunks(frames, 4)
        in_chunks.append(all(p in table[i] for i, p in enumerate(positions)))
        is_temporal.append(positions == test_chunk_crop(frames, 4))
    if strategy == "chunk":
        assert all(in_chunks) and not all(is_temporal)
    elif strategy == "temporal":
        assert all(is_temporal)
    elif strategy == "random":
        assert not all(in_chunks)


def _erased_rectangles(frames):
    """Per frame: the (height, width) of the all-zero rectangle random erasing wrote, or None.
    Normalised pixels are never 0 in all three channels otherwise."""
    out = []
    for img in frames.reshape(-1, *frames.shape[2:]):
        zero = (img == 0).all(axis=0)
        if not zero.any():
            out.append(None)
            continue
        rows, cols = np.flatnonzero(zero.any(axis=1)), np.flatnonzero(zero.any(axis=0))
        box = zero[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert box.all(), "the zero pixels do not form a rectangle"
        out.append(box.shape)
    return out


@pytest.mark.parametrize("erasing", [True, False])
def test_use_random_erasing_erases_rectangles_in_training_frames(erasing, mars_root, tmp_path):
    """--use_random_erasing True: about half the training frames (p 0.5) hold one zero
    rectangle of 2-40 % of the frame; False: none."""
    b = _build(teacher_argv(mars_root, tmp_path, extra=["--use_random_erasing", str(erasing)]))
    boxes = [box for batch in b.run.batches(0) for box in _erased_rectangles(batch[0])]
    erased = [box for box in boxes if box is not None]
    assert len(boxes) == 64
    if not erasing:
        assert erased == []
        return
    assert 0.25 * len(boxes) <= len(erased) <= 0.75 * len(boxes)
    for h, w in erased:
        assert 0.02 * 32 * 16 * 0.5 <= h * w <= 0.4 * 32 * 16 * 1.5, (h, w)


# ---------------------------------------------------------------- evaluation

def _spy_evaluation(mp, B):
    """Record (clip shape, batch size) of every feature extraction and the worker count of
    every loader the recipe asks the backend for."""
    calls = {"extract": [], "workers": []}
    extract, make_loader = B.vkd.extract, B.data.make_loader

    def spy_extract(model, frames, batch_size=32):
        calls["extract"].append((frames.shape, batch_size))
        return extract(model, frames, batch_size)

    def spy_loader(source, epoch, workers=0, *args, **kwargs):
        calls["workers"].append(workers)
        return make_loader(source, epoch, workers, *args, **kwargs)
    mp.setattr(B.vkd, "extract", spy_extract)
    mp.setattr(B.data, "make_loader", spy_loader)
    return calls


def _evaluate(entry, mars_root, folders, tmp_path, capsys, extra):
    """Rows and recorded calls of an evaluation through train.py (the run's evaluate) or
    test.py (eval.py's form, the reference folder's chk_end)."""
    B = backends.get("torch")
    with pytest.MonkeyPatch.context() as mp:
        calls = _spy_evaluation(mp, B)
        if entry == "train":
            b = _build(teacher_argv(mars_root, tmp_path, extra=extra))
            list(b.run.batches(0))
            rows = [[r["setting"]] + [f"{r[c]:.2f}" for c in ("R1", "R10", "R20", "mAP", "mINP")]
                    for r in b.run.evaluate()]
        else:
            capsys.readouterr()
            assert test_cli.main(["--method", "vkd", "mars", str(folders.teacher), "--data-path", str(mars_root),
                                  "--backend", "torch", "--set", "model.width=4", "--set", "data.height=32",
                                  "--set", "data.width=16", *extra]) == 0
            rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()[-2:]]
    return rows, calls


@pytest.mark.parametrize("entry", ["train", "test"])
def test_evaluation_flags_set_clip_length_batch_sizes_and_workers(entry, mars_root, folders, tmp_path, capsys):
    """--num_test_images 3: video clips of 3 frames (image sides: 1); --test_batch 3 and
    --img_test_batch 5: the clips per forward pass of the video and image sides; -j 2: the
    worker processes of every loader (training batches too). The table is the one of the
    default batch sizes and workers."""
    base = ["--num_test_images", "3", "--set", "data.test_batch=64", "--img_test_batch", "512", "-j", "0"]
    expected, plain = _evaluate(entry, mars_root, folders, tmp_path / "a", capsys, base)
    rows, calls = _evaluate(entry, mars_root, folders, tmp_path / "b", capsys,
                            base + ["--test_batch", "3", "--img_test_batch", "5", "-j", "2"])
    assert rows == expected and [r[0] for r in rows] == ["I2V", "V2V"]
    assert set(plain["workers"]) == {0} and calls["workers"] and set(calls["workers"]) == {2}
    views = {shape[1] for shape, _ in calls["extract"]}
    assert views == {1, 3}
    for shape, batch_size in calls["extract"]:
        assert batch_size == (3 if shape[1] == 3 else 5)
        assert shape[0] <= batch_size
    assert max(s[0] for s, _ in calls["extract"] if s[1] == 3) == 3
    assert max(s[0] for s, _ in calls["extract"] if s[1] == 1) == 5


def test_trinet_chk_name_picks_the_evaluated_checkpoint(mars_root, folders, capsys):
    """test.py DATASET FOLDER --trinet_chk_name NAME (VKD eval.py) evaluates chk/NAME."""
    loaded = {}
    load = vkd_recipe.load_for_test

    def spy(B, model, path, cfg):
        load(B, model, path, cfg)
        loaded[path] = B.weights.state_to_numpy(model)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vkd_recipe, "load_for_test", spy)
        for name in ("chk_alt", "chk_end"):
            assert test_cli.main(["--method", "vkd", "mars", str(folders.teacher), "--trinet_chk_name", name,
                                  "--data-path", str(mars_root), "--backend", "torch", "--num_test_images", "2",
                                  "--set", "model.width=4", "--set", "data.height=32", "--set", "data.width=16"]) == 0
    capsys.readouterr()
    assert sorted(loaded) == [str(folders.teacher / "chk" / n) for n in ("chk_alt", "chk_end")]
    for name in ("chk_alt", "chk_end"):
        _same(folders.t[name], loaded[str(folders.teacher / "chk" / name)])
