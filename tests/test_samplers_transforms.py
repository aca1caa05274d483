"""Samplers (SPEC 3) and transforms (SPEC 4)."""
import numpy as np
import pytest

from common import transforms as T
from common.errors import ConfigError
from common.samplers import CrossModalIdentitySampler, PKSampler, RandomIdentitySampler

# 10 identities; pid p has p + 1 items (so pids 0..2 have fewer than K=4)
PIDS = np.repeat(np.arange(10), np.arange(1, 11))


def _flat(batches):
    return [i for b in batches for i in b]


# ---------------------------------------------------------------- P x K samplers
@pytest.mark.parametrize("cls", [PKSampler, RandomIdentitySampler])
def test_pk_structure_identity_major(cls):
    P, K = 3, 4
    sampler = cls(PIDS, P=P, K=K, seed=0)
    batches = sampler.batches(0)
    assert len(batches) > 0
    for batch in batches:
        assert len(batch) == P * K
        ids = PIDS[np.asarray(batch)].reshape(P, K)
        assert (ids == ids[:, :1]).all(), "row p*K+k must hold identity p"
        assert len(set(ids[:, 0])) == P, "P distinct identities"


def test_pk_sampler_count_and_replacement_rule():
    sampler = PKSampler(PIDS, P=3, K=4, seed=5)
    assert sampler.num_batches == 10 // 3
    for epoch in range(5):
        batches = sampler.batches(epoch)
        assert len(batches) == 3
        used = set()
        for batch in batches:
            for row in np.asarray(batch).reshape(3, 4):
                pid = int(PIDS[row[0]])
                assert pid not in used, "an identity appears once per epoch"
                used.add(pid)
                if pid + 1 >= 4:  # enough items: drawn without replacement
                    assert len(set(row.tolist())) == 4
                else:
                    assert set(row.tolist()) <= set(np.flatnonzero(PIDS == pid).tolist())


def test_random_identity_sampler_uses_each_item_once_when_k_divides():
    pids = np.repeat(np.arange(6), 4)  # every pid exactly one chunk
    sampler = RandomIdentitySampler(pids, P=2, K=4, seed=1)
    batches = sampler.batches(0)
    assert len(batches) == 3
    assert sorted(_flat(batches)) == list(range(24))


@pytest.mark.parametrize("cls", [PKSampler, RandomIdentitySampler])
def test_pk_determinism_and_epochs_differ(cls):
    a, b = cls(PIDS, 2, 4, seed=7), cls(PIDS, 2, 4, seed=7)
    assert a.batches(3) == b.batches(3)
    assert a.batches(3) != a.batches(4)
    assert a.batches(3) != cls(PIDS, 2, 4, seed=8).batches(3)
    assert a.indices(3) == _flat(a.batches(3))


# ---------------------------------------------------------------- rank split (indices)
def _rank_shares(sampler, epoch, world_size):
    return [sampler.indices(epoch, rank=r, world_size=world_size) for r in range(world_size)]


# (sampler of a seed, world size); ids: world size "of" the batches of epoch 2 with seed 7
RANK_CASES = [
    pytest.param(lambda seed: PKSampler(PIDS, 3, 2, seed=seed), 3, id="pk-3of3"),
    pytest.param(lambda seed: PKSampler(PIDS, 2, 2, seed=seed), 3, id="pk-3of5"),
    pytest.param(lambda seed: RandomIdentitySampler(np.repeat(np.arange(6), 4), 2, 2, seed=seed), 2,
                 id="randid-2of5"),
    pytest.param(lambda seed: RandomIdentitySampler(PIDS, 2, 4, seed=seed), 3, id="randid-3of6"),
]


@pytest.mark.parametrize("make, world_size", RANK_CASES)
def test_pk_ranks_get_disjoint_items_covering_the_epoch(make, world_size):
    """Rank r gets the items of batches r, r+W, ... of the 1-rank epoch (cut to the same count
    on every rank): no item on two ranks (each identity or chunk lands in one batch), and the
    ranks together hold exactly the 1-rank items, less at most W-1 trailing batches."""
    sampler = make(7)
    full = sampler.batches(2)
    kept = len(full) // world_size
    shares = _rank_shares(sampler, 2, world_size)
    for r, share in enumerate(shares):
        assert share == [i for b in full[r::world_size][:kept] for i in b]
        for other in shares[r + 1:]:
            assert not set(share) & set(other), "an item on two ranks"
    union = sorted(i for share in shares for i in share)
    assert union == sorted(_flat(full[:kept * world_size]))
    if len(full) % world_size == 0:  # the sampler promises the whole epoch then
        assert union == sorted(sampler.indices(2))
    else:
        assert len(union) < len(sampler.indices(2))
    # the same (seed, epoch, rank) gives the same items; another epoch or seed does not
    assert _rank_shares(make(7), 2, world_size) == shares
    assert _rank_shares(make(7), 3, world_size) != shares
    assert _rank_shares(make(8), 2, world_size) != shares
    with pytest.raises(ValueError, match="rank"):
        sampler.batches(0, rank=world_size, world_size=world_size)


