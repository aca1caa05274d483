"""KD-REID data and plans (common/recipes/kdreid_data.py, kdreid_runs.py), framework-free:
torchreid's loader length, stream restarts (the batch engine's exhausted-iterator quirk), the
batch source, the epoch plans of the three runs, the step rate per pass, the torchreid erasing
transform, the synthetic domain shift and the CUHK03 ``cuhk-03.mat`` reader."""
import copy
import os

import numpy as np
import pytest

from common.config import load_config
from common.data import synthetic
from common.data.appearance import DOMAIN_SHIFTS, domain_shift, render
from common.data.base import Record
from common.errors import ConfigError, DatasetLayoutError
from common.recipes import kdreid as recipe
from common.recipes import kdreid_data as kd
from common.recipes.kdreid_runs import KDRun
from common.transforms import IMAGENET_MEAN, ImageTrain


def records(counts):
    """Records of identities 0..n-1 with ``counts[i]`` images each (paths are never read)."""
    return [Record(f"p{pid}_{i}.png", pid, i % 2) for pid, n in enumerate(counts) for i in range(n)]


def test_reference_length_is_torchreids_estimate():
    # torchreid RandomIdentitySampler.length: sum of max(n, K) - max(n, K) % K; K = 4:
    # 5 -> 4, 2 -> 4 (padded), 4 -> 4, 9 -> 8: 20 images, 20 // (P*K = 8) = 2 batches
    assert kd.reference_length([0] * 5 + [1] * 2 + [2] * 4 + [3] * 9, P=2, K=4) == 2
    assert kd.reference_length([0] * 8 + [1] * 8, P=2, K=4) == 2


def test_stream_refuses_targets_without_k_images_and_too_few_ids():
    with pytest.raises(ConfigError, match="no training identity has 4 images"):
        kd.Stream("cuhk03", records([3, 2, 3]), P=2, K=4, seed=0)
    with pytest.raises(ConfigError, match="2 training identities, fewer than the 3"):
        kd.Stream("x", records([4, 4]), P=3, K=2, seed=0)


def test_cursor_restarts_continue_and_reference():
    stream = kd.Stream("t", records([4, 4, 4, 4]), P=2, K=2, seed=3)  # 4 batches per permutation
    first = stream.perm(kd.stream_key(5, 0))
    cont = kd.Cursor(stream, 5, restart="continue")
    ref = kd.Cursor(stream, 5, restart="reference")
    got_c = [cont.next() for _ in range(len(first) + 3)]
    got_r = [ref.next() for _ in range(len(first) + 3)]
    assert got_c[:len(first)] == first and got_r[:len(first)] == first
    second = stream.perm(kd.stream_key(5, 1))
    assert got_c[len(first):] == second[:3]  # walks the fresh permutation
    # MTDA KD_batch_engine.py: each later batch is the first one of yet another permutation
    assert got_r[len(first):] == [stream.perm(kd.stream_key(5, s))[0] for s in (1, 2, 3)]
    assert stream.perm(kd.stream_key(5, 1)) != first  # restarts draw a new permutation


def _write(path, seed):
    from common.data.appearance import save
    save(render(seed % 5, seed % 2, np.random.default_rng(seed)), str(path))
    return str(path)


