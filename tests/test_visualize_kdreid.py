"""``python -m tools.visualize ranked`` on a KD-REID checkpoint (the recipe hook
``common/recipes/kdreid.py`` ``ranked_inputs``): a tiny source model (tests/kdreid_tiny.py)
drawn on its own Market-1501 test set and, with test.py's ``--set kdreid.targets=[...]``, on
the targets DukeMTMC-reID and CUHK03. Each picture is read back pixel by pixel against an
independent ranking: the test features recomputed here, squared Euclidean distances, the
protocol's removals written out here (same identity and camera; on the classic CUHK03 split the
single-gallery-shot draw of the evaluation's first repeat, whose rank-1 rate over all queries
is the metric's Rank-1 with that one repeat)."""
import os

import numpy as np
import pytest
from PIL import Image

import test as test_cli
import train as train_cli
from common.metrics import evaluate
from common.viz import ranked
from kdreid_tiny import argv, make_data
from tests.parity.tolerances import FORWARD_MAX_REL
from tools import visualize

pytest.importorskip("torch")
TILE = (128, 64)
FRAME = {None: ranked.QUERY_COLOUR, True: ranked.MATCH_COLOUR, False: ranked.WRONG_COLOUR}
# (test.py reads --set before the checkpoint: a recipe's section needs its --method)
TARGETS = ["--method", "source", "--set", "kdreid.targets=[dukemtmcreid,cuhk03]"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("kd_data"))


@pytest.fixture(scope="module")
def ckpt(root, tmp_path_factory):
    """A tiny OSNet source model (one epoch on Market-1501)."""
    logs = tmp_path_factory.mktemp("kd_logs")
    assert train_cli.main(argv("source", root, logs, "-a", "osnet_x0_25", "--epochs", "1")) == 0
    return str(logs / "run" / "torch_best.pth")


def _ranked_set(ckpt, root, extra=(), setting=None, queries=3):
    """(the hook's RankedSet, the loaded model)."""
    args = visualize.ranked_parser().parse_intermixed_args(["--resume", ckpt, "--data-path", root, *extra])
    r = test_cli.resolve(args)
    model, _ = test_cli.load_model(r)
    select = (lambda p: ranked.pick_queries(p, queries)) if queries else None
    return r.recipe.ranked_inputs(r.cfg, r.B, model, select, setting), model


def _features(model, paths):
    """The evaluation's test features, recomputed: resize to 64 x 32 (bilinear), ImageNet
    normalisation, the L2-normalised embedding."""
    import torch
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    images = [(np.asarray(Image.open(p).convert("RGB").resize((32, 64), Image.BILINEAR)) / 255.0 - mean) / std
              for p in paths]
    x = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).astype(np.float32))
    model.eval()
    with torch.no_grad():
        emb = model(x)[1].double().numpy()  # (logits, embedding)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def _check_distances(rs, model):
    qf, gf = _features(model, rs.query_images), _features(model, rs.gallery_images)
    # features of unit length: a forward's relative error is the distances' absolute one
    np.testing.assert_allclose(rs.dist, ((qf[:, None] - gf[None]) ** 2).sum(-1), rtol=0, atol=FORWARD_MAX_REL)


def _expected(rs, q, single_shot):
    """Gallery indices of query row ``q``'s ranking: ascending distance (stable), same identity
    and camera removed; single_shot: per identity only its kept item of highest priority in the
    first draw (``np.random.default_rng(0).random((10, G))[0]``)."""
    order = [int(g) for g in np.argsort(rs.dist[q], kind="stable")
             if not (rs.g_pids[g] == rs.q_pids[q] and rs.g_cams[g] == rs.q_cams[q])]
    if single_shot:
        prio = np.random.default_rng(0).random((10, len(rs.g_pids)))[0]
        best = {}
        for g in order:
            pid = int(rs.g_pids[g])
            if pid not in best or prio[g] > prio[best[pid]]:
                best[pid] = g
        order = [g for g in order if best[int(rs.g_pids[g])] == g]
    return order


def _check_picture(path, rs, rows, topk, single_shot):
    """Tiles of the picture at ``path`` (query row ``rows[i]`` of ``rs`` on picture row i)
    against :func:`_expected`: identity, camera, frame colour and the image inside."""
    picture = np.asarray(Image.open(path).convert("RGB"))
    drawn = ranked.top_k(rs._replace(dist=rs.dist[rows], q_pids=rs.q_pids[rows], q_cams=rs.q_cams[rows],
                                     query_images=[rs.query_images[i] for i in rows], q_index=rs.q_index[rows],
                                     q_tags=[rs.q_tags[i] for i in rows]), topk)
    size, tiles = ranked.layout(rs, drawn, TILE)
    assert picture.shape[:2] == (size[1], size[0])
    for t in tiles:
        q = rows[t.row]
        if t.rank:
            g = _expected(rs, q, single_shot)[t.rank - 1]
            image, match = rs.gallery_images[g], bool(rs.g_pids[g] == rs.q_pids[q])
            assert (t.pid, t.cam) == (rs.g_pids[g], rs.g_cams[g] + 1)
        else:
            image, match = rs.query_images[q], None
        left, top, right, bottom = t.box
        for x, y in ((left + 1, top + 1), (right - 2, bottom - 2), (left + 1, bottom - 2)):
            assert tuple(picture[y, x]) == FRAME[match], (t, x, y)
        inside = picture[top + ranked.BORDER:bottom - ranked.BORDER, left + ranked.BORDER:right - ranked.BORDER]
        np.testing.assert_array_equal(inside, np.asarray(Image.open(image).convert("RGB").resize(
            (TILE[1], TILE[0]), Image.BILINEAR)))
    assert [len(_expected(rs, q, single_shot)[:topk]) for q in rows] == \
        [sum(1 for t in tiles if t.row == i and t.rank) for i in range(len(rows))]
    return {t.match for t in tiles}


