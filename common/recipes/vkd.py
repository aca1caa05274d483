"""VKD (Porrello et al., "Robust Re-Identification by Multiple Views Knowledge Distillation",
ECCV 2020) on MARS, Duke-Video-ReID and VeRi-776: the recipe of ``vkd-teacher`` and
``vkd-student``, following aimagelab/VKD tools/train_v2v.py, tools/train_distill.py,
tools/eval.py and commands.txt.

* ``vkd-teacher`` (train_v2v.py): TriNet on P identities x K tracklets x N frames (random
  chunked temporal crop; N = 1 is image-to-image, as VKD's VeRi teachers), CE + soft-margin
  batch-hard triplet, Adam 1e-4 with weight decay 1e-5, MultiStepLR gamma 0.1 at
  ``range(first_milestone, num_epochs, step_milestone)``. At the end the run folder also
  receives VKD's layout (``chk/chk_end``, ``params/{params,hparams}.json``).
* ``vkd-student`` (train_distill.py): a copy of the teacher (or ``--student``'s network) with
  layer4 (DenseNet: denseblock4; MobileNet: nothing) reset to its ImageNet weights and a fresh
  classifier; the frozen teacher in batch-statistics BN sees the N multiview frames, the student
  a random M of the same augmented frames; triplet + CE + ``lambda_coeff`` · distance-preserving
  + ``kl_coeff`` · KD (τ = ``temp``); ``num_generations`` of self-distillation, each with
  ``num_epochs`` epochs, a fresh Adam at ``lr · lr_decay^g`` (at least 1e-5) and its own
  milestones, ending with ``chk/chk_di_<g>``.
* Evaluation: cosine distance, VKD's mAP (the ``mars`` protocol of common.metrics), I2V and
  V2V (MARS, Duke-Video) or I2I, I2V, V2I, V2V (VeRi), any of the four on request.

The network and the steps are ``backends/<fw>/vkd.py``; the data ``common/data/video*.py``.
"""
import os
from typing import List

import numpy as np

from common.config import Key
from common.data import video, video_eval
from common.engine.loop import MethodRun
from common.errors import ConfigError, ReidError
from common.metrics import evaluate_features
from common.report import summarize
from common.schedule import check_schedule, multistep_lr
from common.recipes import vkd_folders

METHODS = ("vkd-teacher", "vkd-student")
TEST_METHOD_ALIASES = ("vkd",)
SECTION = "vkd"
DEFAULT_CONFIG = {"vkd-teacher": "vkd_teacher.yaml", "vkd-student": "vkd_student.yaml"}
COLUMNS = ("setting", "R1", "R10", "R20", "mAP", "mINP")
DATASETS = ("mars", "dukevideo", "veri")

KEYS = {
    "num_train_images": Key(8, "frames per training tracklet N (1: image-to-image)", lo=1),
    "num_student_images": Key(2, "student: views M of the teacher's N", lo=1),
    "num_test_images": Key(8, "frames per evaluation tracklet (deterministic chunked crop)", lo=1),
    "train_strategy": Key("chunk", "frame selection: chunk (teacher), multiview (student) or temporal",
                          choices=("chunk", "multiview", "temporal", "random")),
    "use_random_erasing": Key(True, "random erasing p 0.5 per frame"),
    "pretrained": Key(True, "teacher: start from ImageNet weights (VKD --pretrained; the file comes from "
                            "--pretrain, which cannot be downloaded here; False: --pretrain is not loaded)"),
    "first_milestone": Key(200, "first MultiStepLR milestone (VKD --first_milestone)", lo=0),
    "step_milestone": Key(50, "spacing of the following milestones (VKD --step_milestone)", lo=1),
    "metric": Key("euclidean", "VKD --metric (recorded; VKD's evaluator always uses the cosine distance)",
                  choices=("euclidean", "cosine")),
    "protocols": Key([], "evaluation protocols among I2V, V2V, I2I, V2I ([]: the reference's for the dataset)",
                     choices=video.PROTOCOLS),
    "img_test_batch": Key(512, "images per forward pass for image-side evaluation", lo=1),
    "save_epoch_interval": Key(0, "teacher: also write chk/chk_<n> every this many epochs (VKD's 50; 0: off)",
                               lo=0),
    "teacher": Key("", "student: the teacher's run folder (VKD layout: params/, chk/) or checkpoint file"),
    "teacher_chk_name": Key("chk_end", "student: checkpoint name inside the teacher folder's chk/"),
    "student": Key("", "student: a run folder whose network becomes the student (cross-distillation)"),
    "student_chk_name": Key("chk_end", "student: checkpoint name inside the --student folder's chk/"),
    "num_generations": Key(1, "student: rounds of self-distillation", lo=1),
    "lr_decay": Key(0.1, "student: learning rate x lr_decay^generation (at least 1e-5)", lo=0.0, hi=1.0,
                    lo_open=True),
    "temp": Key(10.0, "student: KD temperature tau", lo=0.0, lo_open=True),
    "lambda_coeff": Key(1e-4, "student: weight of the distance-preserving loss", lo=0.0),
    "kl_coeff": Key(0.1, "student: weight of the KD loss", lo=0.0),
    "logits_dist": Key("kl", "student: kl (tau^2 KL) or mse between logits", choices=("kl", "mse")),
    "reinit_l4": Key(True, "student: reset layer4 / denseblock4 to ImageNet and the classifier"),
    "reinit_l3": Key(False, "student: reset layer3 too (VKD raises; refused)"),
    "set_determinism": Key(False, "VKD --set_determinism (recorded: torch runs always use deterministic cuDNN)"),
    "verbose": Key(True, "VKD --verbose (accepted; the log is always written)"),
    "print_epoch_interval": Key(5, "VKD --print_epoch_interval (accepted; every epoch is logged)", lo=1),
}

