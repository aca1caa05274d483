"""Every command-line flag of train.py and test.py has a test asserting its *effect* (what
the flag changes in a run: files, tensors, logged numbers, the message of a refusal), and
the table below names it. ``test_every_flag_has_an_effect_test`` fails when a flag is added
without a row, or when a row names a test that does not exist. The tests of the shared and
MVD flags that no other file covers live here; the VKD rows are in
tests/test_vkd_flag_effects.py, the KD-REID rows in tests/test_kdreid_flag_effects.py.
"""
import ast
import json
import os

import numpy as np
import pytest

import test as test_cli
import train as train_cli
from common.data import synthetic
from test_kdreid_flag_effects import KDREID_EFFECTS
from test_vkd_flag_effects import VKD_EFFECTS
from tiny import TINY, make_sysu, train_argv

TESTS = os.path.dirname(os.path.abspath(__file__))
HERE = "tests/test_flag_effects.py"
CLI = "tests/test_cli_mvd.py"
LOOP = "tests/test_loop_guarantees.py"

TRAIN_EFFECTS = {
    "--method": "tests/test_vkd_cli.py::test_run_folders_hold_what_the_vkd_saver_writes",
    "--config": f"{CLI}::test_each_recipe_trains_and_logs_its_loss_terms",
    "--set": "tests/test_cli_flags.py::test_flags_win_over_set_and_config",
    "--print-config": "tests/test_cli_flags.py::test_print_config_prints_yaml_and_touches_no_data",
    "--dataset": f"{CLI}::test_regdb_trial_training",
    "--data-path": f"{HERE}::test_regdb_trial_picks_the_split_files",
    "--trial": f"{HERE}::test_regdb_trial_picks_the_split_files",
    "--optim": f"{HERE}::test_optim_picks_the_optimizer_and_backend_the_framework",
    "--backend": f"{HERE}::test_optim_picks_the_optimizer_and_backend_the_framework",
    "--lr": f"{HERE}::test_schedule_flags_set_the_rate_of_each_epoch",
    "--epochs": f"{HERE}::test_schedule_flags_set_the_rate_of_each_epoch",
    "--warmup-steps": f"{HERE}::test_schedule_flags_set_the_rate_of_each_epoch",
    "--start-decay": f"{HERE}::test_schedule_flags_set_the_rate_of_each_epoch",
    "--end-decay": f"{HERE}::test_schedule_flags_set_the_rate_of_each_epoch",
    "--device-target": f"{CLI}::test_unavailable_device_is_one_clear_error",
    "--gpu": "tests/test_device_placement.py::test_networks_are_built_on_the_selected_device",
    "--pretrain": f"{CLI}::test_pretrain_flag_loads_the_file_into_the_three_backbones",
    "--resume": f"{LOOP}::test_resume_is_exact_losses_and_parameters",
    "--ckpt": f"{CLI}::test_regdb_trial_training",
    "--loss-func": f"{CLI}::test_loss_func_flag_changes_the_logged_terms",
    "--ms-mode": "tests/test_graph_mode.py::test_ms_mode_decides_whether_the_step_is_compiled",
    "--seed": f"{HERE}::test_seed_decides_the_run",
    "--overwrite": f"{LOOP}::test_overwrite_replaces_the_previous_run",
    "--tensorboard": "tests/test_visualize.py::test_tensorboard_scalars_equal_metrics_jsonl",
    "--amp": "tests/test_amp.py::test_amp_flag_trains_the_run_in_mixed_precision",
}
TEST_EFFECTS = {
    "--method": f"{HERE}::test_test_py_method_must_match_the_checkpoint",
    "--config": f"{CLI}::test_test_py_evaluates_checkpoint_and_takes_set_and_flags",
    "--set": f"{CLI}::test_test_py_evaluates_checkpoint_and_takes_set_and_flags",
    "--print-config": f"{CLI}::test_test_py_evaluates_checkpoint_and_takes_set_and_flags",
    "--dataset": f"{HERE}::test_regdb_trial_picks_the_split_files",
    "--data-path": f"{CLI}::test_test_py_evaluates_checkpoint_and_takes_set_and_flags",
    "--trial": f"{HERE}::test_regdb_trial_picks_the_split_files",
    "--device-target": f"{HERE}::test_test_py_unavailable_device_is_one_clear_error",
    "--gpu": "tests/test_device_placement.py::test_networks_are_built_on_the_selected_device",
    "--resume": f"{CLI}::test_a_converted_checkpoint_gives_the_same_table_in_mindspore",
    "--backend": f"{CLI}::test_a_converted_checkpoint_gives_the_same_table_in_mindspore",
    "--ms-mode": f"{HERE}::test_test_py_ms_mode_is_the_mode_of_the_evaluation",
    "--seed": f"{HERE}::test_test_py_seed_draws_the_sysu_galleries",
    "--trials": f"{CLI}::test_test_py_evaluates_checkpoint_and_takes_set_and_flags",
    "--per-trial": f"{CLI}::test_test_py_evaluates_checkpoint_and_takes_set_and_flags",
}


