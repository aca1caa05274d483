"""The three KD-REID runs driven by the shared loop (``common/recipes/kdreid.py`` builds them):
source training, D-MMD adaptation of one teacher, multi-teacher distillation.

Each follows one engine of fremigereau/MTDA_KD_REID (``torchreid/engine/``):

* :class:`SourceRun`: ``image/triplet.py`` ``ImageTripletEngine`` (CE + triplet on P x K
  source batches; the first ``kdreid.fixbase_epochs`` epochs train the classifier only, the
  rest of the network frozen and in eval mode, ``open_specified_layers``);
* :class:`DMMDRun`: ``image/mmd.py`` ``ImageMmdEngine``: source and target batches zipped
  (the epoch ends with the shorter loader); CE + triplet on the source, plus the within-class,
  between-class and global MMD terms from epoch ``kdreid.mmd_start_epoch`` on (``epoch > 24``);
* :class:`KDRun`: ``image/KD_one_by_one_engine.py`` (``target_alt='full'``: the targets one
  after another, each zipped with a fresh pass of the source loader; the order fixed,
  random, or by ascending source-to-target shift measured over a whole pass at the start of
  the epoch) and ``image/KD_batch_engine.py`` (``'batch'``: every batch index holds one
  source batch and one batch per target, and the student takes one optimizer step per
  target in the batch's order; ``reference_length`` steps per pass, exhausted loaders
  restarted). The batch engine's loop over teachers encloses the whole pass (and its
  scheduler step): with ``kdreid.sched_per_teacher`` an epoch holds T passes and the step
  rate decays after each, as there; by default one pass and one scheduler step per epoch.

Learning rate: torchreid ``single_step`` = StepLR(step_size, gamma 0.1) stepped after each
epoch, i.e. ``lr * 0.1 ** (epoch // step_size)`` (``schedule.milestones`` holds the steps).
Evaluation: every ``train.eval_every`` epochs (and after the last), on every evaluation set;
the model-selection score is the mean Rank-1 over the sets (MTDA ``Engine.test``).
"""
import math
from typing import Dict, List

import numpy as np

from common.engine.loop import MethodRun
from common.recipes.kdreid_data import Cursor, PlannedBatches, cut, evaluate_sets, stream_key
from common.schedule import multistep_lr

COLUMNS = ("setting", "R1", "R10", "R20", "mAP", "mINP")
SHIFT_SUB = 2048  # permutation keys of the full engine's shift-measuring pass


class _Run(MethodRun):
    """Shared pieces: the planned epoch, the step rate, evaluation and the mean-R1 score."""

    columns = COLUMNS

    def __init__(self, cfg, B, model, optimizer, num_classes, description, streams, transform, sets):
        super().__init__(model, optimizer, num_classes, description)
        self.cfg, self.B, self.streams, self.transform, self.sets = cfg, B, streams, transform, sets
        self.epoch, self._len = 0, 0

    def __len__(self):
        return self._len

    def plan(self, epoch: int):
        """(items, column names) of ``epoch``."""
        raise NotImplementedError

    def planned_len(self, items) -> int:
        return len(cut(items, self.cfg["data"]["max_batches"]))

    def batches(self, epoch):
        items, columns = self.plan(epoch)
        items = cut(items, self.cfg["data"]["max_batches"])
        self._len = len(items)
        source = PlannedBatches(self.streams, self.transform, self.cfg["train"]["seed"], epoch, items, columns)
        return self.B.data.make_loader(source, epoch, self.cfg["data"]["workers"])

    def begin_epoch(self, epoch):
        self.epoch = epoch

    def lrs(self, epoch):
        lr = multistep_lr(epoch, self.cfg["optim"]["lr"], self.cfg["schedule"]["milestones"],
                          self.cfg["schedule"]["gamma"])
        return [lr, lr]

    def evaluate(self):
        return evaluate_sets(self.B, self.model, self.sets, self.cfg)

    def score(self, rows: List[dict]) -> float:
        """Rank-1 of the ``mean`` row (the last) with several sets, of the only row otherwise."""
        return float(rows[-1]["R1"])

    def meta(self) -> dict:
        return {"num_classes": self.num_classes, "arch": self.arch}


class SourceRun(_Run):
    """Source training (module docstring)."""

    def setup(self, arch, trainer, fix_trainer=None, fix_optimizer=None, fixbase=0):
        self.arch, self.trainer, self.fix_trainer = arch, trainer, fix_trainer
        self.main_optimizer, self.fix_optimizer, self.fixbase = self.optimizer, fix_optimizer, int(fixbase)
        self._len = self.planned_len(self.plan(0)[0])
        return self

    def plan(self, epoch):
        return [(((0, b),), ()) for b in self.streams[0].perm(stream_key(epoch))], ("images", "pids")

    def begin_epoch(self, epoch):
        super().begin_epoch(epoch)
        self.optimizer = self.fix_optimizer if epoch < self.fixbase else self.main_optimizer

    def train_step(self, batch):
        trainer = self.fix_trainer if self.epoch < self.fixbase else self.trainer
        return trainer.train_step(batch[0], batch[1])


class DMMDRun(_Run):
    """D-MMD adaptation (module docstring); streams: [source, target]."""

    def setup(self, arch, trainer):
        self.arch, self.trainer = arch, trainer
        self._len = self.planned_len(self.plan(0)[0])
        return self

    def plan(self, epoch):
        src, tgt = self.streams[0].perm(stream_key(epoch)), self.streams[1].perm(stream_key(epoch))
        return ([(((0, s), (1, t)), ()) for s, t in zip(src, tgt)],
                ("source", "source_pids", "target", "target_pids"))

    def train_step(self, batch):
        with_mmd = self.epoch >= self.cfg["kdreid"]["mmd_start_epoch"]
        return self.trainer.train_step(batch[0], batch[1], batch[2], with_mmd)