STRUCTURE_KEYS = ("model.arch", "model.width", "model.last_stride")
TEST_KEYS = ("vkd.num_test_images", "vkd.protocols", "vkd.img_test_batch")


def _str2bool(text: str) -> bool:
    """VKD utils/misc.py ``str2bool``."""
    if str(text).lower() in ("yes", "true", "t", "y", "1"):
        return True
    if str(text).lower() in ("no", "false", "f", "n", "0"):
        return False
    import argparse
    raise argparse.ArgumentTypeError(f"boolean value expected, got {text!r}")


def _flags():
    from common.cli import Flag
    s2b = _str2bool
    table = [
        (("--backbone",), "model.arch", str), (("--pretrained",), "vkd.pretrained", s2b),
        (("--num_train_images",), "vkd.num_train_images", int),
        (("--num_student_images",), "vkd.num_student_images", int),
        (("--num_test_images",), "vkd.num_test_images", int),
        (("--p",), "data.num_ids", int), (("--k",), "data.num_pos", int), (("--exp_name",), "train.ckpt", str),
        (("--first_milestone",), "vkd.first_milestone", int), (("--step_milestone",), "vkd.step_milestone", int),
        (("--num_epochs",), "schedule.epochs", int), (("--eval_epoch_interval",), "train.eval_every", int),
        (("--save_epoch_interval",), "vkd.save_epoch_interval", int),
        (("--print_epoch_interval",), "vkd.print_epoch_interval", int), (("--wd",), "optim.weight_decay", float),
        (("--gamma",), "schedule.gamma", float), (("--use_random_erasing",), "vkd.use_random_erasing", s2b),
        (("--train_strategy",), "vkd.train_strategy", str), (("--metric",), "vkd.metric", str),
        (("--set_determinism",), "vkd.set_determinism", s2b), (("--test_batch",), "data.test_batch", int),
        (("--img_test_batch",), "vkd.img_test_batch", int), (("--verbose",), "vkd.verbose", s2b),
        (("-j", "--workers"), "data.workers", int), (("--teacher_chk_name",), "vkd.teacher_chk_name", str),
        (("--student",), "vkd.student", str), (("--student_chk_name",), "vkd.student_chk_name", str),
        (("--num_generations",), "vkd.num_generations", int), (("--lr_decay",), "vkd.lr_decay", float),
        (("--temp",), "vkd.temp", float), (("--lambda_coeff",), "vkd.lambda_coeff", float),
        (("--kl_coeff",), "vkd.kl_coeff", float), (("--reinit_l4",), "vkd.reinit_l4", s2b),
        (("--reinit_l3",), "vkd.reinit_l3", s2b), (("--logits_dist",), "vkd.logits_dist", str),
    ]
    return tuple(Flag(names, key, typ, f"VKD {names[-1]}") for names, key, typ in table)


FLAGS = _flags()


