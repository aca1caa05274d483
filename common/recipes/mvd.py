"""MVD (Tian et al., "Farewell to Mutual Information: Variational Distillation for
Cross-Modal Person Re-Identification", CVPR 2021) on SYSU-MM01 and RegDB: the recipe.

Three configurations reproduce three trainings (``configs/``):

* ``mvd_port.yaml`` (the default of the seed's command line): the MindSpore port
  (``mindspore-ai/models`` ``research/cv/MVD``): four-path flow, ResNet-50 last stride 2,
  BNNeck with trainable shift and a classifier bias, plain CE + batch-hard triplet on the 8
  features, Adam with backbones (BNNeck and classifier included) at 0.1·lr, the lr cascade
  of its ``utils.py`` loop, 8 ids x (4 RGB + 4 IR), grayscale/flip/erasing, 288x144, the
  4 BN features normalised part by part;
* ``mvd_original.yaml``: the original PyTorch code (``FutabaSakuraXD/Farewell-to-Mutual-
  Information-...`` ``mm01.py``, ``reid/trainers.py``, ``reid/models/*``): last stride 1,
  ShallowCAM, frozen BNNeck shift, label-smoothed CE + Rank_loss + 8·Sinkhorn CML +
  2·VSD + 2·VCD, one Adam group at 2.6e-4, warm-up multistep stepped before each epoch,
  16 ids x (4+4) from an epoch permutation, 256x128 flip only, 4 BN features normalised
  jointly;
* ``mvd_routed.yaml``: this project's earlier reading of the paper (RGB images to the visible
  encoder, IR to the infrared one), kept as an option.

The ``mvd`` configuration section below is owned by this recipe; the network, the loss and
the training step are ``backends/<fw>/mvd.py``.
"""
from collections import defaultdict
from typing import Dict, List

import numpy as np

from common.config import Key
from common.data import cross_modal
from common.engine.loop import MethodRun
from common.errors import ConfigError, ReidError
from common.metrics import evaluate_features
from common.netspec import HEAD_INIT_STYLES
from common.report import mean_rows, summarize
from common.schedule import check_schedule, epoch_lr, group_lrs

METHODS = ("mvd",)
SECTION = "mvd"
DEFAULT_CONFIG = "mvd_port.yaml"
FLOWS = ("reference", "routed")
LOSSES = ("port", "original", "routed")
LOSS_FUNCS = ("id", "id+tri", "id+tri+kldiv")
TEST_FEATURES = ("four", "shared", "concat", "all")

