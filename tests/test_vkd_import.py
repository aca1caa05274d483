"""aimagelab/VKD's released run folders (``chk/chk_end`` = a torch state dict with VKD's names,
no suffix; ``params/{params,hparams}.json``), written by tests/vkd_tiny.py from the
reference's structure: test.py evaluates them and train.py distils from them in both backends
with the weights mapped name by name, tools.convert_weights converts them, and a
cross-distillation (ResNet-18 teacher, MobileNet-V2 student) runs two generations."""
import json
import shutil

import numpy as np
import pytest

import backends
import test as test_cli
import train as train_cli
from common.recipes import vkd as vkd_recipe
from common.recipes.vkd_student import StudentRun
from tools import convert_weights
from vkd_tiny import NUM_IDS, make_mars, student_argv, write_vkd_folder

pytest.importorskip("torch")  # the reference's files are torch pickles


@pytest.fixture(scope="module")
def mars_root(tmp_path_factory):
    return make_mars(tmp_path_factory.mktemp("mars"))


@pytest.fixture(scope="module")
def ref_resnet18(tmp_path_factory):
    """(folder, canonical weights) of a reference-layout ResNet-18 at width 4."""
    folder = tmp_path_factory.mktemp("logs") / "base_mars_resnet18"
    return folder, write_vkd_folder(folder, "resnet18", NUM_IDS, width=4)


@pytest.fixture(scope="module")
def ref_mobilenet(tmp_path_factory):
    """(folder, canonical weights) of a full-size reference-layout MobileNet-V2."""
    folder = tmp_path_factory.mktemp("logs") / "base_mars_mobilenet"
    return folder, write_vkd_folder(folder, "mobilenet", NUM_IDS, seed=3)


def _assert_same(expected, got):
    assert sorted(expected) == sorted(got)
    for k in expected:
        np.testing.assert_array_equal(expected[k], got[k], err_msg=k)


