"""KD-REID (Remigereau et al., "Knowledge Distillation for Multi-Target Domain Adaptation in
Real-Time Person Re-Identification", ICIP 2022; D-MMD: Mekhazni et al., ECCV 2020): the
recipe of ``source``, ``dmmd`` and ``kd-reid``, following fremigereau/MTDA_KD_REID
``scripts/{source_training,DMMD,KD_REID}.py`` and the engines they run.

* ``source`` (source_training.py): a re-ID network (``-a``, ResNet-50 with last stride 2 and a
  2048-d ``feat`` + ``feat_bn`` embedding by default) trained on the source (``-ds``) with
  label-smoothed CE (0.1) + batch-hard triplet (0.3) on P x K batches, Adam 3e-4 (betas 0.9,
  0.99, weight decay 5e-4), StepLR(50), 100 epochs, evaluated on the source's test set.
* ``dmmd`` (DMMD.py): that model (``-mp``) adapted to one target (``-dt``; several are
  blended into one set, as the reference does) by D-MMD: source CE + triplet, plus the
  within-class, between-class and global MMD (19-sigma kernel) between source and target
  P x K batches from epoch 25 on; 200 epochs; evaluated on the target. One teacher per target.
* ``kd-reid`` (KD_REID.py): an OSNet student (``-as``, from its source model ``-mps``)
  distilled from the frozen teachers (``-mpt``, one per target, in batch-statistics BN): per
  target, ``lkdt_weight * ||Dcos(student(x_t)) - Dcos(teacher_t(x_t))||_F`` on the embeddings
  (MTDA's ``LogEuclidLoss(log=False)``: the matrix logarithm is never used); SGD 0.01,
  momentum 0.9, weight decay 5e-4, StepLR(5), 50 epochs; evaluated on every target, the
  model with the best MEAN Rank-1 kept.

Where the code and the paper or notes differ, the code decides; the reference's training
quirks are reproduced by default, each behind a key of the ``kdreid`` section below (its
evaluation bugs are not: see ``kdreid_data.protocol_of``). Not built (refused with a
message): feature-map distillation (``--kd-style only_feats``; ``all`` on a ResNet student;
the full engine's source term ``--lkds-weight``, which OSNet students cannot have: the
reference's run crashes), SpCL teachers (``--stda SPCL``), ``--multi-head``.

Files: data ``kdreid_data.py``, weights ``kdreid_io.py``, runs ``kdreid_runs.py``; networks and
training steps ``backends/<fw>/kdreid.py``.
"""
from typing import List

import numpy as np

from common.config import Key
from common.errors import ConfigError
from common.kdreid_models import OSNET_CHANNELS, REID_MODEL_NAMES, RESNET_NAME
from common.recipes import kdreid_data as kd_data
from common.recipes import kdreid_io
from common.schedule import check_schedule

METHODS = ("source", "dmmd", "kd-reid")
SECTION = "kdreid"
DEFAULT_CONFIG = {"source": "kdreid_source.yaml", "dmmd": "kdreid_dmmd.yaml", "kd-reid": "kdreid_kd.yaml"}
COLUMNS = ("setting", "R1", "R10", "R20", "mAP", "mINP")
DATASETS = kd_data.IMAGE_DATASETS

