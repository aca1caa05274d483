"""`common/` must never import torch or mindspore (DEVELOPERS.md, SPEC 1)."""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORBIDDEN = ("torch", "mindspore")


def _imports(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_no_framework_import_statements_in_common():
    bad = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "common")):
        for f in files:
            if f.endswith(".py"):
                p = os.path.join(dirpath, f)
                bad += [f"{os.path.relpath(p, ROOT)} imports {m}" for m in _imports(p) if m in FORBIDDEN]
    assert not bad, bad


def test_importing_every_common_module_loads_no_framework():
    code = (
        "import importlib, pkgutil, sys, common\n"
        "for m in pkgutil.walk_packages(common.__path__, 'common.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [n for n in ('torch', 'mindspore') if n in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_backend_selector_is_lazy_and_validates(monkeypatch):
    code = (
        "import sys, backends\n"
        "b = backends.get('mindspore')\n"
        "assert b.name == 'mindspore'\n"
        "assert 'mindspore' not in sys.modules and 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    import backends
    from common.errors import ReidError
    monkeypatch.setenv("REID_BACKEND", "mindspore")
    assert backends.resolve_name() == "mindspore"
    assert backends.resolve_name("torch") == "torch"
    monkeypatch.setenv("REID_BACKEND", "jax")
    try:
        backends.resolve_name()
    except ReidError as e:
        assert "jax" in str(e) and "torch" in str(e)
    else:
        raise AssertionError("unknown backend accepted")
