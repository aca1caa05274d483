"""The effect of every VKD command-line flag (aimagelab/VKD utils/conf.py, tools/train_v2v.py,
tools/train_distill.py, tools/eval.py), each passed on the command line of train.py / test.py
with a value other than its default, on a tiny synthetic MARS (tests/vkd_tiny.py).

:data:`VKD_EFFECTS` maps each flag to the test that asserts what it does (tests/
test_flag_effects.py imports it): the networks, the student's loss, the optimizer, the
schedule and the run folder here; the training data and evaluation in
tests/test_vkd_flag_effects_data.py. Most tests stop train.py at the recipe's ``build``
(``vkd_tiny.build_only``) and inspect the data, networks, optimizer and steps without
training; two short real runs are shared (module fixtures ``teacher_run``, ``student_run``).
"""
import importlib
import json
from types import SimpleNamespace

import numpy as np
import pytest

import test as test_cli
import train as train_cli
from common.data import video as video_data
from common.losses import classification as cls_spec, vkd as vkd_spec
from common.recipes import vkd as vkd_recipe, vkd_folders
from common.recipes.vkd import TeacherRun
from tests.parity.tolerances import LOSS_VS_SPEC_RTOL
from vkd_tiny import assert_same_weights as _same, build_only as _build, folders, mars_root, \
    student_argv, teacher_argv  # noqa: F401 (folders, mars_root: module fixtures)

_T, _D = "tests/test_vkd_flag_effects.py::", "tests/test_vkd_flag_effects_data.py::"
VKD_EFFECTS = {
    "--backbone": _T + "test_backbone_builds_that_network",
    "--pretrained": _T + "test_pretrained_decides_whether_the_pretrain_file_is_loaded",
    "--num_train_images": _D + "test_p_k_and_num_train_images_shape_the_training_batches",
    "--num_student_images": _D + "test_num_student_images_picks_the_students_views",
    "--num_test_images": _D + "test_evaluation_flags_set_clip_length_batch_sizes_and_workers",
    "--p": _D + "test_p_k_and_num_train_images_shape_the_training_batches",
    "--k": _D + "test_p_k_and_num_train_images_shape_the_training_batches",
    "--exp_name": _T + "test_exp_name_names_the_run_folder",
    "--first_milestone": _T + "test_schedule_flags_set_every_epochs_learning_rate",
    "--step_milestone": _T + "test_schedule_flags_set_every_epochs_learning_rate",
    "--num_epochs": _T + "test_schedule_flags_set_every_epochs_learning_rate",
    "--eval_epoch_interval": _T + "test_eval_epoch_interval_sets_the_evaluated_epochs",
    "--save_epoch_interval": _T + "test_save_epoch_interval_writes_the_network_before_each_multiple",
    "--print_epoch_interval": _T + "test_recorded_only_flags_are_written_to_params_json",
    "--wd": _T + "test_wd_is_the_optimizers_weight_decay",
    "--gamma": _T + "test_schedule_flags_set_every_epochs_learning_rate",
    "--use_random_erasing": _D + "test_use_random_erasing_erases_rectangles_in_training_frames",
    "--train_strategy": _D + "test_train_strategy_chooses_the_frames_of_each_sample",
    "--metric": _T + "test_recorded_only_flags_are_written_to_params_json",
    "--set_determinism": _T + "test_recorded_only_flags_are_written_to_params_json",
    "--test_batch": _D + "test_evaluation_flags_set_clip_length_batch_sizes_and_workers",
    "--img_test_batch": _D + "test_evaluation_flags_set_clip_length_batch_sizes_and_workers",
    "--verbose": _T + "test_recorded_only_flags_are_written_to_params_json",
    "-j": _D + "test_evaluation_flags_set_clip_length_batch_sizes_and_workers",
    "--teacher_chk_name": _T + "test_teacher_chk_name_picks_the_teachers_checkpoint",
    "--student": _T + "test_student_and_student_chk_name_pick_the_students_network",
    "--student_chk_name": _T + "test_student_and_student_chk_name_pick_the_students_network",
    "--num_generations": _T + "test_schedule_flags_set_every_epochs_learning_rate",
    "--lr_decay": _T + "test_schedule_flags_set_every_epochs_learning_rate",
    "--temp": _T + "test_loss_flags_give_the_logged_terms_of_a_student_step",
    "--lambda_coeff": _T + "test_loss_flags_give_the_logged_terms_of_a_student_step",
    "--kl_coeff": _T + "test_loss_flags_give_the_logged_terms_of_a_student_step",
    "--reinit_l4": _T + "test_reinit_l4_resets_layer4_and_the_classifier_or_keeps_the_teacher",
    "--reinit_l3": _T + "test_reinit_l3_is_refused",
    "--logits_dist": _T + "test_loss_flags_give_the_logged_terms_of_a_student_step",
    "--trinet_chk_name": _D + "test_trinet_chk_name_picks_the_evaluated_checkpoint",  # test.py
}


