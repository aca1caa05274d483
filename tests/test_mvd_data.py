"""common.mvd_data: training batches (sampler + transforms + options) and evaluation sets."""
import numpy as np
import pytest

import pre_process_sysu
from common import mvd_data
from common.data import synthetic
from common.errors import ConfigError
from common.transforms import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    root = synthetic.write("sysu", str(tmp_path_factory.mktemp("sysu")), ids=6, seed=0)
    pre_process_sysu.preprocess(root, 32, 16)
    return root, mvd_data.load_train_arrays("SYSU", root, 1, 32, 16)


def _loader(arrays, **kw):
    rgb, rgb_y, ir, ir_y, _ = arrays[1]
    return mvd_data.CrossModalBatches(rgb, rgb_y, ir, ir_y, 32, 16, num_ids=3, num_pos=2, seed=5, **kw)


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
    assert not np.array_equal(next(iter(r0.epoch(0)))[0], next(iter(r1.epoch(0)))[0])


def test_max_batches_caps_the_epoch(arrays):
    assert len(list(_loader(arrays, max_batches=2).epoch(0))) == 2


def test_erasing_and_grayscale_options_act(arrays):
    plain = np.concatenate([b[0] for b in _loader(arrays).epoch(0)])
    erased = np.concatenate([b[0] for b in _loader(arrays, erasing=True).epoch(0)])
    gray = np.concatenate([b[0] for b in _loader(arrays, grayscale=True).epoch(0)])
    zero_planes = lambda x: int(((x == 0).all(axis=1)).sum())  # noqa: E731
    assert zero_planes(plain) == 0 and zero_planes(erased) > 0
    pixels = gray.transpose(0, 2, 3, 1) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    equal = np.abs(pixels[..., 0] - pixels[..., 1]).max(axis=(1, 2)) < 1e-5
    assert 0 < equal.sum() < len(equal)  # p = 0.5 per image


def test_eval_sets_sysu_and_unknown_dataset(arrays):
    root, _ = arrays
    sets = list(mvd_data.test_sets("SYSU", root, 32, 16, trials=range(2)))
    assert [s.name for s in sets] == ["all/trial0", "all/trial1", "indoor/trial0", "indoor/trial1"]
    assert sets[0].query is sets[2].query  # query read once
    assert set(np.unique(sets[0].q_cams)) <= {2, 5} and set(np.unique(sets[2].g_cams)) <= {0, 1}
    with pytest.raises(ConfigError, match="SYSU, RegDB"):
        list(mvd_data.test_sets("Market", root, 32, 16))


def test_too_few_identities_is_a_config_error(arrays):
    with pytest.raises(ConfigError, match="data.num_ids"):
        mvd_data.CrossModalBatches(*arrays[1][:4], 32, 16, num_ids=7)  # 6 identities exist