def test_cross_modal_ranks_get_interleaved_batches():
    """Cross-modal batches are drawn with replacement, so ranks are disjoint per batch (rank r
    gets batches r, r+W, ...), not per item; their (rgb, ir, label) items are those batches'."""
    rgb, ir = np.repeat(np.arange(6), 7), np.repeat(np.arange(6), 3)
    make = lambda seed: CrossModalIdentitySampler(rgb, ir, B=2, P=3, seed=seed)  # noqa: E731
    full = make(0).indices(1)  # 8 batches of 6 items
    shares = _rank_shares(make(0), 1, 3)
    assert [len(s) for s in shares] == [2 * 6] * 3
    for r, share in enumerate(shares):
        assert share == [item for b in (r, r + 3) for item in full[b * 6:(b + 1) * 6]]
    assert _rank_shares(make(0), 1, 3) == shares
    assert _rank_shares(make(0), 2, 3) != shares and _rank_shares(make(1), 1, 3) != shares


def test_cross_modal_loader_of_a_rank_uses_that_ranks_items(monkeypatch):
    """cross_modal.CrossModalBatches(rank=r, world_size=W) builds its batches from exactly the
    sampler's share of rank r (the items, not the images, are compared)."""
    from common.data.cross_modal import CrossModalBatches
    from common.transforms import CrossModalTrain
    rgb_y, ir_y = np.repeat(np.arange(6), 7), np.repeat(np.arange(6), 3)
    images = lambda n: np.zeros((n, 8, 4, 3), np.uint8)  # noqa: E731
    items = []
    for rank in range(2):
        tf = CrossModalTrain(8, 4)
        loader = CrossModalBatches(images(len(rgb_y)), rgb_y, images(len(ir_y)), ir_y, tf, tf,
                                   CrossModalIdentitySampler(rgb_y, ir_y, 2, 3, seed=4), seed=4, rank=rank,
                                   world_size=2)
        monkeypatch.setattr(loader, "make_batch", lambda epoch, index, item: item)
        got = list(loader.epoch(1, prefetch=0))
        want = CrossModalIdentitySampler(rgb_y, ir_y, 2, 3, seed=4).batches(1, rank, 2)
        assert len(got) == len(loader) == 8 // 2
        assert all(all(np.array_equal(a, b) for a, b in zip(g, w)) for g, w in zip(got, want))
        items.append([tuple(map(tuple, g)) for g in got])
    assert not set(items[0]) & set(items[1])


def test_pk_rejects_too_few_ids():
    with pytest.raises(ValueError, match="identities"):
        PKSampler([0, 0, 1, 1], P=3, K=2)


# ---------------------------------------------------------------- cross-modal
def test_cross_modal_sampler_structure():
    rgb = np.repeat(np.arange(6), 7)   # 42 RGB images
    ir = np.repeat(np.arange(6), 3)    # 18 IR images
    sampler = CrossModalIdentitySampler(rgb, ir, B=2, P=3, seed=0)
    assert sampler.num_batches == 42 // 6 + 1
    batches = sampler.batches(0)
    assert len(batches) == 8
    for rgb_idx, ir_idx, labels in batches:
        assert rgb_idx.shape == ir_idx.shape == labels.shape == (6,)
        np.testing.assert_array_equal(rgb[rgb_idx], labels)
        np.testing.assert_array_equal(ir[ir_idx], labels)
        ids = labels.reshape(2, 3)
        assert (ids == ids[:, :1]).all() and ids[0, 0] != ids[1, 0]
    again = CrossModalIdentitySampler(rgb, ir, B=2, P=3, seed=0).batches(0)
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(batches, again))
    other = sampler.batches(1)
    assert any((a[0] != b[0]).any() for a, b in zip(batches, other))
    items = sampler.indices(0)
    assert len(items) == 8 * 6 and items[0] == (int(batches[0][0][0]), int(batches[0][1][0]),
                                                int(batches[0][2][0]))