def test_vkd_effects_names_every_vkd_flag_and_an_existing_test():
    assert set(VKD_EFFECTS) == {f.names[0] for f in vkd_recipe.FLAGS} | {"--trinet_chk_name"}
    assert test_cli.TEST_FLAGS["--trinet_chk_name"].key == "vkd.teacher_chk_name"
    for flag, target in VKD_EFFECTS.items():
        path, _, name = target.partition("::")
        assert path in (_T[:-2], _D[:-2]) and name.startswith("test_"), flag
        module = importlib.import_module(path[len("tests/"):-len(".py")])
        assert callable(getattr(module, name, None)), f"{flag}: no test {target}"


# ---------------------------------------------------------------- shared pieces

def _state(b, model):
    return b.B.weights.state_to_numpy(model)


def _records(run):
    return [json.loads(line) for line in open(run / "metrics.jsonl")]


def _params(run):
    return json.loads((run / "params" / "params.json").read_text())


TEACHER_FLAGS = ["--num_epochs", "3", "--eval_epoch_interval", "2", "--save_epoch_interval", "2",
                 "--first_milestone", "1", "--step_milestone", "1", "--gamma", "0.5", "--wd", "0.003",
                 "--metric", "cosine", "--verbose", "False", "--print_epoch_interval", "7", "--set_determinism", "True"]
STUDENT_FLAGS = ["--num_epochs", "3", "--num_generations", "2", "--eval_epoch_interval", "2", "--lr", "1e-3",
                 "--lr_decay", "0.5", "--first_milestone", "1", "--step_milestone", "1", "--gamma", "0.5",
                 "--verbose", "False", "--print_epoch_interval", "3", "--set_determinism", "True"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, mars_root):
    """A 3-epoch torch teacher with TEACHER_FLAGS; the network at the start of every epoch."""
    log = tmp_path_factory.mktemp("teacher")
    starts = {}
    begin = TeacherRun.begin_epoch

    def spy(self, epoch):
        starts[epoch] = self.B.weights.state_to_numpy(self.model)
        begin(self, epoch)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TeacherRun, "begin_epoch", spy)
        assert train_cli.main(teacher_argv(mars_root, log, exp="tflags", extra=TEACHER_FLAGS)) == 0
    return SimpleNamespace(log=log, folder=log / "tflags", starts=starts)


@pytest.fixture(scope="module")
def student_run(tmp_path_factory, mars_root, folders):
    """A torch student of the reference-layout teacher: 2 generations x 3 epochs, STUDENT_FLAGS."""
    log = tmp_path_factory.mktemp("student")
    assert train_cli.main(student_argv(mars_root, folders.teacher, log, exp="sflags", extra=STUDENT_FLAGS)) == 0
    return log / "sflags"


# ---------------------------------------------------------------- the networks

