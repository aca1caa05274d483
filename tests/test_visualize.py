"""Pictures and TensorBoard (tools/visualize.py, common/viz, common/engine/board.py): ranked
lists of a tiny trained MVD run (SYSU-MM01, and RegDB from the same checkpoint) and a tiny VKD
teacher, read back pixel by pixel; CMC and training curves against the run's metrics.jsonl;
``train.py --tensorboard`` in both backends against metrics.jsonl; the protobuf trap; bad
input. One torch MVD run, one MindSpore MVD run and one VKD teacher are shared (module
fixtures)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import test as test_cli
import train as train_cli
from common.data import synthetic
from common.engine.board import read_scalars
from common.report import mean_rows, summarize
from common.viz import plots, ranked
from tiny import make_sysu, train_argv
from tools import visualize
from vkd_tiny import make_mars, teacher_argv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TB = ["--tensorboard"]


@pytest.fixture(scope="module")
def sysu_root(tmp_path_factory):
    return make_sysu(tmp_path_factory.mktemp("sysu"))


def _records(run):
    return [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def torch_run(sysu_root, tmp_path_factory):
    """A tiny 2-epoch torch MVD run (evaluated after each epoch) with --tensorboard."""
    pytest.importorskip("torch")
    logs = tmp_path_factory.mktemp("torch_logs")
    assert train_cli.main(train_argv(sysu_root, str(logs), "torch", extra=TB)) == 0
    return str(logs / "t")


@pytest.fixture(scope="module")
def ms_run(sysu_root, tmp_path_factory):
    """A tiny 1-epoch MindSpore (PYNATIVE) MVD run with --tensorboard."""
    pytest.importorskip("mindspore")
    logs = tmp_path_factory.mktemp("ms_logs")
    assert train_cli.main(train_argv(sysu_root, str(logs), "mindspore", extra=TB + ["--epochs", "1"])) == 0
    return str(logs / "t")


# ---------------------------------------------------------------- TensorBoard

def _expected_scalars(records):
    """The scalars --tensorboard must write, built from metrics.jsonl (float32, as stored)."""
    out = {}
    for r in records:
        e = r["epoch"]
        for k, v in r.items():
            if k not in ("epoch", "lrs", "seconds", "eval"):
                out.setdefault(f"loss/{k}", []).append((e, v))
        for g, lr in enumerate(r["lrs"]):
            out.setdefault(f"lr/group{g}", []).append((e, lr))
        out.setdefault("time/epoch_seconds", []).append((e, r["seconds"]))
        for row in r.get("eval", ()):
            for k in ("R1", "R10", "R20", "mAP", "mINP"):
                out.setdefault(f"eval/{row['setting']}/{k}", []).append((e, row[k]))
    return {k: [(e, float(np.float32(v))) for e, v in pairs] for k, pairs in out.items()}


@pytest.mark.parametrize("which", ["torch_run", "ms_run"])
def test_tensorboard_scalars_equal_metrics_jsonl(which, request):
    run = request.getfixturevalue(which)
    records = _records(run)
    assert {"total", "id", "tri", "kl"} <= set(records[0]) and all("eval" in r for r in records)
    assert read_scalars(os.path.join(run, "tensorboard")) == _expected_scalars(records)


def test_import_mindspore_works_after_the_tensorboard_writer(tmp_path):
    """The protobuf trap: tensorboardX loaded first must not break a later ``import mindspore``."""
    pytest.importorskip("mindspore")
    code = ("import sys\nfrom common.engine.board import ScalarBoard, read_scalars\n"
            f"b = ScalarBoard({str(tmp_path)!r})\nb.epoch({{'epoch': 3, 'lrs': [0.5], 'seconds': 1.0, 'total': 2.0}})\n"
            "b.close()\nassert 'mindspore' not in sys.modules and 'google.protobuf' in sys.modules\n"
            "import mindspore\nprint('ok', read_scalars(sys.argv[1])['loss/total'])\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "tensorboard")], cwd=ROOT, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
    assert r.returncode == 0 and "ok [(3, 2.0)]" in r.stdout, r.stderr[-2000:]


def test_overwrite_removes_the_previous_tensorboard_folder(tmp_path):
    from common.engine.rundir import RunDir
    old = tmp_path / "t" / "tensorboard"
    old.mkdir(parents=True)
    (old / "events.out.tfevents.1.host").write_bytes(b"x")
    RunDir(str(tmp_path), "t", {"last": "a", "best": "b"}).start(overwrite=True)
    assert not old.exists()


def test_a_missing_viz_package_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    from common.engine.board import ScalarBoard
    from common.optional import MissingDependency
    for module, call in (("tensorboardX", lambda: ScalarBoard(str(tmp_path))),
                         ("matplotlib", lambda: plots.draw_cmc([], str(tmp_path / "c.png")))):
        monkeypatch.setitem(sys.modules, module, None)
        with pytest.raises(MissingDependency, match=rf"needs the '{module}' package.*reid-kd\[viz\]"):
            call()
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------- CMC in the evaluation rows

def test_evaluation_rows_keep_the_cmc_curve_and_tables_do_not_print_it():
    curve = np.linspace(0.1, 1.0, 50)
    row = summarize({"cmc": curve, "mAP": 0.5, "mINP": 0.25})
    assert row["cmc"] == pytest.approx(100 * curve[:20]) and row["cmc"][0] == row["R1"] and row["cmc"][9] == row["R10"]
    other = summarize({"cmc": curve ** 2, "mAP": 0.1, "mINP": 0.2})
    mean = mean_rows([row, other])
    assert mean["cmc"] == pytest.approx((100 * curve[:20] + 100 * curve[:20] ** 2) / 2) and mean["mAP"] == 30.0
    from common.report import format_table
    assert "cmc" not in format_table([{"setting": "all", **row}], ("setting", "R1", "mAP"))


# ---------------------------------------------------------------- ranked lists

def _ranked_set(ckpt, root, argv=(), setting=None, queries=3):
    args = visualize.ranked_parser().parse_intermixed_args(["--resume", ckpt, "--data-path", root, *argv])
    r = test_cli.resolve(args)
    model, _ = test_cli.load_model(r)
    return r.recipe.ranked_inputs(r.cfg, r.B, model, lambda p: ranked.pick_queries(p, queries), setting)


# frame colours: the query's, a correct match's (green), a wrong one's (red)
FRAME = {None: ranked.QUERY_COLOUR, True: ranked.MATCH_COLOUR, False: ranked.WRONG_COLOUR}
assert np.argmax(FRAME[True]) == 1 and np.argmax(FRAME[False]) == 0


def _check_picture(path, rs, topk):
    """Independent ranking of ``rs`` (stable ascending distance, the protocol's removals) against
    the tiles of the picture at ``path``: order, pids, frame colours read from its pixels."""
    picture = np.asarray(Image.open(path).convert("RGB"))
    rows = ranked.top_k(rs, topk)
    size, tiles = ranked.layout(rs, rows, (128, 64))
    n = 1 + len(rows[0].gallery)
    cell_w, cell_h = 64 + 2 * ranked.BORDER, 128 + 2 * ranked.BORDER
    assert picture.shape[1] == 2 * ranked.MARGIN + n * cell_w + (n - 2) * ranked.GAP + ranked.QUERY_GAP
    assert picture.shape[:2] == (size[1], size[0]) and len(tiles) == n * len(rows)
    seen = set()
    for t in tiles:
        q = rows[t.row].query
        order = np.argsort(rs.dist[q], kind="stable")
        if rs.protocol == "sysu" and rs.q_cams[q] == 2:  # SYSU cam3 queries: no cam2 gallery item
            order = order[rs.g_cams[order] != 1]
        if rs.protocol == "mars":  # no item of the query's identity and camera
            order = order[(rs.g_pids[order] != rs.q_pids[q]) | (rs.g_cams[order] != rs.q_cams[q])]
        if t.rank:
            g = order[t.rank - 1]
            assert (t.pid, t.cam, t.tag) == (rs.g_pids[g], rs.g_cams[g] + 1, rs.g_tags[g])
            assert t.match == (rs.g_pids[g] == rs.q_pids[q])
        left, top, right, bottom = t.box
        for x, y in ((left + 1, top + 1), (right - 2, bottom - 2), (left + 1, bottom - 2)):
            assert tuple(picture[y, x]) == FRAME[t.match], (t, x, y)
        seen.add(t.match)
    return tiles, seen


def test_ranked_lists_of_a_sysu_run(torch_run, sysu_root, tmp_path, capsys):
    ckpt = os.path.join(torch_run, "torch_best.pth")
    out = tmp_path / "pics"
    assert visualize.main(["ranked", ckpt, "--data-path", sysu_root, "--topk", "40", "--queries", "3",
                           "--out", str(out)]) == 0
    written = capsys.readouterr().out.split()
    rs = _ranked_set(ckpt, sysu_root)
    assert rs.setting == "all" and len(rs.q_pids) == 3 and len(set(rs.q_pids)) == 3
    assert written == [str(out / f"all_q{i}_id{p}.png") for i, p in zip(rs.q_index, rs.q_pids)]
    seen = set()
    for k, path in enumerate(written):
        one = ranked.RankedSet(*rs[:2], rs.dist[k:k + 1], rs.query_images[k:k + 1], rs.gallery_images,
                               rs.q_pids[k:k + 1], rs.g_pids, rs.q_cams[k:k + 1], rs.g_cams, rs.q_tags[k:k + 1],
                               rs.g_tags, rs.q_index[k:k + 1])
        tiles, got = _check_picture(path, one, 40)
        seen |= got
        assert [t.tag for t in tiles] == ["IR"] + ["RGB"] * (len(tiles) - 1)
        assert tiles[0].caption[1].endswith(" IR") and all(t.caption[1].endswith(" RGB") for t in tiles[1:])
    assert seen == {None, True, False}  # the query, correct and wrong matches were all drawn


def test_ranked_grid_on_regdb_thermal_to_visible(torch_run, tmp_path, capsys):
    """A SYSU checkpoint evaluated on RegDB (test.py's data.* may change): --setting t2v queries
    IR images against the RGB gallery; --grid writes one picture with a row per query."""
    root = synthetic.write("regdb", str(tmp_path / "regdb"), ids=6, seed=0)
    ckpt = os.path.join(torch_run, "torch_last.pth")
    argv = ["--dataset", "RegDB", "--data-path", root, "--setting", "t2v", "--topk", "5", "--queries", "2",
            "--grid", "--out", str(tmp_path / "g")]
    assert visualize.main(["ranked", ckpt, *argv]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "g" / "t2v_ranked.png")]
    rs = _ranked_set(ckpt, root, ["--dataset", "RegDB"], setting="t2v", queries=2)
    tiles, _ = _check_picture(tmp_path / "g" / "t2v_ranked.png", rs, 5)
    assert [t.row for t in tiles] == [0] * 6 + [1] * 6
    assert {t.tag for t in tiles if t.rank == 0} == {"IR"} and {t.tag for t in tiles if t.rank} == {"RGB"}


def test_ranked_lists_of_a_vkd_teacher_show_first_frames(tmp_path, capsys):
    pytest.importorskip("torch")
    root = make_mars(tmp_path / "data")
    assert train_cli.main(teacher_argv(root, str(tmp_path / "logs"), extra=["--num_epochs", "1"])) == 0
    folder = str(tmp_path / "logs" / "teacher")
    assert visualize.main(["ranked", folder, "--data-path", root, "--setting", "V2V", "--topk", "4",
                           "--query-ids", "2", "4", "--out", str(tmp_path / "v")]) == 0
    rs = _ranked_set(folder, root, ["--method", "vkd"], "V2V", queries=8)
    paths = capsys.readouterr().out.split()
    assert [os.path.basename(p).split("_")[2] for p in paths[-2:]] == ["id2.png", "id4.png"]
    assert all(isinstance(p, str) and os.path.basename(p).endswith("F001.jpg") for p in rs.gallery_images)
    q = [int(np.flatnonzero(rs.q_pids == pid)[0]) for pid in (2, 4)]
    for path, k in zip(paths[-2:], q):
        one = rs._replace(dist=rs.dist[k:k + 1], query_images=rs.query_images[k:k + 1], q_pids=rs.q_pids[k:k + 1],
                          q_cams=rs.q_cams[k:k + 1], q_tags=rs.q_tags[k:k + 1], q_index=rs.q_index[k:k + 1])
        tiles, _ = _check_picture(path, one, 4)
        assert [t.tag for t in tiles] == [""] * 5 and tiles[0].pid == rs.q_pids[k]


def test_pick_queries():
    pids = [5, 5, 7, 3, 7, 9]
    assert ranked.pick_queries(pids, 3).tolist() == [0, 2, 3]
    assert ranked.pick_queries(pids, ids=[9, 7]).tolist() == [5, 2]
    with pytest.raises(Exception, match="identity 4 has no query.*3, 5, 7, 9"):
        ranked.pick_queries(pids, ids=[4])


# ---------------------------------------------------------------- CMC and training curves

def test_cmc_plot_shows_the_runs_curves(torch_run, tmp_path, capsys):
    out = tmp_path / "cmc.png"
    assert visualize.main(["cmc", torch_run, os.path.join(torch_run, "metrics.jsonl"), "--out", str(out),
                           "--labels", "a", "b", "--setting", "indoor"]) == 0
    assert Image.open(out).size == (640, 480)
    last = _records(torch_run)[-1]["eval"][1]
    assert last["setting"] == "indoor" and len(last["cmc"]) == 20
    assert [last["cmc"][r - 1] for r in (1, 10, 20)] == [last["R1"], last["R10"], last["R20"]]
    curve = plots.cmc_curve(plots.load_run(torch_run, "a"), "indoor")
    assert curve.x.tolist() == list(range(1, 21)) and curve.y.tolist() == last["cmc"]
    first = plots.cmc_curve(plots.load_run(torch_run), epoch=0)
    assert first.y.tolist() == _records(torch_run)[0]["eval"][0]["cmc"] and "(all, epoch 0)" in first.label
    fig = plots.draw_cmc([curve, first], str(tmp_path / "again.png"))
    lines = plots.ranks_and_values(fig)
    assert [ln[2].tolist() for ln in lines] == [curve.y.tolist(), first.y.tolist()]


def test_curves_plot_shows_every_logged_number(torch_run, tmp_path):
    out = tmp_path / "curves.png"
    assert visualize.main(["curves", torch_run, "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 0
    recs = _records(torch_run)
    panels = plots.training_panels([plots.load_run(torch_run)])
    terms = [k for k in recs[0] if k not in ("epoch", "lrs", "seconds", "eval")]
    assert list(panels)[:len(terms)] == [f"loss: {k}" for k in terms]
    for k in terms:
        (c,) = panels[f"loss: {k}"]
        assert c.x.tolist() == [0, 1] and c.y.tolist() == [r[k] for r in recs]
    assert [c.y.tolist() for c in panels["learning rate"]] == [[r["lrs"][g] for r in recs] for g in range(2)]
    for m in ("R1", "R10", "R20", "mAP", "mINP"):
        got = {c.label.split(": ")[1]: c.y.tolist() for c in panels[f"eval: {m}"]}
        assert got == {s: [r["eval"][i][m] for r in recs] for i, s in enumerate(("all", "indoor"))}
    drawn = plots.ranks_and_values(plots.draw_curves(panels, str(tmp_path / "again.png")))
    assert [(t, y.tolist()) for t, _, y in drawn] == [(n, c.y.tolist()) for n, cs in panels.items() for c in cs]


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("argv, words", [
    (["ranked", "{tmp}/none.pth", "--data-path", "{tmp}"], "checkpoint '{tmp}/none.pth' not found"),
    (["ranked", "{tmp}", "--data-path", "{tmp}"], "is a folder but not a VKD run folder"),
    (["cmc", "{tmp}/nowhere", "--out", "{tmp}/c.png"], "run '{tmp}/nowhere' not found"),
    (["curves", "{tmp}", "--out", "{tmp}/c.png"], "'{tmp}' holds no metrics.jsonl"),
    (["cmc", "{tmp}/empty.jsonl", "--out", "{tmp}/c.png"], "holds no epoch yet"),
    (["cmc", "{tmp}/noeval.jsonl", "--out", "{tmp}/c.png"], "holds no evaluation yet"),
    (["curves", "{tmp}/bad.jsonl", "--out", "{tmp}/c.png"], "line 2 of"),
    (["cmc", "{tmp}/noeval.jsonl", "{tmp}/empty.jsonl", "--out", "{tmp}/c.png", "--labels", "x"],
     "--labels gives 1 label(s) for 2 run(s)"),
    (["draw"], "expected a command, one of ranked, cmc, curves"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "noeval.jsonl").write_text(json.dumps({"epoch": 0, "lrs": [0.1], "total": 1.0}) + "\n")
    (tmp_path / "bad.jsonl").write_text('{"epoch": 0}\nnot json\n')
    assert visualize.main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and words.format(tmp=tmp_path) in err
    assert not (tmp_path / "c.png").exists()


def test_cmc_of_an_unknown_setting_or_epoch(torch_run, tmp_path, capsys):
    for extra, words in ((["--setting", "v2t"], "has no setting 'v2t'; it has all, indoor"),
                         (["--epoch", "7"], "epoch 7 was not evaluated; evaluated epochs: 0, 1")):
        assert visualize.main(["cmc", torch_run, "--out", str(tmp_path / "c.png"), *extra]) == 2
        assert words in capsys.readouterr().err
