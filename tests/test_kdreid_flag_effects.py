"""The effect of every KD-REID command-line flag (fremigereau/MTDA_KD_REID
scripts/{source_training,DMMD,KD_REID}.py; ``common/recipes/kdreid.py`` ``FLAGS``), each
passed on the command line of train.py with a value other than its default, on a tiny
synthetic Market-1501 -> DukeMTMC-reID + CUHK03 (tests/kdreid_tiny.py).

:data:`KDREID_EFFECTS` maps each flag to the test that asserts what it does (tests/
test_flag_effects.py imports it): the networks, the checkpoints, the student's loss, the
target alternation and order, the optimizer, the schedule, the evaluation cadence, the
recorded-only and the refused flags here; the training data and evaluation sets in
tests/test_kdreid_flag_effects_data.py. Most tests stop train.py at the recipe's build
(``vkd_tiny.build_only``) and inspect the run it built; one short real run is shared
(module fixture ``kd_run``).
"""
import importlib
import json
import os

import numpy as np
import pytest
import yaml

import train as train_cli
from common.losses import classification as cls_spec, domain as domain_spec
from common.recipes import kdreid as kd_recipe
from common.recipes import kdreid_data as kd_data
from common.recipes.kdreid_data import stream_key
from kdreid_tiny import argv, ck, kd_argv, root, state  # noqa: F401 (ck, root: module fixtures)
from tests.parity.tolerances import LOSS_VS_SPEC_RTOL
from vkd_tiny import assert_same_weights as _same, build_only as _build

pytest.importorskip("torch")
_T, _D = "tests/test_kdreid_flag_effects.py::", "tests/test_kdreid_flag_effects_data.py::"
KDREID_EFFECTS = {
    "-ds": _D + "test_dataset_flags_pick_the_training_streams_and_evaluation_sets",
    "-dt": _D + "test_dataset_flags_pick_the_training_streams_and_evaluation_sets",
    "--data-dir": _D + "test_dataset_flags_pick_the_training_streams_and_evaluation_sets",
    "-b": _D + "test_batch_size_and_num_instances_lay_out_p_by_k_batches",
    "--num-instances": _D + "test_batch_size_and_num_instances_lay_out_p_by_k_batches",
    "--height": _D + "test_height_and_width_size_the_training_and_test_images",
    "--width": _D + "test_height_and_width_size_the_training_and_test_images",
    "--new-cuhk": _D + "test_new_cuhk_picks_the_cuhk03_split_and_its_protocol",
    "-a": _T + "test_arch_flags_build_those_networks",
    "-as": _T + "test_arch_flags_build_those_networks",
    "-at": _T + "test_arch_flags_build_those_networks",
    "-mp": _T + "test_model_path_flags_load_those_checkpoints",
    "-mps": _T + "test_model_path_flags_load_those_checkpoints",
    "-mpt": _T + "test_model_path_flags_load_those_checkpoints",
    "--features": _T + "test_features_sets_the_embedding_size",
    "--optimizer": _T + "test_optimizer_picks_the_optimizer",
    "--lkdt-weight": _T + "test_loss_weights_give_the_logged_terms_of_a_step",
    "--lkds-weight": _T + "test_loss_weights_give_the_logged_terms_of_a_step",
    "--lda-weight": _T + "test_loss_weights_give_the_logged_terms_of_a_step",
    "--target-alt": _T + "test_target_alt_full_trains_the_targets_one_after_another",
    "--target-order": _T + "test_target_order_decides_the_order_of_the_student_steps",
    "--kd-style": _T + "test_kd_style_all_is_only_outputs_for_an_osnet_student_the_rest_is_refused",
    "--step-size": _T + "test_step_size_and_scheduler_set_every_epochs_rate",
    "--scheduler": _T + "test_step_size_and_scheduler_set_every_epochs_rate",
    "--eval-freq": _T + "test_eval_freq_sets_the_evaluated_epochs",
    "--print-freq": _T + "test_recorded_only_flags_are_written_to_config_yaml",
    "--dropout": _T + "test_recorded_only_flags_are_written_to_config_yaml",
    "--momentum": _T + "test_recorded_only_flags_are_written_to_config_yaml",
    "--log-loss": _T + "test_recorded_only_flags_are_written_to_config_yaml",
    "--multi-head": _T + "test_unbuilt_options_are_refused_in_one_line",
    "--stda": _T + "test_unbuilt_options_are_refused_in_one_line",
}
# covered by the shared tables: -j (tests/test_vkd_flag_effects_data.py, the same key data.workers; the
# KD-REID loaders' use of it is asserted in test_height_and_width_...), --tensorboard (train.tensorboard)
SHARED = {"-j", "--tensorboard"}


