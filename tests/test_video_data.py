"""VKD data (common/data/temporal.py, video.py, video_eval.py) against the rules of
aimagelab/VKD: chunked crops, PK and multiview sampling, the student's view subset,
determinism across workers and backends, rank split, evaluation sets and bad input."""
import os

import numpy as np
import pytest

from common import transforms as T
from common.data import temporal
from common.data.base import Record, read_image
from common.data.loader import iterate
from common.data.synthetic_video import write_dukevideo, write_mars, write_veri
from common.data.video import (SETTINGS, VideoTrainBatches, build_train_batches, settings, student_views,
                               train_transform)
from common.data.video_eval import (VideoTestBatches, eval_protocols, load_vkd_splits, side_batches)
from common.errors import ConfigError, DatasetLayoutError

IDS = 6


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("vkd"))
    return {"mars": write_mars(out, IDS, 1), "dukevideo": write_dukevideo(out, IDS, 1),
            "veri": write_veri(out, IDS, 1)}


@pytest.fixture(scope="module")
def mars_train(roots):
    return load_vkd_splits("mars", roots["mars"]).train


def _small(records, **kw):
    """A fast teacher/student source: 32x16 frames, VKD's erasing settings."""
    args = dict(P=3, K=2, num_train_images=4, seed=7)
    args.update(kw)
    tf = T.VideoTrain(32, 16, erase_attempts=10)
    return VideoTrainBatches(records, tf, **args)


# ------------------------------------------------------------------ temporal crops

def test_chunk_table_pads_with_the_last_frame():
    assert temporal.chunks(9, 8).tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 8], [8, 8], [8, 8], [8, 8]]
    assert temporal.chunks(10, 4).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 9, 9]]
    assert temporal.chunks(3, 5).tolist() == [[0], [1], [2], [2], [2]]
    assert temporal.test_chunk_crop(16, 4) == [0, 4, 8, 12]
    assert temporal.test_chunk_crop(10, 4) == [0, 3, 6, 9]
    assert temporal.test_chunk_crop(3, 8) == [0, 1, 2, 2, 2, 2, 2, 2]
    with pytest.raises(ValueError):
        temporal.chunks(0, 4)


def test_random_chunk_crop_draws_inside_each_chunk():
    rng = np.random.default_rng(0)
    table = temporal.chunks(10, 4)
    seen = [set() for _ in range(4)]
    for _ in range(300):
        crop = temporal.random_chunk_crop(10, 4, rng)
        for s, f in enumerate(crop):
            assert f in table[s]
            seen[s].add(f)
    assert seen == [{0, 1, 2}, {3, 4, 5}, {6, 7, 8}, {9}]
    # short tracklet: deterministic; one frame (--num_train_images 1): any frame of the tracklet
    assert {tuple(temporal.random_chunk_crop(3, 5, rng)) for _ in range(20)} == {(0, 1, 2, 2, 2)}
    assert {temporal.random_chunk_crop(7, 1, rng)[0] for _ in range(300)} == set(range(7))


def test_multiview_takes_distinct_tracklets_then_cycles():
    cands = [tuple(f"t{t}f{f}" for f in range(5)) for t in range(3)]
    rng = np.random.default_rng(1)
    for size in (2, 3):
        views = temporal.multiview_frames(cands, size, rng)
        assert len({v.split("f")[0] for v in views}) == size
    views = temporal.multiview_frames(cands, 7, rng)
    tracks = [v.split("f")[0] for v in views]
    assert tracks[:3] == tracks[3:6] and tracks[6] == tracks[0] and len(set(tracks[:3])) == 3
    frames = {temporal.multiview_frames(cands[:1], 1, rng)[0] for _ in range(200)}
    assert frames == set(cands[0])
    with pytest.raises(ValueError, match="unknown train strategy"):
        temporal.select_frames("bogus", cands[0], 2, rng)


# ------------------------------------------------------------------ training sources