def _option_names(parser):
    return {a.option_strings[0] for a in parser._actions if a.option_strings and a.option_strings[0] != "-h"}


def _defined_tests(path):
    tree = ast.parse(open(os.path.join(os.path.dirname(TESTS), path)).read())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("program", ["train.py", "test.py"])
def test_every_flag_has_an_effect_test(program):
    parser = train_cli.make_parser()[0] if program == "train.py" else test_cli.make_parser()
    table = {**VKD_EFFECTS, **KDREID_EFFECTS, **(TRAIN_EFFECTS if program == "train.py" else TEST_EFFECTS)}
    missing = sorted(_option_names(parser) - set(table))
    assert not missing, f"{program} flags without an effect test in tests/test_flag_effects.py: {missing}"
    for flag in _option_names(parser):
        path, _, name = table[flag].partition("::")
        assert name in _defined_tests(path), f"{program} {flag}: {table[flag]} does not exist"


# ------------------------------------------------------------------ effect tests


@pytest.fixture(scope="module")
def sysu_root(tmp_path_factory):
    return make_sysu(tmp_path_factory.mktemp("sysu"))


def _records(run):
    return [json.loads(line) for line in open(run / "metrics.jsonl")]


def _run(root, log_dir, backend="torch", recipe="mvd_port", extra=()):
    return train_cli.main(train_argv(root, str(log_dir), backend, recipe, list(extra)))


def test_seed_decides_the_run(sysu_root, tmp_path):
    """The same --seed gives the same initial weights and batches (equal losses); another
    seed gives others."""
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert _run(sysu_root, tmp_path / name, extra=["--epochs", "1", "--seed", str(seed)]) == 0
    a, b, c = (_records(tmp_path / n / "t")[0] for n in "abc")
    assert a["total"] == b["total"] and a["id"] == b["id"]
    assert a["total"] != c["total"]


def test_schedule_flags_set_the_rate_of_each_epoch(sysu_root, tmp_path):
    """Port recipe (cascade decay, backbone at 0.1x): --lr 0.01 --warmup-steps 2
    --start-decay 3 --end-decay 3 gives the 1-based epochs 1..4 the rates 0.005, 0.01,
    0.001, 0.001 (hand-computed from the port's LRScheduler); --epochs 4 trains 4 epochs;
    the optimizer of the last checkpoint holds the last rates."""
    assert _run(sysu_root, tmp_path, extra=["--epochs", "4", "--lr", "0.01", "--warmup-steps", "2",
                                            "--start-decay", "3", "--end-decay", "3",
                                            "--set", "train.eval_every=10"]) == 0
    recs = _records(tmp_path / "t")
    assert [r["epoch"] for r in recs] == [0, 1, 2, 3]
    expected = [0.005, 0.01, 0.001, 0.001]
    for r, base in zip(recs, expected):
        assert max(r["lrs"]) == pytest.approx(base, rel=1e-12)
        assert min(r["lrs"]) == pytest.approx(0.1 * base, rel=1e-12)
    from backends.torch.checkpoint import read_file
    groups = read_file(str(tmp_path / "t" / "torch_last.pth"))[2]["param_groups"]
    assert sorted(g["lr"] for g in groups) == pytest.approx(sorted(recs[-1]["lrs"]), rel=1e-12)


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_optim_picks_the_optimizer_and_backend_the_framework(sysu_root, tmp_path, backend):
    """--optim sgd / adam: the optimizer state saved with the run is SGD's momentum buffer or
    Adam's two moments; --backend: the run's checkpoint is that framework's file."""
    ext = {"torch": "pth", "mindspore": "ckpt"}[backend]
    for optim in ("sgd", "adam"):
        assert _run(sysu_root, tmp_path / optim, backend, extra=["--epochs", "1", "--optim", optim]) == 0
        files = sorted(os.listdir(tmp_path / optim / "t"))
        assert f"{backend}_last.{ext}" in files and not [f for f in files if f.endswith(".pth" if ext == "ckpt"
                                                                                           else ".ckpt")]
        module = __import__(f"backends.{backend}.checkpoint", fromlist=["read_file"])
        state = module.read_file(str(tmp_path / optim / "t" / f"{backend}_last.{ext}"))[2]
        if backend == "torch":
            buffers = {k for s in state["state"].values() for k in s}
        else:
            buffers = {k.split(".")[0] for k in state if "." in k and not k.startswith("lrs.")}
        assert buffers - {"step"} == ({"momentum_buffer"} if optim == "sgd" else {"exp_avg", "exp_avg_sq"})