def test_kdreid_effects_names_every_kdreid_flag_and_an_existing_test():
    assert set(KDREID_EFFECTS) == {f.names[0] for f in kd_recipe.FLAGS} - SHARED
    for flag, target in KDREID_EFFECTS.items():
        path, _, name = target.partition("::")
        assert path in (_T[:-2], _D[:-2]) and name.startswith("test_"), flag
        module = importlib.import_module(path[len("tests/"):-len(".py")])
        assert callable(getattr(module, name, None)), f"{flag}: no test {target}"


# ---------------------------------------------------------------- shared pieces

def _records(run):
    return [json.loads(line) for line in open(run / "metrics.jsonl")]


KD_RUN_FLAGS = ["--epochs", "3", "--eval-freq", "2", "--step-size", "1", "--scheduler", "single_step",
                "--print-freq", "7", "--dropout", "0.3", "--momentum", "0.5", "--log-loss",
                "--set", "data.max_batches=1"]


@pytest.fixture(scope="module")
def kd_run(tmp_path_factory, root, ck):
    """A 3-epoch torch kd-reid run (one target, one batch an epoch) with KD_RUN_FLAGS."""
    log = tmp_path_factory.mktemp("kd_run")
    assert train_cli.main(kd_argv(root, log, ck, *KD_RUN_FLAGS, targets=("dukemtmcreid",))) == 0
    return log / "run"


def _saved_optimizer(run):
    from backends.torch.checkpoint import read_file
    return read_file(str(run / "torch_last.pth"))[2]


def _refused(capsys, argv_, log_dir, words):
    """train.py ``argv_`` exits 2 with one ``error:`` line holding ``words``, writing nothing."""
    capsys.readouterr()
    assert train_cli.main(argv_) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and words in err, err
    assert not log_dir.exists()


# ---------------------------------------------------------------- networks and checkpoints

def test_arch_flags_build_those_networks(root, ck, tmp_path):
    """-a: the network source / dmmd train (OSNet: conv5, no layer4; ResNet-50: layer4);
    -as: the kd-reid student; -at: its teachers (OSNet or ResNet-50 ones, from such checkpoints)."""
    def arch_of(keys):
        osnet, resnet = "conv5.conv.weight" in keys, "layer4.0.conv1.weight" in keys
        return "osnet_x0_25" if osnet and not resnet else "resnet50" if resnet and not osnet else "?"
    for arch in ("osnet_x0_25", "resnet50"):
        b = _build(argv("source", root, tmp_path, "-a", arch))
        assert arch_of(state(b, b.run.model)) == arch and b.run.arch == arch
    for student, teacher, files in (("resnet50", "osnet_x0_25", ck.osnet), ("osnet_x0_25", "resnet50", ck.resnet)):
        b = _build(argv("kd-reid", root, tmp_path, "-dt", "dukemtmcreid", "cuhk03", "-as", student, "-at", teacher,
                        "-mpt", *files))
        assert arch_of(state(b, b.run.model)) == student and b.run.arch == student
        assert [arch_of(state(b, t)) for t in b.run.trainer.teachers] == [teacher] * 2


def test_model_path_flags_load_those_checkpoints(root, ck, tmp_path):
    """MTDA's files (``model-best.pth.tar``, ``module.`` keys): -mp is the network dmmd adapts;
    -mps the kd-reid student's start; -mpt the teachers, teacher i for target i of -dt."""
    b = _build(argv("dmmd", root, tmp_path, "-dt", "dukemtmcreid", "-a", "osnet_x0_25", "-mp", ck.osnet[1]))
    _same(ck.weights[ck.osnet[1]], state(b, b.run.model))
    for teachers in (ck.resnet, ck.resnet[::-1]):
        b = _build(argv("kd-reid", root, tmp_path, "-dt", "dukemtmcreid", "cuhk03", "-as", "osnet_x0_25",
                        "-at", "resnet50", "-mps", ck.osnet[0], "-mpt", *teachers))
        _same(ck.weights[ck.osnet[0]], state(b, b.run.model))
        for path, teacher in zip(teachers, b.run.trainer.teachers):
            _same(ck.weights[path], state(b, teacher))
    a, c = (ck.weights[p]["layer1.0.conv1.weight"] for p in ck.resnet)
    assert not np.array_equal(a, c)


