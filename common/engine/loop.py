"""One framework-free epoch loop for every method (torchreid's engine / Keras' ``fit``,
without their indirection): :func:`fit`.

A method's recipe (``common/recipes/<name>.py``) builds a :class:`MethodRun` (data, model,
optimizer, the backend's training step, evaluation); this loop owns everything else:
run-folder protection and late creation (:mod:`common.engine.rundir`), resume, the
learning rate per epoch, the progress bar, non-finite-loss handling, evaluation cadence,
best and last checkpoints, logs and the config dump.

Guarantees (tested in tests/test_loop_*.py for both backends):
* resume is exact: batches and augmentation draw from ``(seed, epoch, batch)`` and the
  framework RNG is re-seeded with ``seed + epoch`` at the start of each epoch, so an
  interrupted run continues with the same losses and parameters as an uninterrupted one;
* checkpoints are written atomically inside a signal-deferring critical section: SIGTERM or
  Ctrl-C during a write finishes the write, then stops with exit code 143 / 130 and the
  resume command;
* a non-finite loss never updates the parameters (the backends' steps skip such updates);
  with ``train.nonfinite=stop`` the run stops at the first one naming epoch, step, loss term
  and learning rate, keeping the last good checkpoint; with ``skip`` the step is skipped
  (up to ``train.max_skipped`` in a row).

Distributed runs (``torchrun`` / ``msrun``; common/engine/runtime.py): every process runs
this loop on its share of each epoch's batches (:meth:`MethodRun.shard`), with gradients and
loss terms averaged in the backends' training step, so all ranks take the same decisions.
Rank 0 alone creates and writes the run folder (logs, metrics, config.yaml, checkpoints) and
evaluates (on the full evaluation sets); the others wait at a barrier meanwhile and get a
private temporary folder as :attr:`MethodRun.run_dir` (removed at the end) so that a method
hook writing files there never races rank 0. Every rank reads the ``--resume`` checkpoint.
"""
import math
import os
import shutil
import tempfile
import time
from collections import defaultdict
from typing import Dict, Iterator, List, Optional

from common.engine import runtime, signals
from common.engine.rundir import RunDir, RunLog
from common.errors import ReidError
from common.report import format_table

CKPT_EXT = {"torch": ".pth", "mindspore": ".ckpt"}
COLUMNS = ("setting", "R1", "R10", "R20", "mAP", "mINP")