KEYS = {
    "flow": Key("reference", "reference: every image through the visible encoder, the infrared encoder (on "
                             "its grey copy) and the shared encoder (on both), as both codebases; routed: RGB "
                             "to the visible and IR to the infrared encoder (the paper's reading)",
                choices=FLOWS),
    "gray_coeffs": Key([0.2989, 0.5870, 0.1440], "grey copy R,G,B weights on the normalised tensor (port "
                                                 "0.1440 B, original 0.1140 B)", length=3),
    "gray_ir": Key(False, "routed flow only: the infrared encoder sees the grey copy of the RGB batch"),
    "shallow_cam": Key(False, "channel attention (DANet CAM) before layer2, layer3 and layer4 (original)"),
    "neck_bias": Key("trainable", "BNNeck BatchNorm shift: trainable (port) or frozen at 0 (original)",
                     choices=("trainable", "frozen")),
    "classifier_bias": Key(True, "BNNeck classifier with a bias (both references)"),
    "head_init": Key("port", "head initialisation (common/netspec.py): port (MindSpore 1.3 defaults: Dense "
                             "N(0, 0.01), zero bias), original (IB Linear kaiming fan_out, IB BN N(1, 0.02), "
                             "classifiers N(0, 0.001)), project (classifier N(0, 0.001), IB framework default) or "
                             "framework", choices=HEAD_INIT_STYLES),
    "z_dim": Key(512, "information-bottleneck code size", lo=1),
    "ib_hidden": Key([1000, 500], "hidden sizes of the IB encoder MLP", lo=1, length=2),
    "cls_hidden": Key(256, "hidden size of the IB classifier", lo=1),
    "dropout": Key(0.5, "dropout of the IB classifier", lo=0.0, hi=0.99),
    "test_feature": Key("four", "four: BN features of v, v_shared, i, i_shared (both references); shared: the "
                                "shared encoder's; concat: modality encoder + shared; all: visible, infrared, "
                                "shared", choices=TEST_FEATURES),
    "test_norm": Key("parts", "parts: L2-normalise each part (port); joint: the concatenation (original)",
                     choices=("parts", "joint")),
    "loss": Key("port", "training objective: port, original or routed", choices=LOSSES),
    "loss_func": Key("id+tri", "the seed's --loss-func: id, id+tri, id+tri+kldiv", choices=LOSS_FUNCS),
    "margin": Key(0.3, "batch-hard triplet margin (port, routed)", lo=0.0),
    "T": Key(1.0, "distillation temperature", lo=0.0, lo_open=True),
    "kl_form": Key("vsd", "routed loss only: vsd (paper KL) or original (the original code's kl_div call)",
                   choices=("vsd", "original")),
    "vml_weight": Key(0.0, "routed loss only: weight of variational mutual learning", lo=0.0),
    "label_smooth": Key(0.1, "original loss: CE label smoothing", lo=0.0, hi=1.0),
    "rank_margins": Key([0.9, 1.0], "original Rank_loss margins (intra, cross modality)", length=2),
    "rank_alphas": Key([2.2, 2.0], "original Rank_loss alphas (intra, cross modality)", length=2),
    "w_cml": Key(8.0, "original loss: weight of the Sinkhorn mutual-learning term", lo=0.0),
    "w_vsd": Key(2.0, "original (and port id+tri+kldiv) loss: weight of VSD", lo=0.0),
    "w_vcd": Key(2.0, "original (and port id+tri+kldiv) loss: weight of VCD", lo=0.0),
    "sinkhorn_eps": Key(0.01, "Sinkhorn entropic regularisation", lo=0.0, lo_open=True),
    "sinkhorn_iter": Key(100, "Sinkhorn iterations at most", lo=1),
    "sinkhorn_thresh": Key(0.1, "Sinkhorn stopping error", lo=0.0),
    "sampler": Key("port", "port (ids without, images with replacement, N // (B*P) batches), original (epoch "
                           "permutation of ids) or routed (port sampler, N // (B*P) + 1 batches)",
                   choices=cross_modal.SAMPLERS),
    "pad": Key(0, "train transform: zero padding before the random crop", lo=0),
    "erasing": Key(True, "train transform: random erasing p 0.5 on both streams"),
    "erasing_style": Key("torchvision", "random erasing: torchvision (the port's MindSpore defaults) or zhong",
                         choices=("torchvision", "zhong")),
    "grayscale": Key(True, "train transform: random grayscale p 0.5 on the RGB stream"),
    "gallery_shots": Key(1, "SYSU-MM01 gallery images per identity and camera: 1 (single-shot) or 10 "
                            "(multi-shot)", choices=(1, 10)),
    "resize": Key("lanczos", "image resize of RegDB / test images and to the input size",
                  choices=("lanczos", "bilinear")),
    "backbone_modules": Key(["backbone", "neck"], "modules whose parameters form the backbone group "
                                                  "(optim.backbone_lr_mult); the rest use optim.head_lr_mult"),
}

# keys that fix the network or the optimizer state: a resumed run must keep them
STRUCTURE_KEYS = ("model.arch", "model.width", "model.last_stride", "mvd.flow", "mvd.shallow_cam",
                  "mvd.neck_bias", "mvd.classifier_bias", "mvd.z_dim", "mvd.ib_hidden", "mvd.cls_hidden",
                  "mvd.backbone_modules")
# what test.py may change in a checkpoint's configuration
TEST_KEYS = ("mvd.test_feature", "mvd.test_norm", "mvd.resize", "mvd.gallery_shots")
COLUMNS = ("setting", "R1", "R10", "R20", "mAP", "mINP")
PRETRAIN_WARNING = ("warning: training {arch} from scratch (no --pretrain); the MVD seed reports about 4-5 "
                    "points lower Rank-1 and mAP without ImageNet weights")


def check(cfg: dict) -> None:
    """Cross-key checks before any data is read."""
    cross_modal.check_dataset(cfg["data"]["dataset"])
    check_schedule(cfg["schedule"])
    if min(cfg["data"]["height"], cfg["data"]["width"]) < 8 or not cfg["model"]["arch"]:
        raise ConfigError("MVD needs data.height and data.width >= 8 and a model.arch")
    m = cfg["mvd"]
    if m["loss"] == "routed" and m["flow"] != "routed" or m["flow"] == "routed" and m["loss"] != "routed":
        raise ConfigError(f"mvd.loss={m['loss']!r} needs mvd.flow={'routed' if m['loss'] == 'routed' else 'reference'!r}"
                          f" (got mvd.flow={m['flow']!r})")
    if m["test_feature"] == "four" and m["flow"] == "routed":
        raise ConfigError("mvd.test_feature=four needs mvd.flow=reference (the routed flow has no grey path)")
    if not cfg["data"]["data_path"]:
        raise ConfigError("no dataset given: pass --data-path DIR (for SYSU the folder holding the "
                          "pre_process_sysu.py .npy files and cam1..cam6)")