def _evaluate(folder, root, backend, capsys, extra=()):
    """test.py in eval.py's form; returns the weights test.py loaded and its table lines."""
    loaded = {}
    load = vkd_recipe.load_for_test

    def spy(B, model, path, cfg):
        load(B, model, path, cfg)
        loaded.update(B.weights.state_to_numpy(model))
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vkd_recipe, "load_for_test", spy)
        assert test_cli.main(["--method", "vkd", "mars", str(folder), "--trinet_chk_name", "chk_end",
                              "--num_test_images", "4", "--data-path", str(root), "--backend", backend,
                              "--ms-mode", "PYNATIVE", "--set", "data.height=32", "--set", "data.width=16",
                              *extra]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return loaded, lines[-2:]


@pytest.mark.parametrize("backend", backends.BACKENDS)
def test_test_py_evaluates_a_vkd_run_folder(backend, mars_root, ref_resnet18, capsys):
    pytest.importorskip(backend)
    folder, expected = ref_resnet18
    loaded, table = _evaluate(folder, mars_root, backend, capsys, ["--set", "model.width=4"])
    _assert_same(expected, loaded)
    assert [line.split()[0] for line in table] == ["I2V", "V2V"]


def test_test_py_evaluates_a_full_size_vkd_mobilenet(mars_root, ref_mobilenet, capsys):
    folder, expected = ref_mobilenet
    loaded, table = _evaluate(folder, mars_root, "torch", capsys)
    _assert_same(expected, loaded)
    assert [line.split()[0] for line in table] == ["I2V", "V2V"]


@pytest.mark.parametrize("backend", backends.BACKENDS)
def test_a_student_distils_from_a_vkd_run_folder(backend, mars_root, ref_resnet18, tmp_path):
    pytest.importorskip(backend)
    folder, expected = ref_resnet18
    seen = {}
    create = StudentRun.create.__func__

    def spy(cls, cfg, B, *args, **kwargs):
        run = create(cls, cfg, B, *args, **kwargs)
        seen["teacher"] = B.weights.state_to_numpy(run.teacher)
        return run
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(StudentRun, "create", classmethod(spy))
        argv = student_argv(mars_root, folder, tmp_path, backend, extra=["--num_generations", "1", "--num_epochs", "1"])
        assert train_cli.main(argv) == 0
    _assert_same(expected, seen["teacher"])
    params = json.loads((tmp_path / "student" / "params" / "params.json").read_text())
    assert (params["teacher"], params["backbone"]) == (str(folder), "resnet18")
    assert len(list((tmp_path / "student" / "chk").glob("chk_di_1*"))) == 1


def test_cross_distillation_hands_the_students_backbone_to_generation_two(mars_root, ref_resnet18, ref_mobilenet,
                                                                          tmp_path):
    """VKD train_distill.py --student: the ResNet-18 teacher teaches a MobileNet-V2; from
    generation 2 on the teacher is the previous MobileNet student (chk_di_1)."""
    seen = {}
    begin = StudentRun.begin_epoch

    def spy(self, epoch):
        begin(self, epoch)
        if epoch == 1:
            seen["teacher"] = self.B.weights.state_to_numpy(self.teacher)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(StudentRun, "begin_epoch", spy)
        argv = student_argv(mars_root, ref_resnet18[0], tmp_path, "torch",
                            extra=["--student", str(ref_mobilenet[0]), "--num_epochs", "1"])
        assert train_cli.main(argv) == 0
    run = tmp_path / "student"
    assert json.loads((run / "params" / "hparams.json").read_text())["backbone_type"] == "mobilenet"
    di1 = vkd_recipe.vkd_folders.load_state(str(run / "chk" / "chk_di_1"), "mobilenet")
    _assert_same(di1, seen["teacher"])
    assert "backbone.features.18.0.weight" in di1


def test_convert_weights_maps_a_vkd_checkpoint(ref_resnet18, tmp_path, capsys):
    from common.checkpoint_io import read_safetensors
    folder, expected = ref_resnet18
    out = tmp_path / "a.safetensors"
    assert convert_weights.main([str(folder / "chk" / "chk_end"), str(out)]) == 0
    state, extra, _ = read_safetensors(str(out))
    _assert_same(expected, state)
    assert (extra["num_classes"], extra["arch"]) == (NUM_IDS, "resnet18")
    assert convert_weights.main([str(folder), str(tmp_path / "b.safetensors")]) == 0  # the run folder itself
    _assert_same(expected, read_safetensors(str(tmp_path / "b.safetensors"))[0])
    bare = tmp_path / "chk_end"  # no params/hparams.json beside it
    shutil.copy(folder / "chk" / "chk_end", bare)
    capsys.readouterr()
    assert convert_weights.main([str(bare), str(tmp_path / "c.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--backbone" in err[0] and not (tmp_path / "c.safetensors").exists()
    assert convert_weights.main([str(bare), str(tmp_path / "c.safetensors"), "--backbone", "resnet18"]) == 0
    _assert_same(expected, read_safetensors(str(tmp_path / "c.safetensors"))[0])


def test_convert_weights_maps_a_full_size_vkd_mobilenet(ref_mobilenet, tmp_path):
    from common.checkpoint_io import read_safetensors
    folder, expected = ref_mobilenet
    assert convert_weights.main([str(folder), str(tmp_path / "m.safetensors")]) == 0
    state, extra, _ = read_safetensors(str(tmp_path / "m.safetensors"))
    _assert_same(expected, state)
    assert extra["arch"] == "mobilenet"


def test_convert_weights_writes_a_mindspore_checkpoint_of_a_vkd_folder(ref_resnet18, tmp_path):
    pytest.importorskip("mindspore")
    from backends.mindspore.checkpoint import read_file
    folder, expected = ref_resnet18
    assert convert_weights.main([str(folder / "chk" / "chk_end"), str(tmp_path / "chk_end.ckpt")]) == 0
    state, extra, _ = read_file(str(tmp_path / "chk_end.ckpt"))
    _assert_same(expected, state)
    assert extra["num_classes"] == NUM_IDS
