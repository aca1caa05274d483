"""Mixed precision (``--amp``, ``runtime.amp``; common/engine/runtime.py, backends/<fw>/precision.py):
the training step of every method runs its forward and loss in low precision, the loss still
falls, fp16's dynamic loss scaling skips overflowing steps quietly while a non-finite loss is
still reported (the loop's stop/skip logic), and a precision the device cannot run is one line.

Measured on this CPU: torch runs bf16 and fp16 autocast; MindSpore 2.8 runs fp16 but has no
bfloat16 CPU convolution, so ``--amp bf16 --backend mindspore`` is the refusal tested here."""
import json

import numpy as np
import pytest

import train as train_cli
from common.engine import runtime
from test_backend_engine import _batch, _model, _trainer
from tiny import make_sysu, train_argv

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (backend, amp) pairs this CPU runs
SUPPORTED = [("torch", "bf16"), ("torch", "fp16"),
             pytest.param("mindspore", "fp16", marks=pytest.mark.slow)]  # about 11 s here


def _backend(name):
    pytest.importorskip(name)
    import backends
    B = backends.get(name)
    B.device.select_device("CPU", 0)
    B.device.set_mode("PYNATIVE")
    return B


@pytest.mark.parametrize("name, amp", SUPPORTED)
def test_mixed_precision_step_lowers_the_loss(name, amp):
    """The tiny MVD network: the first mixed-precision loss is the float32 one up to rounding
    (so autocast is on, and harmless), and eight steps on one batch lower it (fp16: the first
    four overflow at scales 2**16..2**13 and are skipped)."""
    B = _backend(name)
    cfg, model = _model(B, recipe="mvd_routed", extra=["mvd.loss_func=id+tri+kldiv"])
    state = B.weights.state_to_numpy(model)
    full = _trainer(B, cfg, model).train_step(*_batch())["total"]
    B.weights.load_numpy_state(model, state)
    with runtime.using(amp=amp):
        trainer = _trainer(B, cfg, model)
        losses = [trainer.train_step(*_batch()) for _ in range(8)]
    assert trainer.step.amp == amp
    assert all(np.isfinite(list(d.values())).all() for d in losses)
    first = losses[0]["total"]
    assert first != full and first == pytest.approx(full, rel=5e-2)  # low precision, same loss
    assert losses[-1]["total"] < 0.9 * first
    assert trainer.step.overflows == (4 if amp == "fp16" else 0)


def _linear(B):
    """A 4 -> 3 linear layer and an SGD optimizer (lr 0.1)."""
    if B.name == "torch":
        import torch
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        return model, torch.optim.SGD(model.parameters(), lr=0.1)
    from mindspore import nn
    B.device.set_seed(0)
    model = nn.Dense(4, 3)
    return model, nn.SGD(model.trainable_params(), learning_rate=0.1)


def _sum_loss(B, model, factor=1.0):
    """loss = factor * sum(model(x)) in float32: d loss / d output is ``factor`` x the loss scale,
    which overflows float16 (max 65504) at the initial scale 2**16."""
    if B.name == "torch":
        return lambda x: (model(x).float().sum() * factor,)
    import mindspore as ms
    return lambda x: (model(x).astype(ms.float32).sum() * factor,)


def _weights(B, model):
    return {k: v.copy() for k, v in B.weights.state_to_numpy(model).items()}


@pytest.mark.parametrize("name", ["torch", "mindspore"])
def test_fp16_overflow_is_skipped_quietly_and_lowers_the_scale(name):
    B = _backend(name)
    model, opt = _linear(B)
    x = np.ones((1, 4), np.float32)  # d loss / d weight = the scale: finite from 2**15 on
    with runtime.using(amp="fp16"):
        step = B.engine.TrainStep(model, opt, _sum_loss(B, model), ("total",), ms_mode="PYNATIVE")
    before = _weights(B, model)
    out = step(x)  # scale 65536: the fp16 gradient of the output overflows
    assert set(out) == {"total"} and np.isfinite(out["total"]) and step.overflows == 1
    assert all(np.array_equal(before[k], v) for k, v in _weights(B, model).items())
    out = step(x)  # scale 32768: finite, the update is applied
    assert set(out) == {"total"} and step.overflows == 1
    assert not np.array_equal(before["weight"], _weights(B, model)["weight"])


@pytest.mark.parametrize("name", ["torch", "mindspore"])
def test_nonfinite_steps_are_still_reported_under_the_scaler(name):
    """A NaN loss is reported as it always was (the loop then stops or skips), and an overflow
    that a scale of 1 cannot cure is reported as a non-finite gradient; neither updates."""
    B = _backend(name)
    model, opt = _linear(B)
    with runtime.using(amp="fp16"):
        step = B.engine.TrainStep(model, opt, _sum_loss(B, model), ("total",), ms_mode="PYNATIVE")
        huge = B.engine.TrainStep(model, opt, _sum_loss(B, model, 1e6), ("total",), ms_mode="PYNATIVE")
    before = _weights(B, model)
    bad = np.ones((2, 4), np.float32)
    bad[0, 0] = np.nan
    assert np.isnan(step(bad)["total"])
    outs = [huge(np.ones((2, 4), np.float32)) for _ in range(17)]
    # scales 2**16 .. 2: sixteen quiet overflows; at scale 1 the overflow is reported
    assert huge.overflows == 16 and all(set(o) == {"total"} for o in outs[:16])
    assert np.isnan(outs[16]["gradient"]) and np.isfinite(outs[16]["total"])
    assert all(np.array_equal(before[k], v) for k, v in _weights(B, model).items())


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_sysu(tmp_path_factory.mktemp("sysu"))


def _metrics(log_dir):
    return [json.loads(line) for line in open(log_dir / "t" / "metrics.jsonl")]


def test_amp_flag_trains_the_run_in_mixed_precision(root, tmp_path):
    """``--amp bf16`` (torch): recorded in config.yaml, finite losses that differ from the
    float32 run's by rounding only."""
    import yaml
    assert train_cli.main(train_argv(root, str(tmp_path / "full"))) == 0
    assert train_cli.main(train_argv(root, str(tmp_path / "bf16"), extra=["--amp", "bf16"])) == 0
    cfg = yaml.safe_load(open(tmp_path / "bf16" / "t" / "config.yaml"))
    assert cfg["runtime"]["amp"] == "bf16"
    full, half = _metrics(tmp_path / "full"), _metrics(tmp_path / "bf16")
    assert [m["total"] for m in half] != [m["total"] for m in full]
    assert [m["total"] for m in half] == pytest.approx([m["total"] for m in full], rel=5e-2)
    assert runtime.current() == runtime.Runtime()  # the run's policy does not outlive it


def test_a_precision_the_device_cannot_run_is_one_line(root, tmp_path, capsys):
    pytest.importorskip("mindspore")
    argv = train_argv(root, str(tmp_path), "mindspore", extra=["--amp", "bf16"])
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("error: --amp bf16 cannot run on MindSpore CPU")
    assert "use --amp off or --amp fp16" in err[0]
    assert not (tmp_path / "t").exists()