class DivergenceError(ReidError):
    """The loss became non-finite (train.nonfinite=stop)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training; carries the resume hint and the exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.message, self.code = message, code


class MethodRun:
    """What a recipe's ``build`` returns: the pieces the loop drives. Subclasses (one per
    method, in its recipe) implement the four methods below."""

    columns = COLUMNS

    def __init__(self, model, optimizer, num_classes: int, description: str = ""):
        self.model, self.optimizer = model, optimizer
        self.num_classes, self.description = int(num_classes), description
        self.run_dir = ""  # set by the loop once the run folder exists

    def __len__(self) -> int:
        """Training batches per epoch (this rank)."""
        raise NotImplementedError

    def batches(self, epoch: int) -> Iterator:
        """The epoch's training batches (framework-free numpy tuples)."""
        raise NotImplementedError

    def lrs(self, epoch: int) -> List[float]:
        """Learning rate of every optimizer parameter group for ``epoch`` (0-based)."""
        raise NotImplementedError

    def train_step(self, batch) -> Dict[str, float]:
        """One optimizer step; returns the loss terms as floats, ``total`` included. A
        non-finite term means the backend did not apply the update."""
        raise NotImplementedError

    def evaluate(self) -> List[dict]:
        """Evaluation rows (dicts with the keys of :attr:`columns`)."""
        raise NotImplementedError

    def score(self, rows: List[dict]) -> float:
        """Model-selection score of an evaluation (higher is better): Rank-1 of the first row."""
        return float(rows[0]["R1"])

    def meta(self) -> dict:
        """Method facts stored in every checkpoint (JSON-serialisable)."""
        return {"num_classes": self.num_classes}

    def num_epochs(self, cfg: dict) -> int:
        """Epochs the loop runs (``schedule.epochs``; a multi-generation method runs more)."""
        return int(cfg["schedule"]["epochs"])

    def begin_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch (before the learning rate is set): a method may
        switch stages here (a new distillation generation replaces model and optimizer)."""

    def eval_due(self, epoch: int) -> bool:
        """Whether to evaluate after ``epoch`` besides the ``train.eval_every`` cadence."""
        return False

    def stage_epoch(self, epoch: int) -> int:
        """``epoch`` counted from the start of its training stage: the ``train.eval_every``
        cadence counts these (a distillation generation restarts the count)."""
        return epoch

    def on_resume(self, extra: dict) -> None:
        """Called after the resume checkpoint was loaded into model and optimizer."""

    def finish(self) -> None:
        """Called once after the last epoch (e.g. to write a reference's checkpoint layout
        into :attr:`run_dir`)."""

    def checkpoint_names(self, backend: str) -> Dict[str, str]:
        ext = CKPT_EXT[backend]
        return {"last": f"{backend}_last{ext}", "best": f"{backend}_best{ext}"}

    def shard(self, rank: int, world_size: int) -> None:
        """Distributed runs: take this process's share of every epoch. By default the run's
        training batch source ``self.loader`` (common/data/loader.py contract) gets
        ``rank``/``world_size``; a method whose batches come from elsewhere overrides this."""
        source = getattr(self, "loader", None)
        if source is None:
            raise ReidError(f"{type(self).__name__} cannot train distributed: it keeps no batch source in "
                            ".loader (override MethodRun.shard)")
        from common.data.loader import shard
        shard(source, rank, world_size)


def setup_backend(B, cfg: dict, launch: Optional[runtime.Launch] = None) -> runtime.Launch:
    """Execution mode, device, process group (when ``launch`` is distributed) and seed of the
    chosen backend from ``cfg['runtime']``; returns the process's launch (rank, world). In a
    distributed launch the device index is ``--gpu`` + the local rank."""
    rt, launch = cfg["runtime"], launch or runtime.Launch()
    B.device.enable_compile_cache(rt["compile_cache"])
    B.device.set_mode(rt["ms_mode"])
    B.device.select_device(rt["device_target"], rt["gpu"] + (launch.local_rank if launch.distributed else 0))
    if launch.distributed:
        launch = B.distributed.init(rt["device_target"])
    B.device.set_seed(cfg["train"]["seed"])
    return launch


def training_policy(B, cfg: dict, launch: runtime.Launch) -> None:
    """The runtime policy every TrainStep of the run follows (common/engine/runtime.py): rank,
    world size, ``runtime.amp`` (refused in one line when the device cannot run it) and
    ``train.sync_bn``."""
    amp = cfg["runtime"]["amp"]
    if amp != "off":
        B.precision.check_amp(amp)
    runtime.configure(rank=launch.rank, world_size=launch.world_size, local_rank=launch.local_rank, amp=amp,
                      sync_bn=bool(cfg["train"]["sync_bn"]))


def check_resume(cfg: dict, extra: dict, path: str, structure_keys=()) -> None:
    """Refuse, in one line and before training, a checkpoint that cannot continue this run:
    another method, another optimizer, or another network (``structure_keys``: dotted
    config keys that shape the network or the optimizer state)."""
    old = extra.get("config") or {}
    if not old:
        raise ReidError(f"'{path}' carries no run configuration; --resume expects a <backend>_last "
                        "checkpoint written by train.py")
    keys = ("method.name", "optim.name") + tuple(structure_keys)
    for dotted in keys:
        section, name = dotted.split(".")
        was = (old.get(section) or {}).get(name)
        now = cfg.get(section, {}).get(name)
        if was is not None and was != now:
            raise ReidError(f"cannot resume '{path}': it was trained with {dotted}={was!r}, this run has "
                            f"{now!r}; use the same value or start a new run")


class _Epoch:
    """Running means of the loss terms of one epoch."""

    def __init__(self):
        self.sums, self.n, self.t0 = defaultdict(float), 0, time.time()

    def add(self, parts: Dict[str, float]) -> None:
        for k, v in parts.items():
            self.sums[k] += v
        self.n += 1

    def means(self) -> Dict[str, float]:
        return {k: v / max(self.n, 1) for k, v in self.sums.items()}


def _closing_enumerate(batches, bar):
    """enumerate(bar), closing ``batches`` (a generator; worker pools stop at once) when the
    epoch is left early, by an exception or a signal."""
    try:
        yield from enumerate(bar)
    finally:
        bar.close()
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _nonfinite(parts: Dict[str, float]) -> Dict[str, float]:
    return {k: v for k, v in parts.items() if not math.isfinite(v)}


def fit(cfg: dict, B, build, echo=print, structure_keys=()) -> dict:
    """Train with ``build(cfg, B, log) -> MethodRun`` and backend ``B``; return a summary
    ``{'best', 'best_epoch', 'rows', 'epoch_seconds', 'run_dir', 'files', 'num_classes',
    'rank'}`` (a distributed run's ranks > 0 evaluate nothing: their 'rows' are empty)."""
    t = cfg["train"]
    launch = runtime.detect(B.name)
    probe = MethodRun(None, None, 0)
    rd = RunDir(t["log_dir"], t["ckpt"], probe.checkpoint_names(B.name))
    # every process checks, before the launch's rendezvous (setup_backend): no rank has written yet
    rd.check_can_start(t["resume"], t["overwrite"])
    if t["resume"]:
        check_resume(cfg, B.checkpoint.read_extra(t["resume"]), t["resume"], structure_keys)
    scratch: List[str] = []  # ranks > 0: the private run_dir, removed at the end
    try:
        launch = setup_backend(B, cfg, launch)
        training_policy(B, cfg, launch)
        summary = _train(cfg, B, build, echo, rd, launch, scratch)
        if launch.distributed:
            B.distributed.barrier()  # the ranks end together
            B.distributed.shutdown()
        return summary
    finally:
        runtime.reset()
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)