def lr_mults(cfg: dict) -> List[float]:
    """[backbone group, head group] learning-rate multipliers."""
    return [cfg["optim"]["backbone_lr_mult"], cfg["optim"]["head_lr_mult"]]


def train_transforms(cfg: dict):
    """(RGB stream, IR stream) train transforms of the ``mvd`` section."""
    from common.transforms import CrossModalTrain
    d, m = cfg["data"], cfg["mvd"]
    kw = dict(erasing=m["erasing"], pad=m["pad"], resize=m["resize"], erasing_style=m["erasing_style"])
    return (CrossModalTrain(d["height"], d["width"], grayscale=m["grayscale"], **kw),
            CrossModalTrain(d["height"], d["width"], grayscale=False, **kw))


def build_optimizer(cfg: dict, B, model):
    o = cfg["optim"]
    return B.optim.build_optimizer(model, o["name"], o["lr"], o["weight_decay"], o["momentum"],
                                   nesterov=o["nesterov"], betas=tuple(o["betas"]),
                                   backbone_modules=tuple(cfg["mvd"]["backbone_modules"]), lr_mults=lr_mults(cfg))


def load_eval_sets(cfg: dict, trials: int, log=None) -> List[cross_modal.EvalSet]:
    """The evaluation settings; logs where SYSU-MM01's galleries come from."""
    d = cfg["data"]
    source = cross_modal.check_trials(d["dataset"], d["data_path"], trials)
    if source and log is not None:
        log(f"SYSU-MM01 galleries: {trials} trial(s), {cfg['mvd']['gallery_shots']}-shot, from the {source}")
    return list(cross_modal.test_sets(d["dataset"], d["data_path"], d["height"], d["width"], trials=range(trials),
                                      regdb_trial=d["trial"], seed=cfg["train"]["seed"], method=cfg["mvd"]["resize"],
                                      number_shot=cfg["mvd"]["gallery_shots"]))


def extract_all(B, model, images: np.ndarray, modality: str, cfg: dict) -> np.ndarray:
    """Features of uint8 NHWC ``images`` through the test transform, batch by batch."""
    d = cfg["data"]
    feats = [B.mvd.extract(model, b, modality, d["test_batch"])
             for b in cross_modal.to_batches(images, d["height"], d["width"], d["test_batch"], cfg["mvd"]["resize"])]
    return np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)


def evaluate_sets(B, model, sets: List[cross_modal.EvalSet], cfg: dict) -> List[dict]:
    """Rows ``{'setting', R1, R10, R20, mAP, mINP}``: one per setting group (``all``,
    ``indoor``, ``v2t``, ``t2v``) averaged over its trials, then one per trial. Query
    features are extracted once per query array (SYSU shares one query set). Distance: the
    negative dot product of the test features (rank-equivalent to the Euclidean distance of
    the original's jointly normalised features)."""
    cache: Dict[int, np.ndarray] = {}
    groups: Dict[str, list] = defaultdict(list)
    per_trial = []
    for s in sets:
        key = id(s.query)
        if key not in cache:
            cache[key] = extract_all(B, model, s.query, s.q_modality, cfg)
        gf = extract_all(B, model, s.gallery, s.g_modality, cfg)
        res = evaluate_features(cache[key], gf, s.q_pids, s.g_pids, s.q_cams, s.g_cams,
                                protocol=s.protocol, metric="neg_dot", max_rank=20)
        row = summarize(res)
        groups[s.name.split("/")[0]].append(row)
        per_trial.append({"setting": s.name, **row})
    rows = [{"setting": g, **mean_rows(r)} for g, r in groups.items()]
    return rows + (per_trial if len(per_trial) > len(rows) else [])


