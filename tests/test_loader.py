"""common.data.loader (the batch-source contract and its worker pool) and the two backends'
loader wrappers: order, determinism across worker counts and backends, resume, prefetch bound,
error surfacing, early close, Ctrl-C and consumer death without orphan workers."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing import Value

import numpy as np
import pytest

from common.data.loader import RemoteTraceback, WorkerError, batch_rng, epoch_items, iterate
from common.errors import DatasetLayoutError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ToySource:
    """Batch i: random floats from the batch generator, the item, and odd shapes/dtypes."""
    columns = ("x", "item", "mask", "empty", "scalar")

    def __init__(self, n=7, seed=3, rank=0, fail_at=None, error=None, sleep=0.0, exit_at=None, started=None):
        self.n, self.seed, self.rank = n, seed, rank
        self.fail_at, self.error, self.sleep, self.exit_at, self.started = fail_at, error, sleep, exit_at, started

    def __len__(self):
        return self.n

    def items(self, epoch):
        return [[10 * epoch + i, i] for i in range(self.n)]

    def make_batch(self, epoch, index, item):
        if self.started is not None:
            with self.started.get_lock():
                self.started.value += 1
        if index == self.exit_at:
            os._exit(3)
        if index == self.fail_at:
            raise self.error
        time.sleep(self.sleep)
        rng = batch_rng(self.seed, epoch, index, self.rank)
        x = rng.standard_normal((3, 50, 40)).astype(np.float32)
        return (x, np.asarray(item, np.int64), x[0] > 0, np.zeros((0, 3), np.float32),
                np.array(rng.integers(1 << 30), np.int64))


class Unpicklable(Exception):
    def __init__(self, a, b):  # pickling re-calls __init__ with one argument: fails
        super().__init__(f"{a}/{b}")


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert len(x) == len(y)
        for u, v in zip(x, y):
            assert u.dtype == v.dtype and u.shape == v.shape
            np.testing.assert_array_equal(u, v)


def _dead(pid, timeout=5.0):
    """True once ``pid`` is gone or a zombie (its parent died and nobody reaped it yet)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/status") as f:
                if any(line.startswith("State:") and "Z" in line.split()[1] for line in f):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_batches_depend_only_on_seed_epoch_index_rank():
    ref = list(iterate(ToySource(), 0))
    assert len(ref) == 7 and [list(b[1]) for b in ref] == [[i, i] for i in range(7)]
    assert ref[0][1].dtype == np.int64 and ref[0][2].dtype == bool and ref[0][4].shape == ()
    _same(ref, list(iterate(ToySource(), 0, workers=1, prefetch=1)))
    _same(ref, list(iterate(ToySource(), 0, workers=2, prefetch=3)))
    assert not np.array_equal(ref[0][0], next(iterate(ToySource(), 1))[0])            # epoch
    assert not np.array_equal(ref[0][0], next(iterate(ToySource(rank=1), 0))[0])      # rank
    assert not np.array_equal(ref[0][0], ref[1][0])                                    # index


def test_resume_in_the_middle_of_an_epoch_gives_the_same_batches():
    ref = list(iterate(ToySource(), 2))
    _same(ref[4:], list(iterate(ToySource(), 2, start=4)))
    _same(ref[4:], list(iterate(ToySource(), 2, workers=2, start=4)))
    assert list(iterate(ToySource(), 2, workers=2, start=7)) == []
    with pytest.raises(ValueError, match="start=8"):
        list(iterate(ToySource(), 2, start=8))


def test_contract_checks():
    class NoItems:
        columns = ()

        def __len__(self):
            return 1

    with pytest.raises(TypeError, match="lacks items, make_batch"):
        list(iterate(NoItems(), 0))

    class Short(ToySource):
        def items(self, epoch):
            return super().items(epoch)[:3]

    with pytest.raises(ValueError, match="gave 3 items for 7 batches"):
        epoch_items(Short(), 0)
    with pytest.raises(ValueError, match="prefetch"):
        list(iterate(ToySource(), 0, workers=1, prefetch=0))


def test_prefetch_bounds_how_far_workers_run_ahead():
    started = Value("i", 0)
    it = iterate(ToySource(n=40, started=started), 0, workers=2, prefetch=2)
    next(it)
    time.sleep(0.4)
    ahead = started.value
    it.close()
    assert 2 <= ahead <= 2 * 2 + 1  # sent: workers * prefetch, plus one after batch 0 was taken


@pytest.mark.parametrize("workers", [0, 2])
def test_worker_error_keeps_type_and_message(workers):
    src = ToySource(fail_at=3, error=DatasetLayoutError("cannot read image '/data/x.jpg' (truncated)"))
    got = []
    with pytest.raises(DatasetLayoutError) as info:
        for b in iterate(src, 0, workers=workers):
            got.append(b)
    assert str(info.value) == "cannot read image '/data/x.jpg' (truncated)"
    assert len(got) == 3  # the batches before the failing one arrived, in order
    if workers:
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert "make_batch" in str(info.value.__cause__)