def test_features_sets_the_embedding_size(root, tmp_path):
    """--features N: the ``feat`` layer (N outputs) and ``feat_bn`` give N-d test features;
    --features 0: no feat layer, the pooled trunk feature (256-d at width 8) is the embedding."""
    import torch
    for arch, features, dim in (("osnet_x0_25", 24, 24), ("resnet50", 24, 24), ("resnet50", 0, 256)):
        b = _build(argv("source", root, tmp_path, "-a", arch, "--features", str(features)))
        keys = state(b, b.run.model)
        if features:
            assert keys["feat.weight"].shape[0] == features and keys["feat_bn.weight"].shape == (features,)
        else:
            assert not [k for k in keys if k.startswith("feat")]
        assert keys["classifier.weight"].shape == (4, dim)
        images = next(iter(b.run.batches(0)))[0]
        with torch.no_grad():
            assert b.B.kdreid.extract(b.run.model, images, 64).shape == (4, dim), (arch, features)


def test_optimizer_picks_the_optimizer(root, ck, tmp_path):
    """--optimizer: source (default adam) with sgd trains with SGD; kd-reid (default sgd)
    with adam with Adam (torchreid build_optimizer's betas 0.9, 0.99)."""
    import torch
    b = _build(argv("source", root, tmp_path, "--optimizer", "sgd"))
    assert type(b.run.optimizer) is torch.optim.SGD
    b = _build(kd_argv(root, tmp_path, ck, "--optimizer", "adam"))
    assert type(b.run.optimizer) is torch.optim.Adam
    assert {g["betas"] for g in b.run.optimizer.param_groups} == {(0.9, 0.99)}


# ---------------------------------------------------------------- the student's loss

def _forward(model, images):
    """(logits, embedding) in the mode the step uses (train: batch statistics), as float64."""
    import torch
    model.train()
    with torch.no_grad():
        logits, emb = model(torch.from_numpy(images))
    return logits.double().numpy(), emb.double().numpy()


@pytest.mark.parametrize("alt", ["batch", "full"])
def test_loss_weights_give_the_logged_terms_of_a_step(root, ck, tmp_path, alt):
    """--lkdt_weight 0.7 --lkds_weight 0.3 --lda_weight 40 (batch engine) or --lkdt-weight 0.7
    --lda-weight 40 (full engine, where lkds > 0 is refused): the terms of the run's first step
    equal the numpy specs of the student's and teacher's outputs on that batch: kd_target =
    lkdt Rel(S(x_t), T(x_t)), kd_source = lkds Rel(S(x_s), T(x_s)), da = w (D-MMD + CE +
    triplet of the student) with w = lda/100 (MTDA KD_batch_engine.py) or 1 (the one-by-one
    engine), total their sum."""
    weights = (["--lkdt_weight", "0.7", "--lkds_weight", "0.3", "--lda_weight", "40"] if alt == "batch"
               else ["--lkdt-weight", "0.7", "--lda-weight", "40"])
    b = _build(kd_argv(root, tmp_path, ck, "--target-alt", alt, *weights, targets=("dukemtmcreid",)))
    batch = next(iter(b.run.batches(0)))
    src, pids, tgt = batch[0], batch[1], batch[2]
    student, teacher = b.run.model, b.run.trainer.teachers[0]
    s_logits, s_src = _forward(student, src)
    s_tgt = _forward(student, tgt)[1]
    t_src, t_tgt = _forward(teacher, src)[1], _forward(teacher, tgt)[1]
    terms = b.run.train_step(batch)
    mmd = domain_spec.dmmd(s_src, s_tgt, 2, 2)
    da = sum(mmd.values()) + cls_spec.cross_entropy(s_logits, pids, 0.1) + cls_spec.triplet_batch_hard(s_src, pids, 0.3)
    expected = {"kd_target": 0.7 * domain_spec.cosine_relation_kd(s_tgt, t_tgt),
                "kd_source": 0.3 * domain_spec.cosine_relation_kd(s_src, t_src) if alt == "batch" else 0.0,
                "da": (0.4 if alt == "batch" else 1.0) * da}
    for key, value in expected.items():
        assert terms[key] == pytest.approx(value, rel=LOSS_VS_SPEC_RTOL), key
    assert terms["total"] == pytest.approx(sum(expected.values()), rel=LOSS_VS_SPEC_RTOL)