KEYS = {
    "source": Key(["msmt17"], "-ds: source data set(s); source training sums several (torchreid), dmmd and "
                              "kd-reid take one", choices=DATASETS),
    "targets": Key([], "-dt: target data sets (dmmd: blended into one; kd-reid: one teacher each; source: "
                       "evaluated on instead of the source)",
                   choices=DATASETS),
    "arch": Key(RESNET_NAME, "-a: network of source / dmmd", choices=REID_MODEL_NAMES),
    "arch_student": Key(RESNET_NAME, "-as: kd-reid student (the reference's default; its README uses "
                                     "osnet_x0_25)", choices=REID_MODEL_NAMES),
    "arch_teacher": Key(RESNET_NAME, "-at: kd-reid teachers", choices=REID_MODEL_NAMES),
    "features": Key(2048, "--features: embedding size (feat + feat_bn); 0 = the pooled trunk feature", lo=0),
    "osnet_channels": Key([], "OSNet size knob: 4 channel counts ([] = the named variant's; tests use small "
                              "ones, each of the last three >= 64)", lo=1),
    "osnet_blocks": Key([], "OSNet size knob: OSBlocks per stage, 3 counts ([] = 2, 2, 2)", lo=1),
    "model_path": Key("", "-mp: dmmd: the source model to adapt ('' = ImageNet / --pretrain)"),
    "model_path_student": Key("", "-mps: kd-reid: the student's source model ('' = ImageNet / --pretrain)"),
    "model_path_teachers": Key([], "-mpt: kd-reid: one teacher checkpoint per target, in -dt order"),
    "batch_size": Key(32, "-b: images per batch; P = batch_size / num_instances identities", lo=2),
    "step_size": Key(50, "--step-size: StepLR period in epochs (gamma 0.1)", lo=1),
    "scheduler": Key("single_step", "--scheduler: torchreid's StepLR (the only one the scripts use)",
                     choices=("single_step",)),
    "new_cuhk": Key(False, "--new-cuhk: CUHK03 new protocol (767/700); default the classic split 0"),
    "cuhk03_labeled": Key(True, "CUHK03 labelled boxes (the scripts' cuhk03_labeled=True); false = detected"),
    "label_smooth": Key(0.1, "CE label smoothing epsilon (torchreid CrossEntropyLoss, label_smooth=True)",
                        lo=0.0, hi=1.0),
    "margin": Key(0.3, "batch-hard triplet margin", lo=0.0),
    "random_erasing": Key(True, "train transform: random erasing p 0.5 (torchreid's, mean fill). The reference "
                                "asks for 'random_erasing' but torchreid tests 'random_erase', so its runs had "
                                "none; false reproduces that"),
    "fixbase_epochs": Key(0, "source: epochs training only the classifier (rest frozen, eval mode). The "
                             "reference means 10 for MSMT17 but compares the nargs='+' list -ds with "
                             "'msmt17', so with -ds given (its README) nothing is frozen: 0 reproduces "
                             "that; -1 applies the intended rule", lo=-1),
    "mmd_start_epoch": Key(25, "dmmd: first (0-based) epoch with the MMD terms (the engine's epoch > 24)", lo=0),
    "global_source_grad": Key(True, "D-MMD: the global MMD term also trains the source features (the "
                                    "reference detaches only the distance sets); false detaches them"),
    "kd_style": Key("only_outputs", "--kd-style: only_outputs (embedding relations); all adds feature-map KD, "
                                    "which OSNet students do not output (= only_outputs); only_feats: not built",
                    choices=("all", "only_feats", "only_outputs")),
    "target_order": Key("random", "--target-order: random, fixed (-dt order) or shift (ascending source-to-"
                                  "target MMD of the student)", choices=("random", "fixed", "shift")),
    "shift_measure": Key("global", "shift order: global MMD (the KD engines) or dmmd = within + between + "
                                   "global (domain_shift_measure.py)", choices=("global", "dmmd")),
    "target_alt": Key("batch", "--target-alt: full (one target after another per epoch) or batch (alternate "
                               "targets within each batch)", choices=("full", "batch")),
    "lkdt_weight": Key(1.0, "--lkdt_weight: weight of the target relation-KD term", lo=0.0),
    "lkds_weight": Key(0.0, "--lkds_weight: batch mode: weight of the same term on the source batch", lo=0.0),
    "lda_weight": Key(0.0, "--lda_weight: > 0 adds D-MMD + CE + triplet of the student (full mode: weight 1, "
                           "batch mode: lda_weight / 100, as the two engines do)", lo=0.0),
    "sched_per_teacher": Key(False, "batch mode: the reference's loop nesting, T passes per epoch with a StepLR "
                                    "step after each (so the rate decays T times faster); default one pass, "
                                    "one step per epoch"),
    "target_restart": Key("reference", "batch mode, an exhausted target loader: reference = every later batch is "
                                       "the first of a fresh permutation (its iterator is not kept); continue = "
                                       "walk the fresh permutation", choices=("reference", "continue")),
    "student_source_forward": Key(True, "kd-reid: run the student on the source batch every step even when no "
                                        "term reads it, as the reference (its BN running statistics see source "
                                        "batches); false skips that forward"),
    "stda": Key("D-MMD", "--stda: teachers' adaptation; SPCL (SpCL teachers) is accepted, as the reference's "
                         "choice, and refused as not built", choices=("D-MMD", "SPCL")),
    "multi_head": Key(False, "--multi-head: one embedding head per target (not built)"),
    "print_freq": Key(100, "--print-freq (accepted; every epoch is logged)", lo=1),
    "dropout": Key(0.0, "--dropout (accepted; unused by the reference's networks)", lo=0.0, hi=1.0),
    "memory_momentum": Key(0.2, "--momentum: 'hybrid memory' momentum, unused by the reference (not SGD's)",
                           lo=0.0, hi=1.0),
    "log_loss": Key(False, "--log-loss (accepted; unused by the reference's engines)"),
}