def positionals(method: str, values: List[str]) -> dict:
    """The reference's positional arguments as configuration: ``train_v2v.py DATASET`` and
    ``train_distill.py DATASET TEACHER_FOLDER``. The Duke student lines of VKD's commands.txt
    read ``./logs/duke-video-reid base_duke_X``: a first value ``<dir>/<dataset>`` followed
    by an experiment name is read as dataset ``<dataset>`` and teacher ``<dir>/<name>``."""
    out: dict = {}
    if not values:
        return out
    first = values[0]
    if first.lower() not in video.ALIASES and first.lower() not in video.SETTINGS and len(values) == 2:
        head, base = os.path.split(first.rstrip("/"))
        if base.lower() in video.ALIASES or base.lower() in video.SETTINGS:
            values = [base, os.path.join(head, values[1])]
    out["data"] = {"dataset": video.settings(values[0]).name}
    rest = values[1:]
    if rest and method == "vkd-student":
        out["vkd"] = {"teacher": rest[0]}
        rest = rest[1:]
    elif rest:  # eval.py DATASET TRINET_FOLDER (test.py --method vkd)
        out["train"] = {"resume": rest[0]}
        rest = rest[1:]
    if rest:
        raise ConfigError(f"unexpected argument(s) {rest}; {method} takes DATASET "
                          + ("TEACHER_FOLDER" if method == "vkd-student" else "[RUN_FOLDER (test.py)]"))
    return out


def finalize(cfg: dict) -> dict:
    """Derived keys: the milestones ``range(first_milestone, epochs, step_milestone)``, the
    dataset's reference input size where ``data.height``/``width`` are 0, and for
    ``vkd-student`` with no ``--backbone`` the backbone of the network it trains (the
    ``--student`` folder's, else the teacher folder's) when that folder can be read, so the
    configuration (and a resumed run's check against it) names the real network."""
    v, d = cfg["vkd"], cfg["data"]
    cfg["schedule"]["kind"] = "multistep"
    cfg["schedule"]["milestones"] = list(range(v["first_milestone"], cfg["schedule"]["epochs"], v["step_milestone"]))
    source = v["student"] or v["teacher"]
    if cfg["method"]["name"] == "vkd-student" and not cfg["model"]["arch"] and os.path.isdir(source):
        try:
            cfg["model"]["arch"] = vkd_folders.folder_facts(source)[0]
        except ReidError:  # reported with its context when the run starts (StudentRun.create)
            pass
    if d["dataset"] in DATASETS:
        s = video.settings(d["dataset"])
        d["height"] = d["height"] or s.height
        d["width"] = d["width"] or s.width
    return cfg


def check(cfg: dict) -> None:
    d, v, method = cfg["data"], cfg["vkd"], cfg["method"]["name"]
    if d["dataset"] not in DATASETS:
        raise ConfigError(f"VKD trains on {', '.join(DATASETS)}; got data.dataset={d['dataset']!r}")
    if not d["data_path"]:
        raise ConfigError("no dataset given: pass --data-path DIR (the dataset root)")
    check_schedule(cfg["schedule"])
    if os.path.isdir(cfg["train"]["resume"]):
        raise ConfigError(f"'{cfg['train']['resume']}' is a run folder: train.py {method} takes DATASET"
                          + (" TEACHER_FOLDER" if method == "vkd-student" else "")
                          + " (a run folder after DATASET is test.py's, as VKD eval.py); to resume a run pass "
                          "--resume <run folder>/<backend>_last.pth|.ckpt")
    if method == "vkd-student":
        if not v["teacher"]:
            raise ConfigError("vkd-student needs a teacher: train.py --method vkd-student DATASET TEACHER_FOLDER")
        if v["num_student_images"] > v["num_train_images"]:
            raise ConfigError(f"--num_student_images ({v['num_student_images']}) must not exceed "
                              f"--num_train_images ({v['num_train_images']})")
        if v["reinit_l3"]:
            raise ConfigError("--reinit_l3 True is not supported (VKD's reinit_layers raises for it)")


def load_splits(cfg: dict):
    return video_eval.load_vkd_splits(cfg["data"]["dataset"], cfg["data"]["data_path"])


