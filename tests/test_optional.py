"""common/optional.py: a missing optional package is one line naming its extra; importing a
protobuf user through ``require`` before mindspore leaves ``import mindspore`` working."""
import os
import subprocess
import sys

import pytest

from common.optional import MissingDependency, require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(MissingDependency) as info:
        require("matplotlib", "ranked-list pictures")
    text = str(info.value)
    assert "ranked-list pictures" in text and "'matplotlib'" in text and "reid-kd[viz]" in text
    assert "\n" not in text


def test_an_installed_package_is_returned():
    assert require("json", "a test").dumps([1]) == "[1]"


@pytest.mark.parametrize("first", ["onnx", "tensorboardX"])
def test_mindspore_imports_after_a_protobuf_user(first):
    import importlib.util
    if importlib.util.find_spec(first) is None or importlib.util.find_spec("mindspore") is None:
        pytest.skip(f"needs {first} and mindspore")  # (not imported here: this process may need mindspore)
    code = (f"from common.optional import require; require({first!r}, 't'); import mindspore; "
            "print('imported', mindspore.__version__)")
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "imported 2.8" in r.stdout, r.stderr[-1500:]
    # and the trap is real: without require the same order fails
    bare = subprocess.run([sys.executable, "-c", f"import {first}; import mindspore"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert bare.returncode != 0
