"""MindSpore GRAPH mode, the shipped default (``runtime.ms_mode: GRAPH``), in the default run:
``--ms-mode`` decides whether the training step is compiled, and a GRAPH run resumed from its
checkpoint continues exactly (losses and parameters). Compiling the tiny MVD step takes about
9 s on a 2-core machine, so the module shares its runs: three GRAPH trainings in all. (The
GRAPH step against torch from identical weights is tests/parity/test_step_parity.py
``[mvd_port-adam-GRAPH]``.)"""
import json

import numpy as np
import pytest

import train as train_cli
from tiny import make_sysu, train_argv

ms = pytest.importorskip("mindspore")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_sysu(tmp_path_factory.mktemp("sysu"))


def _run(root, log_dir, mode, extra=()):
    argv = train_argv(root, str(log_dir), "mindspore", "mvd_port", ["--ms-mode", mode, *extra])
    return train_cli.main(argv)


def _counting_run(root, log_dir, mode, extra=()):
    """Run and count the step functions compiled by ``mindspore.jit``."""
    from backends.mindspore import engine
    calls, real = [], engine.ms.jit

    def counting_jit(fn, *args, **kwargs):
        calls.append(fn.__name__)
        return real(fn, *args, **kwargs)

    engine.ms.jit = counting_jit
    try:
        assert _run(root, log_dir, mode, extra) == 0
    finally:
        engine.ms.jit = real
    return calls.count("step_fn")


@pytest.fixture(scope="module")
def one_graph_epoch(root, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("b")
    before = ms.get_context("mode")
    try:
        return log_dir, _counting_run(root, log_dir, "GRAPH", ["--epochs", "1"])
    finally:
        ms.set_context(mode=before)


def test_ms_mode_decides_whether_the_step_is_compiled(root, tmp_path, one_graph_epoch):
    assert one_graph_epoch[1] == 1
    assert _counting_run(root, tmp_path, "PYNATIVE", ["--epochs", "1"]) == 0


def test_graph_resume_is_exact(root, tmp_path, one_graph_epoch):
    from backends.mindspore.checkpoint import read_file
    b = one_graph_epoch[0]
    assert _run(root, tmp_path / "a", "GRAPH") == 0
    last_b = b / "t" / "mindspore_last.ckpt"
    assert _run(root, b, "GRAPH", ["--resume", str(last_b)]) == 0
    la = [json.loads(line) for line in open(tmp_path / "a" / "t" / "metrics.jsonl")]
    lb = [json.loads(line) for line in open(b / "t" / "metrics.jsonl")]
    assert [e["epoch"] for e in lb] == [0, 1]
    for key in ("total", "id", "tri"):
        assert lb[1][key] == pytest.approx(la[1][key], rel=1e-6, abs=1e-7), key
    sa, sb = read_file(str(tmp_path / "a" / "t" / "mindspore_last.ckpt"))[0], read_file(str(last_b))[0]
    assert max(float(np.abs(sa[k] - sb[k]).max()) for k in sa) <= 1e-6