def test_planned_batches_reproducible_and_identity_major(tmp_path):
    recs = [Record(_write(tmp_path / f"{i}.png", i), i // 2, i % 2) for i in range(8)]
    stream = kd.Stream("s", recs, P=2, K=2, seed=0)
    plan = [(((0, b),), ([7],)) for b in stream.perm(0)]
    src = kd.PlannedBatches([stream], ImageTrain(32, 16, erasing=True), seed=1, epoch=0, plan=plan,
                            columns=("images", "pids", "x"))
    a, b = src.make_batch(0, 1, plan[1]), src.make_batch(0, 1, plan[1])
    assert a[0].shape == (4, 3, 32, 16) and a[0].dtype == np.float32
    assert [np.array_equal(x, y) for x, y in zip(a, b)] == [True] * 3
    assert a[1][0] == a[1][1] and a[1][2] == a[1][3] and a[1][0] != a[1][2]  # P x K, identity-major
    assert a[2].tolist() == [7]
    assert not np.array_equal(src.make_batch(0, 2, plan[1])[0], a[0])  # augmentation draws per batch
    with pytest.raises(ValueError, match="epoch 0"):
        src.items(1)


def test_torchreid_random_erasing_fills_the_normalisation_mean():
    img = render(3, 0, np.random.default_rng(0), 64, 32)
    plain = ImageTrain(64, 32)(img, np.random.default_rng(1))
    erased = [ImageTrain(64, 32, erasing=True)(img, np.random.default_rng(s)) for s in range(12)]
    changed = [e for e in erased if not np.array_equal(e, ImageTrain(64, 32)(img, np.random.default_rng(0)))]
    assert plain.shape == (3, 64, 32) and changed
    hits = 0
    for e in erased:  # an erased pixel holds IMAGENET_MEAN[c] in channel c (torchreid's quirk)
        mask = np.all(np.isclose(e, np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]), axis=0)
        hits += int(mask.sum() > 20)
    assert 2 <= hits <= 11  # p = 0.5 over 12 draws


def test_domain_shift_styles():
    img = render(4, 1, np.random.default_rng(0))
    assert domain_shift(img, "none", 1) is img
    for style in ("warm", "dim"):
        out = domain_shift(img, style, 1)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(float) - img).mean() > 15  # a real shift, not a nuance
        assert np.array_equal(out, domain_shift(img, style, 1))  # deterministic
        assert not np.array_equal(out, domain_shift(img, style, 2))  # camera style
    warm = domain_shift(img, "warm", 1).reshape(-1, 3).mean(0)
    assert warm[0] > warm[2]  # red over blue
    assert domain_shift(img, "dim", 1).mean() < img.mean()
    with pytest.raises(ValueError, match="unknown domain shift"):
        domain_shift(img, "sepia", 0)
    assert set(DOMAIN_SHIFTS) == {"none", "warm", "dim"}


def test_synthetic_shift_option_changes_pixels_not_layout(tmp_path):
    plain = synthetic.write("dukemtmcreid", str(tmp_path / "a"), ids=2, seed=0)
    warm = synthetic.write("dukemtmcreid", str(tmp_path / "b"), ids=2, seed=0, shift="warm")
    rel = os.path.join("dukemtmc-reid", "DukeMTMC-reID", "query")
    names = sorted(os.listdir(os.path.join(plain, rel)))
    assert names == sorted(os.listdir(os.path.join(warm, rel)))
    from common.data.base import read_image
    a, b = (read_image(os.path.join(r, rel, names[0])) for r in (plain, warm))
    assert np.abs(a.astype(float) - b).mean() > 10


# ------------------------------------------------------------------------ plans of a KD run

def kd_cfg(**kdreid):
    cfg = load_config(os.path.join(recipe.__file__.rsplit("common", 1)[0], "configs", "kdreid_kd.yaml"),
                      ["data.data_path=x", "data.num_pos=2", "kdreid.batch_size=4"], method="kd-reid")
    cfg["kdreid"].update(targets=["dukemtmcreid", "cuhk03"], model_path_teachers=["a", "b"], **kdreid)
    return recipe.finalize(cfg)


def kd_run(**kdreid):
    cfg = kd_cfg(**kdreid)
    streams = [kd.Stream("src", records([4] * 6), 2, 2, 0), kd.Stream("t1", records([2] * 4), 2, 2, 1),
               kd.Stream("t2", records([6] * 4), 2, 2, 2)]
    return KDRun(cfg, None, None, None, 6, "", streams, None, []).setup("osnet_x0_25", None, ["t1", "t2"])


def test_batch_plan_one_source_and_every_target_per_step():
    run = kd_run(target_order="random")
    items, columns = run.plan(3)
    steps = max(s.reference_len for s in run.streams[1:])  # t2: 24 images / 4 = 6
    assert steps == 6 and len(items) == steps
    assert columns[-2:] == ("order", "pass") and len(columns) == 2 + 2 * 2 + 2
    orders = set()
    for parts, (order, p) in items:
        assert [sid for sid, _ in parts] == [0, 1, 2] and p == [0]
        assert sorted(order) == [0, 1]
        orders.add(tuple(order))
    assert orders == {(0, 1), (1, 0)}  # random per batch
    fixed = kd_run(target_order="fixed").plan(3)[0]
    assert all(order == [0, 1] for _, (order, _) in fixed)