STRUCTURE_KEYS = ("kdreid.arch", "kdreid.arch_student", "kdreid.features", "kdreid.osnet_channels",
                  "kdreid.osnet_blocks", "model.width", "model.last_stride")
TEST_KEYS = ("kdreid.targets", "kdreid.source", "kdreid.new_cuhk", "kdreid.cuhk03_labeled")


def _flags():
    from common.cli import Flag
    k = "kdreid."
    table = [
        (("-ds", "--dataset-source"), k + "source", str, "+"), (("-dt", "--dataset-target"), k + "targets", str, "+"),
        (("-a", "--arch"), k + "arch", str, None), (("-as", "--arch-student"), k + "arch_student", str, None),
        (("-at", "--arch-teacher"), k + "arch_teacher", str, None),
        (("--data-dir", "-data-dir"), "data.data_path", str, None),
        (("-mp", "--model-path"), k + "model_path", str, None),
        (("-mps", "--model-path-student"), k + "model_path_student", str, None),
        (("-mpt", "--model-path-teachers"), k + "model_path_teachers", str, "+"),
        (("--kd-style",), k + "kd_style", str, None), (("--target-order",), k + "target_order", str, None),
        (("--target-alt",), k + "target_alt", str, None),
        (("--lkds-weight", "--lkds_weight"), k + "lkds_weight", float, None),
        (("--lda-weight", "--lda_weight"), k + "lda_weight", float, None),
        (("--lkdt-weight", "--lkdt_weight"), k + "lkdt_weight", float, None),
        (("--new-cuhk",), k + "new_cuhk", "store_true", None), (("--eval-freq",), "train.eval_every", int, None),
        (("--step-size",), k + "step_size", int, None), (("-b", "--batch-size"), k + "batch_size", int, None),
        (("--num-instances",), "data.num_pos", int, None), (("--height",), "data.height", int, None),
        (("--width",), "data.width", int, None), (("-j", "--workers"), "data.workers", int, None),
        (("--features",), k + "features", int, None), (("--optimizer",), "optim.name", str, None),
        (("--scheduler",), k + "scheduler", str, None), (("--print-freq",), k + "print_freq", int, None),
        (("--tensorboard",), "train.tensorboard", "store_true", None), (("--dropout",), k + "dropout", float, None),
        (("--momentum",), k + "memory_momentum", float, None),
        (("--multi-head",), k + "multi_head", "store_true", None), (("--stda",), k + "stda", str, None),
        (("--log-loss",), k + "log_loss", "store_true", None),
    ]
    return tuple(Flag(names, key, typ, f"MTDA_KD_REID {names[-1] if names[-1].startswith('--') else names[0]}",
                      nargs) for names, key, typ, nargs in table)


FLAGS = _flags()


def arch_of(cfg: dict) -> str:
    """The network a run trains (and its checkpoints hold)."""
    return cfg["kdreid"]["arch_student"] if cfg["method"]["name"] == "kd-reid" else cfg["kdreid"]["arch"]


