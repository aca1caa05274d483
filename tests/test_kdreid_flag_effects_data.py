"""The effect of the KD-REID flags that choose and shape the training data and the evaluation
sets (the other flags, and the table ``KDREID_EFFECTS`` of them all:
tests/test_kdreid_flag_effects.py), each passed on the command line of train.py on a tiny
synthetic root (tests/kdreid_tiny.py). The recipe's streams, batches and evaluation sets are
read from the run ``vkd_tiny.build_only`` returns (train.py stopped at the recipe's build)."""
import os

import pytest

from common.data.registry import load_image_dataset
from kdreid_tiny import argv, ck, kd_argv, root, state  # noqa: F401 (ck, root: module fixtures)
from vkd_tiny import build_only as _build

pytest.importorskip("torch")


def _rows(records):
    return [(r.path, r.pid, r.camid) for r in records]


def _split(root, name, classic=True):
    return load_image_dataset(name, root, **({"labeled": True, "classic": classic} if name == "cuhk03" else {}))


def test_dataset_flags_pick_the_training_streams_and_evaluation_sets(root, ck, tmp_path):
    """--data-dir DIR (or the README's -data-dir): every image is read under DIR; -ds: the
    source stream (several sources summed, pids offset, for source training); -dt: kd-reid's
    target streams in -dt order, dmmd's one blended target stream, and the evaluation sets
    (the source's own test set for source training without targets)."""
    other = tmp_path / "other_root"
    other.mkdir()
    for name in os.listdir(root):
        os.symlink(os.path.join(root, name), other / name)
    data = {n: _split(str(other), n) for n in ("market1501", "dukemtmcreid", "cuhk03")}
    b = _build(kd_argv(other, tmp_path, ck, "-ds", "dukemtmcreid", targets=("market1501", "cuhk03")))
    assert b.cfg["data"]["data_path"] == str(other)
    streams = b.run.streams
    assert [s.name for s in streams] == ["dukemtmcreid", "market1501", "cuhk03"]
    for s, name in zip(streams, ("dukemtmcreid", "market1501", "cuhk03")):
        assert _rows(s.records) == _rows(data[name].train) and s.records[0].path.startswith(str(other))
    assert [(e.name, e.protocol) for e in b.run.sets] == [("market1501", "market1501"), ("cuhk03", "cuhk03")]
    for e in b.run.sets:
        assert _rows(e.query) == _rows(data[e.name].query) and _rows(e.gallery) == _rows(data[e.name].gallery)
    # source training on two sources: one stream, pids of the second offset by the first's 4
    b = _build(argv("source", root, tmp_path, "-a", "osnet_x0_25", "-ds", "market1501", "dukemtmcreid",
                    "-data-dir", str(other)))
    (stream,) = b.run.streams
    expected = _rows(data["market1501"].train) + [(p, pid + 4, c) for p, pid, c in _rows(data["dukemtmcreid"].train)]
    assert _rows(stream.records) == expected and b.run.num_classes == 8
    assert state(b, b.run.model)["classifier.weight"].shape[0] == 8
    assert [e.name for e in b.run.sets] == ["market1501", "dukemtmcreid"]
    # dmmd: the targets blended into one stream
    b = _build(argv("dmmd", root, tmp_path, "-a", "osnet_x0_25", "-dt", "cuhk03", "dukemtmcreid"))
    assert [s.name for s in b.run.streams] == ["market1501", "cuhk03+dukemtmcreid"]
    assert [r.pid for r in b.run.streams[1].records] == [r.pid for r in _split(root, "cuhk03").train] + \
        [r.pid + 4 for r in _split(root, "dukemtmcreid").train]
    assert [e.name for e in b.run.sets] == ["cuhk03", "dukemtmcreid"]


def _assert_p_by_k(pids, P, K):
    by_id = pids.reshape(P, K)
    assert (by_id == by_id[:, :1]).all() and len(set(by_id[:, 0].tolist())) == P, pids


def test_batch_size_and_num_instances_lay_out_p_by_k_batches(root, ck, tmp_path):
    """-b B --num-instances K: every batch of the source and of each target holds B / K
    identities x K images, identity-major (torchreid RandomIdentitySampler)."""
    for batch_size, K in ((6, 3), (8, 2)):
        b = _build(kd_argv(root, tmp_path, ck, "-b", str(batch_size), "--num-instances", str(K)))
        assert (b.cfg["data"]["num_ids"], b.cfg["data"]["num_pos"]) == (batch_size // K, K)
        for batch in b.run.batches(0):
            for images, pids in ((batch[0], batch[1]), (batch[2], batch[3]), (batch[4], batch[5])):
                assert images.shape == (batch_size, 3, 64, 32)
                _assert_p_by_k(pids, batch_size // K, K)


def test_height_and_width_size_the_training_and_test_images(root, tmp_path, monkeypatch):
    """--height 48 --width 24: training batches and the images the evaluation extracts are
    48 x 24; (-j 2: the training and test loaders are asked for 2 workers, the key VKD's -j
    test covers)."""
    b = _build(argv("source", root, tmp_path, "-a", "osnet_x0_25", "--height", "48", "--width", "24", "-j", "2"))
    workers, shapes = [], []
    make_loader, extract = b.B.data.make_loader, b.B.kdreid.extract

    def loader_spy(source, epoch, n):
        workers.append(n)
        return make_loader(source, epoch, 0)

    def extract_spy(model, images, batch_size=64):
        shapes.append(images.shape[1:])
        return extract(model, images, batch_size)
    monkeypatch.setattr(b.B.data, "make_loader", loader_spy)
    monkeypatch.setattr(b.B.kdreid, "extract", extract_spy)
    assert next(iter(b.run.batches(0)))[0].shape == (4, 3, 48, 24)
    rows = b.run.evaluate()
    assert [r["setting"] for r in rows] == ["market1501"] and shapes and set(shapes) == {(3, 48, 24)}
    assert workers == [2, 2, 2]  # the training batches, the query, the gallery


def test_new_cuhk_picks_the_cuhk03_split_and_its_protocol(root, tmp_path, monkeypatch):
    """MTDA's scripts: ``cuhk03_classic_split = not args.new_cuhk`` (labelled boxes). Without
    --new-cuhk the classic split 0 (query = gallery = the test identities' images), evaluated
    with the single-gallery-shot metric; with it the 767/700 protocol's split (query and
    gallery disjoint), evaluated as Market-1501. The CUHK03 training stream follows."""
    from common import metrics
    protocols = []
    evaluate = metrics.evaluate_features

    def spy(*args, **kwargs):
        protocols.append(kwargs["protocol"])
        return evaluate(*args, **kwargs)
    monkeypatch.setattr(metrics, "evaluate_features", spy)
    for flags, classic, protocol in (((), True, "cuhk03"), (("--new-cuhk",), False, "market1501")):
        b = _build(argv("dmmd", root, tmp_path, "-a", "osnet_x0_25", "-dt", "cuhk03", *flags))
        split = _split(root, "cuhk03", classic)
        (s,) = b.run.sets
        assert s.protocol == protocol and _rows(s.query) == _rows(split.query)
        assert _rows(s.gallery) == _rows(split.gallery) and _rows(b.run.streams[1].records) == _rows(split.train)
        assert all(os.sep + "images_labeled" + os.sep in r.path for r in s.query)
        overlap = set(_rows(s.query)) & set(_rows(s.gallery))
        assert (overlap == set(_rows(s.query))) if classic else not overlap
        b.run.evaluate()
        assert protocols[-1] == protocol
    assert len(_split(root, "cuhk03", True).query) != len(_split(root, "cuhk03", False).query)
