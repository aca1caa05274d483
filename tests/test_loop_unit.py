"""The shared loop's own logic with a scripted method and an in-memory backend: non-finite
steps (stop vs skip, the consecutive limit, epoch means without skipped steps), evaluation
cadence, best-checkpoint selection, the learning rate per epoch and the resume order. The
end-to-end guarantees with the real backends are in tests/test_loop_guarantees.py."""
import json
import math
import types

import pytest

from common.config import load_config
from common.engine.loop import DivergenceError, MethodRun, fit


class ScriptedRun(MethodRun):
    """Losses come from ``script[(epoch, step)]`` (default 1.0); scores from ``scores``."""

    def __init__(self, script=None, scores=(), n=3):
        super().__init__(model={"w": 0}, optimizer={"lrs": []}, num_classes=2, description="scripted")
        self.script, self.scores, self.n, self.epoch, self.updates = dict(script or {}), list(scores), n, None, []

    def __len__(self):
        return self.n

    def batches(self, epoch):
        self.epoch = epoch
        return iter(range(self.n))

    def lrs(self, epoch):
        return [0.1 * (epoch + 1), 1.0 * (epoch + 1)]

    def train_step(self, step):
        value = self.script.get((self.epoch, step), 1.0 + step)
        if math.isfinite(value):
            self.updates.append((self.epoch, step))
        return {"total": value, "part": value / 2}

    def evaluate(self):
        return [{"setting": "all", "R1": self.scores.pop(0) if self.scores else 0.0, "R10": 0.0, "R20": 0.0,
                 "mAP": 0.0, "mINP": 0.0}]


def fake_backend():
    saved = {}

    def save_checkpoint(path, model, optimizer=None, extra=None):
        with open(path, "w") as f:
            json.dump(extra, f)
        saved[path] = extra

    def load_checkpoint(path, model, optimizer=None):
        with open(path) as f:
            return json.load(f)

    def read_extra(path):
        return load_checkpoint(path, None)

    lrs_seen = []
    device = types.SimpleNamespace(enable_compile_cache=lambda p: None, set_mode=lambda m: None,
                                   select_device=lambda t, g: None, set_seed=lambda s: None)
    optim = types.SimpleNamespace(set_group_lrs=lambda opt, lrs: lrs_seen.append(list(lrs)))
    checkpoint = types.SimpleNamespace(save_checkpoint=save_checkpoint, load_checkpoint=load_checkpoint,
                                       read_extra=read_extra)
    return types.SimpleNamespace(name="torch", device=device, optim=optim, checkpoint=checkpoint,
                                 saved=saved, lrs_seen=lrs_seen)


def _cfg(tmp_path, *sets):
    return load_config(None, [f"train.log_dir={tmp_path}", "schedule.epochs=3", "data.data_path=x", *sets])


def test_stop_at_the_first_nonfinite_step(tmp_path):
    run = ScriptedRun({(1, 1): float("nan")})
    B = fake_backend()
    with pytest.raises(DivergenceError, match=r"epoch 1, step 1: total=nan, part=nan \(learning rate 2"):
        fit(_cfg(tmp_path), B, lambda c, b, log: run, echo=None)
    assert run.updates == [(0, 0), (0, 1), (0, 2), (1, 0)]
    last = json.load(open(tmp_path / "toy" / "torch_last.pth"))
    assert last["epoch"] == 0  # the last good checkpoint was kept


def test_skip_continues_and_epoch_means_exclude_skipped_steps(tmp_path):
    run = ScriptedRun({(1, 1): float("nan")})
    fit(_cfg(tmp_path, "train.nonfinite=skip"), fake_backend(), lambda c, b, log: run, echo=None)
    records = [json.loads(line) for line in open(tmp_path / "toy" / "metrics.jsonl")]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert records[1]["total"] == pytest.approx((1.0 + 3.0) / 2)  # steps 0 and 2 only
    assert "warning: non-finite" in open(tmp_path / "toy" / "train.log").read()


def test_skip_gives_up_after_max_skipped_in_a_row(tmp_path):
    run = ScriptedRun({(0, 0): math.inf, (0, 1): math.inf, (0, 2): 1.0, (1, 0): math.inf, (1, 1): math.inf,
                       (1, 2): math.inf})
    with pytest.raises(DivergenceError, match="epoch 1, step 2.*2 steps in a row were already skipped"):
        fit(_cfg(tmp_path, "train.nonfinite=skip", "train.max_skipped=2"), fake_backend(),
            lambda c, b, log: run, echo=None)


def test_lrs_cadence_best_and_resume(tmp_path):
    B = fake_backend()
    run = ScriptedRun(scores=[10.0, 30.0, 20.0])
    summary = fit(_cfg(tmp_path, "train.eval_every=1"), B, lambda c, b, log: run, echo=None)
    assert B.lrs_seen == [[0.1, 1.0], [0.2, 2.0], [pytest.approx(0.3), 3.0]]
    assert summary["best"] == 30.0 and summary["best_epoch"] == 1
    best = json.load(open(tmp_path / "toy" / "torch_best.pth"))
    assert best["epoch"] == 1 and best["best"] == 30.0
    # evaluation every 2 epochs, and after the last one
    run2 = ScriptedRun(scores=[5.0, 6.0])
    fit(_cfg(tmp_path / "b", "train.eval_every=2", "schedule.epochs=3"), fake_backend(), lambda c, b, log: run2,
        echo=None)
    evals = [json.loads(line).get("eval") is not None for line in open(tmp_path / "b" / "toy" / "metrics.jsonl")]
    assert evals == [False, True, True]
    # resume: epochs continue after the checkpoint's epoch, best carried over
    run3 = ScriptedRun(scores=[25.0])
    last = str(tmp_path / "toy" / "torch_last.pth")
    summary = fit(_cfg(tmp_path, "schedule.epochs=4", f"train.resume={last}"), B, lambda c, b, log: run3, echo=None)
    assert [e for e, _ in run3.updates] == [3, 3, 3] and summary["best"] == 30.0
