"""The batch-source contract every method's data pipeline follows, and its default iterator.

A *batch source* is a plain, picklable object with

* ``columns``: a tuple naming the arrays of one batch (used by MindSpore's GeneratorDataset);
* ``__len__()``: the number of batches of one epoch for this rank;
* ``items(epoch)``: this rank's per-batch sampler items of ``epoch`` (a list of length
  ``len(source)``; each item is small and picklable, e.g. a list of record indices);
* ``make_batch(epoch, index, item)``: the batch ``index`` of ``epoch`` as a tuple of numpy
  arrays. All its randomness comes from ``np.random.default_rng([seed, epoch, index, rank])``,
  so a batch depends only on (seed, epoch, index, rank): it is the same whatever process
  builds it, however many workers there are, and after a resume in the middle of an epoch.

:func:`iterate` yields the batches of one epoch in order: in-process (``workers=0``) or from a
pool of ``workers`` processes. Processes rather than threads: part of the per-frame work
(Python-level transform logic, small numpy calls) holds the GIL, so thread scaling depends on
how much of it PIL and numpy release, while processes scale with free cores at a measured
cost of about 0.1 ms of CPU per 256x128 float32 frame for the transfer (``benchmarks/
data_speed.py`` prints pool and thread numbers side by side; on the shared 2-core machine
where it was written, other jobs kept the load near 10, so wall-clock ratios there cannot
separate the two).

Pool design (one Unix socket pair per worker, torch DataLoader-like round robin):

* batch i goes to worker ``i % workers``; each worker has at most ``prefetch`` batches queued
  or finished ahead of the consumer, and the consumer reads worker ``i % workers`` for batch
  i, so results come in order without a reorder buffer;
* a worker sends each array as raw bytes straight from its buffer and the consumer receives
  them into freshly allocated arrays (``socket.recv_into``): two kernel copies, no pickling of
  the large arrays and no shared-memory segments to leak (``multiprocessing.Connection``
  copies a message three more times, which halved the measured throughput);
* an exception in ``make_batch`` travels back pickled and is raised in the consumer with its
  original type and message (the worker's traceback is chained as the cause); a worker that
  dies without a word raises :class:`WorkerError` (a RuntimeError) naming it and its exit code;
* when the consumer stops early (generator closed, ``break``, an exception, KeyboardInterrupt)
  the ``finally`` block asks every worker to stop, closes the sockets and joins them, then
  terminates and finally kills any straggler: no orphan processes and no hang. Workers ignore
  SIGINT (the consumer owns Ctrl-C) and exit by themselves if the consumer process dies.
  A loop that may leave an epoch by an exception should hold the iterator in
  ``contextlib.closing(iterate(...))`` so the pool stops at once rather than when the
  generator is garbage-collected.

The default start method is ``fork``: a source holding large arrays in memory (the MVD
``CrossModalBatches`` holds the whole SYSU training set) is shared copy-on-write instead of
pickled; ``start_method='spawn'`` works for picklable sources.
"""
import os
import pickle
import queue
import select
import signal
import socket
import struct
import threading
import time
import traceback
from multiprocessing import get_context
from typing import Iterator, List, Optional, Tuple

import numpy as np

POLL_SECONDS = 0.5   # how often a waiting side checks that the other side is alive
JOIN_SECONDS = 5.0   # how long a stopping worker waits for its sender thread
STOP_SECONDS = 0.5   # how long shutdown waits for the workers to exit before terminating them
SOCKET_BUFFER = 4 << 20  # bytes of kernel buffer per direction (fewer system calls per batch)


def batch_rng(seed: int, epoch: int, index: int, rank: int) -> np.random.Generator:
    """The generator of one batch (module docstring): ``default_rng([seed, epoch, index, rank])``."""
    return np.random.default_rng([int(seed), int(epoch), int(index), int(rank)])


def check_source(source) -> None:
    """Raise TypeError naming what a batch source lacks."""
    missing = [n for n in ("columns", "__len__", "items", "make_batch") if not hasattr(source, n)]
    if missing:
        raise TypeError(f"{type(source).__name__} is not a batch source: it lacks {', '.join(missing)} "
                        "(see common.data.loader)")