def test_settings_follow_the_reference():
    assert (SETTINGS["mars"].height, SETTINGS["mars"].width) == (256, 128)
    assert settings("duke-video-reid").name == "dukevideo"
    veri = settings("VeRi")
    assert (veri.height, veri.width, veri.erase_aspect) == (224, 224, (0.7, 1.4))
    tf = train_transform("veri")
    assert (tf.erase_attempts, tf.erase_area, tf.erase_aspect, tf.pad) == (10, (0.02, 0.4), (0.7, 1.4), 10)
    assert SETTINGS["mars"].augment_gallery and not SETTINGS["dukevideo"].augment_gallery
    src = build_train_batches("veri", [Record(("a.jpg",), 0, 0), Record(("b.jpg",), 1, 0)], 2, 1, 1)
    assert (src.transform.h, src.transform.w, src.transform.erase_aspect) == (224, 224, (0.7, 1.4))
    with pytest.raises(ConfigError, match="unknown VKD dataset"):
        settings("market")


def test_teacher_batches_are_p_identities_by_k_tracklets(mars_train):
    src = _small(mars_train)
    assert len(src) == IDS // 3 and src.columns == ("frames", "pids", "camids")
    for item in src.items(0):
        pids = [mars_train[i].pid for i in item]
        assert len(item) == 6 and len(set(pids)) == 3
        assert all(pids[2 * p] == pids[2 * p + 1] for p in range(3))  # identity-major
        assert all(item[2 * p] != item[2 * p + 1] for p in range(3))  # >= K tracklets: no repeats
    assert sorted(mars_train[i].pid for it in src.items(0) for i in it[::2]) == list(range(IDS))
    frames, pids, camids = src.make_batch(0, 0, src.items(0)[0])
    assert frames.shape == (6, 4, 3, 32, 16) and frames.dtype == np.float32
    assert pids.tolist() == [mars_train[i].pid for i in src.items(0)[0]]
    assert camids.tolist() == [mars_train[i].camid for i in src.items(0)[0]]


def test_identities_with_fewer_than_k_tracklets_are_drawn_with_replacement(mars_train):
    counts = {p: sum(r.pid == p for r in mars_train) for p in range(IDS)}
    assert min(counts.values()) == 2 and max(counts.values()) == 3  # the fixture mixes both
    src = _small(mars_train, P=2, K=3)
    for epoch in range(3):
        for item in src.items(epoch):
            for p in range(2):
                chunk = item[3 * p:3 * p + 3]
                pid = mars_train[chunk[0]].pid
                assert all(mars_train[i].pid == pid for i in chunk)
                assert len(set(chunk)) == 3 if counts[pid] == 3 else len(set(chunk)) <= 2


def test_teacher_frames_come_from_the_chunked_crop(mars_train):
    test = T.VideoTest(32, 16)  # no augmentation, so every frame can be matched to its file
    src = VideoTrainBatches(mars_train, test, P=3, K=2, num_train_images=4)
    item = src.items(0)[0]
    frames = src.make_batch(0, 0, item)[0]
    for b, t in enumerate(item):
        rec = mars_train[t]
        decoded = [test(read_image(p)) for p in rec.path]
        table = temporal.chunks(len(rec.path), 4)
        for n in range(4):
            match = {f for f in range(len(rec.path)) if np.array_equal(decoded[f], frames[b, n])}
            assert match and match <= set(table[n].tolist())


def test_student_batches_hold_views_of_one_identity_and_an_m_subset(mars_train):
    src = _small(mars_train, num_train_images=4, num_student_images=2)
    assert src.strategy == "multiview" and src.columns[-1] == "student_idx"
    frames, pids, camids, sidx = src.make_batch(3, 1, src.items(3)[1])
    assert sidx.shape == (6, 2) and sidx.dtype == np.int64
    assert all(len(set(r)) == 2 and set(r) <= set(range(4)) for r in sidx.tolist())
    views = student_views(frames, sidx)
    assert views.shape == (6, 2, 3, 32, 16)
    for b in range(6):
        for m in range(2):
            np.testing.assert_array_equal(views[b, m], frames[b, sidx[b, m]])
    assert len({tuple(r) for r in sidx.tolist()}) > 1


def test_multiview_frames_belong_to_the_identity_in_any_camera(mars_train):
    src = _small(mars_train, num_train_images=3, num_student_images=1)
    rng = np.random.default_rng(0)
    for t in range(len(mars_train)):
        rec = mars_train[t]
        paths = temporal.select_frames("multiview", rec.path, 3, rng, src.candidates[rec.pid])
        own = [r for r in mars_train if r.pid == rec.pid]
        owners = [next(i for i, r in enumerate(own) if p in r.path) for p in paths]
        assert len(set(owners)) == min(3, len(own))  # distinct tracklets (cameras) first