# ---------------------------------------------------------------- targets: alternation and order

class Recorder:
    """Stands in for the KD trainer: records each student step's target; ``shift`` gives
    measure_shift's value per target (the call's position among the batch's targets)."""

    def __init__(self, T, shift=()):
        self.T, self.shift, self.steps, self.kinds, self._n = T, list(shift), [], [], 0

    def train_step(self, src, pids, tgt, ix):
        self.steps.append((int(ix), tgt))
        return {"total": 1.0}

    def measure_shift(self, src, tgt, kind):
        self.kinds.append(kind)
        self._n += 1
        return self.shift[(self._n - 1) % self.T]


FOLDERS = {"Market-1501": "market1501", "DukeMTMC-reID": "dukemtmcreid", "cuhk03": "cuhk03"}


def _epoch_steps(b, **recorder):
    """Per batch of epoch 0: (the batch, the targets of the student steps it caused in order,
    the data set of each 4-image part of the batch, from the files read)."""
    b.run.trainer = rec = Recorder(b.run.T, **recorder)
    read, out = [], []
    real = kd_data.read_image

    def spy(path):
        read.append(next(name for folder, name in FOLDERS.items() if f"{os.sep}{folder}" in path))
        return real(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kd_data, "read_image", spy)
        for batch in b.run.batches(0):
            before = len(rec.steps)
            b.run.train_step(batch)
            out.append((batch, rec.steps[before:], [read[i] for i in range(0, len(read), 4)]))
            read.clear()
    return out


def test_target_alt_full_trains_the_targets_one_after_another(root, ck, tmp_path):
    """--target-alt full (KD_one_by_one_engine.py): one student step per batch, the targets in
    two contiguous blocks each zipped with the source loader (a block as long as the shorter
    loader), the target batch being the step's; the default batch mode (KD_batch_engine.py)
    steps once per target in every batch, each with its own target batch."""
    full = _build(kd_argv(root, tmp_path, ck, "--target-alt", "full", "--target-order", "fixed",
                          "--set", "data.max_batches=0"))
    steps = _epoch_steps(full)
    targets = ["dukemtmcreid", "cuhk03"]
    for batch, s, sets in steps:
        assert len(s) == 1 and s[0][1] is batch[2] and s[0][0] == int(batch[4][0])
        assert sets == ["market1501", targets[s[0][0]]]
    streams = full.run.streams
    lengths = [min(len(streams[0].perm(stream_key(0, 1 + t))), len(streams[1 + t].perm(stream_key(0)))) for t in (0, 1)]
    assert [s[0][0] for _, s, _ in steps] == [0] * lengths[0] + [1] * lengths[1]
    batch_mode = _build(kd_argv(root, tmp_path, ck, "--target-order", "fixed"))
    for batch, s, sets in _epoch_steps(batch_mode):
        assert [ix for ix, _ in s] == [0, 1] and s[0][1] is batch[2] and s[1][1] is batch[4]
        assert sets == ["market1501", *targets]


def test_target_order_decides_the_order_of_the_student_steps(root, ck, tmp_path):
    """Batch engine: --target-order fixed steps through the targets in -dt order in every batch;
    shift in ascending source-to-target shift of the student (measured per batch, MTDA's
    global MMD): with the shifts 5 (dukemtmcreid) and 1 (cuhk03), cuhk03 first; random (the
    default) draws an order per batch."""
    def orders(*flags, **recorder):
        b = _build(kd_argv(root, tmp_path, ck, *flags, "--set", "data.max_batches=0"))
        got = _epoch_steps(b, **recorder)
        return [tuple(ix for ix, _ in s) for _, s, _ in got], b.run.trainer
    fixed, _ = orders("--target-order", "fixed")
    assert set(fixed) == {(0, 1)} and len(fixed) > 2
    shift, rec = orders("--target-order", "shift", shift=(5.0, 1.0))
    assert set(shift) == {(1, 0)} and rec.kinds == ["global"] * 2 * len(shift)
    shift, _ = orders("--target-order", "shift", shift=(1.0, 5.0))
    assert set(shift) == {(0, 1)}
    random, _ = orders()
    assert set(random) == {(0, 1), (1, 0)}


