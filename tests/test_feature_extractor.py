"""FeatureExtractor: from a checkpoint (both backends) and from an exported ONNX file, the
features of images equal the recipe's evaluation features of the same images (the recipe's
own test transform, then the backend's extract); paths, PIL images and arrays give the same
output; the ONNX path imports neither torch nor MindSpore; bad input is one ReidError line
naming the file."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from common.checkpoint_model import open_checkpoint
from common.errors import ReidError
from common.feature_extractor import FeatureExtractor
from common.inference import DEFAULT_TEST_INPUT, InputSpec
from common.transforms import CrossModalTest, ImageTest, VideoTest
from tests import export_tiny as et
from tests.parity.tolerances import EXPORT_ONNX_ATOL, EXTRACTOR_ATOL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONCAT = ("mvd.test_feature=concat", "mvd.flow=routed", "mvd.loss=routed")


def _images(n=5, size=(40, 20), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size + (3,), dtype=np.uint8) for _ in range(n)]


def _paths(folder, images):
    out = []
    for i, im in enumerate(images):
        out.append(os.path.join(str(folder), f"im{i}.png"))
        Image.fromarray(im).save(out[-1])
    return out


def _onnx():
    return et.cached_export("onnx", "torch", "mvd", CONCAT, "infrared")


def _mvd_evaluation_features(loaded, images, modality):
    """The recipe's evaluation path (common/recipes/mvd.py extract_all: CrossModalTest batches)."""
    from common.recipes.mvd import extract_all
    return extract_all(loaded.B, loaded.model, np.stack(images), modality, loaded.cfg)


def _vkd_evaluation_features(backend, ckpt, paths):
    """VKD's evaluation of an image side: VideoTestBatches of one-frame items, then extract."""
    from common.data import video, video_eval
    loaded = open_checkpoint(ckpt, backend)
    source = video_eval.VideoTestBatches([(p,) for p in paths], video.test_transform("mars", (32, 16)), 2)
    return np.concatenate([loaded.B.vkd.extract(loaded.model, source.make_batch(0, i, item)[0], 2)
                           for i, item in enumerate(source.items())])


def test_spec_transforms_are_the_recipes_test_transforms():
    img = _images(1, (50, 23))[0]
    mvd = InputSpec("mvd", "images", 32, 16, "lanczos", modality="visible")
    np.testing.assert_array_equal(mvd.transform(img), CrossModalTest(32, 16, "lanczos")(img))
    vkd = InputSpec("vkd-teacher", "clips", 32, 16, "bicubic")
    np.testing.assert_array_equal(vkd.batch([img])[:, 0], VideoTest(32, 16)(img)[None])
    other = InputSpec("kd-reid", "images", 32, 16, DEFAULT_TEST_INPUT["resize"])
    np.testing.assert_array_equal(other.transform(img), ImageTest(32, 16)(img))
    custom = InputSpec("kd-reid", "images", 32, 16, "bilinear", mean=(0.5,) * 3, std=(0.25,) * 3)
    x = ImageTest(32, 16)(img)  # ImageNet-normalised: undo, then apply (x/255 - 0.5) / 0.25
    raw = x * np.asarray((0.229, 0.224, 0.225), np.float32)[:, None, None] \
        + np.asarray((0.485, 0.456, 0.406), np.float32)[:, None, None]
    np.testing.assert_allclose(custom.transform(img), (raw - 0.5) / 0.25, atol=1e-5)
    assert InputSpec.from_metadata(mvd.to_metadata(), "x") == mvd


def test_onnx_features_equal_the_recipes_evaluation_and_inputs_agree(tmp_path):
    images = _images()
    fx = FeatureExtractor(_onnx(), batch_size=2)
    assert fx.spec.modality == "infrared" and fx.runtime == "onnxruntime"
    by_path = fx(_paths(tmp_path, images))
    assert by_path.shape[0] == 5 and by_path.dtype == np.float32
    np.testing.assert_array_equal(fx([Image.fromarray(im) for im in images]), by_path)
    np.testing.assert_array_equal(fx(images), by_path)
    np.testing.assert_array_equal(fx(np.stack(images)), by_path)
    np.testing.assert_array_equal(fx(images[2]), by_path[2:3])
    want = _mvd_evaluation_features(open_checkpoint(et.cached_checkpoint("torch", "mvd", CONCAT), "torch"), images,
                                    "infrared")
    np.testing.assert_allclose(by_path, want, rtol=0, atol=EXPORT_ONNX_ATOL)


