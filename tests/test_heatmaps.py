"""Grad-CAM pictures of a VKD teacher and student (common/gradcam.py, backends/*/gradcam.py,
tools/heatmaps.py): the numpy combination against hand-computed cases, the backends' feature
map gradients against the closed form of TriNet's (affine, eval-mode) head and against each
other, and the command line end to end on a tiny synthetic MARS."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from common import gradcam
from common.data import synthetic
from common.data.base import read_image
from common.data.video import test_transform
from common.data.video_eval import eval_protocols
from tests.parity.tolerances import GRAD_ATOL_SCALE, GRAD_RTOL, GRADCAM_ATOL
from tools import heatmaps

TINY_MODEL = {"model": {"arch": "resnet18", "width": 4, "last_stride": 1}}
NUM_CLASSES = 5
BN_EPS = 1e-5  # BatchNorm1d's default, the BNNeck's


# ---------------------------------------------------------------- numpy part, by hand

def test_grad_cam_matches_a_hand_computed_case():
    a = np.zeros((2, 2, 2, 2), np.float32)
    g = np.zeros_like(a)
    a[0, 0] = [[1, 2], [3, 4]]
    a[0, 1] = [[0, 2], [1, 0]]
    g[0, 0] = [[1, 0], [0, 1]]       # channel weight 0.5
    g[0, 1] = -1.0                   # channel weight -1
    a[1] = 1.0                       # frame 1: zero gradient -> zero map
    # 0.5 * A0 - A1 = [[0.5, -1], [0.5, 2]] -> ReLU [[0.5, 0], [0.5, 2]], L2 norm sqrt(4.5)
    expected = np.array([[0.5, 0.0], [0.5, 2.0]]) / np.sqrt(4.5)
    cam = gradcam.grad_cam(a, g)
    assert cam.shape == (2, 2, 2)
    np.testing.assert_allclose(cam[0], expected, rtol=1e-6)
    assert np.all(cam[1] == 0)


def test_jet_is_matplotlibs_piecewise_linear_map():
    got = gradcam.jet(np.array([0.0, 0.11, 0.375, 0.66, 1.0, 1.5]))
    expected = [(0, 0, 0.5), (0, 0, 1), (0.025 / 0.31, 1, (0.65 - 0.375) / 0.31), (1, 1 - 0.02 / 0.27, 0), (0.5, 0, 0),
                (0.5, 0, 0)]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_blend_and_denormalize():
    from common.transforms import normalize
    img = np.random.default_rng(0).integers(0, 256, (6, 4, 3), dtype=np.uint8)
    rgb = gradcam.denormalize(normalize(img))
    np.testing.assert_allclose(rgb, img / 255.0, atol=1e-5)
    heat = np.zeros((6, 4))
    out = gradcam.blend(rgb, heat)   # jet(0) = (0, 0, 0.5) at alpha 0.4
    np.testing.assert_array_equal(out, np.rint(255 * (0.6 * img / 255.0 + 0.4 * np.array([0, 0, 0.5]))))


def test_pair_heatmaps_share_one_scale_per_frame():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, (2, 4, 2)).astype(np.float32)
    base[1] = 10.0 * base[0]         # frame 1 ten times larger: scaled on its own
    t, s = gradcam.pair_heatmaps([base, 0.5 * base], 16, 8)
    assert t.shape == s.shape == (2, 16, 8)
    for f in range(2):
        assert t[f].max() == pytest.approx(1.0) and s[f].min() == pytest.approx(0.0, abs=1e-6)
        assert s[f].max() < 0.75     # the student's half-size map stays below the teacher's on one scale
    np.testing.assert_allclose(t[0], t[1], atol=1e-5)


# ---------------------------------------------------------------- backends

def _perturbed_state(B, model, seed=0):
    """The model's weights with BatchNorm statistics/affines and the classifier made non-trivial."""
    rng = np.random.default_rng(seed)
    state = B.weights.state_to_numpy(model)
    for k, v in state.items():
        if k.endswith("running_var"):
            state[k] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        elif k.endswith("running_mean") or (v.ndim == 1 and k.endswith("bias")):
            state[k] = rng.normal(0, 0.1, v.shape).astype(np.float32)
        elif v.ndim == 1 and k.endswith("weight"):
            state[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
        elif k == "classifier.classifier.weight":
            state[k] = rng.normal(0, 0.1, v.shape).astype(np.float32)
    return state


@pytest.fixture(scope="module")
def shared_weights():
    pytest.importorskip("torch")
    import backends
    T = backends.get("torch")
    return _perturbed_state(T, T.vkd.build_model(TINY_MODEL, NUM_CLASSES))


@pytest.fixture(scope="module")
def clip():
    return np.random.default_rng(1).normal(size=(1, 3, 3, 64, 32)).astype(np.float32)


def _model(B, state, num_classes=NUM_CLASSES):
    model = B.vkd.build_model(TINY_MODEL, num_classes)
    B.weights.load_numpy_state(model, state)
    return model


def _logits(B, model, clip):
    if B.name == "torch":
        import torch
        model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(clip))[1].numpy()[0]
    import mindspore as ms
    model.set_train(False)
    return model(ms.Tensor(clip))[1].asnumpy()[0]


