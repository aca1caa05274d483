"""Fixtures shared by every test: isolation of global state, the MindSpore mode contract,
and the ``ms_mode`` / ``backend`` fixtures.

Isolation (autouse): after every test, MindSpore's execution mode and the global random
states (python ``random``, numpy's global generator, torch's CPU generator) are put back to
what they were before it. A framework is only touched when it is already imported
(``sys.modules``), so a torch-only test never imports mindspore and vice versa.

Mode contract: every test starts in MindSpore PYNATIVE mode unless it asks for GRAPH, either
through the ``ms_mode`` fixture (parametrized PYNATIVE/GRAPH, or
``@pytest.mark.parametrize("ms_mode", ["GRAPH"], indirect=True)`` for GRAPH only) or with
the marker ``@pytest.mark.ms_graph`` (the test then starts in GRAPH mode). A test that
starts in any other mode fails with a message naming the mode it found: some earlier
fixture, module or test changed MindSpore's global context without restoring it.
"""
import os
import random
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import backends  # noqa: E402  (framework-free: imports no framework by itself)

MS_MODES = ("PYNATIVE", "GRAPH")
GRAPH_MARKER = "ms_graph"
_ASKED_MODE = pytest.StashKey[str]()


def pytest_configure(config):
    try:  # tiny test tensors: one torch thread is many times faster than two on a loaded 2-core machine
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    config.addinivalue_line(
        "markers", f"{GRAPH_MARKER}: the test starts in MindSpore GRAPH mode (set and restored by "
                   "tests/conftest.py); without it (or the ms_mode fixture) a test must start in PYNATIVE")


def _ms_mode_name(ms) -> str:
    return "GRAPH" if ms.get_context("mode") == ms.GRAPH_MODE else "PYNATIVE"


def _set_ms_mode(ms, name: str) -> None:
    ms.set_context(mode=ms.GRAPH_MODE if name == "GRAPH" else ms.PYNATIVE_MODE)


@pytest.fixture(autouse=True)
def _isolate_global_state(request):
    """Snapshot the MindSpore mode and the global RNG states; restore them after the test."""
    ms = sys.modules.get("mindspore")
    ms_before = _ms_mode_name(ms) if ms is not None else "PYNATIVE"  # a fresh import starts PYNATIVE
    torch = sys.modules.get("torch")
    torch_rng = torch.get_rng_state() if torch is not None else None
    py_rng, np_rng = random.getstate(), np.random.get_state()
    if request.node.get_closest_marker(GRAPH_MARKER) is not None:
        ms = pytest.importorskip("mindspore")
        request.node.stash[_ASKED_MODE] = "GRAPH"
        _set_ms_mode(ms, "GRAPH")
    try:
        yield
    finally:
        random.setstate(py_rng)
        np.random.set_state(np_rng)
        if torch_rng is not None:
            torch.set_rng_state(torch_rng)
        ms = sys.modules.get("mindspore")
        if ms is not None and _ms_mode_name(ms) != ms_before:
            _set_ms_mode(ms, ms_before)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    """Fail a test that starts in a MindSpore mode it did not ask for (module docstring)."""
    ms = sys.modules.get("mindspore")
    if ms is None:
        return
    asked = item.stash.get(_ASKED_MODE, "PYNATIVE")
    found = _ms_mode_name(ms)
    if found != asked:
        pytest.fail(f"{item.nodeid} starts in MindSpore {found} mode but asked for {asked}: something "
                    f"before it (an earlier test, a fixture or a module) set mindspore's execution mode "
                    f"without restoring it. Ask for GRAPH with the ms_mode fixture or "
                    f"@pytest.mark.{GRAPH_MARKER}; restore the mode in whatever changed it.", pytrace=False)


@pytest.fixture(params=MS_MODES)
def ms_mode(request):
    """Run the test once per MindSpore execution mode; yields 'PYNATIVE' or 'GRAPH'.

    Sets ``mindspore.set_context(mode=...)`` for the test; the mode before it is restored
    afterwards. In GRAPH mode the test must call the code under test through a
    ``mindspore.jit`` function defined in a source file (graph mode compiles from source
    files only). For one mode only: ``@pytest.mark.parametrize("ms_mode", ["GRAPH"],
    indirect=True)`` (a ``pytest.param("GRAPH", marks=pytest.mark.slow)`` works too).
    """
    ms = pytest.importorskip("mindspore")
    if request.param not in MS_MODES:
        raise ValueError(f"ms_mode must be one of {MS_MODES}, got {request.param!r}")
    before = _ms_mode_name(ms)
    request.node.stash[_ASKED_MODE] = request.param
    _set_ms_mode(ms, request.param)
    try:
        yield request.param
    finally:
        _set_ms_mode(ms, before)


@pytest.fixture(params=backends.BACKENDS)
def backend(request):
    """``backends.get(name)`` for name in ("torch", "mindspore"); skipped when that framework
    is not installed. Use it instead of writing one test file per backend."""
    pytest.importorskip(request.param)
    return backends.get(request.param)


@pytest.fixture(params=backends.BACKENDS)
def B(request):
    """Like ``backend``, on the CPU and in PYNATIVE mode (for unit tests of backend functions
    that are called outside a training run)."""
    pytest.importorskip(request.param)
    b = backends.get(request.param)
    b.device.select_device("CPU", 0)
    b.device.set_mode("PYNATIVE")
    return b


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures(...)``): two
    threads on a small shared machine are many times slower than one for tiny networks."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
