"""The parity suite's fixtures (``ms_mode``, ``backend``) live in tests/conftest.py, shared
with every other test; see its docstring for the MindSpore mode contract."""
MS_MODES = ("PYNATIVE", "GRAPH")  # the modes parity tests run MindSpore in (tests/conftest.py has the fixture)
