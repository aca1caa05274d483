"""torch networks are built on the device ``--device-target``/``--gpu`` selected
(``backends.torch.device.current_device``), so a GPU run trains on the GPU. Checked without
a GPU by making PyTorch's ``meta`` device the current one: every parameter and buffer of
each method's network must land there. (MindSpore places by its context's device_target.)"""
import pytest

from common.config import load_config
from common.recipes import default_config

torch = pytest.importorskip("torch")

# method -> (config overrides of a tiny network, backend module, builder name)
BUILDERS = {
    "mvd-port": (["model.arch=resnet18", "model.width=4", "mvd.z_dim=8", "mvd.ib_hidden=[16,8]",
                  "mvd.cls_hidden=8"], "mvd", "build_model"),
    "vkd-teacher": (["model.arch=resnet18", "model.width=4"], "vkd", "build_model"),
}


@pytest.fixture
def meta_device(monkeypatch):
    from backends.torch import device
    monkeypatch.setitem(device._current, "device", torch.device("meta"))
    return torch.device("meta")


@pytest.mark.parametrize("method", sorted(BUILDERS))
def test_networks_are_built_on_the_selected_device(method, meta_device):
    import importlib
    overrides, module, builder = BUILDERS[method]
    name = "mvd" if method.startswith("mvd") else method
    cfg = load_config(default_config(name), overrides, method=name)
    net = getattr(importlib.import_module(f"backends.torch.{module}"), builder)(cfg, 5)
    tensors = list(net.parameters()) + list(net.buffers())
    assert tensors and {t.device for t in tensors} == {meta_device}
