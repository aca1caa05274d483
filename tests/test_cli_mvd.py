"""train.py / test.py end to end on a tiny synthetic SYSU-MM01 and RegDB (SPEC 9)."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pre_process_sysu
import test as test_cli
import train as train_cli
from common.data import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--set", "model.depth=18", "--set", "model.width=4", "--set", "model.z_dim=8",
        "--set", "model.ib_hidden=[16,8]", "--set", "model.cls_hidden=8", "--set", "model.dropout=0.0",
        "--set", "data.height=32", "--set", "data.width=16", "--set", "data.num_ids=3",
        "--set", "data.num_pos=2", "--set", "data.max_batches=2", "--set", "data.eval_trials=1",
        "--set", "data.test_batch=64"]


@pytest.fixture(scope="module")
def sysu_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("sysu")
    root = synthetic.write("sysu", str(out), ids=6, seed=0)
    pre_process_sysu.preprocess(root, 32, 16)
    return root


def _train(args, tmp_path, backend="torch", extra=()):
    return train_cli.main(["--dataset", "SYSU", "--data-path", args, "--backend", backend, "--ckpt", "t",
                           "--set", f"train.log_dir={tmp_path}", "--epochs", "2", "--warmup-steps", "1",
                           "--loss-func", "id+tri+kldiv", *TINY, *extra])


def test_train_writes_checkpoints_config_and_log_then_resumes(sysu_root, tmp_path, capsys):
    assert _train(sysu_root, tmp_path) == 0
    run = tmp_path / "t"
    assert (run / "torch_last.pth").is_file() and (run / "torch_best.pth").is_file()
    assert (run / "config.yaml").is_file() and (run / "train.log").is_file()
    epochs = [json.loads(l)["epoch"] for l in open(run / "metrics.jsonl")]
    assert epochs == [0, 1]
    assert not glob.glob(str(run / "*.tmp*"))
    out = capsys.readouterr().out
    assert "R1" in out and "mINP" in out and "indoor" in out
    # resume: extend to 3 epochs, only epoch 2 runs
    assert _train(sysu_root, tmp_path, extra=["--resume", str(run / "torch_last.pth"), "--epochs", "3"]) == 0
    epochs = [json.loads(l)["epoch"] for l in open(run / "metrics.jsonl")]
    assert epochs == [0, 1, 2]


def test_resume_continues_exactly(sysu_root, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(sysu_root, a, extra=["--epochs", "2"]) == 0
    assert _train(sysu_root, b, extra=["--epochs", "1"]) == 0
    assert _train(sysu_root, b, extra=["--epochs", "2", "--resume", str(b / "t" / "torch_last.pth")]) == 0
    la = [json.loads(l) for l in open(a / "t" / "metrics.jsonl")]
    lb = [json.loads(l) for l in open(b / "t" / "metrics.jsonl")]
    assert la[1]["total"] == pytest.approx(lb[1]["total"], rel=1e-5)


def test_test_py_evaluates_checkpoint(sysu_root, tmp_path, capsys):
    assert _train(sysu_root, tmp_path, extra=["--epochs", "1"]) == 0
    capsys.readouterr()
    ck = str(tmp_path / "t" / "torch_last.pth")
    assert test_cli.main(["--data-path", sysu_root, "--resume", ck, "--trials", "2", "--per-trial"]) == 0
    out = capsys.readouterr().out
    assert "all/trial1" in out and "indoor" in out


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


def test_test_py_rejects_missing_checkpoint(sysu_root, tmp_path, capsys):
    assert test_cli.main(["--data-path", sysu_root, "--resume", str(tmp_path / "none.pth")]) == 2
    assert "none.pth" in capsys.readouterr().err


def test_regdb_trial_training(tmp_path):
    root = synthetic.write("regdb", str(tmp_path / "d"), ids=6, seed=0)
    assert train_cli.main(["--dataset", "RegDB", "--data-path", root, "--trial", "2", "--ckpt", "r",
                           "--set", f"train.log_dir={tmp_path}", "--epochs", "1", *TINY]) == 0
    rows = json.loads(open(tmp_path / "r" / "metrics.jsonl").readline())["eval"]
    assert [r["setting"] for r in rows] == ["v2t", "t2v"]


def test_mindspore_cli_and_cross_framework_eval(sysu_root, tmp_path, capsys):
    """Train with torch, convert to MindSpore, evaluate with both: same metrics."""
    assert _train(sysu_root, tmp_path, extra=["--epochs", "1"]) == 0
    ck = str(tmp_path / "t" / "torch_last.pth")
    ms = str(tmp_path / "t" / "converted.ckpt")
    from tools import convert_weights
    assert convert_weights.main([ck, ms]) == 0
    capsys.readouterr()
    assert test_cli.main(["--data-path", sysu_root, "--resume", ck, "--trials", "1"]) == 0
    out_t = capsys.readouterr().out.splitlines()[-2:]
    assert test_cli.main(["--data-path", sysu_root, "--resume", ms, "--trials", "1", "--backend", "mindspore",
                          "--ms-mode", "PYNATIVE"]) == 0
    out_m = capsys.readouterr().out.splitlines()[-2:]
    assert out_t == out_m


@pytest.mark.parametrize("mode", [pytest.param("GRAPH", marks=pytest.mark.slow), "PYNATIVE"])
def test_mindspore_training_and_resume(sysu_root, tmp_path, mode):
    assert _train(sysu_root, tmp_path, "mindspore", ["--epochs", "1", "--ms-mode", mode]) == 0
    ck = tmp_path / "t" / "mindspore_last.ckpt"
    assert ck.is_file() and (tmp_path / "t" / "mindspore_best.ckpt").is_file()
    assert _train(sysu_root, tmp_path, "mindspore", ["--epochs", "2", "--ms-mode", mode, "--resume", str(ck)]) == 0
    epochs = [json.loads(l)["epoch"] for l in open(tmp_path / "t" / "metrics.jsonl")]
    assert epochs == [0, 1]


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
    assert not (tmp_path / "t" / "torch_last.pth").exists()


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_pretrain_flag_loads_imagenet_style_weights(sysu_root, tmp_path, backend, capsys):
    """--pretrain takes a torchvision-named ResNet file (.safetensors here: the MindSpore
    backend reads it without torch) and loads it into the three backbones."""
    import torch
    from safetensors.numpy import save_file

    from backends.torch.backbones.resnet import ResNet
    from backends.torch.weights import state_to_numpy
    torch.manual_seed(3)
    state = state_to_numpy(ResNet(depth=18, width=4))
    state["fc.weight"] = np.zeros((10, 32), np.float32)  # ignored, as torchvision's fc
    path = str(tmp_path / "r18.safetensors")
    save_file(state, path)
    extra = ["--epochs", "1", "--pretrain", path, "--ms-mode", "PYNATIVE"]
    assert _train(sysu_root, tmp_path, backend, extra) == 0
    bad = str(tmp_path / "missing.safetensors")
    capsys.readouterr()
    assert _train(sysu_root, tmp_path / "b", backend, ["--epochs", "1", "--pretrain", bad]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