def test_ranked_lists_of_a_source_model_on_its_test_set(ckpt, root, tmp_path, capsys):
    """Default setting: the source's own Market-1501 test set (what the source model was
    evaluated on); one PNG per query, the same-identity same-camera items left out."""
    out = tmp_path / "pics"
    capsys.readouterr()
    assert visualize.main(["ranked", ckpt, "--data-path", root, "--topk", "30", "--queries", "3",
                           "--out", str(out)]) == 0
    written = capsys.readouterr().out.split()
    rs, model = _ranked_set(ckpt, root)
    assert rs.setting == "market1501" and rs.protocol == "market1501" and len(set(rs.q_pids)) == 3
    assert written == [str(out / f"market1501_q{i}_id{p}.png") for i, p in zip(rs.q_index, rs.q_pids)]
    _check_distances(rs, model)
    seen = set()
    for k, path in enumerate(written):
        seen |= _check_picture(path, rs, [k], 30, single_shot=False)
        own = [g for g in np.flatnonzero(rs.g_pids == rs.q_pids[k]) if rs.g_cams[g] == rs.q_cams[k]]
        assert own and not set(own) & set(_expected(rs, k, False))  # there were items to remove
    assert seen == {None, True, False}


def test_ranked_cuhk03_classic_split_is_the_first_single_gallery_shot_draw(ckpt, root, tmp_path, capsys):
    """--set kdreid.targets=[dukemtmcreid,cuhk03] --setting cuhk03 (classic split: query =
    gallery): each row holds one image per identity, never the query's view, the draw of the
    evaluation's first repeat; over all queries the rank-1 hit rate of the picture is the
    metric's Rank-1 with that single repeat. --grid: one picture, a row per query."""
    out = tmp_path / "g"
    assert visualize.main(["ranked", ckpt, "--data-path", root, *TARGETS, "--setting", "cuhk03", "--grid",
                           "--topk", "10", "--queries", "100", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "cuhk03_ranked.png")]
    rs, model = _ranked_set(ckpt, root, TARGETS, "cuhk03", queries=0)  # every query
    assert rs.protocol == "cuhk03" and list(rs.q_index) == list(range(16)) and rs.query_images == rs.gallery_images
    _check_distances(rs, model)
    drawn = [0, 4, 8, 12]  # the first query of each identity
    _check_picture(out / "cuhk03_ranked.png", rs, drawn, 10, single_shot=True)
    for q in range(16):
        row = _expected(rs, q, True)
        assert len(row) == 4 and sorted(rs.g_pids[row]) == sorted(set(rs.g_pids))  # one image per identity
        assert all(rs.g_cams[g] != rs.q_cams[q] for g in row if rs.g_pids[g] == rs.q_pids[q])
    first = [row.matches[0] for row in ranked.top_k(rs, 1)]
    assert first == [rs.g_pids[_expected(rs, q, True)[0]] == rs.q_pids[q] for q in range(16)]
    metric = evaluate(rs.dist, rs.q_pids, rs.g_pids, rs.q_cams, rs.g_cams, protocol="cuhk03", num_repeats=1)
    assert np.mean(first) == pytest.approx(metric["cmc"][0], abs=1e-12) and 0 < np.mean(first) < 1
    # the new protocol (--set kdreid.new_cuhk=true) is evaluated as Market-1501: no draw
    new, _ = _ranked_set(ckpt, root, [*TARGETS, "--set", "kdreid.new_cuhk=true"], "cuhk03", queries=100)
    assert new.protocol == "market1501"
    rows = ranked.top_k(new, 100)
    assert [list(row.gallery) for row in rows] == [_expected(new, q, False) for q in range(len(rows))]
    assert max(len(row.gallery) for row in rows) > len(set(new.g_pids))  # identities repeat


def test_ranked_targets_are_the_settings_and_an_unknown_one_is_one_line(ckpt, root, tmp_path, capsys):
    """A setting per evaluated data set: dukemtmcreid is the first of the targets; a data set
    the checkpoint is not evaluated on is refused in one line naming the settings."""
    rs, _ = _ranked_set(ckpt, root, TARGETS, queries=2)
    assert rs.setting == "dukemtmcreid" and rs.protocol == "market1501" and "DukeMTMC-reID" in rs.gallery_images[0]
    capsys.readouterr()
    assert visualize.main(["ranked", ckpt, "--data-path", root, *TARGETS, "--setting", "msmt17",
                           "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown setting 'msmt17'; this checkpoint's evaluation has dukemtmcreid, cuhk03" in err
    assert not os.path.exists(tmp_path / "x")