def test_checkpoint_features_equal_the_recipes_evaluation(backend):
    """torch: the default modality (visible); MindSpore (from the torch checkpoint): infrared."""
    ckpt = et.cached_checkpoint("torch", "mvd", CONCAT)
    modality, other = ("visible", "infrared") if backend.name == "torch" else ("infrared", "visible")
    images = _images(3, (30, 18), seed=1)
    fx = FeatureExtractor(ckpt, backend=backend.name, batch_size=2, modality=None if modality == "visible" else modality)
    assert fx.runtime == backend.name and fx.spec.modality == modality
    got = fx(images)
    loaded = open_checkpoint(ckpt, backend.name)
    np.testing.assert_allclose(got, _mvd_evaluation_features(loaded, images, modality), rtol=0, atol=EXTRACTOR_ATOL)
    assert np.abs(got - _mvd_evaluation_features(loaded, images, other)).max() > 1e-2


def test_vkd_checkpoint_features_are_one_frame_clips(backend, tmp_path):
    ckpt = et.cached_checkpoint("torch", "vkd-teacher")
    paths = _paths(tmp_path, _images(3, (48, 20), seed=2))
    fx = FeatureExtractor(ckpt, backend=backend.name, batch_size=2)
    assert fx.spec.layout == "clips" and fx.spec.resize == "bicubic"
    want = _vkd_evaluation_features(backend.name, ckpt, paths)
    got = fx(paths)
    np.testing.assert_allclose(got, want, rtol=0, atol=EXTRACTOR_ATOL * max(1.0, float(np.abs(want).max())))


def test_kdreid_checkpoint_features_equal_the_recipes_evaluation(backend, tmp_path):
    """KD-REID (no test_input hook): its evaluation's ImageBatches (ImageTest) then extract."""
    from collections import namedtuple
    from common.recipes.kdreid_data import ImageBatches
    ckpt = et.cached_checkpoint("torch", "kd-reid")
    paths = _paths(tmp_path, _images(3, (70, 30), seed=5))
    got = FeatureExtractor(ckpt, backend=backend.name, batch_size=2)(paths)
    loaded = open_checkpoint(ckpt, backend.name)
    Rec = namedtuple("Rec", "path")
    source = ImageBatches([Rec(p) for p in paths], ImageTest(64, 32), 2)
    want = np.concatenate([loaded.B.kdreid.extract(loaded.model, source.make_batch(0, i, item)[0], 2)
                           for i, item in enumerate(source.items(0))])
    np.testing.assert_allclose(got, want, rtol=0, atol=EXTRACTOR_ATOL)


def test_a_vkd_run_folder_of_the_reference_with_method_and_set(tmp_path):
    """A run folder of aimagelab/VKD (no reid-kd configuration), as test.py takes it."""
    pytest.importorskip("torch")
    from tests.vkd_tiny import write_vkd_folder
    folder = tmp_path / "run"
    canonical = write_vkd_folder(str(folder), width=4)
    sets = ["model.width=4", "data.height=32", "data.width=16"]
    fx = FeatureExtractor(str(folder), method="vkd", overrides=sets)
    assert fx.spec.method == "vkd-teacher" and (fx.spec.height, fx.spec.width) == (32, 16)
    ckpt = str(tmp_path / "same.pth")
    import backends
    B = backends.get("torch")
    cfg = et.tiny_config("vkd-teacher")
    model = B.vkd.build_model(cfg, canonical["classifier.classifier.weight"].shape[0])
    B.weights.load_numpy_state(model, canonical)
    B.checkpoint.save_checkpoint(ckpt, model, extra={"config": cfg, "num_classes": 8})
    images = _images(2, seed=3)
    np.testing.assert_array_equal(fx(images), FeatureExtractor(ckpt)(images))


