"""Fixtures shared by the parity suite (SPEC section 10)."""
import pytest

MS_MODES = ("PYNATIVE", "GRAPH")


@pytest.fixture(params=MS_MODES)
def ms_mode(request):
    """Run the test once per MindSpore execution mode; yields 'PYNATIVE' or 'GRAPH'.

    Sets ``mindspore.set_context(mode=...)`` for the test and restores PYNATIVE afterwards.
    In GRAPH mode the test must call the code under test through a ``mindspore.jit`` function
    defined in a source file (graph mode compiles from source files only).
    """
    ms = pytest.importorskip("mindspore")
    mode = ms.GRAPH_MODE if request.param == "GRAPH" else ms.PYNATIVE_MODE
    ms.set_context(mode=mode)
    try:
        yield request.param
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
