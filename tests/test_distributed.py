"""Distributed data-parallel training (common/engine/runtime.py, backends/<fw>/distributed.py,
the rank rules of common/engine/loop.py).

Default run (in-process, fast): launch detection from each launcher's environment, the one
all-reduce of gradients and loss terms, the split of the batches between ranks, and the loop's
rank rules (rank 0 writes and evaluates, the others write nothing and wait), with a scripted
method and an in-memory backend.

Slow (real launches with ``torchrun`` / ``msrun``, PATH with this venv first because msrun
starts its workers with the first ``python`` on PATH): a 2-process CPU run of the tiny MVD
configuration ends with the same parameters on both ranks, equal to a 1-process run over the
same global batches (each step averaging the gradients of the two ranks' batches) to 1e-5;
``--resume`` continues a distributed run exactly; too many processes is one line on rank 0.
SyncBN: tests/test_sync_bn.py. Both launchers stop the other workers when one fails."""
import copy
import json
import os
import socket
import subprocess
import sys
import types

import numpy as np
import pytest

import train as train_cli
from common import recipes
from common.cli import config_from_args
from common.config import load_config
from common.data.loader import shard
from common.engine import loop, runtime
from common.errors import ConfigError
from dist_worker import model_arrays
from test_loop_unit import ScriptedRun, fake_backend
from tiny import make_sysu, train_argv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "MS_ROLE",
               "MS_SCHED_HOST", "MS_SCHED_PORT", "MS_WORKER_NUM", "MS_NODE_ID", "RANK_ID", "RANK_SIZE", "DEVICE_ID")
TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
MSRUN = {"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "2", "MS_SCHED_HOST": "127.0.0.1", "MS_SCHED_PORT": "8118",
         "MS_NODE_ID": "1", "RANK_ID": "1", "DEVICE_ID": "1"}


# --- launch detection -------------------------------------------------------------------

def test_each_backend_reads_its_launchers_environment():
    assert runtime.detect("torch", TORCHRUN) == runtime.Launch(1, 2, 1, "torchrun")
    assert runtime.detect("mindspore", MSRUN) == runtime.Launch(1, 2, 1, "msrun")
    plain = {k: v for k, v in MSRUN.items() if k not in ("RANK_ID", "DEVICE_ID")}  # dynamic cluster, no msrun
    assert runtime.detect("mindspore", plain) == runtime.Launch(1, 2, 1, "msrun")
    scheduler = runtime.detect("mindspore", dict(MSRUN, MS_ROLE="MS_SCHED"))
    assert scheduler.distributed and not scheduler.is_main
    assert runtime.detect("torch", {}) == runtime.detect("mindspore", {}) == runtime.Launch()
    assert not runtime.Launch().distributed and runtime.Launch().is_main


def test_the_other_frameworks_launcher_is_one_line():
    with pytest.raises(ConfigError, match="msrun started this process but --backend torch runs distributed under "
                                          "torchrun: torchrun --nproc_per_node N"):
        runtime.detect("torch", MSRUN)
    with pytest.raises(ConfigError, match="torchrun started this process but --backend mindspore .* "
                                          "msrun --worker_num"):
        runtime.detect("mindspore", TORCHRUN)
    with pytest.raises(ConfigError, match="RANK=2, WORLD_SIZE=2"):
        runtime.detect("torch", dict(TORCHRUN, RANK="2"))


def test_only_rank_0_prints_the_error_and_the_others_wait_before_exiting(monkeypatch, capsys):
    """Rank 0 prints the line; a worker of rank > 0 exits quietly after the grace period (a
    launcher stops all workers when one fails: rank 0 must not be cut off before it prints)."""
    import time
    from common import cli
    from common.errors import ReidError

    def fail():
        raise ReidError("the problem")
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    for env, printed, waits in ((TORCHRUN, False, True), (dict(TORCHRUN, RANK="0"), True, False),
                                (MSRUN, False, True), (dict(MSRUN, MS_ROLE="MS_SCHED", RANK_ID="0"), False, False),
                                ({}, True, False)):
        slept = []
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            m.setattr(time, "sleep", slept.append)
            assert cli.run_main(fail) == 2
            assert cli.run_main(lambda: 0) == 0  # a success never waits
        assert capsys.readouterr().err == ("error: the problem\n" if printed else ""), env
        assert slept == ([cli.RANK_ERROR_GRACE_S] if waits else []), env


# --- gradient averaging -----------------------------------------------------------------