# ---------------------------------------------------------------- transforms
def _image(h=20, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_normalize_constant_image():
    img = np.full((4, 3, 3), 255, dtype=np.uint8)
    img[..., 1] = 0
    out = T.normalize(img)
    assert out.dtype == np.float32 and out.shape == (3, 4, 3)
    np.testing.assert_allclose(out[0], (1 - 0.485) / 0.229, rtol=1e-6)
    np.testing.assert_allclose(out[1], (0 - 0.456) / 0.224, rtol=1e-6)
    np.testing.assert_allclose(out[2], (1 - 0.406) / 0.225, rtol=1e-6)


def test_hflip_forced():
    img = _image()
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(T.hflip(img, rng, p=1.0), img[:, ::-1])
    np.testing.assert_array_equal(T.hflip(img, rng, p=0.0), img)


def test_pad_and_crop():
    img = _image(6, 4)
    padded = T.pad(img, 2)
    assert padded.shape == (10, 8, 3)
    assert padded[:2].sum() == 0 and padded[:, :2].sum() == 0
    np.testing.assert_array_equal(padded[2:-2, 2:-2], img)
    crop = T.random_crop(padded, 6, 4, np.random.default_rng(1))
    assert crop.shape == (6, 4, 3)
    with pytest.raises(ValueError, match="smaller"):
        T.random_crop(img, 7, 4, np.random.default_rng(0))


def test_resize_methods_and_error():
    img = _image()
    for method in ("bilinear", "bicubic", "lanczos"):
        out = T.resize(img, 8, 6, method)
        assert out.shape == (8, 6, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="method"):
        T.resize(img, 8, 6, "nearest-ish")


def test_random_erasing_zeroes_one_rectangle():
    chw = np.ones((3, 32, 16), dtype=np.float32)
    out = T.random_erasing(chw, np.random.default_rng(3), p=1.0)
    assert (chw == 1).all(), "input untouched"
    zero = out[0] == 0
    assert zero.any() and set(np.unique(out).tolist()) <= {0.0, 1.0}
    rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
    assert zero[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all(), "the erased area is a rectangle"
    assert (out[1] == out[0]).all() and (out[2] == out[0]).all()
    area = zero.sum() / zero.size
    assert 0.01 < area < 0.5
    np.testing.assert_array_equal(T.random_erasing(chw, np.random.default_rng(3), p=0.0), chw)


def test_random_grayscale_and_translate():
    img = _image()
    gray = T.random_grayscale(img, np.random.default_rng(0), p=1.0)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    expected = np.round(img @ np.array([0.299, 0.587, 0.114]))
    assert np.abs(gray[..., 0].astype(float) - expected).max() <= 1
    moved = T.random_translate(img, np.random.default_rng(0), p=1.0)
    assert moved.shape == img.shape
    np.testing.assert_array_equal(T.random_translate(img, np.random.default_rng(0), p=0.0), img)


@pytest.mark.parametrize("pipeline,shape", [
    (T.CrossModalTrain(24, 12, erasing=True, grayscale=True), (3, 24, 12)),
    (T.CrossModalTest(24, 12), (3, 24, 12)),
    (T.VideoTrain(16, 8), (3, 16, 8)),
    (T.VideoTest(16, 8), (3, 16, 8)),
    (T.ImageTrain(16, 8), (3, 16, 8)),
    (T.ImageTest(16, 8), (3, 16, 8)),
])
def test_pipelines_shape_dtype_determinism(pipeline, shape):
    img = _image(30, 14)
    a = pipeline(img, np.random.default_rng(11))
    b = pipeline(img, np.random.default_rng(11))
    assert a.shape == shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_video_train_frames_are_independent():
    frame = _image(16, 8)
    clip = np.stack([frame] * 6)
    out = T.VideoTrain(16, 8)(clip, np.random.default_rng(0))
    assert out.shape == (6, 3, 16, 8)
    assert any(not np.array_equal(out[0], out[t]) for t in range(1, 6))


def test_test_pipeline_is_resize_then_normalize():
    img = _image(16, 8)
    np.testing.assert_array_equal(T.ImageTest(16, 8)(img), T.normalize(img))


def test_build_transform():
    assert isinstance(T.build_transform("video", True, 16, 8), T.VideoTrain)
    assert isinstance(T.build_transform("image", False, 16, 8), T.ImageTest)
    t = T.build_transform("cross_modal", True, 24, 12, erasing=True)
    assert isinstance(t, T.CrossModalTrain) and t.erasing
    with pytest.raises(ConfigError, match="unknown transform kind"):
        T.build_transform("audio", True, 16, 8)
    with pytest.raises(ConfigError, match="options"):
        T.build_transform("video", True, 16, 8, erasing=True)


def test_train_pipeline_requires_generator():
    with pytest.raises(ValueError, match="Generator"):
        T.ImageTrain(16, 8)(_image(16, 8))
