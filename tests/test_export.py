"""tools.export: the exported graph computes the method's ``extract`` (onnxruntime vs the torch
backend, MindIR reloaded by ``nn.GraphCell`` vs the MindSpore backend) at several batch sizes
(dynamic batch; VKD: dynamic frames too), from a checkpoint of either framework, with the
input description stored beside it; bad input is one line and exit status 2.

Default run: one ONNX export (tiny MVD, concat feature seen as infrared) and one MindIR export
(a VKD clip network from a torch checkpoint, through the CLI). Slow: MVD to MindIR, the MVD
default feature ('four') in both formats (ONNX from a MindSpore checkpoint), VKD to ONNX,
KD-REID (its OSNet student) to both."""
import json
import os

import numpy as np
import pytest

from common.checkpoint_model import open_checkpoint
from common.inference import InputSpec, test_input
from tests import export_tiny as et
from tests.parity.tolerances import EXPORT_MINDIR_ATOL, EXPORT_ONNX_ATOL, FORWARD_MAX_REL
from tools import export as export_tool

# MVD's concat feature depends on the modality: an export fixes it
CONCAT = ("mvd.test_feature=concat", "mvd.flow=routed", "mvd.loss=routed")


def _inputs(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _tol(base: float, want: np.ndarray) -> float:
    """``base`` relative to the largest feature entry when above 1 (VKD's are not normalised)."""
    return base * max(1.0, float(np.abs(want).max()))


def _extract(loaded, x, **kwargs):
    return loaded.B.engine.extract(loaded.model, x, 64, **(kwargs or loaded.spec.extract_kwargs))


def _ort_session(path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _graph_cell(path):
    ms = pytest.importorskip("mindspore")
    return lambda x: ms.nn.GraphCell(ms.load(path))(ms.Tensor(x)).asnumpy()


def _check_onnx(path, loaded, shapes):
    sess = _ort_session(path)
    inp = sess.get_inputs()[0]
    dynamic = [d for d in inp.shape if isinstance(d, str)]
    assert inp.name == loaded.spec.input_name and len(dynamic) == len(shapes[0]) - 3
    spec = InputSpec.from_metadata(sess.get_modelmeta().custom_metadata_map, path)
    assert spec == loaded.spec
    for shape in shapes:
        x = _inputs(shape)
        got, want = sess.run(None, {inp.name: x})[0], _extract(loaded, x)
        assert got.shape == want.shape == (shape[0], want.shape[1])
        np.testing.assert_allclose(got, want, rtol=0, atol=_tol(EXPORT_ONNX_ATOL, want))


def _check_mindir(path, loaded, shapes):
    with open(path + ".json") as f:
        assert InputSpec.from_metadata(json.load(f), path) == loaded.spec
    run = _graph_cell(path)
    for shape in shapes:
        x = _inputs(shape)
        got, want = run(x), _extract(loaded, x)
        assert got.shape == want.shape == (shape[0], want.shape[1])
        np.testing.assert_allclose(got, want, rtol=0, atol=_tol(EXPORT_MINDIR_ATOL, want))


def test_onnx_matches_torch_extract_at_two_batch_sizes_with_the_modality_fixed():
    path = et.cached_export("onnx", "torch", "mvd", CONCAT, "infrared")
    loaded = open_checkpoint(et.cached_checkpoint("torch", "mvd", CONCAT), "torch", modality="infrared")
    assert loaded.spec == test_input(loaded.cfg, "infrared") and loaded.spec.extract_kwargs == {"modality": "infrared"}
    _check_onnx(path, loaded, [(1, 3, 32, 16), (5, 3, 32, 16)])
    x = _inputs((2, 3, 32, 16))
    got = _ort_session(path).run(None, {"images": x})[0]
    assert np.abs(got - _extract(loaded, x, modality="visible")).max() > 1e-2  # the visible feature differs


@pytest.mark.slow
def test_mindir_from_a_torch_checkpoint_matches_mindspore_extract():
    """The torch checkpoint is converted in memory: MindSpore's extract from it equals torch's
    (the weights arrived), and the MindIR equals MindSpore's extract at two batch sizes."""
    ckpt = et.cached_checkpoint("torch", "mvd", CONCAT)
    path = et.cached_export("mindir", "torch", "mvd", CONCAT, "infrared")
    loaded = open_checkpoint(ckpt, "mindspore", modality="infrared")
    _check_mindir(path, loaded, [(1, 3, 32, 16), (3, 3, 32, 16)])
    x = _inputs((3, 3, 32, 16), seed=1)
    want = _extract(open_checkpoint(ckpt, "torch", modality="infrared"), x)
    np.testing.assert_allclose(_graph_cell(path)(x), want, rtol=0, atol=FORWARD_MAX_REL)


def test_cli_vkd_mindir_from_a_torch_checkpoint_takes_clips_of_any_batch_and_length(tmp_path, capsys):
    """The torch checkpoint is converted in memory: the MindIR equals MindSpore's extract, and
    that equals torch's (the weights arrived)."""
    pytest.importorskip("mindspore")
    ckpt = et.save_tiny_checkpoint(tmp_path, "torch", "vkd-teacher")
    out = str(tmp_path / "vkd.mindir")
    assert export_tool.main([ckpt, "--format", "mindir", "--out", out]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out} and {out}.json: vkd-teacher test feature as mindir, input 'clips' "
                           "['batch', 'frames', 3, 32, 16]"), line
    loaded = open_checkpoint(ckpt, "mindspore")
    assert loaded.spec.layout == "clips" and loaded.spec.resize == "bicubic" and loaded.spec.modality == ""
    _check_mindir(out, loaded, [(1, 2, 3, 32, 16), (3, 4, 3, 32, 16)])
    x = _inputs((2, 3, 3, 32, 16), seed=1)
    want = _extract(open_checkpoint(ckpt, "torch"), x)
    np.testing.assert_allclose(_graph_cell(out)(x), want, rtol=0, atol=_tol(FORWARD_MAX_REL, want))


@pytest.mark.slow
def test_vkd_onnx_takes_clips_of_any_batch_and_length(tmp_path):
    ckpt = et.save_tiny_checkpoint(tmp_path, "torch", "vkd-teacher")
    out = export_tool.export(ckpt, str(tmp_path / "vkd.onnx")).path
    _check_onnx(out, open_checkpoint(ckpt, "torch"), [(1, 2, 3, 32, 16), (3, 4, 3, 32, 16)])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "mindir"])
