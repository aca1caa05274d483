"""tools.convert_weights: torch <-> MindSpore <-> safetensors, strict and bit-exact (SPEC 11)."""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

from backends.mindspore import checkpoint as ms_ckpt  # noqa: E402
from backends.mindspore.mvd import MVDNet as MsMVDNet  # noqa: E402
from backends.mindspore.weights import state_to_numpy as ms_state  # noqa: E402
from backends.torch import checkpoint as torch_ckpt  # noqa: E402
from backends.torch import optim as torch_optim  # noqa: E402
from backends.torch.mvd import MVDNet as TorchMVDNet  # noqa: E402
from backends.torch.weights import state_to_numpy as torch_state  # noqa: E402
from tools.convert_weights import main, read_safetensors, sniff_format  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRA = {"epoch": 12, "best": {"rank1": 0.5}}
TINY = dict(arch="resnet18", width=8, z_dim=16, ib_hidden=(32, 16), cls_hidden=16, dropout=0.0)


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory):
    """A torch checkpoint (with optimizer state) of the tiny MVDNet with random weights and
    BN statistics, and its canonical state."""
    torch.manual_seed(0)
    model = TorchMVDNet(4, **TINY)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.from_numpy(rng.standard_normal(buf.shape).astype(np.float32)))
            elif name.endswith("running_var"):
                buf.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, buf.shape).astype(np.float32)))
    path = str(tmp_path_factory.mktemp("src") / "model.pth")
    torch_ckpt.save_checkpoint(path, model, torch_optim.build_optimizer(model), EXTRA)
    return path, torch_state(model)


def _ms_model(num_classes=4):
    return MsMVDNet(num_classes, **TINY)


def _assert_bit_exact(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_torch_to_mindspore_to_torch_is_bit_exact(torch_file, tmp_path, capsys):
    src, state = torch_file
    ckpt, back = str(tmp_path / "m.ckpt"), str(tmp_path / "back.pth")
    assert main([src, ckpt]) == 0
    assert "optimizer state dropped" in capsys.readouterr().err
    assert sniff_format(ckpt) == "mindspore"
    model = _ms_model()
    assert ms_ckpt.load_checkpoint(ckpt, model) == EXTRA
    _assert_bit_exact(ms_state(model), state)
    assert main([ckpt, back]) == 0
    model_back = TorchMVDNet(4, **TINY)
    assert torch_ckpt.load_checkpoint(back, model_back) == EXTRA
    _assert_bit_exact(torch_state(model_back), state)
    raw = torch.load(back, weights_only=True)["model"]
    model_back.load_state_dict(raw, strict=True)  # a complete state_dict (num_batches_tracked added)
    assert sorted(os.listdir(tmp_path)) == ["back.pth", "m.ckpt"]


def test_torch_to_safetensors_to_mindspore(torch_file, tmp_path):
    src, state = torch_file
    out = str(tmp_path / "w.safetensors")
    assert main([src, out]) == 0
    tensors, extra, _ = read_safetensors(out)
    _assert_bit_exact(tensors, state)
    assert extra == EXTRA
    model = _ms_model()
    assert ms_ckpt.load_checkpoint(out, model) == EXTRA
    _assert_bit_exact(ms_state(model), state)


def test_safetensors_conversion_needs_no_framework(torch_file, tmp_path):
    src, _ = torch_file
    first, second = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    assert main([src, first]) == 0
    code = ("import sys; from tools.convert_weights import main\n"
            f"rc = main([{first!r}, {second!r}])\n"
            "assert rc == 0 and 'torch' not in sys.modules and 'mindspore' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _assert_bit_exact(read_safetensors(second)[0], read_safetensors(first)[0])


def test_bare_torchvision_state_dict_converts(tmp_path):
    conv = torch.nn.Conv2d(3, 4, 3)
    bn = torch.nn.BatchNorm2d(4)
    bare = {"conv1.weight": conv.weight.detach(), "bn1.weight": bn.weight.detach(),
            "bn1.bias": bn.bias.detach(), "bn1.running_mean": bn.running_mean,
            "bn1.running_var": bn.running_var, "bn1.num_batches_tracked": bn.num_batches_tracked}
    src, out, ckpt = str(tmp_path / "r.pth"), str(tmp_path / "r.safetensors"), str(tmp_path / "r.ckpt")
    torch.save(bare, src)
    assert main([src, out]) == 0
    assert sorted(read_safetensors(out)[0]) == sorted(k for k in bare if "num_batches" not in k)
    assert main([src, ckpt]) == 0
    names = set(ms.load_checkpoint(ckpt))
    assert {"bn1.gamma", "bn1.beta", "bn1.moving_mean", "bn1.moving_variance", "conv1.weight"} <= names


def test_errors_exit_2_and_write_nothing(torch_file, tmp_path, capsys):
    src, _ = torch_file
    cases = [
        ([str(tmp_path / "nope.pth"), str(tmp_path / "o.ckpt")], "not found"),
        ([src, str(tmp_path / "o.bin")], "output format"),
        ([src, str(tmp_path / "o.ckpt"), "--to", "torch"], "contradicts"),
        ([src, src], "same file"),
    ]
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\n\x07not a protobuf at all")
    cases.append(([str(garbage), str(tmp_path / "o.safetensors")], "garbage.ckpt"))
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and err.count("\n") == 1, err
    assert sorted(os.listdir(tmp_path)) == ["garbage.ckpt"]


def test_command_line_entry_point(torch_file, tmp_path):
    src, _ = torch_file
    out = str(tmp_path / "cli.safetensors")
    ok = subprocess.run([sys.executable, "-m", "tools.convert_weights", src, out], cwd=ROOT,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and os.path.isfile(out), ok.stderr
    bad = subprocess.run([sys.executable, "-m", "tools.convert_weights", out, str(tmp_path / "x.txt")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