def test_backbone_builds_that_network(mars_root, tmp_path):
    """--backbone resnet34 builds a ResNet-34 (3, 4, 6, 3 blocks), resnet18 a ResNet-18."""
    for arch, blocks in (("resnet34", (3, 4, 6, 3)), ("resnet18", (2, 2, 2, 2))):
        b = _build(teacher_argv(mars_root, tmp_path, extra=["--backbone", arch]))
        keys = _state(b, b.run.model)
        for stage, n in enumerate(blocks, 1):
            assert f"backbone.layer{stage}.{n - 1}.conv1.weight" in keys, arch
            assert f"backbone.layer{stage}.{n}.conv1.weight" not in keys, arch


def test_pretrained_decides_whether_the_pretrain_file_is_loaded(mars_root, folders, tmp_path):
    """VKD model/net.py builds the backbone with ImageNet weights only when --pretrained:
    True loads the --pretrain file; False leaves the network exactly as built without it."""
    def backbone(*extra):
        b = _build(teacher_argv(mars_root, tmp_path, extra=list(extra)))
        return {k[len("backbone."):]: v for k, v in _state(b, b.run.model).items() if k.startswith("backbone.")}
    loaded = backbone("--pretrain", str(folders.pretrain), "--pretrained", "True")
    _same(folders.imagenet, loaded, sorted(loaded))
    skipped = backbone("--pretrain", str(folders.pretrain), "--pretrained", "False")
    _same(backbone("--pretrained", "False"), skipped)
    assert not np.array_equal(skipped["conv1.weight"], folders.imagenet["conv1.weight"])


def _student_argv(mars_root, folders, tmp_path, *extra):
    return student_argv(mars_root, folders.teacher, tmp_path, extra=["--num_generations", "1", *extra])


def test_teacher_chk_name_picks_the_teachers_checkpoint(mars_root, folders, tmp_path):
    for name in ("chk_alt", "chk_end"):
        b = _build(_student_argv(mars_root, folders, tmp_path, "--teacher_chk_name", name))
        _same(folders.t[name], _state(b, b.run.teacher))
    key = "backbone.conv1.weight"
    assert not np.array_equal(folders.t["chk_alt"][key], folders.t["chk_end"][key])


def test_student_and_student_chk_name_pick_the_students_network(mars_root, folders, tmp_path):
    """--student FOLDER: the student starts from that folder's network (--student_chk_name
    picks the checkpoint), the teacher stays the positional folder's. --reinit_l4 False keeps
    every weight, so the whole network is compared."""
    for name in ("chk_alt", "chk_end"):
        b = _build(_student_argv(mars_root, folders, tmp_path, "--student", str(folders.student),
                                 "--student_chk_name", name, "--reinit_l4", "False"))
        _same(folders.s[name], _state(b, b.run.model))
        _same(folders.t["chk_end"], _state(b, b.run.teacher))


def test_reinit_l4_resets_layer4_and_the_classifier_or_keeps_the_teacher(mars_root, folders, tmp_path):
    """VKD TriNet.reinit_layers: True puts layer4 back to ImageNet (--pretrain) and a fresh
    classifier on the copy of the teacher; False leaves the copy untouched."""
    teacher = folders.t["chk_end"]
    kept = _build(_student_argv(mars_root, folders, tmp_path, "--pretrain", str(folders.pretrain),
                                "--reinit_l4", "False"))
    _same(teacher, _state(kept, kept.run.model))
    reset = _build(_student_argv(mars_root, folders, tmp_path, "--pretrain", str(folders.pretrain),
                                 "--reinit_l4", "True"))
    student = _state(reset, reset.run.model)
    _same(teacher, student, [k for k in teacher if not k.startswith(("backbone.layer4.", "classifier."))])
    layer4 = [k for k in student if k.startswith("backbone.layer4.")]
    _same({k: folders.imagenet[k[len("backbone."):]] for k in layer4}, student, layer4)
    for key in ("classifier.classifier.weight", "classifier.bottleneck.weight"):
        assert not np.array_equal(teacher[key], student[key]), key