def test_mvd_default_four_part_feature_exports(tmp_path, fmt):
    """The port's default test feature (four parts, each normalised), from the other
    framework's checkpoint."""
    source = "mindspore" if fmt == "onnx" else "torch"
    ckpt = et.save_tiny_checkpoint(tmp_path, source, "mvd")
    out = export_tool.export(ckpt, str(tmp_path / f"m.{fmt}")).path
    loaded = open_checkpoint(ckpt, "torch" if fmt == "onnx" else "mindspore")
    assert loaded.cfg["mvd"]["test_feature"] == "four" and loaded.spec.modality == "visible"
    (_check_onnx if fmt == "onnx" else _check_mindir)(out, loaded, [(1, 3, 32, 16), (4, 3, 32, 16)])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["mindir", "onnx"])
def test_kdreid_exports_through_the_default_test_input(tmp_path, fmt):
    """KD-REID has no test_input hook: NCHW images, bilinear resize (ImageTest), no kwargs;
    its OSNet student exports from a torch checkpoint."""
    ckpt = et.save_tiny_checkpoint(tmp_path, "torch", "kd-reid")
    out = export_tool.export(ckpt, str(tmp_path / f"kd.{fmt}")).path
    loaded = open_checkpoint(ckpt, "torch" if fmt == "onnx" else "mindspore")
    assert (loaded.spec.layout, loaded.spec.resize, loaded.spec.extract_kwargs) == ("images", "bilinear", {})
    assert loaded.cfg["kdreid"]["arch_student"] == "osnet_x0_25"
    (_check_onnx if fmt == "onnx" else _check_mindir)(out, loaded, [(1, 3, 64, 32), (3, 3, 64, 32)])


