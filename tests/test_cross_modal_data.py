"""common.data.cross_modal: training batches (sampler + transforms + options) and evaluation
sets; the three MVD samplers and the port / original train transforms."""
import numpy as np
import pytest

import pre_process_sysu
from common.data import cross_modal, synthetic
from common.errors import ConfigError
from common.samplers import CrossModalIdentitySampler, EpochCrossModalSampler
from common.transforms import IMAGENET_MEAN, IMAGENET_STD, CrossModalTrain


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    root = synthetic.write("sysu", str(tmp_path_factory.mktemp("sysu")), ids=6, seed=0)
    pre_process_sysu.preprocess(root, 32, 16, progress=False)
    return root, cross_modal.load_train_arrays("SYSU", root, 1, 32, 16)


def _loader(arrays, sampler="routed", rank=0, world_size=1, max_batches=0, **tf):
    rgb, rgb_y, ir, ir_y, _ = arrays[1]
    s = cross_modal.make_sampler(sampler, rgb_y, ir_y, 3, 2, 5)
    rgb_tf = CrossModalTrain(32, 16, grayscale=tf.pop("grayscale", False), **tf)
    return cross_modal.CrossModalBatches(rgb, rgb_y, ir, ir_y, rgb_tf, CrossModalTrain(32, 16, **tf), s, 5,
                                         max_batches, rank, world_size)


def test_batches_are_aligned_deterministic_and_epoch_dependent(arrays):
    _, (_, _, _, _, num_classes) = arrays
    a = list(_loader(arrays).epoch(0))
    b = list(_loader(arrays).epoch(0, prefetch=0))
    c = list(_loader(arrays).epoch(1))
    assert num_classes == 6 and len(a) == len(_loader(arrays))
    rgb, ir, y = a[0]
    assert rgb.shape == ir.shape == (6, 3, 32, 16) and rgb.dtype == np.float32
    assert list(y) == [y[0], y[0], y[2], y[2], y[4], y[4]] and len(set(y)) == 3
    assert all(np.array_equal(x1, x2) for p, q in zip(a, b) for x1, x2 in zip(p, q))
    assert not all(np.array_equal(p[0], q[0]) for p, q in zip(a, c))


def test_ranks_split_the_epoch(arrays):
    full = _loader(arrays)
    r0 = _loader(arrays, rank=0, world_size=2)
    r1 = _loader(arrays, rank=1, world_size=2)
    assert len(r0) == len(r1) == len(full) // 2


def test_max_batches_caps_the_epoch(arrays):
    assert len(list(_loader(arrays, max_batches=2).epoch(0))) == 2


def test_batch_counts_of_the_three_samplers():
    """port: floor(N/(B*P)) (the port's loader after drop_remainder); routed: + 1;
    original: n_ids // B (an epoch permutation of identities, reid/utils/data/sampler.py)."""
    rgb = np.repeat(np.arange(10), 5)          # 50 RGB, 10 ids
    ir = np.repeat(np.arange(10), 3)           # 30 IR
    assert cross_modal.make_sampler("port", rgb, ir, 2, 4, 0).num_batches == 50 // 8
    assert cross_modal.make_sampler("routed", rgb, ir, 2, 4, 0).num_batches == 50 // 8 + 1
    orig = cross_modal.make_sampler("original", rgb, ir, 3, 4, 0)
    assert isinstance(orig, EpochCrossModalSampler) and orig.num_batches == 10 // 3
    batches = orig.batches(0)
    seen = np.concatenate([b[2][::4] for b in batches])
    assert len(set(seen.tolist())) == len(seen) == 9           # every identity at most once per epoch
    for rgb_idx, ir_idx, labels in batches:
        assert np.array_equal(rgb[rgb_idx], labels) and np.array_equal(ir[ir_idx], labels)
        for k in range(0, 12, 4):                              # 5 >= 4 RGB: no repeats; 3 < 4 IR: repeats
            assert len(set(rgb_idx[k:k + 4].tolist())) == 4
    with pytest.raises(ConfigError, match="unknown cross-modal sampler"):
        cross_modal.make_sampler("nope", rgb, ir, 2, 4, 0)
    assert isinstance(cross_modal.make_sampler("port", rgb, ir, 2, 4, 0), CrossModalIdentitySampler)


def test_erasing_and_grayscale_options_act(arrays):
    plain = np.concatenate([b[0] for b in _loader(arrays).epoch(0)])
    erased = np.concatenate([b[0] for b in _loader(arrays, erasing=True).epoch(0)])
    erased_tv = np.concatenate([b[0] for b in _loader(arrays, erasing=True, erasing_style="torchvision").epoch(0)])
    gray = np.concatenate([b[0] for b in _loader(arrays, grayscale=True).epoch(0)])
    zero_planes = lambda x: int(((x == 0).all(axis=1)).sum())  # noqa: E731
    assert zero_planes(plain) == 0 and zero_planes(erased) > 0 and zero_planes(erased_tv) > 0
    pixels = gray.transpose(0, 2, 3, 1) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    equal = np.abs(pixels[..., 0] - pixels[..., 1]).max(axis=(1, 2)) < 1e-5
    assert 0 < equal.sum() < len(equal)  # p = 0.5 per image


def test_port_transform_has_no_padding_and_original_only_flips():
    img = (np.arange(32 * 16 * 3) % 251).astype(np.uint8).reshape(32, 16, 3)
    rng = np.random.default_rng(0)
    port = CrossModalTrain(32, 16, pad=0)
    outs = [port(img, rng) for _ in range(20)]
    ref = cross_modal.CrossModalTest(32, 16)(img) if hasattr(cross_modal, "CrossModalTest") else None
    flipped = [o for o in outs if not np.allclose(o, outs[0])]
    assert all(np.allclose(o, outs[0]) or np.allclose(o, outs[0][:, :, ::-1]) for o in outs)  # only flips
    assert flipped and ref is not None and any(np.allclose(o, ref) for o in outs)
    padded = [CrossModalTrain(32, 16, pad=10)(img, rng) for _ in range(10)]
    assert any(not (np.allclose(o, ref) or np.allclose(o, ref[:, :, ::-1])) for o in padded)


def test_eval_sets_sysu_and_unknown_dataset(arrays):
    root, _ = arrays
    sets = list(cross_modal.test_sets("SYSU", root, 32, 16, trials=range(2)))
    assert [s.name for s in sets] == ["all/trial0", "all/trial1", "indoor/trial0", "indoor/trial1"]
    assert sets[0].query is sets[2].query  # query read once
    assert set(np.unique(sets[0].q_cams)) <= {2, 5} and set(np.unique(sets[2].g_cams)) <= {0, 1}
    multi = list(cross_modal.test_sets("SYSU", root, 32, 16, trials=range(1), number_shot=10))
    assert len(multi[0].g_pids) > len(sets[0].g_pids)
    with pytest.raises(ConfigError, match="SYSU, RegDB"):
        list(cross_modal.test_sets("Market", root, 32, 16))


def test_too_few_identities_is_a_config_error(arrays):
    _, (_, rgb_y, _, ir_y, _) = arrays
    with pytest.raises(ConfigError, match="data.num_ids"):
        cross_modal.make_sampler("port", rgb_y, ir_y, 7, 2, 0)  # 6 identities exist
