"""train.py / test.py end to end on a tiny synthetic SYSU-MM01 and RegDB: the three MVD
recipes, test.py's configuration layers and refusals, cross-framework evaluation, importing
the original code's checkpoints, --pretrain, bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import test as test_cli
import train as train_cli
from common.data import synthetic
from tiny import TINY, make_sysu, train_argv

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sysu_root(tmp_path_factory):
    return make_sysu(tmp_path_factory.mktemp("sysu"))


def _train(root, log_dir, backend="torch", recipe="mvd_routed", extra=()):
    return train_cli.main(train_argv(root, str(log_dir), backend, recipe, list(extra)))


def _records(run):
    return [json.loads(line) for line in open(run / "metrics.jsonl")]


@pytest.mark.parametrize("recipe, terms", [("mvd_port", {"total", "id", "tri", "vsd", "vcd"}),
                                           ("mvd_original", {"total", "ce", "rank", "cml", "vsd", "vcd"}),
                                           ("mvd_routed", {"total", "id", "tri", "kl"})])
def test_each_recipe_trains_and_logs_its_loss_terms(sysu_root, tmp_path, recipe, terms, capsys):
    assert _train(sysu_root, tmp_path, recipe=recipe, extra=["--epochs", "1"]) == 0
    run = tmp_path / "t"
    rec = _records(run)[0]
    assert terms <= set(rec) and all(np.isfinite(rec[k]) for k in terms)
    assert (run / "torch_last.pth").is_file() and (run / "torch_best.pth").is_file()
    out = capsys.readouterr().out
    assert "R1" in out and "indoor" in out


def test_loss_func_flag_changes_the_logged_terms(sysu_root, tmp_path):
    """--loss-func id drops the triplet; id+tri+kldiv adds 2 VSD + 2 VCD (port recipe)."""
    for name, func in (("a", "id"), ("b", "id+tri+kldiv")):
        assert _train(sysu_root, tmp_path / name, recipe="mvd_port", extra=["--epochs", "1", "--loss-func", func]) == 0
    a, b = _records(tmp_path / "a" / "t")[0], _records(tmp_path / "b" / "t")[0]
    assert a["tri"] == 0.0 and a["vsd"] == a["vcd"] == 0.0 and b["tri"] > 0 and b["vsd"] != 0.0 and b["vcd"] != 0.0


def test_test_py_evaluates_checkpoint_and_takes_set_and_flags(sysu_root, tmp_path, capsys):
    assert _train(sysu_root, tmp_path, extra=["--epochs", "1"]) == 0
    capsys.readouterr()
    ck = str(tmp_path / "t" / "torch_last.pth")
    assert test_cli.main(["--data-path", sysu_root, "--resume", ck, "--trials", "2", "--per-trial",
                          "--set", "mvd.test_feature=all", "--set", "data.test_batch=7", "--print-config"]) == 0
    import yaml
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["mvd"]["test_feature"] == "all" and cfg["data"]["test_batch"] == 7 and cfg["data"]["eval_trials"] == 2
    assert test_cli.main(["--data-path", sysu_root, "--resume", ck, "--trials", "2", "--per-trial"]) == 0
    out = capsys.readouterr().out
    assert "all/trial1" in out and "indoor" in out


def test_test_py_refuses_keys_that_shape_the_model(sysu_root, tmp_path, capsys):
    assert _train(sysu_root, tmp_path, extra=["--epochs", "1"]) == 0
    capsys.readouterr()
    ck = str(tmp_path / "t" / "torch_last.pth")
    assert test_cli.main(["--data-path", sysu_root, "--resume", ck, "--set", "mvd.z_dim=4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mvd.z_dim" in err[0] and "mvd.test_feature" in err[0]


@pytest.mark.parametrize("argv, fragment", [
    (["--dataset", "SYSU", "--data-path", "/nonexistent/sysu"], "/nonexistent/sysu"),
    (["--dataset", "SYSU"], "--data-path"),
])
def test_train_bad_input_one_line_exit_2(argv, fragment, tmp_path, capsys):
    assert train_cli.main(argv + ["--set", f"train.log_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and fragment in err[0]


def test_unknown_flag_values_rejected():
    for argv in (["--optim", "rmsprop"], ["--loss-func", "id+kl"], ["--backend", "jax"],
                 ["--device-target", "TPU"], ["--method", "vkd-unknown"]):
        r = subprocess.run([sys.executable, "train.py", *argv], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.parametrize("flag, value, key", [("--trials", "-1", "data.eval_trials"),
                                              ("--trials", "0", "data.eval_trials"),
                                              ("--set", "data.test_batch=0", "data.test_batch")])
def test_test_py_bad_numbers_are_one_line_before_reading_anything(tmp_path, capsys, flag, value, key):
    assert test_cli.main(["--data-path", str(tmp_path), "--resume", str(tmp_path / "x.pth"), flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and ">= 1" in err[0]


def test_test_py_rejects_missing_checkpoint(sysu_root, tmp_path, capsys):
    assert test_cli.main(["--data-path", sysu_root, "--resume", str(tmp_path / "none.pth")]) == 2
    assert "none.pth" in capsys.readouterr().err


def test_regdb_trial_training(tmp_path):
    root = synthetic.write("regdb", str(tmp_path / "d"), ids=6, seed=0)
    assert train_cli.main(["--dataset", "RegDB", "--data-path", root, "--trial", "2", "--ckpt", "r",
                           "--config", "configs/mvd_routed.yaml", "--set", f"train.log_dir={tmp_path}",
                           "--epochs", "1", *TINY]) == 0
    rows = _records(tmp_path / "r")[0]["eval"]
    assert [r["setting"] for r in rows] == ["v2t", "t2v"]


@pytest.mark.parametrize("recipe", ["mvd_port", "mvd_routed"])
def test_a_converted_checkpoint_gives_the_same_table_in_mindspore(sysu_root, tmp_path, recipe, capsys):
    """Train with torch, convert to MindSpore, evaluate with both: the same metrics."""
    assert _train(sysu_root, tmp_path, recipe=recipe, extra=["--epochs", "1"]) == 0
    ck = str(tmp_path / "t" / "torch_last.pth")
    ms = str(tmp_path / "converted.ckpt")
    from tools import convert_weights
    assert convert_weights.main([ck, ms]) == 0
    capsys.readouterr()
    assert test_cli.main(["--data-path", sysu_root, "--resume", ck, "--trials", "1"]) == 0
    out_t = capsys.readouterr().out.splitlines()[-2:]
    assert test_cli.main(["--data-path", sysu_root, "--resume", ms, "--trials", "1", "--backend", "mindspore",
                          "--ms-mode", "PYNATIVE"]) == 0
    out_m = capsys.readouterr().out.splitlines()[-2:]
    assert out_t == out_m


def test_wrong_backend_checkpoint_is_one_clear_error(sysu_root, tmp_path, capsys):
    assert _train(sysu_root, tmp_path, extra=["--epochs", "1"]) == 0
    capsys.readouterr()
    ck = str(tmp_path / "t" / "torch_last.pth")
    assert test_cli.main(["--data-path", sysu_root, "--resume", ck, "--backend", "mindspore"]) == 2
    err = capsys.readouterr().err
    assert "torch checkpoint" in err and "tools.convert_weights" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_unavailable_device_is_one_clear_error(sysu_root, tmp_path, capsys):
    assert _train(sysu_root, tmp_path, extra=["--device-target", "GPU", "--gpu", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("GPU" in err[0] or "CUDA" in err[0])
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_pretrain_flag_loads_the_file_into_the_three_backbones(sysu_root, tmp_path, backend, capsys):
    """--pretrain takes a torchvision-named ResNet file (.safetensors: the MindSpore backend
    reads it without torch); after 0 training steps the backbones equal the file."""
    from safetensors.numpy import save_file
    import backends
    B = backends.get(backend)
    rng = np.random.default_rng(1)
    ref = {k: (rng.uniform(0.5, 1.5, v.shape) if k.endswith(("running_var", "bn1.weight", "bn2.weight"))
               else 0.05 * rng.standard_normal(v.shape)).astype(np.float32)
           for k, v in B.weights.state_to_numpy(B.backbones.ResNet(depth=18, width=4)).items()}
    path = str(tmp_path / "r18.safetensors")
    save_file(dict(ref, **{"fc.weight": np.zeros((10, 32), np.float32)}), path)
    # a learning rate of ~0 keeps the loaded weights: the checkpoint then shows what was loaded
    extra = ["--epochs", "1", "--pretrain", path, "--set", "data.max_batches=1", "--lr", "1e-30"]
    assert _train(sysu_root, tmp_path, backend, extra=extra) == 0
    state = B.checkpoint.read_file(str(tmp_path / "t" / f"{backend}_last{'.pth' if backend == 'torch' else '.ckpt'}"))[0]
    for enc in ("visible", "infrared", "shared"):
        for k in ("conv1.weight", "layer4.1.conv2.weight", "layer2.0.downsample.0.weight"):
            np.testing.assert_allclose(state[f"{enc}.backbone.{k}"], ref[k], rtol=0, atol=1e-6)
    bad = str(tmp_path / "missing.safetensors")
    capsys.readouterr()
    assert _train(sysu_root, tmp_path / "b", backend, extra=["--epochs", "1", "--pretrain", bad]) == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_no_pretrain_warns_once_for_a_full_size_resnet50(sysu_root, tmp_path, capsys):
    extra = ["--epochs", "1", "--set", "model.arch=resnet50", "--set", "model.width=64", "--set", "data.max_batches=1"]
    assert _train(sysu_root, tmp_path, recipe="mvd_port", extra=extra) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "from scratch" in line]
    assert len(lines) == 1 and "4-5 points" in lines[0] and "resnet50" in lines[0]
