"""The backend contract (Keras-3 habit): every module listed in ``backends.MODULES`` exists in
both backends, declares ``__all__``, and the two backends export the same public names with
the same signatures (parameter names and defaults). Backend-only names are listed below with
the reason; anything else that differs fails."""
import importlib
import inspect

import pytest

import backends

# names only one backend has, and why (everything else must match)
BACKEND_ONLY = {
    ("mindspore", "device", "MODES"): "MindSpore's execution-mode constants",
    ("mindspore", "device", "limit_cpu_threads"): "MindSpore's CPU kernel threads default to 25",
    ("mindspore", "engine", "MS_MODES"): "the modes a MindSpore step can be compiled in",
    ("mindspore", "engine", "check_mode"): "validates a MindSpore execution mode",
    ("mindspore", "optim", "TorchAdam"): "torch's Adam formula re-implemented as a MindSpore Cell",
    ("mindspore", "optim", "TorchSGD"): "torch's SGD formula re-implemented as a MindSpore Cell",
    ("mindspore", "optim", "assign_inplace"): "in-place parameter writes that compiled graphs see",
    ("mindspore", "mvd", "l2_normalize_rows"): "torch.nn.functional.normalize has no MindSpore twin",
    ("torch", "engine", "model_device"): "torch tensors live on a device per model",
    ("mindspore", "losses", "log_softmax"): "MindSpore's CPU log_softmax is off by 2e-5; its own formula",
}
# differences in signatures that are the frameworks' own (e.g. torch type hints)
SIGNATURE_EXCEPTIONS = {
    ("distributed", "SyncBatchNorm"): "each framework's own BatchNorm constructor; made by convert_sync_batchnorm",
}


def _module(fw, name):
    pytest.importorskip(fw)
    return importlib.import_module(f"backends.{fw}.{name}")


@pytest.mark.parametrize("name", backends.MODULES)
def test_modules_declare_all_and_match(name):
    t, m = _module("torch", name), _module("mindspore", name)
    assert hasattr(t, "__all__") and hasattr(m, "__all__"), name
    t_names = set(t.__all__) - {n for (fw, mod, n) in BACKEND_ONLY if fw == "torch" and mod == name}
    m_names = set(m.__all__) - {n for (fw, mod, n) in BACKEND_ONLY if fw == "mindspore" and mod == name}
    assert t_names == m_names, f"{name}: torch-only {sorted(t_names - m_names)}, mindspore-only {sorted(m_names - t_names)}"
    for attr in sorted(t_names):
        a, b = getattr(t, attr), getattr(m, attr)
        assert callable(a) == callable(b), f"{name}.{attr}"
        if inspect.isfunction(a) or inspect.isclass(a):
            sa = _params(a.__init__ if inspect.isclass(a) else a)
            sb = _params(b.__init__ if inspect.isclass(b) else b)
            assert sa == sb or SIGNATURE_EXCEPTIONS.get((name, attr)), f"{name}.{attr}: {sa} != {sb}"


def _params(fn):
    """(name, default) of every parameter; annotations are the frameworks' own and ignored."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return [(p.name, _default(p.default), p.kind) for p in sig.parameters.values()]


def _default(value):
    """A parameter default, with each framework's dtype objects compared by name (float32)."""
    if value is inspect.Parameter.empty:
        return "<required>"
    if type(value).__module__.split(".")[0] in ("torch", "mindspore"):
        return str(value).rsplit(".", 1)[-1]
    return value


def test_backend_only_names_exist():
    for (fw, mod, name) in BACKEND_ONLY:
        assert name in _module(fw, mod).__all__, (fw, mod, name)