class VKDEvaluator:
    """Features of each needed side (extracted once), then every protocol's metrics."""

    def __init__(self, cfg: dict, B, splits):
        d, v = cfg["data"], cfg["vkd"]
        self.cfg, self.B = cfg, B
        self.protocols = video_eval.eval_protocols(d["dataset"], d["data_path"], v["protocols"] or None,
                                                   v["num_test_images"], splits=splits)
        self.size = (d["height"], d["width"])
        sides = {s.name: s for p in self.protocols.values() for s in (p.query, p.gallery)}
        for side in sides.values():
            video.check_frame_files(side.frames, f"evaluation ({side.name.replace('_', ' ')})")

    def features(self, model, side: video_eval.EvalSide) -> np.ndarray:
        """Test features of one side (tracklets or images), batch by batch."""
        d, v = self.cfg["data"], self.cfg["vkd"]
        bs = d["test_batch"] if side.name.startswith("video") else v["img_test_batch"]
        source = video_eval.side_batches(d["dataset"], side, bs, size=self.size)
        return np.concatenate([self.B.vkd.extract(model, b[0], bs)
                               for b in self.B.data.make_loader(source, 0, d["workers"])])

    def __call__(self, model) -> List[dict]:
        feats = {}
        rows = []
        for name, proto in self.protocols.items():
            for side in (proto.query, proto.gallery):
                if side.name not in feats:
                    feats[side.name] = self.features(model, side)
            q, g = proto.query, proto.gallery
            res = evaluate_features(feats[q.name], feats[g.name], q.pids, g.pids, q.camids, g.camids,
                                    protocol="mars", metric="cosine", max_rank=20)
            rows.append({"setting": name, **summarize(res)})
        return rows


class _VKDRun(MethodRun):
    columns = COLUMNS

    def __init__(self, cfg, B, model, optimizer, loader, evaluator, num_classes, description):
        super().__init__(model, optimizer, num_classes, description)
        self.cfg, self.B, self.loader, self.evaluator = cfg, B, loader, evaluator

    def __len__(self):
        return len(self.loader)

    def batches(self, epoch):
        return self.B.data.make_loader(self.loader, epoch, self.cfg["data"]["workers"])

    def evaluate(self):
        self.B.vkd.student_mode(self.model)
        return self.evaluator(self.model)

    def meta(self) -> dict:
        return {"num_classes": self.num_classes, "arch": self.cfg["model"]["arch"]}


class TeacherRun(_VKDRun):
    """train_v2v.py's loop body."""

    def __init__(self, *args, trainer):
        super().__init__(*args)
        self.trainer = trainer

    def lrs(self, epoch):
        s = self.cfg["schedule"]
        lr = multistep_lr(epoch, self.cfg["optim"]["lr"], s["milestones"], s["gamma"])
        return [lr, lr]

    def train_step(self, batch):
        frames, pids = batch[0], batch[1]
        return self.trainer.train_step(frames, pids)

    def begin_epoch(self, epoch):
        """train_v2v.py ``--save_epoch_interval``: before epoch e (e > 0, a multiple of the
        interval) the network is also written as ``chk/chk_<e // interval>``."""
        every = int(self.cfg["vkd"]["save_epoch_interval"])
        if every and epoch > 0 and epoch % every == 0:
            vkd_folders.write_run_folder(self.run_dir, self.B, self.model, self.cfg, self.num_classes,
                                         f"chk_{epoch // every}")

    def finish(self):
        vkd_folders.write_run_folder(self.run_dir, self.B, self.model, self.cfg, self.num_classes, "chk_end")


def _optimizer(cfg, B, model, lr):
    o = cfg["optim"]
    return B.optim.build_optimizer(model, "adam", lr, o["weight_decay"], betas=tuple(o["betas"]),
                                   backbone_modules=("backbone",), lr_mults=(1.0, 1.0))


def _pretrain_or_warn(cfg, B, model, log):
    """VKD ``--pretrained`` (model/net.py ``Backbone(pretrained=...)``): True starts the teacher's
    backbone from the ImageNet file ``--pretrain``; False builds it without ImageNet weights,
    so a ``--pretrain`` file is then not loaded (a note says so)."""
    v, m = cfg["vkd"], cfg["model"]
    if not v["pretrained"]:
        if m["pretrain"]:
            log.line(f"note: --pretrained False: '{m['pretrain']}' is not loaded (VKD builds the backbone "
                     "without ImageNet weights)")
    elif m["pretrain"]:
        B.weights.load_backbone_pretrained(model, m["pretrain"], arch=m["arch"])
    else:
        log.line(f"warning: VKD starts {m['arch']} from ImageNet weights, which cannot be downloaded here; pass "
                 "--pretrain FILE (torchvision layout). Training from scratch (zero-initialised residual BN)")