def test_determinism_workers_and_backends(mars_train):
    src = _small(mars_train, num_student_images=2)
    ref = list(iterate(src, 5))
    again = list(iterate(_small(mars_train, num_student_images=2), 5))
    for w in (1, 2):
        got = list(iterate(src, 5, workers=w))
        assert all(np.array_equal(a, b) for x, y in zip(ref, got) for a, b in zip(x, y))
    assert all(np.array_equal(a, b) for x, y in zip(ref, again) for a, b in zip(x, y))
    other = list(iterate(src, 6))
    assert not np.array_equal(ref[0][0], other[0][0])
    tdata = pytest.importorskip("backends.torch.data")
    msdata = pytest.importorskip("backends.mindspore.data")
    for got in (list(tdata.make_loader(src, 5, 2)), list(msdata.make_loader(src, 5, 0))):
        assert all(np.array_equal(a, b) for x, y in zip(ref, got) for a, b in zip(x, y))


def test_rank_split_is_disjoint_and_covers_the_epoch(roots):
    train = load_vkd_splits("dukevideo", roots["dukevideo"]).train
    full = _small(train, P=1, K=2)
    r0, r1 = _small(train, P=1, K=2, rank=0, world_size=2), _small(train, P=1, K=2, rank=1, world_size=2)
    assert len(r0) == len(r1) == IDS // 2
    assert r0.items(4) == full.items(4)[0::2] and r1.items(4) == full.items(4)[1::2]
    pids0 = {train[i].pid for it in r0.items(4) for i in it}
    pids1 = {train[i].pid for it in r1.items(4) for i in it}
    assert not pids0 & pids1 and len(pids0 | pids1) == IDS
    assert not np.array_equal(r0.make_batch(4, 0, r0.items(4)[0])[0], r1.make_batch(4, 0, r1.items(4)[0])[0])


def test_bad_training_configurations_are_one_line_config_errors(mars_train):
    cases = [(dict(K=4), "every identity has fewer than K=4 tracklets"),
             (dict(P=IDS + 1), f"only {IDS} identities"),
             (dict(num_train_images=2, num_student_images=3), "num_student_images=3 must be at most"),
             (dict(num_train_images=0), "num_train_images must be >= 1"),
             (dict(world_size=IDS), "fewer than the 6 ranks"),
             (dict(strategy="sideways"), "unknown train strategy")]
    for kw, msg in cases:
        with pytest.raises(ConfigError, match=msg) as info:
            _small(mars_train, **kw)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"not a jpeg at all"])
def test_corrupt_or_empty_frame_fails_naming_the_file(tmp_path, mars_train, content):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    records = [Record((str(bad),) * 3, r.pid, r.camid) if i == 0 else r for i, r in enumerate(mars_train)]
    src = _small(records)
    item = next(it for it in src.items(0) if 0 in it)
    index = src.items(0).index(item)
    with pytest.raises(DatasetLayoutError, match=f"cannot read image '{bad}'"):
        src.make_batch(0, index, item)
    with pytest.raises(DatasetLayoutError, match=f"cannot read image '{bad}'"):
        list(iterate(src, 0, workers=1))


def test_normalize_table_equals_the_formula_for_every_value():
    img = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=1)[None].repeat(2, 0)  # 2 x 256 x 3
    x = img.astype(np.float32) / np.float32(255.0)
    mean, std = np.asarray(T.IMAGENET_MEAN, np.float32), np.asarray(T.IMAGENET_STD, np.float32)
    np.testing.assert_array_equal(T.normalize(img), ((x - mean) / std).transpose(2, 0, 1))


def test_erasing_options_of_video_train():
    img = np.full((40, 20, 3), 200, np.uint8)
    never = T.VideoTrain(32, 16, erase_p=0.0)
    assert not any((never(img, np.random.default_rng(s)) == 0).all(axis=0).any() for s in range(20))
    veri = T.VideoTrain(32, 32, erase_p=1.0, erase_aspect=(0.7, 1.4), erase_attempts=10, pad=0)
    for s in range(30):
        zero = (veri(np.full((32, 32, 3), 200, np.uint8), np.random.default_rng(s)) == 0).all(axis=0)
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        assert 0.5 <= len(rows) / len(cols) <= 2.0  # round() of sqrt(S*r), sqrt(S/r), r in [0.7, 1.4]