def _mean_terms(parts: List[Dict[str, float]]) -> Dict[str, float]:
    for p in parts:  # a skipped (non-finite) step is reported as it is
        if not all(math.isfinite(v) for v in p.values()):
            return p
    return {k: float(np.mean([p[k] for p in parts])) for k in parts[0]}


class KDRun(_Run):
    """Multi-teacher distillation (module docstring); streams: [source, target 1..T]."""

    def setup(self, arch, trainer, target_names):
        self.arch, self.trainer, self.targets = arch, trainer, list(target_names)
        self.T, k = len(self.targets), self.cfg["kdreid"]
        self.passes = self.T if k["target_alt"] == "batch" and k["sched_per_teacher"] else 1
        self.current_pass, self.orders = 0, {}
        self._len = self.planned_len(self.plan(0, measure=False)[0])
        return self

    # ---- target order
    def _full_order(self, epoch: int, measure: bool = True) -> List[int]:
        k = self.cfg["kdreid"]
        if k["target_order"] == "fixed" or (k["target_order"] == "shift" and not measure):
            return list(range(self.T))
        if k["target_order"] == "random":
            return [int(i) for i in np.random.default_rng([self.cfg["train"]["seed"], epoch, 17]).permutation(self.T)]
        return self.measure_order(epoch)

    def measure_order(self, epoch: int) -> List[int]:
        """Ascending mean source-to-target shift of the student over one pass of each target
        zipped with the source (MTDA KD_one_by_one_engine.py, ``target_order='shift'``)."""
        d, k = self.cfg["data"], self.cfg["kdreid"]
        dist = []
        for t in range(self.T):
            key = stream_key(epoch, SHIFT_SUB + t)
            items = [(((0, s), (1 + t, g)), ()) for s, g in zip(self.streams[0].perm(key), self.streams[1 + t].perm(key))]
            items = cut(items, d["max_batches"])
            src = PlannedBatches(self.streams, self.transform, self.cfg["train"]["seed"] + 1 + t, epoch, items,
                                 ("source", "source_pids", "target", "target_pids"))
            values = [self.trainer.measure_shift(b[0], b[2], k["shift_measure"])
                      for b in self.B.data.make_loader(src, epoch, d["workers"])]
            dist.append(float(np.mean(values)))
        order = [int(i) for i in np.argsort(dist, kind="stable")]
        self.orders[epoch] = {"order": [self.targets[i] for i in order], "shift": dist}
        return order

    # ---- plans
    def plan(self, epoch, measure=True):
        if self.cfg["kdreid"]["target_alt"] == "full":
            items = []
            for pos, t in enumerate(self._full_order(epoch, measure)):
                src = self.streams[0].perm(stream_key(epoch, 1 + pos))
                tgt = self.streams[1 + t].perm(stream_key(epoch))
                items += [(((0, s), (1 + t, g)), ([t],)) for s, g in zip(src, tgt)]
            return items, ("source", "source_pids", "target", "target_pids", "target_index")
        return self._batch_plan(epoch)

    def _batch_plan(self, epoch):
        k, seed = self.cfg["kdreid"], self.cfg["train"]["seed"]
        steps = max(s.reference_len for s in self.streams[1:])
        source = Cursor(self.streams[0], epoch)
        targets = [Cursor(s, epoch, restart=k["target_restart"]) for s in self.streams[1:]]
        items = []
        for p in range(self.passes):
            for b in range(steps):
                parts = ((0, source.next()),) + tuple((1 + t, c.next()) for t, c in enumerate(targets))
                order = (np.random.default_rng([seed, epoch, p, b]).permutation(self.T)
                         if k["target_order"] == "random" else np.arange(self.T))
                items.append((parts, ([int(i) for i in order], [p])))
        names = [f"target{t}{s}" for t in range(self.T) for s in ("", "_pids")]
        return items, ("source", "source_pids", *names, "order", "pass")

    # ---- steps
    def lr_of_pass(self, epoch: int, p: int) -> float:
        """StepLR stepped after every pass (``sched_per_teacher``): pass ``epoch*T + p``."""
        step = self.cfg["kdreid"]["step_size"]
        return self.cfg["optim"]["lr"] * self.cfg["schedule"]["gamma"] ** ((epoch * self.passes + p) // step)

    def lrs(self, epoch):
        if self.passes == 1:
            return super().lrs(epoch)
        self.current_pass = 0
        return [self.lr_of_pass(epoch, 0)] * 2

    def train_step(self, batch):
        if self.cfg["kdreid"]["target_alt"] == "full":
            return self.trainer.train_step(batch[0], batch[1], batch[2], int(batch[4][0]))
        p = int(batch[-1][0])
        if p != self.current_pass:
            self.current_pass = p
            self.B.optim.set_group_lrs(self.optimizer, [self.lr_of_pass(self.epoch, p)] * 2)
        src, tgts = batch[0], batch[2:2 + 2 * self.T:2]
        order = [int(i) for i in batch[-2]]
        if self.cfg["kdreid"]["target_order"] == "shift":  # MTDA KD_batch_engine.py: per batch
            dist = [self.trainer.measure_shift(src, tgts[t], self.cfg["kdreid"]["shift_measure"]) for t in range(self.T)]
            order = [int(i) for i in np.argsort(dist, kind="stable")]
        return _mean_terms([self.trainer.train_step(src, batch[1], tgts[ix], ix) for ix in order])

    def meta(self) -> dict:
        out = super().meta()
        if self.orders:
            out["target_orders"] = {str(e): o for e, o in sorted(self.orders.items())[-3:]}
        return out