def test_a_checkpoint_of_the_original_mvd_code_is_described_by_set(tmp_path):
    """As test.py: configs/mvd_original.yaml with --set describing the network."""
    torch = pytest.importorskip("torch")
    from test_mvd_import import SETS, original_state
    path = str(tmp_path / "model_best.pth.tar")
    torch.save({"model": original_state(), "epoch": 12}, path)
    sets = [s for s in SETS[1::2] if "=" in s]
    fx = FeatureExtractor(path, overrides=sets)
    assert fx.spec.method == "mvd" and fx.spec.resize == "bilinear" and fx.spec.height == 32  # mvd_original.yaml
    loaded = open_checkpoint(path, "torch", overrides=sets)
    assert loaded.cfg["mvd"]["test_norm"] == "joint" and loaded.cfg["model"]["width"] == 4
    images = _images(2, seed=4)
    np.testing.assert_allclose(fx(images), _mvd_evaluation_features(loaded, images, "visible"), rtol=0,
                               atol=EXTRACTOR_ATOL)


@pytest.mark.slow
def test_mindir_features_equal_the_recipes_evaluation():
    path = et.cached_export("mindir", "torch", "mvd", CONCAT, "infrared")
    images = _images()
    got = FeatureExtractor(path, batch_size=3)(images)
    want = _mvd_evaluation_features(open_checkpoint(et.cached_checkpoint("torch", "mvd", CONCAT), "mindspore"),
                                    images, "infrared")
    np.testing.assert_allclose(got, want, rtol=0, atol=EXTRACTOR_ATOL)


def test_onnx_path_imports_neither_torch_nor_mindspore(tmp_path):
    images = _images(3)
    np.save(tmp_path / "images.npy", np.stack(images))
    code = (
        "import sys, numpy as np\n"
        "from common import FeatureExtractor\n"
        f"feats = FeatureExtractor({_onnx()!r})(np.load({str(tmp_path / 'images.npy')!r}))\n"
        f"np.save({str(tmp_path / 'feats.npy')!r}, feats)\n"
        "print('loaded:', [m for m in ('torch', 'mindspore') if m in sys.modules])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "loaded: []"
    np.testing.assert_array_equal(np.load(tmp_path / "feats.npy"), FeatureExtractor(_onnx())(images))


def test_progress_bar_on_request_only(capsys):
    fx = FeatureExtractor(_onnx(), batch_size=2)
    fx(_images(3))
    assert "features" not in capsys.readouterr().err
    fx(_images(3), progress=True)
    err = capsys.readouterr().err
    assert "features:" in err and "/3 [" in err


def test_bad_images_name_the_file_or_item(tmp_path):
    fx = FeatureExtractor(_onnx())
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    good = _paths(tmp_path, _images(1))
    with pytest.raises(ReidError, match=f"cannot read image '{broken}'"):
        fx([*good, str(broken)])
    with pytest.raises(ReidError, match=f"missing image '{tmp_path / 'none.png'}'"):
        fx([str(tmp_path / "none.png")])
    with pytest.raises(ReidError, match="image 1: expected a uint8 H x W x 3 array, got float32"):
        fx([_images(1)[0], np.zeros((8, 4, 3), np.float32)])
    with pytest.raises(ReidError, match="image 0: expected a file path, a PIL image"):
        fx([3])
    with pytest.raises(ReidError, match="got no images"):
        fx([])


def test_bad_models_and_options_are_one_line(tmp_path):
    cases = [
        (lambda: FeatureExtractor(str(tmp_path / "none.onnx")), f"exported model not found: '{tmp_path}/none.onnx'"),
        (lambda: FeatureExtractor(str(tmp_path / "none.pth")), f"checkpoint not found: '{tmp_path}/none.pth'"),
        (lambda: FeatureExtractor(_onnx(), modality="visible"), "computes the infrared feature, not visible"),
        (lambda: FeatureExtractor(_onnx(), backend="torch"), "runs on onnxruntime, not torch"),
        (lambda: FeatureExtractor(_onnx(), device="tpu"), "unknown device 'tpu'"),
        (lambda: FeatureExtractor(_onnx(), batch_size=0), "batch_size must be >= 1"),
    ]
    lonely = tmp_path / "lonely.mindir"
    lonely.write_bytes(b"\x00")
    cases.append((lambda: FeatureExtractor(str(lonely)), f"has no input description '{lonely}.json'"))
    for make, fragment in cases:
        with pytest.raises(ReidError) as info:
            make()
        assert fragment in str(info.value) and "\n" not in str(info.value)


def test_top_level_name():
    import common
    assert common.FeatureExtractor is FeatureExtractor