# ------------------------------------------------------------------ evaluation sets

def test_mars_eval_sets_first_frames_and_augmented_gallery(roots):
    sp = load_vkd_splits("mars", roots["mars"])
    prot = eval_protocols("mars", splits=sp, num_test_images=4)
    assert list(prot) == ["I2V", "V2V"]
    i2v, v2v = prot["I2V"], prot["V2V"]
    assert i2v.gallery is v2v.gallery  # shared side: features extracted once
    nq, ng = len(sp.query), len(sp.gallery)
    assert [r.path for r in i2v.query.records] == [r.path[:1] for r in sp.query]
    assert v2v.gallery.records == sp.query + sp.gallery and len(v2v.gallery.frames) == nq + ng
    assert v2v.gallery.pids.tolist() == [r.pid for r in sp.query + sp.gallery]
    for rec, frames in zip(v2v.query.records, v2v.query.frames):
        assert frames == tuple(rec.path[i] for i in temporal.test_chunk_crop(len(rec.path), 4))
    four = eval_protocols("mars", splits=sp, protocols=["i2i", "v2i"], num_test_images=4)
    assert [r.path for r in four["I2I"].gallery.records] == [r.path[:1] for r in sp.query + sp.gallery]
    assert four["V2I"].query.frames == v2v.query.frames
    plain = eval_protocols("mars", splits=sp, augment_gallery=False)
    assert len(plain["V2V"].gallery.records) == ng


def test_duke_eval_sets_are_not_augmented(roots):
    sp = load_vkd_splits("duke-video-reid", roots["dukevideo"])
    prot = eval_protocols("dukevideo", roots["dukevideo"], protocols=("I2V", "V2V", "I2I", "V2I"))
    assert prot["V2V"].gallery.records == sp.gallery
    assert [f for f in prot["I2I"].gallery.frames] == [r.path[:1] for r in sp.gallery]
    assert prot["I2V"].query.camids.tolist() == [r.camid for r in sp.query]


def test_veri_eval_sets_follow_the_reference(roots):
    sp = load_vkd_splits("veri", roots["veri"])
    prot = eval_protocols("veri", splits=sp, num_test_images=8)
    assert list(prot) == ["I2V", "V2V", "I2I", "V2I"]
    img_gallery = prot["I2I"].gallery
    assert len(img_gallery.records) == sum(len(t.path) for t in sp.gallery)
    assert [f[0] for f in img_gallery.frames] == [p for t in sp.gallery for p in t.path]
    assert all(os.path.dirname(f[0]).endswith("image_query") for f in prot["I2V"].query.frames)
    for q, vq in zip(sp.query, prot["V2V"].query.records):
        first = next(t for t in sp.gallery if (t.pid, t.camid) == (q.pid, q.camid))
        assert vq == first
    assert len(prot["V2V"].query.frames[0]) == 8


def test_eval_batches_and_protocol_errors(roots):
    prot = eval_protocols("veri", roots["veri"], protocols=["V2V", "I2I"], num_test_images=3)
    vb = side_batches("veri", prot["V2V"].query, batch_size=4)
    batches = [b[0] for b in iterate(vb, 0)]
    assert [b.shape for b in batches][-1][1:] == (3, 3, 224, 224)
    assert sum(len(b) for b in batches) == len(prot["V2V"].query.records)
    img = side_batches("veri", prot["I2I"].query)
    first = next(iterate(img, 0))[0]
    assert first.shape[1] == 1 and img.batch_size == 512
    expected = T.VideoTest(224, 224)(read_image(prot["I2I"].query.frames[0][0]))
    np.testing.assert_array_equal(first[0, 0], expected)
    with pytest.raises(ConfigError, match="unknown evaluation protocol"):
        eval_protocols("veri", roots["veri"], protocols=["X2Y"])
    with pytest.raises(ValueError, match="mixes"):
        VideoTestBatches([("a",), ("a", "b")], T.VideoTest(8, 4), 2)