def test_kd_style_all_is_only_outputs_for_an_osnet_student_the_rest_is_refused(root, ck, tmp_path, capsys):
    """--kd-style all with an OSNet student: the reference's feature-map term needs feature maps
    an OSNet student does not output, so the step is only_outputs' (same terms from the same
    weights and batch); only_feats, and all with a ResNet-50 student, are refused (not built)."""
    terms = []
    for style in ("all", "only_outputs"):
        b = _build(kd_argv(root, tmp_path, ck, "--kd-style", style, targets=("dukemtmcreid",)))
        terms.append(b.run.train_step(next(iter(b.run.batches(0)))))
    assert terms[0] == terms[1] and terms[0]["kd_target"] > 0
    logs = tmp_path / "logs"
    _refused(capsys, kd_argv(root, logs, ck, "--kd-style", "only_feats"), logs,
             "--kd-style only_feats needs feature-map distillation, which is not built")
    _refused(capsys, kd_argv(root, logs, ck, "--kd-style", "all", "-as", "resnet50"), logs,
             "--kd-style all needs feature-map distillation")


# ---------------------------------------------------------------- schedule, evaluation, recorded flags

def test_step_size_and_scheduler_set_every_epochs_rate(kd_run, tmp_path, capsys):
    """--scheduler single_step --step-size 1 (torchreid StepLR, gamma 0.1, stepped per epoch):
    lr 0.01, 0.001, 0.0001 in epochs 0..2, the last one in the saved optimizer; torchreid's
    other schedulers (multi_step, which the scripts' integer step size crashes, and cosine)
    are refused by the parser."""
    assert [r["lrs"] for r in _records(kd_run)] == [[pytest.approx(v, rel=1e-12)] * 2 for v in (1e-2, 1e-3, 1e-4)]
    groups = _saved_optimizer(kd_run)["param_groups"]
    assert [g["lr"] for g in groups] == [pytest.approx(1e-4, rel=1e-12)] * 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        train_cli.main(["--method", "kd-reid", "--scheduler", "cosine", "--set", f"train.log_dir={tmp_path}"])
    assert exit_.value.code == 2 and "argument --scheduler: invalid choice: 'cosine'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_eval_freq_sets_the_evaluated_epochs(kd_run):
    """--eval-freq 2 over 3 epochs: evaluated after epoch 1 and after the last (torchreid
    Engine.run: every eval_freq epochs and at the end)."""
    assert ["eval" in r for r in _records(kd_run)] == [False, True, True]
    assert [row["setting"] for row in _records(kd_run)[1]["eval"]] == ["dukemtmcreid"]


def test_recorded_only_flags_are_written_to_config_yaml(kd_run):
    """--print-freq, --dropout, --momentum and --log-loss change nothing the reference's
    training depends on: print_freq spaces its per-batch console lines (this project logs
    every epoch); dropout and momentum (the SpCL 'hybrid memory' momentum) are parsed by
    MTDA's scripts and never passed on; log_loss is stored by the KD engines and never read.
    They are recorded in the run's config.yaml; --momentum is not SGD's momentum (0.9 in the
    saved optimizer)."""
    k = yaml.safe_load((kd_run / "config.yaml").read_text())["kdreid"]
    assert {key: k[key] for key in ("print_freq", "dropout", "memory_momentum", "log_loss")} == {
        "print_freq": 7, "dropout": 0.3, "memory_momentum": 0.5, "log_loss": True}
    groups = _saved_optimizer(kd_run)["param_groups"]
    assert {g["momentum"] for g in groups} == {0.9}


def test_unbuilt_options_are_refused_in_one_line(root, ck, tmp_path, capsys):
    """--multi-head (one embedding head per target) and --stda SPCL (SpCL teachers) are the
    reference's choices this project does not build: one line, exit 2, no run folder."""
    logs = tmp_path / "logs"
    _refused(capsys, kd_argv(root, logs, ck, "--multi-head"), logs, "--multi-head is not built")
    _refused(capsys, kd_argv(root, logs, ck, "--stda", "SPCL"), logs, "--stda SPCL is not built")