def shard(source, rank: int, world_size: int):
    """Give ``source`` this process's share of every epoch (the rank split rule of
    common/samplers.py: batches ``rank::world_size``): sets its ``rank`` and ``world_size``,
    which a source that can be split between processes has (``CrossModalBatches``,
    ``VideoTrainBatches``); returns it. TypeError for a source without them."""
    check_source(source)
    if not (hasattr(source, "rank") and hasattr(source, "world_size")):
        raise TypeError(f"{type(source).__name__} cannot be split between processes: it has no rank and "
                        "world_size attributes (see common.data.loader.shard)")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"expected 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    source.rank, source.world_size = int(rank), int(world_size)
    return source


def epoch_items(source, epoch: int, start: int = 0) -> list:
    """``source.items(epoch)`` cut to ``len(source)`` batches, from batch ``start`` on."""
    check_source(source)
    n = len(source)
    if not 0 <= start <= n:
        raise ValueError(f"start={start} outside the epoch's {n} batches")
    items = list(source.items(epoch))
    if len(items) < n:
        raise ValueError(f"{type(source).__name__}.items({epoch}) gave {len(items)} items for {n} batches")
    return items[:n]


class RemoteTraceback(Exception):
    """Carries a worker's formatted traceback; chained as the ``__cause__`` of the re-raised error."""

    def __str__(self):
        return "\n" + self.args[0]


class WorkerError(RuntimeError):
    """A worker died or its exception could not be sent back."""


def _close_all(conns) -> None:
    for c in conns:
        try:
            c.close()
        except OSError:
            pass


def _send_msg(sock: socket.socket, obj) -> None:
    head = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(struct.pack("!Q", len(head)) + head)


def _recv_into(sock: socket.socket, view: memoryview) -> None:
    while len(view):
        n = sock.recv_into(view)
        if n == 0:
            raise EOFError("the other side closed the connection")
        view = view[n:]


def _recv_msg(sock: socket.socket):
    size = bytearray(8)
    _recv_into(sock, memoryview(size))
    body = bytearray(struct.unpack("!Q", size)[0])
    _recv_into(sock, memoryview(body))
    return pickle.loads(body)


def _byte_view(a: np.ndarray) -> memoryview:
    return memoryview(a.reshape(-1).view(np.uint8))


def _send_batch(sock: socket.socket, index: int, arrays) -> None:
    arrays = [np.asarray(a) for a in arrays]
    arrays = [a if a.flags.c_contiguous else a.copy(order="C") for a in arrays]  # keeps 0-d arrays 0-d
    _send_msg(sock, ("ok", index, [(a.dtype.str, a.shape) for a in arrays]))
    for a in arrays:
        sock.sendall(_byte_view(a))