def test_one_all_reduce_averages_gradients_and_terms():
    """torch GradientAverager with a scripted second rank: means of the gradients and terms, a
    gradient missing on one rank counts as zero, one missing on every rank stays None."""
    torch = pytest.importorskip("torch")
    from backends.torch.distributed import GradientAverager
    a, b, c = (torch.nn.Parameter(torch.zeros(s)) for s in ((2, 2), (3,), (1,)))
    a.grad, b.grad = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), None
    # rank 1's buffer: gradients of a, b, c (none), has-gradient flags, terms
    other = torch.tensor([5.0, 6.0, 7.0, 8.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 3.0, 10.0])
    calls = []

    def all_reduce(buffer):
        calls.append(buffer.numel())
        buffer += other
    terms = GradientAverager([a, b, c], 2, all_reduce)(torch.tensor([1.0, 4.0]))
    assert calls == [13]  # one collective: 4 + 3 + 1 gradient values, 3 flags, 2 terms
    assert a.grad.tolist() == [[3.0, 4.0], [5.0, 6.0]]
    assert b.grad.tolist() == [0.5, 0.5, 0.5] and c.grad is None
    assert terms.tolist() == [2.0, 7.0]


# --- batches per rank --------------------------------------------------------------------

class ToySource:
    columns = ("x",)

    def __init__(self, n=5):
        self.n, self.rank, self.world_size = n, 0, 1

    def __len__(self):
        return self.n // self.world_size

    def items(self, epoch):
        return list(range(self.n))[self.rank::self.world_size][:len(self)]

    def make_batch(self, epoch, index, item):
        return (np.array([item]),)


def test_shard_gives_each_rank_its_share():
    parts = [shard(ToySource(), r, 2) for r in range(2)]
    assert [p.items(0) for p in parts] == [[0, 2], [1, 3]]
    with pytest.raises(TypeError, match="cannot be split between processes"):
        shard(types.SimpleNamespace(columns=(), __len__=None, items=None, make_batch=None), 0, 2)
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        shard(ToySource(), 2, 2)


# --- the loop's rank rules ---------------------------------------------------------------

class ShardedRun(ScriptedRun):
    """A scripted method whose batch source is split between ranks."""

    def __init__(self, n=4, **kw):
        super().__init__(n=n, **kw)
        self.loader, self.evaluated, self.dirs = ToySource(n), 0, []

    def __len__(self):
        return len(self.loader)

    def batches(self, epoch):
        self.epoch = epoch
        return iter(self.loader.items(epoch))

    def evaluate(self):
        self.evaluated += 1
        return super().evaluate()

    def begin_epoch(self, epoch):
        self.dirs.append(self.run_dir)
        with open(os.path.join(self.run_dir, f"hook{epoch}"), "w") as f:  # a hook writing into run_dir
            f.write("x")


def _distributed_backend(rank, world=2):
    B = fake_backend()
    barriers = []
    B.distributed = types.SimpleNamespace(init=lambda target: runtime.Launch(rank, world, rank, "torchrun"),
                                          barrier=lambda: barriers.append(1), shutdown=lambda: barriers.append(0))
    return B, barriers


def _fit_as(rank, tmp_path, monkeypatch, run, world=2):
    B, barriers = _distributed_backend(rank, world)
    monkeypatch.setattr(runtime, "detect", lambda name, env=None: runtime.Launch(rank, world, rank, "torchrun"))
    cfg = load_config(None, [f"train.log_dir={tmp_path}", "schedule.epochs=2", "data.data_path=x"])
    seen = {}

    def build(c, b, log):
        seen["policy"] = runtime.current()
        return run
    summary = loop.fit(cfg, B, build, echo=None)
    return summary, barriers, seen["policy"]


def test_rank_above_0_trains_its_share_writes_nothing_and_waits(tmp_path, monkeypatch):
    run = ShardedRun()
    summary, barriers, policy = _fit_as(1, tmp_path, monkeypatch, run)
    assert policy.rank == 1 and policy.world_size == 2 and runtime.current() == runtime.Runtime()
    assert run.loader.items(0) == [1, 3] and len(run) == 2
    assert run.evaluated == 0 and summary["rows"] == [] and summary["rank"] == 1
    assert not (tmp_path / "toy").exists()  # no run folder, no log, no checkpoint
    assert len(set(run.dirs)) == 1 and not os.path.exists(run.dirs[0])  # a private folder, removed
    assert barriers == [1, 1, 1, 0]  # after each epoch, at the end, then the group is left


def test_rank_0_writes_and_evaluates(tmp_path, monkeypatch):
    run = ShardedRun(scores=[1.0, 2.0])
    summary, barriers, _ = _fit_as(0, tmp_path, monkeypatch, run)
    assert run.loader.items(0) == [0, 2] and run.evaluated == 2
    assert sorted(os.listdir(tmp_path / "toy")) == ["config.yaml", "hook0", "hook1", "metrics.jsonl",
                                                    "torch_best.pth", "torch_last.pth", "train.log"]
    assert "batches per epoch on each of 2 processes" in open(tmp_path / "toy" / "train.log").read()
    assert barriers == [1, 1, 1, 0] and summary["best"] == 2.0


