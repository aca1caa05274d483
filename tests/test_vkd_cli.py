"""VKD through train.py / test.py, in process, on a tiny synthetic MARS: every command line of
aimagelab/VKD commands.txt (and eval.py's form) against what the reference's argparse makes
of it; a teacher and a two-generation student in both backends (the reference's run-folder
files, the generation hand-over, learning rates, the student's initialisation); exact resume
inside generation 2; image-to-image teachers; bad input. One teacher and one student run per
backend are shared by most tests (module fixture ``runs``)."""
import argparse
import json
import shlex
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

import backends
import test as test_cli
import train as train_cli
from common.recipes import vkd_folders
from common.recipes.vkd import TeacherRun
from common.recipes.vkd_student import StudentRun
from vkd_tiny import NUM_IDS, imagenet_file, make_mars, student_argv, teacher_argv, write_vkd_folder

# ---------------------------------------------------------------- the reference's command lines

# aimagelab/VKD commands.txt, every line, with ./tools/train_v2v.py -> train.py --method vkd-teacher
# and ./tools/train_distill.py -> train.py --method vkd-student
COMMANDS = """\
train.py --method vkd-teacher veri --backbone resnet101 --num_train_images 1 --p 18 --k 4 --exp_name base_veri_resnet101 --first_milestone 200
train.py --method vkd-teacher veri --backbone resnet50 --num_train_images 1 --p 18 --k 4 --exp_name base_veri_resnet50 --first_milestone 200
train.py --method vkd-teacher veri --backbone resnet18 --num_train_images 1 --p 18 --k 4 --exp_name base_veri_resnet18 --first_milestone 200
train.py --method vkd-teacher veri --backbone resnet50bam --num_train_images 1 --p 18 --k 4 --exp_name base_veri_resnet50bam --first_milestone 200
train.py --method vkd-teacher veri --backbone densenet121 --num_train_images 1 --p 18 --k 4 --exp_name base_veri_densenet121 --first_milestone 200
train.py --method vkd-teacher veri --backbone resnet34 --num_train_images 1 --p 18 --k 4 --exp_name base_veri_resnet34 --first_milestone 200
train.py --method vkd-teacher veri --backbone mobilenet --num_train_images 1 --p 18 --k 4 --exp_name base_veri_mobilenet --first_milestone 200
train.py --method vkd-teacher mars --backbone resnet101 --num_train_images 8 --p 8 --k 4 --exp_name base_mars_resnet101 --first_milestone 100 --step_milestone 100
train.py --method vkd-teacher mars --backbone resnet50 --num_train_images 8 --p 8 --k 4 --exp_name base_mars_resnet50 --first_milestone 100 --step_milestone 100
train.py --method vkd-teacher mars --backbone resnet18 --num_train_images 8 --p 8 --k 4 --exp_name base_mars_resnet18 --first_milestone 50
train.py --method vkd-teacher mars --backbone resnet50bam --num_train_images 8 --p 8 --k 4 --exp_name base_mars_resnet50bam --first_milestone 100 --step_milestone 100
train.py --method vkd-teacher mars --backbone densenet121 --num_train_images 8 --p 8 --k 4 --exp_name base_mars_densenet121 --first_milestone 100 --step_milestone 100
train.py --method vkd-teacher mars --backbone resnet34 --num_train_images 8 --p 8 --k 4 --exp_name base_mars_resnet34 --first_milestone 100 --step_milestone 100
train.py --method vkd-teacher mars --backbone mobilenet --num_train_images 8 --p 8 --k 4 --exp_name base_mars_mobilenet --first_milestone 100 --step_milestone 100
train.py --method vkd-teacher duke-video-reid --backbone resnet101 --num_train_images 8 --p 8 --k 4 --exp_name base_duke_resnet101 --first_milestone 100 --step_milestone 100
train.py --method vkd-teacher duke-video-reid --backbone resnet50 --num_train_images 8 --p 8 --k 4 --exp_name base_duke_resnet50 --first_milestone 100 --step_milestone 100
train.py --method vkd-teacher duke-video-reid --backbone resnet18 --num_train_images 8 --p 8 --k 4 --exp_name base_duke_resnet18 --first_milestone 50
train.py --method vkd-teacher duke-video-reid --backbone resnet50bam --num_train_images 8 --p 8 --k 4 --exp_name base_duke_resnet50bam --first_milestone 100 --step_milestone 100
train.py --method vkd-teacher duke-video-reid --backbone densenet121 --num_train_images 8 --p 8 --k 4 --exp_name base_duke_densenet121 --first_milestone 100 --step_milestone 100
train.py --method vkd-teacher duke-video-reid --backbone resnet34 --num_train_images 8 --p 8 --k 4 --exp_name base_duke_resnet34 --first_milestone 100 --step_milestone 100
train.py --method vkd-teacher duke-video-reid --backbone mobilenet --num_train_images 8 --p 8 --k 4 --exp_name base_duke_mobilenet --first_milestone 100 --step_milestone 100
train.py --method vkd-student veri ./logs/base_veri_resnet50bam --exp_name distill_veri_resnet50bam --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student veri ./logs/base_veri_mobilenet --exp_name distill_veri_mobilenet --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student veri ./logs/base_veri_resnet50 --exp_name distill_veri_resnet50 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student veri ./logs/base_veri_densenet121 --exp_name distill_veri_densenet121 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student veri ./logs/base_veri_resnet101 --exp_name distill_veri_resnet101 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student veri ./logs/base_veri_resnet34 --exp_name distill_veri_resnet34 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student mars ./logs/base_mars_resnet50bam --exp_name distill_mars_resnet50bam --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student mars ./logs/base_mars_mobilenet --exp_name distill_mars_mobilenet --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student mars ./logs/base_mars_resnet50 --exp_name distill_mars_resnet50 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student mars ./logs/base_mars_densenet121 --exp_name distill_mars_densenet121 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student mars ./logs/base_mars_resnet101 --exp_name distill_mars_resnet101 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student mars ./logs/base_mars_resnet34 --exp_name distill_mars_resnet34 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student ./logs/duke-video-reid base_duke_resnet50bam --exp_name distill_duke_resnet50bam --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student ./logs/duke-video-reid base_duke_mobilenet --exp_name distill_duke_mobilenet --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student ./logs/duke-video-reid base_duke_resnet50 --exp_name distill_duke_resnet50 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student ./logs/duke-video-reid base_duke_densenet121 --exp_name distill_duke_densenet121 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student ./logs/duke-video-reid base_duke_resnet101 --exp_name distill_duke_resnet101 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student ./logs/duke-video-reid base_duke_resnet34 --exp_name distill_duke_resnet34 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student veri ./logs/base_veri_resnet101 --student ./logs/base_veri_resnet34 --exp_name distill_veri_resnet101_to_resnet34 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student veri ./logs/base_veri_resnet101 --student ./logs/base_veri_resnet50bam --exp_name distill_veri_resnet101_to_resnet50bam --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student veri ./logs/base_veri_resnet50 --student  ./logs/base_veri_resnet34 --exp_name distill_veri_resnet50_to_resnet34 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student veri ./logs/base_veri_resnet101 --student ./logs/base_veri_mobilenet --exp_name distill_veri_resnet101_to_mobilenet --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student veri ./logs/base_veri_resnet101 --student ./logs/base_veri_resnet50 --exp_name distill_veri_resnet101_to_resnet50 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student mars ./logs/base_mars_resnet101 --student ./logs/base_mars_resnet34 --exp_name distill_mars_resnet101_to_resnet34 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student mars ./logs/base_mars_resnet101 --student ./logs/base_mars_resnet50bam --exp_name distill_mars_resnet101_to_resnet50bam --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student mars ./logs/base_mars_resnet50 --student  ./logs/base_mars_resnet34 --exp_name distill_mars_resnet50_to_resnet34 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student mars ./logs/base_mars_resnet101 --student ./logs/base_mars_mobilenet --exp_name distill_mars_resnet101_to_mobilenet --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student mars ./logs/base_mars_resnet101 --student ./logs/base_mars_resnet50 --exp_name distill_mars_resnet101_to_resnet50 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student duke-video-reid ./logs/base_duke_resnet101 --student ./logs/base_duke_resnet34 --exp_name distill_duke_resnet101_to_resnet34 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student duke-video-reid ./logs/base_duke_resnet101 --student ./logs/base_duke_resnet50bam --exp_name distill_duke_resnet101_to_resnet50bam --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student duke-video-reid ./logs/base_duke_resnet50 --student  ./logs/base_duke_resnet34 --exp_name distill_duke_resnet50_to_resnet34 --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student duke-video-reid ./logs/base_duke_resnet101 --student ./logs/base_duke_mobilenet --exp_name distill_duke_resnet101_to_mobilenet --p 12 --k 4 --step_milestone 150 --num_epochs 500
train.py --method vkd-student duke-video-reid ./logs/base_duke_resnet101 --student ./logs/base_duke_resnet50 --exp_name distill_duke_resnet101_to_resnet50 --p 12 --k 4 --step_milestone 150 --num_epochs 500
""".splitlines()
OUR_DATASET = {"mars": "mars", "veri": "veri", "duke-video-reid": "dukevideo"}