def _shard(run: MethodRun, launch: runtime.Launch, data: dict) -> None:
    """This process's share of every epoch; one line when a rank would get no batch."""
    batches = len(run)
    run.shard(launch.rank, launch.world_size)
    if len(run) < 1:
        raise runtime.too_many_ranks(batches, launch.world_size, data["num_ids"], data["num_pos"])


def _train(cfg: dict, B, build, echo, rd: RunDir, launch: runtime.Launch, scratch: List[str]) -> dict:
    """:func:`fit` once the backend is set up."""
    t = cfg["train"]
    main = launch.is_main
    log = RunLog(echo, enabled=main)
    run = build(cfg, B, log)
    if launch.distributed:
        _shard(run, launch, cfg["data"])
    rd.names = run.checkpoint_names(B.name)
    start, best, best_epoch, history = 0, -math.inf, -1, []
    if t["resume"]:
        extra = B.checkpoint.load_checkpoint(t["resume"], run.model, run.optimizer)
        start = int(extra["epoch"]) + 1
        best, best_epoch = float(extra.get("best", -math.inf)), int(extra.get("best_epoch", -1))
        history = list(extra.get("history", []))
        run.on_resume(extra)
        log.line(f"resumed from {t['resume']} at epoch {start}")
    if main:
        from common.config import save_config
        rd.start(t["overwrite"], t["resume"])
        save_config(cfg, rd.path)
        log.open(rd.path)
        run.run_dir = rd.path
    else:
        scratch.append(tempfile.mkdtemp(prefix=f"reid-rank{launch.rank}-"))
        run.run_dir = scratch[-1]
    board = None  # TensorBoard scalars (train.tensorboard, rank 0), closed whatever happens below
    epochs = run.num_epochs(cfg)
    ranks = f" on each of {launch.world_size} processes" if launch.distributed else ""
    log.line(f"{run.description}; epochs {start}..{epochs - 1}, {len(run)} batches per epoch{ranks}")

    def save(which: str, epoch: int) -> None:
        if not main:
            return
        extra = {"epoch": epoch, "best": best, "best_epoch": best_epoch, "config": cfg, **run.meta(),
                 "history": [{k: v for k, v in h.items() if k != "eval"} for h in history]}
        with signals.critical():
            B.checkpoint.save_checkpoint(rd.file(which), run.model, run.optimizer, extra)
            saved.append(which)  # inside: a signal deferred by the write must see it saved

    rows: List[dict] = []
    saved: List[str] = []  # checkpoints written by this run
    epoch_seconds: List[float] = []
    skipped = 0  # consecutive skipped steps (train.nonfinite=skip), across epochs
    from tqdm import tqdm
    try:
        if t["tensorboard"] and main:
            from common.engine.board import ScalarBoard
            board = ScalarBoard(rd.path)
        with signals.terminate_as_exception():
            for epoch in range(start, epochs):
                B.device.set_seed(t["seed"] + epoch)
                run.begin_epoch(epoch)
                lrs = run.lrs(epoch)
                B.optim.set_group_lrs(run.optimizer, lrs)
                acc = _Epoch()
                batches = run.batches(epoch)
                bar = tqdm(batches, total=len(run), desc=f"epoch {epoch}", leave=False,
                           disable=None if main else True)
                for step, batch in _closing_enumerate(batches, bar):
                    parts = run.train_step(batch)
                    bad = _nonfinite(parts)
                    if bad:
                        where = (f"non-finite loss or gradient at epoch {epoch}, step {step}: "
                                 + ", ".join(f"{k}={v}" for k, v in bad.items())
                                 + f" (learning rate {max(lrs):.3g})")
                        if t["nonfinite"] == "stop" or skipped >= t["max_skipped"]:
                            kept = rd.file("last") if epoch > start or t["resume"] else "none (first epoch)"
                            advice = ("Lower --lr, or pass --set train.nonfinite=skip" if t["nonfinite"] == "stop"
                                      else f"{skipped} steps in a row were already skipped; lower --lr")
                            raise DivergenceError(f"{where}; stopped without saving; last good checkpoint: "
                                                  f"{kept}. {advice}")
                        skipped += 1
                        log.line(f"warning: {where}; step skipped ({skipped} in a row)")
                        continue
                    skipped = 0
                    acc.add(parts)
                    bar.set_postfix(loss=f"{parts['total']:.3f}")
                if acc.n == 0:
                    raise ReidError("the training set gave no batch; check data.num_ids / data.num_pos "
                                    "against the dataset")
                secs = time.time() - acc.t0
                epoch_seconds.append(secs)
                means = acc.means()
                log.line(f"epoch {epoch} lr {max(lrs):.2e} " + " ".join(f"{k} {v:.4f}" for k, v in means.items())
                         + f" ({secs:.1f}s)")
                entry = {"epoch": epoch, "lrs": lrs, "seconds": secs, **means}
                if ((run.stage_epoch(epoch) + 1) % t["eval_every"] == 0 or epoch + 1 == epochs
                        or run.eval_due(epoch)) and main:
                    rows = run.evaluate()
                    log.line("\n" + format_table(rows, run.columns))
                    entry["eval"] = rows
                    score = run.score(rows)
                    if score > best:
                        best, best_epoch = score, epoch
                        history.append(entry)
                        save("best", epoch)
                        history.pop()
                history.append(entry)
                log.record(**entry)
                if board is not None:
                    board.epoch(entry)
                save("last", epoch)
                if launch.distributed:
                    B.distributed.barrier()  # the other ranks wait while rank 0 evaluates and saves
            with signals.critical():
                run.finish()
    except BaseException as exc:
        if board is not None:
            board.close()
        if not saved and not t["resume"]:
            rd.discard()  # nothing to resume from: leave no half-written run folder
        if not isinstance(exc, KeyboardInterrupt):
            raise
        resumable = [rd.file(w) for w in ("last", "best") if os.path.isfile(rd.file(w))]
        hint = (f"resume with: --resume {resumable[0]}" if resumable
                else "no checkpoint was written yet; run the same command again")
        raise Interrupted(f"interrupted ({'SIGTERM' if isinstance(exc, signals.Terminated) else 'Ctrl-C'}); "
                          f"{hint}", signals.exit_code(exc)) from None
    if board is not None:
        board.close()
    return {"best": best, "best_epoch": best_epoch, "rows": rows, "epoch_seconds": epoch_seconds,
            "run_dir": rd.path, "files": rd.summary(), "num_classes": run.num_classes, "rank": launch.rank}