def test_unpicklable_error_and_dead_worker_become_worker_errors():
    with pytest.raises(WorkerError, match=r"Unpicklable: a/b"):
        list(iterate(ToySource(fail_at=1, error=Unpicklable("a", "b")), 0, workers=1))
    with pytest.raises(WorkerError, match="exited unexpectedly with code 3"):
        list(iterate(ToySource(exit_at=2), 0, workers=2))


def test_early_close_stops_every_worker_quickly():
    import multiprocessing as mp
    it = iterate(ToySource(n=50, sleep=0.2), 0, workers=2, prefetch=2)
    next(it)
    pids = [p.pid for p in mp.active_children() if p.name.startswith("batch-worker")]
    assert len(pids) == 2
    t0 = time.monotonic()
    it.close()
    assert time.monotonic() - t0 < 3.0
    assert all(_dead(pid) for pid in pids)
    assert not [p for p in mp.active_children() if p.name.startswith("batch-worker")]


def test_keyboard_interrupt_in_the_consumer_shuts_the_pool_and_workers_ignore_sigint():
    import multiprocessing as mp
    it = iterate(ToySource(n=50, sleep=0.3), 0, workers=2, prefetch=1)
    first = next(it)
    pids = [p.pid for p in mp.active_children() if p.name.startswith("batch-worker")]
    os.kill(pids[0], signal.SIGINT)  # a terminal's Ctrl-C reaches the workers too: ignored
    _same([first, next(it)], list(iterate(ToySource(n=50), 0))[:2])
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        for _ in it:
            pass
    timer.join()
    assert all(_dead(pid) for pid in pids)


def test_workers_exit_when_the_consumer_process_is_killed():
    code = textwrap.dedent("""
        import os, sys, time
        sys.path.insert(0, 'tests')
        from test_loader import ToySource
        from common.data.loader import iterate
        import multiprocessing as mp
        it = iterate(ToySource(n=50, sleep=0.2), 0, workers=2)
        next(it)
        print(' '.join(str(p.pid) for p in mp.active_children()), flush=True)
        os.kill(os.getpid(), 9)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": ROOT})
    pids = [int(p) for p in r.stdout.split()]
    assert r.returncode == -9 and len(pids) == 2, r.stderr
    assert all(_dead(pid, timeout=10) for pid in pids)


def test_the_mvd_batch_source_is_served_by_the_pool():
    from common.data.cross_modal import CrossModalBatches, make_sampler
    from common.transforms import CrossModalTrain

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 16, 8, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(6), 4)
    tf = CrossModalTrain(16, 8, erasing=True)
    src = CrossModalBatches(images, labels, images[::-1].copy(), labels, tf, tf,
                            make_sampler("port", labels, labels, 3, 2, 4), seed=4)
    _same(list(src.epoch(2, prefetch=0)), list(iterate(src, 2, workers=2)))


@pytest.mark.slow
def test_spawn_start_method_gives_the_same_batches():
    _same(list(iterate(ToySource(), 0)), list(iterate(ToySource(), 0, workers=2, start_method="spawn")))


def test_backend_loaders_give_identical_batches():
    tdata = pytest.importorskip("backends.torch.data")
    ref = list(iterate(ToySource(), 1))
    for workers in (0, 2):
        _same(ref, list(tdata.make_loader(ToySource(), 1, workers)))
        _same(ref, list(tdata.make_native_loader(ToySource(), 1, workers)))
    _same(ref[2:], list(tdata.make_native_loader(ToySource(), 1, 1, start=2)))


def test_mindspore_loaders_give_identical_batches():
    msdata = pytest.importorskip("backends.mindspore.data")
    ref = list(iterate(ToySource(), 1))
    _same(ref, list(msdata.make_loader(ToySource(), 1, 2)))
    _same(ref, list(msdata.make_native_loader(ToySource(), 1, 0)))
    _same(ref[5:], list(msdata.make_native_loader(ToySource(), 1, 2, start=5)))


def test_backend_data_modules_mirror_each_other():
    import ast
    names = []
    for fw in ("torch", "mindspore"):
        tree = ast.parse(open(os.path.join(ROOT, "backends", fw, "data.py")).read())
        exported = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                        and getattr(n.targets[0], "id", "") == "__all__")
        sigs = {n.name: ast.unparse(n.args) for n in tree.body if isinstance(n, ast.FunctionDef)
                and not n.name.startswith("_")}
        names.append((ast.literal_eval(exported), sigs))
    assert names[0] == names[1]


def test_data_speed_benchmark_prints_its_tables():
    r = subprocess.run([sys.executable, "benchmarks/data_speed.py", "--quick", "--workers", "0,1",
                        "--step-seconds", "0.01"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines
            if line.split()[:1] in (["pool"], ["threads"])}
    assert set(rows) == {("pool", "0"), ("pool", "1"), ("threads", "1")}
    assert rows[("pool", "0")][1] == "1.00" and all(float(v) > 0 for row in rows.values() for v in row)
    wait = lines[lines.index(next(line for line in lines if line.split()[:1] == ["workers"])) + 1:]
    assert [line.split()[0] for line in wait] == ["0", "1"]
    assert all(0 <= float(line.split()[1]) <= 1 for line in wait)