def test_gradient_is_the_closed_form_of_the_head(backend, shared_weights, clip):
    """In eval mode TriNet's head is affine in the maps: dlogit_k/dmaps[f, c, i, j] =
    W[k, c] * gamma_c / sqrt(var_c + eps) / (V * h * w). The default score is the largest
    frame-averaged logit; ``target`` picks another."""
    model = _model(backend, shared_weights)
    s = shared_weights
    scale = s["classifier.bottleneck.weight"] / np.sqrt(s["classifier.bottleneck.running_var"] + BN_EPS)
    logits = _logits(backend, model, clip)
    for target in (None, int(np.argmin(logits))):
        acts, grads = backend.gradcam.feature_map_and_gradient(model, clip, target)
        k = int(np.argmax(logits)) if target is None else target
        V, (h, w) = clip.shape[1], acts.shape[2:]
        expected = np.broadcast_to((s["classifier.classifier.weight"][k] * scale)[None, :, None, None] / (V * h * w),
                                   acts.shape)
        assert acts.shape == (3, 32, 4, 2) and grads.dtype == np.float32
        np.testing.assert_allclose(grads, expected, rtol=GRAD_RTOL, atol=GRAD_ATOL_SCALE * np.abs(expected).max())
    with pytest.raises(ValueError, match="outside"):
        backend.gradcam.feature_map_and_gradient(model, clip, NUM_CLASSES)


def test_backends_give_the_same_heatmaps(shared_weights, clip, ms_mode):
    """Same weights and frames -> the same activations, gradients, Grad-CAM maps and [0, 1]
    heat maps in torch and MindSpore (called from either MindSpore mode, which it restores)."""
    import backends
    import mindspore as ms
    T, M = backends.get("torch"), backends.get("mindspore")
    t_acts, t_grads = T.gradcam.feature_map_and_gradient(_model(T, shared_weights), clip)
    m_acts, m_grads = M.gradcam.feature_map_and_gradient(_model(M, shared_weights), clip)
    assert (ms.get_context("mode") == ms.GRAPH_MODE) == (ms_mode == "GRAPH")
    np.testing.assert_allclose(m_acts, t_acts, rtol=GRAD_RTOL, atol=GRAD_ATOL_SCALE * np.abs(t_acts).max())
    np.testing.assert_allclose(m_grads, t_grads, rtol=GRAD_RTOL, atol=GRAD_ATOL_SCALE * np.abs(t_grads).max())
    t_cam, m_cam = gradcam.grad_cam(t_acts, t_grads), gradcam.grad_cam(m_acts, m_grads)
    assert t_cam.max() > 0
    np.testing.assert_allclose(m_cam, t_cam, atol=GRADCAM_ATOL)
    t_heat, m_heat = gradcam.pair_heatmaps([t_cam, m_cam], 64, 32)
    np.testing.assert_allclose(m_heat, t_heat, atol=GRADCAM_ATOL)