def test_mindir_padded_max_pools_in_sequential_cells_take_any_batch(tmp_path):
    """A padded nn.MaxPool2d before BatchNorm (ResNet's stem; DenseNet's, inside a
    SequentialCell) is replaced before export: MindSpore 2.8 cannot run it at a dynamic batch."""
    ms = pytest.importorskip("mindspore")
    from backends.mindspore.export import export_features

    class Net(ms.nn.Cell):
        def __init__(self):
            super().__init__()
            self.features = ms.nn.SequentialCell([
                ms.nn.Conv2d(3, 4, 3, pad_mode="pad", padding=1),
                ms.nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1), ms.nn.BatchNorm2d(4)])

        def construct(self, x):
            return self.features(x)

        def extract(self, x):
            return ms.ops.mean(self.construct(x), (2, 3))

    net = Net()
    net.set_train(False)
    x = {n: _inputs((n, 3, 16, 8), seed=n) for n in (1, 3)}
    want = {n: net.extract(ms.Tensor(v)).asnumpy() for n, v in x.items()}
    path = export_features(net, str(tmp_path / "pool.mindir"), (None, 3, 16, 8))
    assert not any(isinstance(c, ms.nn.MaxPool2d) for c in net.features.cell_list)
    for n in (1, 3):
        np.testing.assert_allclose(_graph_cell(path)(x[n]), want[n], rtol=0, atol=EXPORT_MINDIR_ATOL)


def test_a_checkpoint_without_configuration_is_described_by_method_and_set(tmp_path):
    bare = et.save_tiny_checkpoint(tmp_path, "torch", "mvd", extra={}, name="bare")
    loaded = open_checkpoint(bare, "torch", method="mvd", overrides=et.MVD_SETS)
    ref = open_checkpoint(et.cached_checkpoint("torch", "mvd"), "torch")
    assert loaded.cfg["model"]["arch"] == "resnet18" and loaded.num_classes == et.NUM_CLASSES
    x = _inputs((2, 3, 32, 16))
    np.testing.assert_array_equal(_extract(loaded, x), _extract(ref, x))


BAD = [
    ("missing", ["{tmp}/none.pth", "--out", "{tmp}/o.onnx"], "checkpoint not found: '{tmp}/none.pth'"),
    ("no-config", ["{bare}", "--out", "{tmp}/o.onnx"], "carries no reid-kd configuration"),
    ("no-config-hint", ["{bare}", "--out", "{tmp}/o.onnx"], "pass --method"),
    ("no-format", ["{ckpt}", "--out", "{tmp}/o.bin"], "cannot tell the export format"),
    ("suffix", ["{ckpt}", "--format", "onnx", "--out", "{tmp}/o.mindir"], "must end in .onnx for onnx"),
    ("backend", ["{ckpt}", "--out", "{tmp}/o.onnx", "--backend", "mindspore"], "onnx is written by the torch"),
    ("method", ["{ckpt}", "--out", "{tmp}/o.onnx", "--method", "vkd"], "holds a 'mvd' model, not 'vkd'"),
    ("shape-key", ["{ckpt}", "--out", "{tmp}/o.onnx", "--set", "model.width=8"], "cannot change model.width"),
    ("folder", ["{tmp}", "--out", "{tmp}/o.onnx"], "is a folder"),
]


@pytest.mark.parametrize("argv,fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, fragment):
    names = {"tmp": str(tmp_path), "ckpt": et.cached_checkpoint("torch", "mvd"),
             "bare": et.save_tiny_checkpoint(tmp_path, "torch", "mvd", extra={}, name="bare")}
    assert export_tool.main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment.format(**names) in err[0], err
    assert not any(n.startswith("o.") for n in os.listdir(tmp_path))


def test_vkd_refuses_a_modality(tmp_path):
    from common.errors import ReidError
    cfg = et.tiny_config("vkd-teacher")
    with pytest.raises(ReidError, match="one test feature for every modality"):
        test_input(cfg, "infrared")
    assert test_input(cfg).layout == "clips"