def eval_names(cfg: dict) -> List[str]:
    """The data sets a run evaluates on: the targets, or for ``source`` without targets the
    source(s) (source_training.py tests on the source; test.py --set kdreid.targets=[...]
    evaluates a source model on targets)."""
    k = cfg["kdreid"]
    return list(k["source"] if cfg["method"]["name"] == "source" and not k["targets"] else k["targets"])


def finalize(cfg: dict) -> dict:
    """Derived keys: P = batch_size // num_instances (``data.num_ids``), StepLR as
    ``schedule`` (multistep at every ``step_size`` epochs), ``data.dataset`` = the first
    source, the fixbase rule (-1: 10 epochs for an MSMT17 source)."""
    k, d, s = cfg["kdreid"], cfg["data"], cfg["schedule"]
    d["num_ids"] = max(1, k["batch_size"] // max(d["num_pos"], 1))
    d["dataset"] = k["source"][0] if k["source"] else d["dataset"]
    s.update(kind="multistep", gamma=0.1, step_offset=0,
             milestones=list(range(k["step_size"], s["epochs"], k["step_size"])))
    if k["fixbase_epochs"] == -1:
        k["fixbase_epochs"] = 10 if cfg["method"]["name"] == "source" and "msmt17" in k["source"] else 0
    return cfg


def check(cfg: dict) -> None:
    """Every cross-key rule, before any data is read (one-line ConfigError each)."""
    k, d, method = cfg["kdreid"], cfg["data"], cfg["method"]["name"]
    if not d["data_path"]:
        raise ConfigError("no dataset root given: pass --data-dir DIR (the folder holding market1501/, msmt17/ ...)")
    check_schedule(cfg["schedule"])
    if min(d["height"], d["width"]) < 16:
        raise ConfigError(f"--height and --width must be >= 16, got {d['height']}x{d['width']}")
    if k["batch_size"] % d["num_pos"] or k["batch_size"] // d["num_pos"] < 2:
        raise ConfigError(f"--batch-size {k['batch_size']} must be a multiple of --num-instances {d['num_pos']} "
                          f"with at least 2 identities per batch (P x K = batch size)")
    if not k["source"]:
        raise ConfigError("no source data set: pass -ds NAME")
    if method != "source":
        if len(k["source"]) != 1:
            raise ConfigError(f"{method} takes one source data set (-ds), got {k['source']}")
        if not k["targets"]:
            raise ConfigError(f"{method} needs target data sets: pass -dt NAME [NAME ...]")
        if k["source"][0] in k["targets"]:
            raise ConfigError(f"the source {k['source'][0]} is also a target (-dt {' '.join(k['targets'])}); "
                              "sources and targets must differ")
        if len(set(k["targets"])) != len(k["targets"]):
            raise ConfigError(f"a target is listed twice: -dt {' '.join(k['targets'])}")
    if k["osnet_channels"] and len(k["osnet_channels"]) != 4 or k["osnet_blocks"] and len(k["osnet_blocks"]) != 3:
        raise ConfigError("kdreid.osnet_channels needs 4 values and kdreid.osnet_blocks 3 ([] for the defaults)")
    if k["multi_head"]:
        raise ConfigError("--multi-head is not built (one embedding head per target)")
    if k["stda"] != "D-MMD":
        raise ConfigError(f"--stda {k['stda']} is not built (SpCL teachers with domain-specific BatchNorm); the "
                          "teachers must be D-MMD models: --stda D-MMD")
    if method == "kd-reid":
        _check_kd(k)


def _check_kd(k: dict) -> None:
    if len(k["model_path_teachers"]) != len(k["targets"]):
        raise ConfigError(f"{len(k['model_path_teachers'])} teacher checkpoint(s) (-mpt) for {len(k['targets'])} "
                          f"target(s) (-dt {' '.join(k['targets'])}); give one teacher per target, in the same order")
    student_osnet = k["arch_student"] in OSNET_CHANNELS
    if k["kd_style"] == "only_feats" or (k["kd_style"] == "all" and not student_osnet):
        raise ConfigError(f"--kd-style {k['kd_style']} needs feature-map distillation, which is not built (an OSNet "
                          "student has no feature maps in the reference: use only_outputs)")
    if k["lkds_weight"] > 0 and k["target_alt"] == "full":
        raise ConfigError("--lkds_weight > 0 with --target-alt full is the reference's feature-map source term, "
                          "which OSNet students cannot have (its run crashes); use --target-alt batch")
    if k["lkdt_weight"] == 0 and k["lkds_weight"] == 0 and k["lda_weight"] == 0:
        raise ConfigError("--lkdt_weight, --lkds_weight and --lda_weight are all 0: nothing to train")


def _transform(cfg: dict):
    from common.transforms import ImageTrain
    return ImageTrain(cfg["data"]["height"], cfg["data"]["width"], erasing=cfg["kdreid"]["random_erasing"])


def _init(cfg, B, model, arch, path, role, log) -> str:
    """Weights of a network trained here: checkpoint ``path``, else ``--pretrain``, else a
    one-line warning."""
    if path:
        kdreid_io.load_into(B, model, path, arch, role)
        return f"{role}: {path}"
    if cfg["model"]["pretrain"]:
        line = kdreid_io.load_imagenet(B, model, cfg["model"]["pretrain"], arch)
        log.line(line)
        return "ImageNet"
    log.line(f"warning: {arch} starts from scratch: the reference starts from ImageNet weights, which cannot be "
             "downloaded here; pass --pretrain FILE (torchvision resnet50 / torchreid osnet_*_imagenet.pth)")
    return "scratch"


def _optimizer(cfg, B, model):
    o = cfg["optim"]
    return B.optim.build_optimizer(model, o["name"], o["lr"], o["weight_decay"], o["momentum"], nesterov=o["nesterov"],
                                   betas=tuple(o["betas"]), backbone_modules=(), lr_mults=(1.0, 1.0))


def _resume_epoch(cfg, B) -> int:
    path = cfg["train"]["resume"]
    return int(B.checkpoint.read_extra(path).get("epoch", -1)) + 1 if path else 0


def build(cfg: dict, B, log):
    """Data, networks (weights checked before anything is written), optimizer, training step
    and evaluation sets of ``source`` / ``dmmd`` / ``kd-reid``."""
    from common.recipes import kdreid_runs as runs
    check(cfg)
    k, d, t, method = cfg["kdreid"], cfg["data"], cfg["train"], cfg["method"]["name"]
    P, K, settings = d["num_ids"], d["num_pos"], dict(k, P=d["num_ids"], K=d["num_pos"])
    names = list(dict.fromkeys(list(k["source"]) + (list(k["targets"]) if method != "source" else [])))
    splits = {n: kd_data.load_dataset(n, cfg) for n in names}
    records, num_classes = kd_data.combine_train([splits[n] for n in k["source"]])
    streams = [kd_data.Stream("+".join(k["source"]), records, P, K, t["seed"] * 1009)]
    sets = kd_data.eval_sets(cfg, eval_names(cfg), splits)
    arch = arch_of(cfg)
    model = kdreid_io.build_net(cfg, B, arch, num_classes)
    tf = _transform(cfg)
    head = f"{method} on {'+'.join(k['source'])}" + (f" -> {', '.join(k['targets'])}" if method != "source" else "")
    if method == "source":
        init = _init(cfg, B, model, arch, "", "source", log)
        optimizer = _optimizer(cfg, B, model)
        trainer = B.kdreid.SourceTrainer(model, optimizer, settings, cfg["runtime"]["ms_mode"])
        fix_trainer = fix_opt = None
        if k["fixbase_epochs"] > 0:  # torchreid open_specified_layers(model, ['classifier'])
            fix_opt = _optimizer(cfg, B, model.classifier)
            fix_trainer = B.kdreid.SourceTrainer(model, fix_opt, settings, cfg["runtime"]["ms_mode"],
                                                 classifier_only=True)
        run = runs.SourceRun(cfg, B, model, optimizer, num_classes, f"{head} with {B.name}: {arch} ({init}), "
                             f"{num_classes} ids, {len(records)} images", streams, tf, sets)
        run.setup(arch, trainer, fix_trainer, fix_opt, k["fixbase_epochs"])
        if _resume_epoch(cfg, B) < k["fixbase_epochs"]:
            run.optimizer = fix_opt
        return run
    tgt_records, _ = kd_data.combine_train([splits[n] for n in k["targets"]])
    if method == "dmmd":
        streams.append(kd_data.Stream("+".join(k["targets"]), tgt_records, P, K, t["seed"] * 1009 + 1))
        init = _init(cfg, B, model, arch, k["model_path"], "source model (-mp)", log)
        optimizer = _optimizer(cfg, B, model)
        trainer = B.kdreid.DMMDTrainer(model, optimizer, settings, cfg["runtime"]["ms_mode"])
        run = runs.DMMDRun(cfg, B, model, optimizer, num_classes, f"{head} with {B.name}: {arch} ({init}), "
                           f"{num_classes} source ids", streams, tf, sets)
        return run.setup(arch, trainer)
    for i, name in enumerate(k["targets"]):
        streams.append(kd_data.Stream(name, splits[name].train, P, K, t["seed"] * 1009 + 1 + i))
    teachers = []
    for i, path in enumerate(k["model_path_teachers"]):
        teacher = kdreid_io.build_net(cfg, B, k["arch_teacher"], num_classes)
        kdreid_io.load_into(B, teacher, path, k["arch_teacher"], f"teacher {i + 1} (-mpt, target {k['targets'][i]})")
        teachers.append(teacher)
    init = _init(cfg, B, model, arch, k["model_path_student"], "student (-mps)", log)
    optimizer = _optimizer(cfg, B, model)
    trainer = B.kdreid.KDTrainer(model, teachers, optimizer, settings, cfg["runtime"]["ms_mode"])
    run = runs.KDRun(cfg, B, model, optimizer, num_classes,
                     f"{head} with {B.name}: student {arch} ({init}), {len(teachers)} {k['arch_teacher']} teachers, "
                     f"{k['target_alt']} alternation, {k['target_order']} order", streams, tf, sets)
    return run.setup(arch, trainer, k["targets"])


def ranked_inputs(cfg: dict, B, model, select=None, setting=None):
    """``tools/visualize.py ranked``: a :class:`common.viz.ranked.RankedSet` of one evaluated
    data set (a setting per target, or a source model's own test sets; default the first),
    with the evaluation's features, distance and protocol (``kdreid_data.protocol_of``: the
    classic CUHK03 split's single-gallery-shot metric, else Market-1501's same-identity
    same-camera removal), for the queries ``select(q_pids)`` picks; tiles are the image files."""
    from common.viz import ranked
    (s,) = kd_data.eval_sets(cfg, [ranked.choose_setting(eval_names(cfg), setting)])
    pick = ranked.selected(select, np.array([r.pid for r in s.query], np.int64))
    query = [s.query[i] for i in pick]
    qf, gf = kd_data.extract_features(B, model, query, cfg), kd_data.extract_features(B, model, s.gallery, cfg)
    return ranked.from_features(s.name, s.protocol, kd_data.METRIC, qf, gf, [r.path for r in query],
                                [r.path for r in s.gallery], [r.pid for r in query], [r.pid for r in s.gallery],
                                [r.camid for r in query], [r.camid for r in s.gallery], q_index=pick)


def build_for_test(cfg: dict, B, num_classes: int):
    """(model, evaluate() -> rows) for test.py: the run's network and its evaluation sets."""
    if not cfg["data"]["data_path"]:
        raise ConfigError("no dataset root given: pass --data-path DIR")
    model = kdreid_io.build_net(cfg, B, arch_of(cfg), num_classes)

    def evaluate():
        return kd_data.evaluate_sets(B, model, kd_data.eval_sets(cfg, eval_names(cfg)), cfg)
    return model, evaluate