def test_sched_per_teacher_runs_t_passes_and_decays_t_times_faster():
    run = kd_run(sched_per_teacher=True, step_size=3)
    items, _ = run.plan(0)
    assert len(items) == 2 * 6 and [e[1][0] for _, e in items] == [0] * 6 + [1] * 6
    lr = run.cfg["optim"]["lr"]
    # StepLR(3) stepped after every pass: epoch 1, pass 1 is scheduler step 3
    assert run.lr_of_pass(0, 1) == pytest.approx(lr) and run.lr_of_pass(1, 1) == pytest.approx(lr * 0.1)
    once = kd_run(step_size=3)
    assert len(once.plan(0)[0]) == 6 and once.lrs(2) == [lr] * 2 and once.lrs(3) == [pytest.approx(lr * 0.1)] * 2


def test_full_plan_targets_one_after_another_in_order():
    run = kd_run(target_alt="full", target_order="random")
    items, columns = run.plan(1)
    assert columns[-1] == "target_index"
    seq = [e[0][0] for _, e in items]
    switch = [i for i in range(1, len(seq)) if seq[i] != seq[i - 1]]
    assert len(switch) == 1 and sorted(set(seq)) == [0, 1]  # two contiguous blocks
    for parts, (t,) in items:
        assert parts[1][0] == 1 + t[0]
    orders = {tuple(dict.fromkeys(e[0][0] for _, e in run.plan(ep)[0])) for ep in range(8)}
    assert orders == {(0, 1), (1, 0)}
    fixed = kd_run(target_alt="full", target_order="fixed")
    assert list(dict.fromkeys(e[0][0] for _, e in fixed.plan(1)[0])) == [0, 1]


def test_finalize_rules():
    cfg = kd_cfg()
    assert cfg["data"]["num_ids"] == 2 and cfg["schedule"]["milestones"] == list(range(5, 50, 5))
    src = load_config(None, ["data.data_path=x"], method="source")
    src = recipe.finalize(copy.deepcopy(dict(src, kdreid=dict(src["kdreid"], fixbase_epochs=-1))))
    assert src["kdreid"]["fixbase_epochs"] == 10  # the intended rule for an MSMT17 source
    assert recipe.finalize(load_config(None, ["data.data_path=x"], method="source"))["kdreid"]["fixbase_epochs"] == 0
    assert kd.protocol_of("cuhk03", cfg) == "cuhk03" and kd.protocol_of("market1501", cfg) == "market1501"
    cfg["kdreid"]["new_cuhk"] = True
    assert kd.protocol_of("cuhk03", cfg) == "market1501"


# ------------------------------------------------------------------------------ CUHK03

def test_cuhk03_new_protocol_without_its_config_stops_before_extracting(tmp_path):
    from common.data.cuhk03 import load_cuhk03
    release = tmp_path / "cuhk03" / "cuhk03_release"
    release.mkdir(parents=True)
    (release / "cuhk-03.mat").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(DatasetLayoutError, match="cuhk03_new_protocol_config_labeled.mat"):
        load_cuhk03(str(tmp_path), labeled=True, classic=False)
    assert sorted(os.listdir(tmp_path / "cuhk03")) == ["cuhk03_release"]  # nothing extracted


def test_cuhk03_mat_is_read_directly(tmp_path):
    pytest.importorskip("h5py", reason="h5py is a project requirement still to be installed (requirements.txt)")
    from common.data.cuhk03 import load_cuhk03
    from common.data.base import read_image
    folders = synthetic.write("cuhk03", str(tmp_path / "f"), ids=3, seed=0)
    mat = synthetic.write("cuhk03", str(tmp_path / "m"), ids=3, seed=0, mat=True)
    assert not os.path.exists(os.path.join(mat, "cuhk03", "images_labeled"))
    for classic in (False, True):
        a, b = load_cuhk03(folders, classic=classic), load_cuhk03(mat, classic=classic)
        for part in ("train", "query", "gallery"):
            ra, rb = getattr(a, part), getattr(b, part)
            assert [(os.path.basename(r.path), r.pid, r.camid) for r in ra] == \
                   [(os.path.basename(r.path), r.pid, r.camid) for r in rb]
            assert all(np.array_equal(read_image(x.path), read_image(y.path)) for x, y in zip(ra, rb))
    assert os.path.isdir(os.path.join(mat, "cuhk03", "images_labeled"))  # extracted once