# ---------------------------------------------------------------- command line

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A synthetic MARS and three run folders: teacher, student (other weights), and the
    teacher's weights again in MindSpore's format ('twin')."""
    pytest.importorskip("torch")
    import backends
    from common import recipes
    from common.config import load_config
    from common.recipes.vkd_folders import write_run_folder
    base = tmp_path_factory.mktemp("heatmaps")
    root = synthetic.write("mars", str(base), ids=8, seed=0)
    cfg = load_config(recipes.default_config("vkd-teacher"),
                      ["model.arch=resnet18", "model.width=4", "data.height=32", "data.width=16",
                       "data.dataset=mars"])
    T = backends.get("torch")
    models = {}
    for name, seed in (("teacher", 0), ("student", 1)):
        models[name] = _model(T, _perturbed_state(T, T.vkd.build_model(TINY_MODEL, 8), seed), 8)
        write_run_folder(str(base / name), T, models[name], cfg, 8, "chk_end" if name == "teacher" else "chk_di_1")
    return {"root": root, "base": base, "cfg": cfg, "teacher_state": T.weights.state_to_numpy(models["teacher"])}


def _argv(runs, out, student="student", *extra):
    return ["mars", "--data-path", runs["root"], "--teacher", str(runs["base"] / "teacher"),
            "--student", str(runs["base"] / student), "--out", str(out), "--num-frames", "3", *extra]


def _rows(path, v, h, w):
    """The (input, teacher, student) cells of a picture as arrays (3, V, h, w, 3)."""
    img = Image.open(path)
    layout = gradcam.Layout(3, v, h, w)
    return np.stack([[np.asarray(img.crop(layout.cell_box(r, c))) for c in range(v)] for r in range(3)])


def test_cli_writes_one_picture_per_tracklet(backend, runs, tmp_path, capsys):
    argv = _argv(runs, tmp_path, "student", "--backend", backend.name, "--tracklets", "2")
    assert heatmaps.main(argv) == 0
    printed = capsys.readouterr().out.split()
    folder = tmp_path / "teacher__vs__student"
    assert sorted(printed) == sorted(str(p) for p in folder.iterdir()) and len(printed) == 2
    # the first query tracklets of two identities, at the teacher run's input size (32x16)
    side = eval_protocols("mars", runs["root"], ["V2V"], 3, False)["V2V"].query
    assert os.path.basename(printed[0]) == f"0_id{side.pids[0]}_cam{side.camids[0] + 1}.png"
    img = Image.open(printed[0])
    assert img.mode == "RGB"
    assert img.size == (gradcam.LABEL_WIDTH + 3 * (16 + gradcam.GAP), gradcam.HEADER_HEIGHT + 3 * (32 + gradcam.GAP))
    rows = _rows(printed[0], 3, 32, 16)
    frames = [test_transform("mars", (32, 16)).one(read_image(p)) for p in side.frames[0]]
    np.testing.assert_array_equal(rows[0], [gradcam.to_uint8(gradcam.denormalize(f)) for f in frames])
    assert np.abs(rows[1].astype(int) - rows[2].astype(int)).mean() > 1.0  # teacher and student differ
    assert np.abs(rows[1].astype(int) - rows[0].astype(int)).mean() > 1.0  # a heat map lies over the frame
    if backend.name == "mindspore":  # the same picture as torch's
        assert heatmaps.main(_argv(runs, tmp_path / "t", "student", "--backend", "torch", "--tracklets", "2")) == 0
        other = _rows(tmp_path / "t" / "teacher__vs__student" / os.path.basename(printed[0]), 3, 32, 16)
        assert np.abs(other.astype(int) - rows.astype(int)).max() <= 1


def test_cli_same_weights_give_same_rows_and_size_flags(runs, tmp_path, capsys):
    """A student with the teacher's weights (stored in MindSpore's format) draws the teacher's
    row; --ids picks identities and --height/--width the input size."""
    pytest.importorskip("mindspore")
    import backends
    from common.recipes.vkd_folders import write_run_folder
    M = backends.get("mindspore")
    twin = _model(M, runs["teacher_state"], 8)
    write_run_folder(str(runs["base"] / "twin"), M, twin, runs["cfg"], 8, "chk_di_1")
    side = eval_protocols("mars", runs["root"], ["V2V"], 3, False)["V2V"].query
    pid = int(side.pids[-1])
    assert heatmaps.main(_argv(runs, tmp_path, "twin", "--ids", str(pid), "--height", "48", "--width", "24")) == 0
    (path,) = capsys.readouterr().out.split()
    assert os.path.basename(path).startswith(f"{len(side.pids) - 1}_id{pid}_")
    rows = _rows(path, 3, 48, 24)
    assert Image.open(path).size == gradcam.Layout(3, 3, 48, 24).size
    np.testing.assert_array_equal(rows[1], rows[2])


def test_cli_bad_input_is_one_line(runs, tmp_path, capsys):
    cases = [
        (_argv(runs, tmp_path, "nowhere"), "student folder", "nowhere"),
        (_argv(runs, tmp_path, "student", "--ids", "5"), "identity 5 has no query tracklet", "expected one of"),
        (_argv(runs, tmp_path, "student", "--student-chk", "chk_di_3"), "no checkpoint 'chk_di_3'", "chk_di_1"),
    ]
    broken = tmp_path / "broken"
    shutil.copytree(runs["root"], broken)
    side = eval_protocols("mars", str(broken), ["V2V"], 3, False)["V2V"].query
    bad_frame = side.frames[0][0]
    with open(bad_frame, "wb") as f:
        f.write(b"not an image")
    argv = _argv(runs, tmp_path, "student")
    argv[argv.index("--data-path") + 1] = str(broken)
    cases.append((argv, "cannot read image", bad_frame))
    for argv, first, second in cases:
        assert heatmaps.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and first in err and second in err, err
    assert not any(p.suffix == ".png" for p in tmp_path.rglob("*"))