def test_reinit_l3_is_refused(mars_root, folders, tmp_path, capsys):
    capsys.readouterr()
    assert train_cli.main(_student_argv(mars_root, folders, tmp_path / "logs", "--reinit_l3", "True")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--reinit_l3" in err[0] and "reinit_layers" in err[0], err
    assert not (tmp_path / "logs").exists()


# ---------------------------------------------------------------- the student's loss

def _forward(B, model, frames):
    """(embedding, logits) of ``frames`` as numpy, in the mode the caller set."""
    if B.name == "torch":
        import torch
        with torch.no_grad():
            emb, logits = model(torch.from_numpy(frames))
        return emb.numpy(), logits.numpy()
    import mindspore as ms
    emb, logits = model(ms.Tensor(frames))
    return emb.asnumpy(), logits.asnumpy()


@pytest.mark.parametrize("logits_dist", ["kl", "mse"])
def test_loss_flags_give_the_logged_terms_of_a_student_step(backend, logits_dist, mars_root, folders, tmp_path):
    """train_distill.py's loss with --temp 0.5 --lambda_coeff 0.5 --kl_coeff 0.7 --logits_dist:
    the terms one step logs equal the numpy specs (common/losses/vkd.py) of the teacher's and
    student's outputs on that batch, and the total weights them with those coefficients.
    (A low temperature keeps the KL term clear of float32 cancellation: the fresh student's
    logits are nearly uniform, and at tau 3 MindSpore's KL is 1.7e-5 off the spec.)"""
    temp, lam, kl = 0.5, 0.5, 0.7
    b = _build(_student_argv(mars_root, folders, tmp_path, "--backend", backend.name, "--temp", str(temp),
                             "--lambda_coeff", str(lam), "--kl_coeff", str(kl), "--logits_dist", logits_dist))
    batch = next(iter(b.run.batches(0)))
    frames, pids = batch[0], batch[1]
    backend.vkd.teacher_mode(b.run.teacher)
    t_emb, t_logits = _forward(backend, b.run.teacher, frames)
    backend.vkd.student_mode(b.run.model)
    s_emb, s_logits = _forward(backend, b.run.model, video_data.student_views(frames, batch[3]))
    terms = b.run.train_step(batch)
    kd = (vkd_spec.kd_kl(s_logits, t_logits, temp) if logits_dist == "kl"
          else vkd_spec.kd_mse(s_logits, t_logits))
    expected = {"triplet": cls_spec.triplet_batch_hard(s_emb, pids, margin=None),
                "class": cls_spec.cross_entropy(s_logits, pids),
                "similarity": vkd_spec.distance_preserving(s_emb, t_emb), "kl": kd}
    for key, value in expected.items():
        assert terms[key] == pytest.approx(value, rel=LOSS_VS_SPEC_RTOL), key
    total = terms["triplet"] + terms["class"] + lam * terms["similarity"] + kl * terms["kl"]
    assert terms["total"] == pytest.approx(total, rel=LOSS_VS_SPEC_RTOL)


# ---------------------------------------------------------------- the optimizer and the schedule

def test_wd_is_the_optimizers_weight_decay(backend, mars_root, teacher_run, tmp_path):
    """--wd 0.003 is Adam's weight decay (train_v2v.py ``Adam(weight_decay=args.wd)``): in the
    optimizer the recipe builds, and (torch) in the optimizer state the run saved."""
    b = _build(teacher_argv(mars_root, tmp_path, backend.name, extra=["--wd", "0.003"]))
    if backend.name == "torch":
        assert [g["weight_decay"] for g in b.run.optimizer.param_groups] == [0.003, 0.003]
        saved = backend.checkpoint.read_file(str(teacher_run.folder / "torch_last.pth"))[2]
        assert [g["weight_decay"] for g in saved["param_groups"]] == [0.003, 0.003]
    else:
        assert float(b.run.optimizer.weight_decay.asnumpy()) == pytest.approx(0.003)


def test_schedule_flags_set_every_epochs_learning_rate(teacher_run, student_run):
    """lr of epoch e (of generation g) = max(lr · lr_decay^g, 1e-5) · gamma^#{m <= e} with the
    milestones range(first_milestone, num_epochs, step_milestone) = [1, 2]: teacher (lr 1e-4,
    3 epochs); student (lr 1e-3, lr_decay 0.5, 2 generations of 3 epochs, chk_di_1, chk_di_2)."""
    teacher = _records(teacher_run.folder)
    assert [r["epoch"] for r in teacher] == [0, 1, 2]
    assert [r["lrs"] for r in teacher] == [[pytest.approx(v, rel=1e-9)] * 2 for v in (1e-4, 5e-5, 2.5e-5)]
    student = _records(student_run)
    assert [r["epoch"] for r in student] == list(range(6))
    expected = [1e-3, 5e-4, 2.5e-4, 5e-4, 2.5e-4, 1.25e-4]
    assert [r["lrs"] for r in student] == [[pytest.approx(v, rel=1e-9)] * 2 for v in expected]
    assert sorted(p.name for p in (student_run / "chk").iterdir()) == ["chk_di_1", "chk_di_2"]


def test_eval_epoch_interval_sets_the_evaluated_epochs(teacher_run, student_run):
    """--eval_epoch_interval 2: the teacher evaluates after epoch 1 and after the last (VKD:
    before every epoch e > 0 with e % 2 == 0, and at the end); the student counts epochs
    inside each generation of 3 and evaluates at every generation's end."""
    assert ["eval" in r for r in _records(teacher_run.folder)] == [False, True, True]
    assert ["eval" in r for r in _records(student_run)] == [False, True, True, False, True, True]


def test_save_epoch_interval_writes_the_network_before_each_multiple(teacher_run):
    """--save_epoch_interval 2 over 3 epochs: chk_1 is the network before epoch 2 (VKD
    ``chk_{e // interval}`` at e % interval == 0, e > 0); none before epoch 1."""
    chk = teacher_run.folder / "chk"
    assert sorted(p.name for p in chk.iterdir()) == ["chk_1", "chk_end"]
    _same(teacher_run.starts[2], vkd_folders.load_state(str(chk / "chk_1"), "resnet18"))


def test_exp_name_names_the_run_folder(teacher_run):
    """--exp_name tflags: the run folder is <log_dir>/tflags (VKD Saver: logs/<exp_name>)."""
    assert sorted(p.name for p in teacher_run.log.iterdir()) == ["tflags"]
    assert {"metrics.jsonl", "config.yaml", "chk", "params"} <= {p.name for p in teacher_run.folder.iterdir()}
    assert _params(teacher_run.folder)["exp_name"] == "tflags"


def test_recorded_only_flags_are_written_to_params_json(teacher_run, student_run):
    """--metric, --verbose, --print_epoch_interval and --set_determinism change nothing VKD's
    evaluation or logs depend on here: VKD's evaluator always ranks by the cosine distance
    (eval.py reads ``metric`` back from params.json and never uses it), this project logs every
    epoch and every evaluation, and this project's torch seeding (backends/torch/device.py
    ``set_seed``) always makes cuDNN deterministic, which is all VKD's set_determinism does
    (utils/conf.py ``suppress_random``). They are recorded in params/params.json, as VKD's
    Saver records ``vars(args)``."""
    teacher = _params(teacher_run.folder)
    assert {k: teacher[k] for k in ("metric", "verbose", "print_epoch_interval", "set_determinism")} == {
        "metric": "cosine", "verbose": False, "print_epoch_interval": 7, "set_determinism": True}
    student = _params(student_run)
    assert {k: student[k] for k in ("verbose", "print_epoch_interval", "set_determinism")} == {
        "verbose": False, "print_epoch_interval": 3, "set_determinism": True}