@pytest.fixture(scope="module")
def regdb_run(tmp_path_factory):
    """A tiny RegDB run (trial 2) and its root."""
    base = tmp_path_factory.mktemp("regdb")
    root = synthetic.write("regdb", str(base / "d"), ids=6, seed=0)
    assert train_cli.main(["--dataset", "RegDB", "--data-path", root, "--trial", "2", "--ckpt", "r",
                           "--config", "configs/mvd_routed.yaml", "--set", f"train.log_dir={base}",
                           "--epochs", "1", "--ms-mode", "PYNATIVE", *TINY]) == 0
    return root, base / "r" / "torch_last.pth"


def test_regdb_trial_picks_the_split_files(regdb_run, tmp_path, capsys):
    """--trial N reads RegDB's idx/*_N.txt from --data-path (--dataset RegDB): with trial 5's
    training list removed, --trial 5 stops naming that file while trial 2 trained; test.py
    --trial 5 without trial 5's test list names that one."""
    root, ck = regdb_run
    os.remove(os.path.join(root, "idx", "train_visible_5.txt"))
    capsys.readouterr()
    assert train_cli.main(["--dataset", "RegDB", "--data-path", root, "--trial", "5", "--ckpt", "r5",
                           "--config", "configs/mvd_routed.yaml", "--set", f"train.log_dir={tmp_path}",
                           "--epochs", "1", *TINY]) == 2
    assert "train_visible_5.txt" in capsys.readouterr().err
    assert test_cli.main(["--dataset", "RegDB", "--data-path", root, "--resume", str(ck), "--trial", "2"]) == 0
    assert "v2t" in capsys.readouterr().out
    os.remove(os.path.join(root, "idx", "test_visible_5.txt"))
    assert test_cli.main(["--dataset", "RegDB", "--data-path", root, "--resume", str(ck), "--trial", "5"]) == 2
    assert "test_visible_5.txt" in capsys.readouterr().err


@pytest.fixture(scope="module")
def sysu_checkpoint(sysu_root, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("run")
    assert _run(sysu_root, log_dir, extra=["--epochs", "1"]) == 0
    return str(log_dir / "t" / "torch_last.pth")


def test_test_py_seed_draws_the_sysu_galleries(sysu_root, sysu_checkpoint, monkeypatch, capsys):
    """test.py --seed is the seed of SYSU-MM01's random gallery draw: the same seed gives the
    same galleries, another seed others."""
    from common.data import cross_modal
    drawn, real = [], cross_modal.test_sets

    def spy(*args, **kwargs):
        sets = list(real(*args, **kwargs))
        drawn.append(tuple(np.asarray(s.gallery).tobytes() for s in sets))
        return sets

    monkeypatch.setattr(cross_modal, "test_sets", spy)
    for seed in ("3", "3", "4"):
        assert test_cli.main(["--data-path", sysu_root, "--resume", sysu_checkpoint, "--seed", seed,
                              "--trials", "1"]) == 0
    assert drawn[0] == drawn[1] and drawn[0] != drawn[2]


def test_test_py_method_must_match_the_checkpoint(sysu_root, sysu_checkpoint, capsys):
    assert test_cli.main(["--data-path", sysu_root, "--resume", sysu_checkpoint, "--method", "vkd"]) == 2
    err = capsys.readouterr().err
    assert "holds a 'mvd' model, not 'vkd'" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_test_py_unavailable_device_is_one_clear_error(sysu_root, sysu_checkpoint, capsys):
    assert test_cli.main(["--data-path", sysu_root, "--resume", sysu_checkpoint, "--device-target", "GPU"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("GPU" in err[0] or "CUDA" in err[0])


@pytest.mark.parametrize("mode", ["PYNATIVE", "GRAPH"])
def test_test_py_ms_mode_is_the_mode_of_the_evaluation(sysu_root, sysu_checkpoint, tmp_path, monkeypatch, mode):
    """test.py --backend mindspore --ms-mode M: MindSpore runs the evaluation in mode M
    (observed when the network is built; the run is stopped there)."""
    ms = pytest.importorskip("mindspore")
    from common.recipes import mvd
    from tools import convert_weights
    ck = str(tmp_path / "m.ckpt")
    assert convert_weights.main([sysu_checkpoint, ck]) == 0
    seen = []

    class Seen(Exception):
        pass

    def spy(cfg, B, num_classes):
        seen.append(ms.get_context("mode"))
        raise Seen

    monkeypatch.setattr(mvd, "build_for_test", spy)
    before = ms.get_context("mode")
    try:
        with pytest.raises(Seen):
            test_cli.main(["--data-path", sysu_root, "--resume", ck, "--backend", "mindspore", "--ms-mode", mode])
    finally:
        ms.set_context(mode=before)
    assert seen == [ms.GRAPH_MODE if mode == "GRAPH" else ms.PYNATIVE_MODE]