def ranked_inputs(cfg: dict, B, model, select=None, setting=None):
    """``tools/visualize.py ranked``: a :class:`common.viz.ranked.RankedSet` of one setting
    (``all``/``indoor`` on SYSU-MM01, ``v2t``/``t2v`` on RegDB; default the first) on its
    first gallery trial, with the evaluation's features and distance (negative dot product)
    for the queries ``select(q_pids)`` picks, and RGB/IR tags."""
    from common.viz import ranked
    sets = load_eval_sets(cfg, 1)
    names = [s.name.split("/")[0] for s in sets]
    s = sets[names.index(ranked.choose_setting(names, setting))]
    pick = ranked.selected(select, s.q_pids)
    qf = extract_all(B, model, s.query[pick], s.q_modality, cfg)
    gf = extract_all(B, model, s.gallery, s.g_modality, cfg)
    tags = ranked.MODALITY_TAGS
    return ranked.from_features(s.name.split("/")[0], s.protocol, "neg_dot", qf, gf, s.query[pick], s.gallery,
                                s.q_pids[pick], s.g_pids, s.q_cams[pick], s.g_cams, [tags[s.q_modality]] * len(pick),
                                [tags[s.g_modality]] * len(s.g_pids), pick)


class MVDRun(MethodRun):
    """The MVD pieces the shared loop drives."""

    columns = COLUMNS

    def __init__(self, cfg, B, model, optimizer, trainer, loader, sets, num_classes, description):
        super().__init__(model, optimizer, num_classes, description)
        self.cfg, self.B, self.trainer, self.loader, self.sets = cfg, B, trainer, loader, sets

    def __len__(self):
        return len(self.loader)

    def batches(self, epoch):
        workers = self.cfg["data"]["workers"]
        return self.loader.epoch(epoch) if workers == 0 else self.B.data.make_loader(self.loader, epoch, workers)

    def lrs(self, epoch):
        return group_lrs(epoch_lr(self.cfg["schedule"], self.cfg["optim"]["lr"], epoch), lr_mults(self.cfg))

    def train_step(self, batch):
        return self.trainer.train_step(*batch)

    def evaluate(self):
        return evaluate_sets(self.B, self.model, self.sets, self.cfg)


def build(cfg: dict, B, log) -> MVDRun:
    """Data, network (with ``--pretrain``), optimizer, training step and evaluation sets."""
    check(cfg)
    d, t = cfg["data"], cfg["train"]
    rgb, rgb_y, ir, ir_y, num_classes = cross_modal.load_train_arrays(d["dataset"], d["data_path"], d["trial"],
                                                                      d["height"], d["width"])
    sampler = cross_modal.make_sampler(cfg["mvd"]["sampler"], rgb_y, ir_y, d["num_ids"], d["num_pos"], t["seed"])
    rgb_tf, ir_tf = train_transforms(cfg)
    loader = cross_modal.CrossModalBatches(rgb, rgb_y, ir, ir_y, rgb_tf, ir_tf, sampler, t["seed"], d["max_batches"])
    model = B.mvd.build_model(cfg, num_classes)
    if cfg["model"]["pretrain"]:
        B.weights.load_backbone_pretrained(model, cfg["model"]["pretrain"])
    elif cfg["model"]["width"] == 64:
        log.line(PRETRAIN_WARNING.format(arch=cfg["model"]["arch"]))
    optimizer = build_optimizer(cfg, B, model)
    trainer = B.mvd.MVDTrainer(model, optimizer, cfg["mvd"], cfg["runtime"]["ms_mode"])
    sets = load_eval_sets(cfg, d["eval_trials"], log.line)
    description = (f"MVD ({cfg['mvd']['loss']} loss, {cfg['mvd']['flow']} flow) on {d['dataset']} with {B.name}: "
                   f"{num_classes} ids, {len(rgb)} RGB / {len(ir)} IR images")
    return MVDRun(cfg, B, model, optimizer, trainer, loader, sets, num_classes, description)


def test_input(cfg: dict, modality=None) -> dict:
    """What ``extract`` takes (common/inference.py; tools.export, FeatureExtractor): NCHW
    images through :class:`common.transforms.CrossModalTest` (``mvd.resize``), seen as
    ``modality`` (default visible; only ``mvd.test_feature=concat`` depends on it)."""
    modality = modality or "visible"
    return {"layout": "images", "resize": cfg["mvd"]["resize"], "modality": modality,
            "extract_kwargs": {"modality": modality}}


def build_for_test(cfg: dict, B, num_classes: int):
    """(model, evaluate() -> rows) for test.py: the network of ``cfg`` (weights loaded by the
    caller) and its evaluation on ``data.eval_trials`` galleries."""
    if cfg["data"]["dataset"] not in cross_modal.DATASETS:
        raise ReidError(f"MVD evaluates SYSU or RegDB, got {cfg['data']['dataset']!r}")
    model = B.mvd.build_model(cfg, num_classes)

    def evaluate():
        return evaluate_sets(B, model, load_eval_sets(cfg, cfg["data"]["eval_trials"], print), cfg)
    return model, evaluate
