"""The shared epoch loop's guarantees (common/engine/loop.py), end to end through train.py on
a tiny MVD run: run-folder protection, exact resume in both backends, non-finite losses,
SIGTERM / Ctrl-C during training and during a checkpoint write, SIGKILL leftovers, and
resume refusals. Every check asserts the effect (files, tensors, losses), not an exit code."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import train as train_cli
from tiny import make_sysu, train_argv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_sysu(tmp_path_factory.mktemp("sysu"))


def _run(root, log_dir, backend="torch", extra=()):
    return train_cli.main(train_argv(root, str(log_dir), backend, extra=list(extra)))


def _epochs(run):
    return [json.loads(line) for line in open(run / "metrics.jsonl")]


def _state(path, backend):
    if backend == "torch":
        from backends.torch.checkpoint import read_file
    else:
        from backends.mindspore.checkpoint import read_file
    return read_file(str(path))[0]


# ---------------------------------------------------------------- run-folder protection

def test_fresh_run_into_a_used_folder_refuses_before_reading_data(root, tmp_path, capsys):
    assert _run(root, tmp_path, extra=["--epochs", "1"]) == 0
    config = (tmp_path / "t" / "config.yaml").read_text()
    capsys.readouterr()
    # another data path that does not exist: the run-folder check comes first
    argv = train_argv(str(tmp_path / "no-data"), str(tmp_path))
    assert train_cli.main(argv + ["--set", "optim.lr=0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]
    assert (tmp_path / "t" / "config.yaml").read_text() == config
    assert [e["epoch"] for e in _epochs(tmp_path / "t")] == [0]


def test_overwrite_replaces_the_previous_run(root, tmp_path):
    assert _run(root, tmp_path, extra=["--epochs", "2"]) == 0
    assert _run(root, tmp_path, extra=["--epochs", "1", "--overwrite"]) == 0
    assert [e["epoch"] for e in _epochs(tmp_path / "t")] == [0]


def test_a_run_that_fails_early_leaves_no_folder(tmp_path, capsys):
    assert train_cli.main(train_argv(str(tmp_path / "missing"), str(tmp_path))) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_resume_into_a_new_folder_names_files_that_exist(root, tmp_path, capsys):
    assert _run(root, tmp_path / "a", extra=["--epochs", "1"]) == 0
    capsys.readouterr()
    last = tmp_path / "a" / "t" / "torch_last.pth"
    assert _run(root, tmp_path / "b", extra=["--epochs", "2", "--resume", str(last)]) == 0
    out = capsys.readouterr().out
    names = out.strip().splitlines()[-1].split(": ", 2)[-1].split(", ")
    assert names and all((tmp_path / "b" / "t" / n).is_file() for n in names)
    assert "torch_best.pth" in names


# ---------------------------------------------------------------- exact resume, both backends

@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_resume_is_exact_losses_and_parameters(root, tmp_path, backend):
    ext = ".pth" if backend == "torch" else ".ckpt"
    assert _run(root, tmp_path / "a", backend, ["--epochs", "2"]) == 0
    assert _run(root, tmp_path / "b", backend, ["--epochs", "1"]) == 0
    last_b = tmp_path / "b" / "t" / f"{backend}_last{ext}"
    assert _run(root, tmp_path / "b", backend, ["--epochs", "2", "--resume", str(last_b)]) == 0
    la, lb = _epochs(tmp_path / "a" / "t"), _epochs(tmp_path / "b" / "t")
    assert [e["epoch"] for e in lb] == [0, 1]
    for key in ("total", "id", "tri", "kl"):
        assert lb[1][key] == pytest.approx(la[1][key], rel=1e-6, abs=1e-7), key
    sa, sb = _state(tmp_path / "a" / "t" / f"{backend}_last{ext}", backend), _state(last_b, backend)
    assert sa.keys() == sb.keys()
    worst = max(float(np.abs(sa[k] - sb[k]).max()) for k in sa)
    assert worst <= 1e-6, worst


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_resume_with_another_optimizer_is_refused_up_front(root, tmp_path, capsys, backend):
    assert _run(root, tmp_path, backend, extra=["--epochs", "1"]) == 0
    capsys.readouterr()
    last = tmp_path / "t" / f"{backend}_last{'.pth' if backend == 'torch' else '.ckpt'}"
    assert _run(root, tmp_path, backend, extra=["--epochs", "2", "--resume", str(last), "--optim", "sgd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.name='adam'" in err[0] and "'sgd'" in err[0]
    assert [e["epoch"] for e in _epochs(tmp_path / "t")] == [0]


# ---------------------------------------------------------------- non-finite losses

@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_divergence_stops_naming_where_and_keeps_the_last_good_checkpoint(root, tmp_path, backend, capsys):
    ext = ".pth" if backend == "torch" else ".ckpt"
    assert _run(root, tmp_path, backend, ["--epochs", "1"]) == 0
    last = tmp_path / "t" / f"{backend}_last{ext}"
    before = _state(last, backend)
    capsys.readouterr()
    rc = _run(root, tmp_path, backend, ["--epochs", "2", "--resume", str(last), "--optim", "adam",
                                         "--lr", "1e20"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "non-finite loss or gradient at epoch 1, step" in err[0] and "learning rate" in err[0] and str(last) in err[0]
    after = _state(last, backend)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(np.isfinite(v).all() for v in after.values())


def test_a_fresh_run_failing_before_its_first_checkpoint_leaves_no_folder(root, tmp_path, capsys):
    """Divergence in the first epoch: one line naming where, and nothing written (the same
    command can be run again without --overwrite)."""
    assert _run(root, tmp_path, extra=["--optim", "adam", "--lr", "1e20"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite loss or gradient at epoch 0" in err[0] and "none (first epoch)" in err[0]
    assert not (tmp_path / "t").exists()
    (tmp_path / "u").mkdir()  # a folder that existed before the run is kept, emptied of the run's files
    (tmp_path / "u" / "notes.txt").write_text("mine")
    assert train_cli.main(train_argv(root, str(tmp_path), extra=["--ckpt", "u", "--optim", "adam", "--lr", "1e20",
                                                                  "--overwrite"])) == 2
    assert sorted(os.listdir(tmp_path / "u")) == ["notes.txt"]


# ---------------------------------------------------------------- signals

def _wait_for(path, text, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.isfile(path) and text in open(path).read():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.stderr.read()}")
        time.sleep(0.1)
    raise AssertionError(f"'{text}' never appeared in {path}")


def test_sigterm_during_training_exits_143_with_the_resume_command(root, tmp_path):
    argv = train_argv(root, str(tmp_path), extra=["--epochs", "50"])
    proc = subprocess.Popen([sys.executable, "train.py", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "t" / "train.log", "epoch 1 lr", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    last = tmp_path / "t" / "torch_last.pth"
    assert proc.returncode == 143 and f"--resume {last}" in err
    assert last.is_file() and not glob.glob(str(tmp_path / "t" / "*.tmp*"))
    assert _run(root, tmp_path, extra=["--epochs", str(_epochs(tmp_path / "t")[-1]["epoch"] + 2),
                                       "--resume", str(last)]) == 0


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_sigterm_during_a_checkpoint_write_finishes_the_write(root, tmp_path, monkeypatch, capsys, backend):
    """The signal arrives inside the write: the write completes (a loadable checkpoint, no
    temporary file), then the run stops with 143 and the resume command."""
    import backends
    checkpoint = backends.get(backend).checkpoint
    real = checkpoint.save_checkpoint
    calls = []

    def save_with_signal(path, model, optimizer=None, extra=None):
        calls.append(path)
        os.kill(os.getpid(), signal.SIGTERM)  # delivered now, inside the critical section
        real(path, model, optimizer, extra)

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_with_signal)
    assert _run(root, tmp_path, backend, extra=["--epochs", "3"]) == 143
    assert f"--resume {calls[0]}" in capsys.readouterr().err
    assert len(calls) == 1 and os.path.isfile(calls[0])
    assert _state(calls[0], backend) and not glob.glob(str(tmp_path / "t" / "*.tmp*"))


def test_sigkill_during_a_checkpoint_write_leaves_old_files_and_the_next_run_cleans_up(root, tmp_path):
    script = (
        "import os, sys, time; sys.argv = ['train.py'] + sys.argv[1:]\n"
        "from backends.torch import checkpoint\n"
        "real = checkpoint.torch.save\n"
        "def slow(obj, f, *a, **k):\n"
        "    real(obj, f, *a, **k); open(os.environ['READY'], 'w').close(); time.sleep(60)\n"
        "checkpoint.torch.save = slow\n"
        "import train; sys.exit(train.main(sys.argv[1:]))\n")
    ready = tmp_path / "ready"
    env = dict(os.environ, READY=str(ready))
    proc = subprocess.Popen([sys.executable, "-c", script, *train_argv(root, str(tmp_path))], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    while not ready.exists() and time.time() - t0 < 120 and proc.poll() is None:
        time.sleep(0.05)
    assert ready.exists(), proc.stderr.read()
    proc.kill()
    proc.wait()
    run = tmp_path / "t"
    leftovers = glob.glob(str(run / "*.tmp-*"))
    assert leftovers and not (run / "torch_best.pth").exists()  # the rename never happened
    assert _run(root, tmp_path, extra=["--epochs", "1", "--overwrite"]) == 0
    assert not glob.glob(str(run / "*.tmp-*")) and (run / "torch_best.pth").is_file()