def test_too_many_processes_for_the_batches_is_one_line(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"an epoch gives 1 training batch\(es\) of data.num_ids x data.num_pos = "
                                          r"8 x 4, fewer than the 2 processes launched.*launch at most 1"):
        _fit_as(0, tmp_path, monkeypatch, ShardedRun(n=1))
    assert not (tmp_path / "toy").exists()


# --- real launches (slow) ----------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(backend: str, script_args, log_dir, nproc: int = 2, timeout: int = 600) -> subprocess.CompletedProcess:
    """``torchrun`` (torch) or ``msrun`` (mindspore) of ``script_args`` with ``nproc``
    processes on this machine; the venv's bin first on PATH (msrun starts ``python``)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(PATH=VENV_BIN + os.pathsep + env.get("PATH", ""), PYTHONPATH=ROOT, GLOG_v="3")
    port = str(_free_port())
    if backend == "torch":
        cmd = [os.path.join(VENV_BIN, "torchrun"), "--nproc_per_node", str(nproc), "--master_port", port]
    else:
        cmd = [os.path.join(VENV_BIN, "msrun"), "--worker_num", str(nproc), "--local_worker_num", str(nproc),
               "--master_port", port, "--log_dir", str(log_dir), "--join", "True"]
    return subprocess.run(cmd + list(script_args), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_sysu(tmp_path_factory.mktemp("sysu"))


# SGD: linear in the gradient, so the 1e-5 comparison measures the averaging (Adam's first
# steps turn gradient noise of 1e-9 into updates of +-lr where a gradient is near zero)
SGD = ["--optim", "sgd", "--lr", "0.01"]


def _worker_run(backend, root, tmp_path, mode="PYNATIVE", extra=(), nproc=2, name="dist"):
    """A distributed tiny MVD run through tests/dist_worker.py; returns (process, dumps folder)."""
    out = tmp_path / f"{name}-out"
    out.mkdir()
    argv = train_argv(root, str(tmp_path / name), backend, extra=[*SGD, "--ms-mode", mode, *extra])
    return launch(backend, ["tests/dist_worker.py", str(out), *argv], tmp_path / f"{name}-msrun", nproc), out


def _reference(backend, root, tmp_path, mode="PYNATIVE"):
    """The same run in ONE process over the same global batches: each step's loss terms are
    the means of the two ranks' batches' terms (so its gradient is the mean of theirs), through
    the real loop and TrainStep. Returns (trainable parameters and statistics, metrics)."""
    import backends
    argv = train_argv(root, str(tmp_path / "ref"), backend, extra=[*SGD, "--ms-mode", mode])
    parser, flags = train_cli.make_parser()
    cfg = config_from_args(parser.parse_intermixed_args(argv), flags)
    recipe, B, seen = recipes.get("mvd"), backends.get(backend), {}

    def build(cfg, B, log):
        run = recipe.build(cfg, B, log)
        halves = [shard(copy.copy(run.loader), r, 2) for r in range(2)]
        run.loader = halves[0]
        loss_fn, names = B.mvd_loss.objective(cfg["mvd"], run.model.flow)
        model = run.model

        def pair_loss(rgb0, ir0, y0, rgb1, ir1, y1):
            first, second = loss_fn(model(rgb0, ir0), y0), loss_fn(model(rgb1, ir1), y1)
            return tuple((a + b) / 2 for a, b in zip(first, second))
        step = B.engine.TrainStep(model, run.optimizer, pair_loss, names, run.trainer.step.dtypes * 2, mode)
        run.trainer = types.SimpleNamespace(train_step=step)
        run.batches = lambda epoch: (halves[0].make_batch(epoch, i, a) + halves[1].make_batch(epoch, i, b)
                                     for i, (a, b) in enumerate(zip(halves[0].items(epoch), halves[1].items(epoch))))
        seen["run"] = run
        return run
    loop.fit(cfg, B, build, echo=None, structure_keys=recipe.STRUCTURE_KEYS)
    return model_arrays(B, seen["run"].model), _metrics(tmp_path / "ref")


def _metrics(log_dir):
    return [json.loads(line) for line in open(os.path.join(log_dir, "t", "metrics.jsonl"))]


def _ranks(out):
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(2)]


def _codes(out):
    return [int(open(out / f"rank{r}.code").read()) for r in range(2)]


@pytest.mark.parametrize("backend, mode", [("torch", "PYNATIVE"),  # the default run: torch and MindSpore
                                           ("mindspore", "PYNATIVE"),
                                           pytest.param("mindspore", "GRAPH", marks=pytest.mark.slow)])
def test_two_processes_match_one_process_over_the_same_global_batches(root, tmp_path, backend, mode):
    pytest.importorskip(backend)
    proc, out = _worker_run(backend, root, tmp_path, mode)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _codes(out) == [0, 0]
    r0, r1 = _ranks(out)
    params = [k for k in r0 if k.startswith("param:")]
    assert params and all(np.array_equal(r0[k], r1[k]) for k in params)  # identical on both ranks
    stats = [k for k in r0 if k.startswith("stat:")]
    assert any(not np.allclose(r0[k], r1[k]) for k in stats)  # each rank normalised its own batches
    ref, ref_metrics = _reference(backend, root, tmp_path, mode)
    worst = max(float(np.abs(r0[k] - ref[k]).max()) for k in params)
    print(f"{backend} {mode}: max |2 processes - 1 process| = {worst:.2e}")
    assert worst <= 1e-5, worst
    moved = max(float(np.abs(ref[k] - _initial(backend, root, tmp_path)[k]).max()) for k in params)
    assert moved > 100 * 1e-5  # the runs trained: the match is not that of untouched weights
    metrics = _metrics(tmp_path / "dist")
    assert [m["total"] for m in metrics] == pytest.approx([m["total"] for m in ref_metrics], rel=1e-5)
    assert (tmp_path / "dist" / "t" / "config.yaml").exists() and len(metrics) == 2


def _initial(backend, root, tmp_path):
    import backends
    argv = train_argv(root, str(tmp_path / "init"), backend, extra=SGD)
    parser, flags = train_cli.make_parser()
    cfg = config_from_args(parser.parse_intermixed_args(argv), flags)
    B = backends.get(backend)
    loop.setup_backend(B, cfg)
    model = B.mvd.build_model(cfg, 6)
    return model_arrays(B, model)


@pytest.mark.slow
def test_resume_continues_a_distributed_run_exactly(root, tmp_path):
    """torch: 2 epochs, then --resume for a third, equals 3 epochs in one go (every rank loads
    the checkpoint rank 0 wrote)."""
    pytest.importorskip("torch")
    whole, out_whole = _worker_run("torch", root, tmp_path, extra=["--epochs", "3"], name="whole")
    first, _ = _worker_run("torch", root, tmp_path, name="part")
    assert whole.returncode == first.returncode == 0, whole.stderr[-2000:] + first.stderr[-2000:]
    last = str(tmp_path / "part" / "t" / "torch_last.pth")
    second, out_resumed = _worker_run("torch", root, tmp_path, extra=["--epochs", "3", "--resume", last],
                                      name="part2")
    assert second.returncode == 0, second.stderr[-3000:]
    resumed, straight = _ranks(out_resumed), _ranks(out_whole)
    for k in resumed[0]:
        if k.startswith("param:"):
            assert np.array_equal(resumed[0][k], resumed[1][k]), k
            np.testing.assert_allclose(resumed[0][k], straight[0][k], rtol=0, atol=1e-6, err_msg=k)
    assert [m["epoch"] for m in _metrics(tmp_path / "part2")] == [2]
    assert "resumed from" in open(tmp_path / "part2" / "t" / "train.log").read()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_too_many_processes_is_one_line_on_rank_0(root, tmp_path, backend):
    """6 ids x 16 images: the routed sampler's epoch has one batch, so two processes cannot
    each get one."""
    pytest.importorskip(backend)
    proc, out = _worker_run(backend, root, tmp_path, extra=["--set", "data.num_ids=6", "--set", "data.num_pos=16"])
    assert proc.returncode != 0 and open(out / "rank0.code").read() == "2"
    # rank 1 exits 2 as well, unless the launcher, seeing rank 0 fail, has already stopped it
    assert not (out / "rank1.code").exists() or open(out / "rank1.code").read() == "2"
    text = proc.stdout + proc.stderr
    if backend == "mindspore":  # msrun keeps each worker's output in its log
        logs = [open(tmp_path / "dist-msrun" / f"worker_{r}.log").read() for r in range(2)]
        assert "error:" not in logs[1]
        text = logs[0]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert errors == ["error: an epoch gives 1 training batch(es) of data.num_ids x data.num_pos = 6 x 16, fewer "
                      "than the 2 processes launched (each trains on batches of its own): launch at most 1 "
                      "process(es) or lower data.num_ids / data.num_pos"]
    assert not (tmp_path / "dist" / "t").exists()