def reference_parse(words):
    """What the reference's argparse makes of a line (utils/conf.py add_default_args, then the
    arguments and defaults of tools/train_v2v.py or tools/train_distill.py)."""
    student = words[1] == "vkd-student"
    p = argparse.ArgumentParser()
    p.add_argument("dataset_name")  # the reference's choices would refuse the Duke student lines
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--p", type=int, default=18)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--exp_name")
    p.add_argument("--num_train_images", type=int, default=8)
    p.add_argument("--num_epochs", type=int, default=400 if student else 300)
    p.add_argument("--first_milestone", type=int, default=300 if student else 200)
    p.add_argument("--step_milestone", type=int, default=50)
    if student:
        p.add_argument("teacher")
        p.add_argument("--student", default=None)
        p.add_argument("--num_student_images", type=int, default=2)
    return student, p.parse_args(words[2:])


@pytest.mark.parametrize("line", COMMANDS, ids=[line.split("--exp_name ")[1].split()[0] for line in COMMANDS])
def test_commands_txt_resolves_to_the_reference_hyperparameters(line, capsys):
    words = shlex.split(line)[1:]
    student, ref = reference_parse(words)
    dataset, teacher = ref.dataset_name, getattr(ref, "teacher", None)
    if dataset.startswith("./logs/"):  # the Duke student lines: './logs/duke-video-reid base_duke_X'
        assert dataset == "./logs/duke-video-reid" and teacher.startswith("base_duke_")
        dataset, teacher = "duke-video-reid", "./logs/" + teacher  # our documented repair
    assert train_cli.main(words + ["--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    v = cfg["vkd"]
    assert cfg["method"]["name"] == ("vkd-student" if student else "vkd-teacher")
    assert cfg["data"]["dataset"] == OUR_DATASET[dataset]
    assert (cfg["data"]["num_ids"], cfg["data"]["num_pos"], v["num_train_images"]) == (ref.p, ref.k,
                                                                                        ref.num_train_images)
    assert cfg["schedule"]["epochs"] == ref.num_epochs and cfg["train"]["ckpt"] == ref.exp_name
    assert cfg["schedule"]["milestones"] == list(range(ref.first_milestone, ref.num_epochs, ref.step_milestone))
    if student:  # the network comes from the (here absent) folders
        assert (v["teacher"], v["student"] or None) == (teacher, ref.student)
        assert v["num_student_images"] == ref.num_student_images and cfg["model"]["arch"] == ""
    else:
        assert cfg["model"]["arch"] == ref.backbone


# ---------------------------------------------------------------- teacher + two-generation student

STUDENT_SCHEDULE = ["--lr", "1e-4", "--lr_decay", "0.05", "--first_milestone", "1", "--step_milestone", "1",
                    "--gamma", "0.1"]
# tools/train_v2v.py's and tools/train_distill.py's arguments: the keys of their params.json
TEACHER_PARAMS = {"dataset_name", "backbone", "pretrained", "set_determinism", "test_batch", "img_test_batch",
                  "verbose", "workers", "p", "k", "num_test_images", "exp_name", "metric", "num_train_images",
                  "num_epochs", "eval_epoch_interval", "save_epoch_interval", "print_epoch_interval", "wd", "gamma",
                  "first_milestone", "step_milestone", "use_random_erasing", "train_strategy"}
STUDENT_PARAMS = {"dataset_name", "backbone", "pretrained", "set_determinism", "test_batch", "img_test_batch",
                  "verbose", "workers", "p", "k", "num_test_images", "teacher", "teacher_chk_name", "student",
                  "student_chk_name", "exp_name", "num_generations", "eval_epoch_interval", "print_epoch_interval",
                  "lr", "lr_decay", "temp", "lambda_coeff", "kl_coeff", "num_train_images", "num_student_images",
                  "train_strategy", "num_epochs", "gamma", "first_milestone", "step_milestone", "reinit_l4",
                  "reinit_l3", "logits_dist", "use_random_erasing"}


@pytest.fixture(scope="module")
def mars_root(tmp_path_factory):
    return make_mars(tmp_path_factory.mktemp("mars"))


def _spy_student(mp, seen):
    """Record the networks at the start of generation 1 (after StudentRun.create) and of
    generation 2 (after the hand-over in begin_epoch)."""
    create, begin = StudentRun.create.__func__, StudentRun.begin_epoch

    def spy_create(cls, cfg, B, *args, **kwargs):
        run = create(cls, cfg, B, *args, **kwargs)
        seen.update(run=run, gen1_teacher=B.weights.state_to_numpy(run.teacher),
                    gen1_student=B.weights.state_to_numpy(run.model))
        return run

    def spy_begin(self, epoch):
        begin(self, epoch)
        if epoch == self.epochs_per_generation:
            seen.update(gen2_teacher=self.B.weights.state_to_numpy(self.teacher),
                        gen2_student=self.B.weights.state_to_numpy(self.model))
    mp.setattr(StudentRun, "create", classmethod(spy_create))
    mp.setattr(StudentRun, "begin_epoch", spy_begin)
    teacher_begin = TeacherRun.begin_epoch

    def spy_teacher_begin(self, epoch):
        if epoch == 1:
            seen["teacher_after_epoch_0"] = self.B.weights.state_to_numpy(self.model)
        teacher_begin(self, epoch)
    mp.setattr(TeacherRun, "begin_epoch", spy_teacher_begin)


@pytest.fixture(scope="module", params=backends.BACKENDS)
def runs(request, tmp_path_factory, mars_root):
    """A tiny teacher, then a 2-generation student of it with a --pretrain file, per backend."""
    pytest.importorskip(request.param)
    log = tmp_path_factory.mktemp(f"vkd-{request.param}")
    pretrain = log / "imagenet.safetensors"
    imagenet = imagenet_file(pretrain)
    seen = {}
    with pytest.MonkeyPatch.context() as mp:
        _spy_student(mp, seen)
        assert train_cli.main(teacher_argv(mars_root, log, request.param, extra=["--save_epoch_interval", "1"])) == 0
        extra = STUDENT_SCHEDULE + ["--pretrain", str(pretrain)]
        assert train_cli.main(student_argv(mars_root, log / "teacher", log, request.param, extra=extra)) == 0
    B = backends.get(request.param)
    ext = ".pth" if B.name == "torch" else ".ckpt"
    return SimpleNamespace(B=B, log=log, teacher=log / "teacher", student=log / "student", seen=seen,
                           imagenet=imagenet, pretrain=pretrain, ext=ext, chk_ext="" if B.name == "torch" else ".ckpt")


def _weights(path):
    return vkd_folders.load_state(str(path), "resnet18")


def _records(run):
    return [json.loads(line) for line in open(run / "metrics.jsonl")]


def _assert_same(a, b, keys=None):
    keys = sorted(a) if keys is None else keys
    assert keys and set(keys) <= set(b)
    for k in keys:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_run_folders_hold_what_the_vkd_saver_writes(runs):
    t, s = runs.teacher, runs.student
    assert sorted(p.name for p in (t / "chk").iterdir()) == [f"chk_1{runs.chk_ext}", f"chk_end{runs.chk_ext}"]
    assert sorted(p.name for p in (s / "chk").iterdir()) == [f"chk_di_1{runs.chk_ext}", f"chk_di_2{runs.chk_ext}"]
    params = json.loads((t / "params" / "params.json").read_text())
    assert set(params) == TEACHER_PARAMS
    assert {k: params[k] for k in ("dataset_name", "backbone", "p", "k", "num_train_images", "num_epochs",
                                   "exp_name", "first_milestone")} == {
        "dataset_name": "mars", "backbone": "resnet18", "p": 4, "k": 2, "num_train_images": 4, "num_epochs": 2,
        "exp_name": "teacher", "first_milestone": 200}
    hp = {"backbone_type": "resnet18", "num_classes": NUM_IDS, "pretrained": False}
    assert json.loads((t / "params" / "hparams.json").read_text()) == hp
    params = json.loads((s / "params" / "params.json").read_text())
    assert set(params) == STUDENT_PARAMS
    assert (params["teacher"], params["num_generations"], params["lr_decay"], params["student"],
            params["num_student_images"]) == (str(t), 2, 0.05, None, 2)
    assert json.loads((s / "params" / "hparams.json").read_text()) == hp
    # the chk files hold the final networks
    _assert_same(_weights(t / "chk" / f"chk_end{runs.chk_ext}"), _weights(t / f"{runs.B.name}_last{runs.ext}"))
    _assert_same(_weights(s / "chk" / f"chk_di_2{runs.chk_ext}"), _weights(s / f"{runs.B.name}_last{runs.ext}"))


def test_save_epoch_interval_writes_the_network_before_each_multiple(runs):
    """train_v2v.py --save_epoch_interval 1 over 2 epochs: chk_1 before epoch 1 (none before
    epoch 0: e > 0), chk_end at the end."""
    _assert_same(runs.seen["teacher_after_epoch_0"], _weights(runs.teacher / "chk" / f"chk_1{runs.chk_ext}"))
    assert json.loads((runs.teacher / "params" / "params.json").read_text())["save_epoch_interval"] == 1


def test_generation_one_starts_from_the_teacher_except_layer4_and_the_classifier(runs):
    teacher = _weights(runs.teacher / "chk" / f"chk_end{runs.chk_ext}")
    _assert_same(teacher, runs.seen["gen1_teacher"])
    student = runs.seen["gen1_student"]
    assert student.keys() == teacher.keys()
    kept = [k for k in teacher if not k.startswith(("backbone.layer4.", "classifier."))]
    _assert_same(teacher, student, kept)
    layer4 = [k for k in student if k.startswith("backbone.layer4.")]
    _assert_same({k: runs.imagenet[k[len("backbone."):]] for k in layer4}, student, layer4)
    assert not np.array_equal(teacher["backbone.layer4.0.conv1.weight"], student["backbone.layer4.0.conv1.weight"])
    # a fresh VKD ClassificationLayer: BN at (1, 0) with fresh statistics, Linear ~ N(0, 0.001)
    np.testing.assert_array_equal(student["classifier.bottleneck.weight"], 1.0)
    np.testing.assert_array_equal(student["classifier.bottleneck.bias"], 0.0)
    np.testing.assert_array_equal(student["classifier.bottleneck.running_mean"], 0.0)
    np.testing.assert_array_equal(student["classifier.bottleneck.running_var"], 1.0)
    w = student["classifier.classifier.weight"]
    assert 0.0005 < w.std() < 0.002 and not np.array_equal(w, teacher["classifier.classifier.weight"])


def test_generation_two_is_taught_by_chk_di_1_and_restarts_its_student(runs):
    di1 = _weights(runs.student / "chk" / f"chk_di_1{runs.chk_ext}")
    _assert_same(di1, runs.seen["gen2_teacher"])
    # the teacher stays frozen through generation 2 (MindSpore's train-mode BN updates its unused
    # moving statistics: see backends/mindspore/vkd.py)
    end = runs.B.weights.state_to_numpy(runs.seen["run"].teacher)
    frozen = [k for k in di1 if runs.B.name == "torch" or not k.endswith(("running_mean", "running_var"))]
    _assert_same(di1, end, frozen)
    student = runs.seen["gen2_student"]
    _assert_same(di1, student, [k for k in di1 if not k.startswith(("backbone.layer4.", "classifier."))])
    layer4 = [k for k in student if k.startswith("backbone.layer4.")]
    _assert_same({k: runs.imagenet[k[len("backbone."):]] for k in layer4}, student, layer4)


def test_learning_rate_per_epoch_follows_generations_and_milestones(runs):
    """lr of epoch e of generation g: max(lr * lr_decay^g, 1e-5) * gamma^#(milestones <= e),
    milestones = range(first, num_epochs, step) = [1]; every generation ends with an evaluation."""
    lr, decay, gamma, epochs, milestones = 1e-4, 0.05, 0.1, 2, list(range(1, 2, 1))
    expected = [max(lr * decay ** g, 1e-5) * gamma ** sum(m <= e for m in milestones)
                for g in range(2) for e in range(epochs)]
    assert expected == pytest.approx([1e-4, 1e-5, 1e-5, 1e-6])  # the clamp at 1e-5 acts in generation 2
    recs = _records(runs.student)
    assert [r["epoch"] for r in recs] == [0, 1, 2, 3]
    assert [r["lrs"][0] for r in recs] == pytest.approx(expected, rel=1e-9)
    assert ["eval" in r for r in recs] == [False, True, False, True]
    assert all(np.isfinite(r[k]) for r in recs for k in ("total", "triplet", "class", "similarity", "kl"))


def test_resume_inside_generation_two_is_exact(runs, mars_root, tmp_path):
    """Ctrl-C at the start of epoch 3 (generation 2, epochs 2-3), then --resume: the losses of
    epoch 3 and the final networks equal the uninterrupted run's."""
    extra = STUDENT_SCHEDULE + ["--pretrain", str(runs.pretrain)]
    argv = student_argv(mars_root, runs.teacher, tmp_path, runs.B.name, extra=extra)
    begin = StudentRun.begin_epoch

    def interrupt(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        begin(self, epoch)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(StudentRun, "begin_epoch", interrupt)
        assert train_cli.main(argv) == 130
    run = tmp_path / "student"
    last = run / f"{runs.B.name}_last{runs.ext}"
    assert [r["epoch"] for r in _records(run)] == [0, 1, 2]
    assert train_cli.main(argv + ["--resume", str(last)]) == 0
    a, b = _records(runs.student), _records(run)
    assert [r["epoch"] for r in b] == [0, 1, 2, 3]
    for key in ("total", "triplet", "class", "similarity", "kl"):
        assert b[3][key] == pytest.approx(a[3][key], rel=1e-6, abs=1e-9), key
    for name in (f"chk/chk_di_2{runs.chk_ext}", last.name):
        sa, sb = _weights(runs.student / name), _weights(run / name)
        assert sa.keys() == sb.keys()
        assert max(float(np.abs(sa[k] - sb[k]).max()) for k in sa) <= 1e-6, name


def test_test_py_with_eval_py_arguments_reproduces_the_last_evaluation(runs, mars_root, capsys):
    """test.py --method vkd DATASET RUN_FOLDER --trinet_chk_name chk_end (VKD eval.py's form)."""
    def command(name):
        return ["--method", "vkd", "mars", str(runs.teacher), "--trinet_chk_name", name, "--data-path",
                str(mars_root), "--backend", runs.B.name, "--ms-mode", "PYNATIVE"]
    argv = command("chk_end")
    capsys.readouterr()
    assert test_cli.main(argv + ["--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["train"]["resume"] == str(runs.teacher / "chk" / f"chk_end{runs.chk_ext}")
    assert (cfg["model"]["arch"], cfg["model"]["width"], cfg["vkd"]["num_test_images"]) == ("resnet18", 4, 4)
    assert test_cli.main(argv) == 0
    table = capsys.readouterr().out.strip().splitlines()[-2:]
    last = _records(runs.teacher)[-1]["eval"]
    assert [line.split() for line in table] == [
        [r["setting"]] + [f"{r[c]:.2f}" for c in ("R1", "R10", "R20", "mAP", "mINP")] for r in last]
    _fails(command("chk_7"), capsys, "chk_7", "chk_end", main=test_cli.main)


@pytest.mark.parametrize("backend", backends.BACKENDS)
def test_one_frame_per_tracklet_trains_image_to_image(backend, mars_root, tmp_path):
    pytest.importorskip(backend)
    shapes = []
    step = TeacherRun.train_step

    def spy(self, batch):
        shapes.append(batch[0].shape)
        return step(self, batch)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TeacherRun, "train_step", spy)
        argv = teacher_argv(mars_root, tmp_path, backend, extra=["--num_train_images", "1", "--num_epochs", "1"])
        assert train_cli.main(argv) == 0
    assert shapes == [(8, 1, 3, 32, 16)] * 2
    rec = _records(tmp_path / "teacher")[0]
    assert rec["triplet"] > 0 and rec["class"] > 0 and "eval" in rec


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written

def _fails(argv, capsys, *fragments, main=train_cli.main):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


def _train_frames(root):
    from common.data.mars import load_mars
    return load_mars(root, augmented_gallery=False).train


def test_a_zero_byte_frame_is_named_before_anything_is_written(mars_root, tmp_path, capsys):
    root = shutil.copytree(mars_root, tmp_path / "mars")
    frame = _train_frames(str(root))[5].path[2]
    open(frame, "wb").close()
    _fails(teacher_argv(root, tmp_path / "logs", "torch"), capsys, frame, "0 bytes")
    assert not (tmp_path / "logs").exists()


def test_a_corrupt_frame_stops_training_naming_the_file(mars_root, tmp_path, capsys):
    """A non-empty undecodable frame is found when read (here in epoch 0: K=3 draws every
    tracklet of its 3-tracklet identity, N=16 every frame); the run folder is removed (no
    checkpoint was written, so there is nothing to resume)."""
    root = shutil.copytree(mars_root, tmp_path / "mars")
    train = _train_frames(str(root))
    counts = {pid: sum(r.pid == pid for r in train) for pid in {r.pid for r in train}}
    frame = next(r for r in train if counts[r.pid] == 3).path[1]
    with open(frame, "wb") as f:
        f.write(b"not a jpeg" * 10)
    argv = teacher_argv(root, tmp_path / "logs", "torch", extra=["--k", "3", "--num_train_images", "16"])
    _fails(argv, capsys, f"cannot read image '{frame}'")
    assert not (tmp_path / "logs" / "teacher").exists()


@pytest.fixture(scope="module")
def vkd_folder(tmp_path_factory):
    """A reference-layout ResNet-18 (width 4) run folder for the 8 training identities."""
    folder = tmp_path_factory.mktemp("ref") / "base_mars_resnet18"
    write_vkd_folder(folder, "resnet18", NUM_IDS, width=4)
    return folder


def _broken_copy(folder, tmp_path, remove):
    copy = shutil.copytree(folder, tmp_path / "broken")
    target = copy / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    return copy


@pytest.mark.parametrize("case", ["fewer_than_k", "backbone", "classes", "dataset", "student_images", "no_chk",
                                  "no_hparams", "teacher_given_a_folder"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, mars_root, vkd_folder, tmp_path, capsys):
    log = tmp_path / "logs"
    student = student_argv(mars_root, vkd_folder, log, "torch", extra=["--num_generations", "1"])
    if case == "fewer_than_k":  # 2-3 tracklets per identity
        _fails(teacher_argv(mars_root, log, "torch", extra=["--k", "5"]), capsys, "K=5", "--k")
    elif case == "backbone":
        _fails(student + ["--backbone", "resnet34"], capsys, "resnet18", "resnet34", str(vkd_folder))
    elif case == "classes":
        other = tmp_path / "base_other"
        write_vkd_folder(other, "resnet18", 5, width=4)
        _fails(student_argv(mars_root, other, log, "torch"), capsys, "5 classes", f"{NUM_IDS} identities")
    elif case == "dataset":  # VKD's Saver.load_net asserts the dataset
        other = tmp_path / "base_duke"
        write_vkd_folder(other, "resnet18", NUM_IDS, width=4, dataset="duke-video-reid")
        _fails(student_argv(mars_root, other, log, "torch"), capsys, "trained on dukevideo", "on mars")
    elif case == "teacher_given_a_folder":  # eval.py's positional form is test.py's, not train.py's
        _fails(teacher_argv(mars_root, log, "torch")[:3] + [str(vkd_folder)] + teacher_argv(mars_root, log)[3:],
               capsys, str(vkd_folder), "test.py", "--resume")
    elif case == "student_images":
        _fails(student + ["--num_student_images", "8"], capsys, "--num_student_images (8)", "--num_train_images (4)")
    elif case == "no_chk":
        broken = _broken_copy(vkd_folder, tmp_path, "chk")
        _fails(student_argv(mars_root, broken, log, "torch"), capsys, "no chk/", str(broken))
        _fails(["--method", "vkd", "mars", str(broken), "--data-path", str(mars_root)], capsys, "no chk/",
               main=test_cli.main)
    else:
        broken = _broken_copy(vkd_folder, tmp_path, "params/hparams.json")
        _fails(student_argv(mars_root, broken, log, "torch"), capsys, "hparams.json", str(broken))
    assert not log.exists()


@pytest.mark.slow
def test_mindspore_student_in_graph_mode_runs_two_generations(mars_root, vkd_folder, tmp_path):
    """MindSpore's default GRAPH mode: teacher and student in one graph would clash (same
    parameter names); two generations recompile the step with the new teacher."""
    pytest.importorskip("mindspore")
    argv = student_argv(mars_root, vkd_folder, tmp_path, "mindspore", extra=["--num_epochs", "1"])
    argv[argv.index("PYNATIVE")] = "GRAPH"
    assert train_cli.main(argv) == 0
    recs = _records(tmp_path / "student")
    assert [r["epoch"] for r in recs] == [0, 1]
    assert all(np.isfinite([r[k] for k in ("total", "kl", "similarity")]).all() for r in recs)
    assert sorted(p.name for p in (tmp_path / "student" / "chk").iterdir()) == ["chk_di_1.ckpt", "chk_di_2.ckpt"]