def build(cfg: dict, B, log) -> _VKDRun:
    """Data, network, optimizer, training step and evaluation of ``vkd-teacher`` /
    ``vkd-student``."""
    check(cfg)
    d, v, t = cfg["data"], cfg["vkd"], cfg["train"]
    splits = load_splits(cfg)
    video.check_frame_files([r.path for r in splits.train], "training")
    student = cfg["method"]["name"] == "vkd-student"
    loader = video.build_train_batches(d["dataset"], splits.train, d["num_ids"], d["num_pos"], v["num_train_images"],
                                       v["num_student_images"] if student else 0, v["train_strategy"], t["seed"],
                                       max_batches=d["max_batches"], erase_p=0.5 if v["use_random_erasing"] else 0.0,
                                       size=(d["height"], d["width"]))
    evaluator = VKDEvaluator(cfg, B, splits)
    num_classes = splits.num_train_pids
    what = f"VKD {'student' if student else 'teacher'} ({cfg['model']['arch']}) on {d['dataset']} with {B.name}"
    desc = f"{what}: {num_classes} ids, {len(splits.train)} tracklets"
    if not student:
        model = B.vkd.build_model(cfg, num_classes)
        _pretrain_or_warn(cfg, B, model, log)
        optimizer = _optimizer(cfg, B, model, cfg["optim"]["lr"])
        trainer = B.vkd.TeacherTrainer(model, optimizer, v, cfg["runtime"]["ms_mode"])
        return TeacherRun(cfg, B, model, optimizer, loader, evaluator, num_classes, desc, trainer=trainer)
    from common.recipes.vkd_student import StudentRun
    return StudentRun.create(cfg, B, log, loader, evaluator, num_classes, desc)


def test_checkpoint(cfg: dict):
    """test.py with a run folder (VKD eval.py ``DATASET TRINET_FOLDER --trinet_chk_name``):
    (checkpoint file, the configuration of the stored network) from the folder's facts."""
    folder = cfg["train"]["resume"]
    arch, num_classes = vkd_folders.folder_facts(folder)
    stored = {**cfg, "model": dict(cfg["model"], arch=arch), "num_classes": num_classes}
    return vkd_folders.checkpoint_in(folder, cfg["vkd"]["teacher_chk_name"]), stored


def read_extra(path: str) -> dict:
    """test.py: the ``extra`` of any VKD checkpoint, whatever framework wrote it (read by
    content; a reference state dict has none): a run of either backend, or of the
    reference, is evaluated by either (a torch file needs torch installed)."""
    from tools.convert_weights import read_weights
    return read_weights(path)[1]


def load_for_test(B, model, path: str, cfg: dict) -> None:
    """Weights of any VKD checkpoint (this project's files or the reference's state dicts)."""
    B.weights.load_numpy_state(model, vkd_folders.load_state(path, cfg["model"]["arch"]))


def ranked_inputs(cfg: dict, B, model, select=None, setting=None):
    """``tools/visualize.py ranked``: a :class:`common.viz.ranked.RankedSet` of one protocol
    (``I2V``, ``V2V``, ...; default the dataset's first) with the evaluation's features and
    cosine distance for the queries ``select(q_pids)`` picks; a tracklet is drawn as its
    first frame."""
    from common.viz import ranked
    evaluator = VKDEvaluator(cfg, B, load_splits(cfg))
    proto = evaluator.protocols[ranked.choose_setting(list(evaluator.protocols), setting)]
    q, g = proto.query, proto.gallery
    pick = ranked.selected(select, q.pids)
    q = q._replace(records=[q.records[i] for i in pick], pids=q.pids[pick], camids=q.camids[pick],
                   frames=[q.frames[i] for i in pick])
    return ranked.from_features(proto.name, "mars", "cosine", evaluator.features(model, q),
                                evaluator.features(model, g), [r.path[0] for r in q.records],
                                [r.path[0] for r in g.records], q.pids, g.pids, q.camids, g.camids, q_index=pick)


def build_for_test(cfg: dict, B, num_classes: int):
    """(model, evaluate() -> rows) for test.py; the data are read by evaluate()."""
    check(dict(cfg, method={"name": "vkd-teacher"}))
    model = B.vkd.build_model(cfg, num_classes)
    return model, lambda: VKDEvaluator(cfg, B, load_splits(cfg))(model)


def test_input(cfg: dict, modality=None) -> dict:
    """What ``extract`` takes (common/inference.py; tools.export, FeatureExtractor): clips
    ``(N, T, 3, H, W)`` of frames through :class:`common.transforms.VideoTest` (bicubic);
    one image is a one-frame clip (VKD's image-to-X query sides)."""
    return {"layout": "clips", "resize": "bicubic"}