def _readable(sock: socket.socket, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def _error_message(index: int, exc: BaseException):
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        payload = pickle.dumps(exc)
        pickle.loads(payload)  # some exception types pickle but fail to unpickle
    except Exception:
        payload = pickle.dumps(WorkerError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"))
    return ("err", index, (payload, tb))


def _worker_main(conn, source, epoch: int, prefetch: int, close_fds, parent_pid: Optional[int]) -> None:
    """Worker loop: receive ``(index, item)`` tasks, build batches, hand them to a sender thread
    that streams them back (so up to ``prefetch`` finished batches wait while the next is built)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _close_all(close_fds)
    done: "queue.Queue" = queue.Queue(maxsize=max(prefetch - 1, 1))
    broken = threading.Event()

    def sender():
        while True:
            msg = done.get()
            if msg is None:
                return
            try:
                if msg[0] == "ok":
                    _send_batch(conn, msg[1], msg[2])
                else:
                    _send_msg(conn, msg)
            except (OSError, EOFError, ValueError):
                broken.set()
                return

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        while not broken.is_set():
            if not _readable(conn, POLL_SECONDS):
                if parent_pid is not None and os.getppid() != parent_pid:  # the consumer died
                    return
                continue
            task = _recv_msg(conn)
            if task is None:
                break
            index, item = task
            try:
                msg = ("ok", index, tuple(source.make_batch(epoch, index, item)))
            except Exception as e:  # noqa: BLE001 - every error goes back to the consumer
                msg = _error_message(index, e)
            while not broken.is_set():
                try:
                    done.put(msg, timeout=POLL_SECONDS)
                    break
                except queue.Full:
                    continue
    except (EOFError, OSError):
        return
    finally:
        if not broken.is_set():
            try:
                done.put(None, timeout=JOIN_SECONDS)
                thread.join(JOIN_SECONDS)
            except queue.Full:
                pass


class _Pool:
    """The worker processes of one epoch (see the module docstring)."""

    def __init__(self, source, epoch: int, workers: int, prefetch: int, start_method: Optional[str]):
        method = start_method or ("fork" if os.name == "posix" else "spawn")
        ctx = get_context(method)
        forked = method == "fork"  # only a forked child inherits (and must close) our socket ends
        parent_pid = os.getpid() if method in ("fork", "spawn") else None
        self.procs, self.conns = [], []
        try:
            for w in range(workers):
                parent_end, child_end = socket.socketpair()
                for end in (parent_end, child_end):
                    end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
                    end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
                p = ctx.Process(target=_worker_main, name=f"batch-worker-{w}", daemon=True,
                                args=(child_end, source, epoch, prefetch,
                                      list(self.conns) + [parent_end] if forked else [], parent_pid))
                self.conns.append(parent_end)
                p.start()
                child_end.close()
                self.procs.append(p)
        except BaseException:
            self.close()
            raise

    def send(self, w: int, task) -> None:
        try:
            _send_msg(self.conns[w], task)
        except OSError:  # the worker is gone; receiving its next batch reports how it ended
            pass

    def _wait(self, w: int) -> None:
        while not _readable(self.conns[w], POLL_SECONDS):
            p = self.procs[w]
            if not p.is_alive():
                raise WorkerError(f"batch worker {w} (pid {p.pid}) exited unexpectedly with code {p.exitcode}")

    def receive(self, w: int, index: int) -> Tuple[np.ndarray, ...]:
        try:
            return self._receive(w, index)
        except (EOFError, ConnectionError):
            p = self.procs[w]
            p.join(1.0)
            raise WorkerError(f"batch worker {w} (pid {p.pid}) exited unexpectedly with code {p.exitcode}") from None

    def _receive(self, w: int, index: int) -> Tuple[np.ndarray, ...]:
        self._wait(w)
        kind, got, payload = _recv_msg(self.conns[w])
        if got != index:
            raise WorkerError(f"batch worker {w} sent batch {got}, expected {index}")
        if kind == "err":
            exc_bytes, tb = payload
            exc = pickle.loads(exc_bytes)
            raise exc from RemoteTraceback(tb)
        arrays = []
        for dtype, shape in payload:
            a = np.empty(shape, np.dtype(dtype))
            _recv_into(self.conns[w], _byte_view(a))
            arrays.append(a)
        return tuple(arrays)

    def close(self) -> None:
        for c in self.conns:
            try:
                c.setblocking(False)
                _send_msg(c, None)
            except (OSError, ValueError):
                pass
        _close_all(self.conns)
        deadline = time.monotonic() + STOP_SECONDS
        for p in self.procs:
            p.join(max(deadline - time.monotonic(), 0.0))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(1.0)
            if p.is_alive():
                p.kill()
                p.join()
        self.procs, self.conns = [], []


def iterate(source, epoch: int, workers: int = 0, prefetch: int = 2, start: int = 0,
            start_method: Optional[str] = None) -> Iterator[Tuple[np.ndarray, ...]]:
    """Yield batches ``start .. len(source)-1`` of ``epoch`` in order (module docstring).

    ``workers=0`` builds them in this process; ``workers >= 1`` uses that many worker
    processes with up to ``prefetch`` batches ahead per worker. ``start`` resumes an epoch
    in the middle (the batches are the ones an uninterrupted epoch would have given).
    ``start_method`` is a multiprocessing start method (default ``fork`` on POSIX).
    """
    items = epoch_items(source, epoch, start)
    if workers < 0 or prefetch < 1:
        raise ValueError(f"expected workers >= 0 and prefetch >= 1, got workers={workers}, prefetch={prefetch}")
    if workers == 0:
        for i in range(start, len(items)):
            yield tuple(source.make_batch(epoch, i, items[i]))
        return
    indices: List[int] = list(range(start, len(items)))
    if not indices:
        return
    workers = min(workers, len(indices))
    pool = _Pool(source, epoch, workers, prefetch, start_method)
    try:
        ahead = min(len(indices), workers * prefetch)
        for k in range(ahead):
            pool.send(k % workers, (indices[k], items[indices[k]]))
        for k, i in enumerate(indices):
            batch = pool.receive(k % workers, i)
            nxt = k + ahead
            if nxt < len(indices):
                pool.send(nxt % workers, (indices[nxt], items[indices[nxt]]))
            yield batch
    finally:
        pool.close()
