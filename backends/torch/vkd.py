"""VKD network and training steps, PyTorch (Porrello et al., "Robust Re-Identification by
Multiple Views Knowledge Distillation", ECCV 2020; recipe: ``common/recipes/vkd.py``).

:class:`TriNet` follows aimagelab/VKD model/net.py: a backbone (``backbones/``, built with
VKD's options: last stride 1, no ReLU in the last residual block, zero-initialised residual
BN) -> global average pooling per frame -> the embedding is the MEAN over the V frames of a
sample (before the BNNeck); the logits are computed per frame by ``classifier`` (BNNeck with a
frozen shift and a bias-free Linear, VKD ``ClassificationLayer``) and then averaged over the
frames ("mean AFTER classifier").

:class:`TeacherTrainer` (tools/train_v2v.py): CE + soft-margin batch-hard triplet on the
embedding. :class:`StudentTrainer` (tools/train_distill.py): the frozen teacher, in
``teacher_mode`` (BatchNorm on batch statistics, running statistics untouched), sees all N
views; the student the M views ``student_idx`` selects of the SAME augmented frames; loss =
triplet + CE + ``lambda_coeff`` · distance-preserving + ``kl_coeff`` · KD (τ² KL at τ =
``temp``, or the MSE between logits). The MindSpore twin is backends/mindspore/vkd.py.
"""
from typing import Dict

import numpy as np
import torch
from torch import nn

from common.backbones import backbone_facts

from . import engine, losses
from .backbones import build_backbone
from .device import current_device
from .heads import BNNeck

__all__ = ["TriNet", "build_model", "teacher_mode", "student_mode", "TeacherTrainer", "StudentTrainer",
           "extract", "TEACHER_TERMS", "STUDENT_TERMS"]

TEACHER_TERMS = ("total", "triplet", "class")
STUDENT_TERMS = ("total", "triplet", "class", "similarity", "kl")


class TriNet(nn.Module):
    """forward(x (B, V, 3, H, W)) -> (embedding (B, D), logits (B, C)); see the module docstring.
    ``backbone_kwargs`` go to the backbone constructor (VKD's options, a size knob)."""

    def __init__(self, num_classes: int, arch: str = "resnet50", **backbone_kwargs):
        super().__init__()
        self.backbone = build_backbone(arch, **backbone_kwargs)
        self.feat_dim = self.backbone.feat_dim
        self.classifier = BNNeck(self.feat_dim, num_classes, bias_trainable=False, classifier_bias=False,
                                 init="project")

    def forward(self, x: torch.Tensor):
        b, v = x.shape[0], x.shape[1]
        return self.head(self.backbone(x.reshape(b * v, *x.shape[2:])), b, v)

    def head(self, maps: torch.Tensor, b: int, v: int):
        """Everything after the backbone: its feature maps (B*V, D, h, w) -> (embedding,
        logits) as :meth:`forward` returns them (Grad-CAM differentiates through this)."""
        feats = maps.mean(dim=(2, 3))
        emb = feats.reshape(b, v, -1).mean(dim=1)
        logits = self.classifier(feats)[1]
        return emb, logits.reshape(b, v, -1).mean(dim=1)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """The test feature: the frame-averaged embedding (VKD's evaluator normalises it for
        the cosine distance)."""
        return self.forward(x)[0]


def build_model(cfg: dict, num_classes: int) -> TriNet:
    """TriNet of a run configuration: ``model.arch`` with VKD's backbone options and the
    ``model.width`` size knob of the ResNets (other backbones build at full size), on the
    device of ``--device-target``/``--gpu``."""
    facts = backbone_facts(cfg["model"]["arch"])
    kwargs = dict(facts.vkd_kwargs)
    if "last_stride" in facts.options:
        kwargs["last_stride"] = cfg["model"]["last_stride"]
    if facts.family.startswith("resnet"):
        kwargs["width"] = cfg["model"]["width"]
    return TriNet(num_classes, facts.name, **kwargs).to(current_device())


def teacher_mode(model: nn.Module) -> None:
    """VKD ``TriNet.teacher_mode``: BatchNorm on batch statistics without updating the running
    ones (``track_running_stats=False``), train mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
    model.train()


def student_mode(model: nn.Module) -> None:
    """VKD ``TriNet.student_mode``: BatchNorm tracks running statistics again, train mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = True
    model.train()


class TeacherTrainer:
    """One teacher (V2V) step: frames (B, N, 3, H, W), pids (B,) -> CE + soft triplet."""

    def __init__(self, model: TriNet, optimizer, settings: dict, ms_mode: str = "GRAPH"):
        self.model = model

        def loss_fn(frames, pids):
            emb, logits = model(frames)
            tri = losses.triplet_batch_hard(emb, pids, None)
            ce = losses.cross_entropy(logits, pids)
            return tri + ce, tri, ce

        self.step = engine.TrainStep(model, optimizer, loss_fn, TEACHER_TERMS, (torch.float32, torch.int64), ms_mode)

    def train_step(self, frames: np.ndarray, pids: np.ndarray) -> Dict[str, float]:
        return self.step(frames, pids)


class StudentTrainer:
    """One distillation step: frames (B, N, ...) for the teacher, student_frames (B, M, ...)
    for the student (the same augmented frames), pids (B,)."""

    def __init__(self, student: TriNet, teacher: TriNet, optimizer, settings: dict, ms_mode: str = "GRAPH"):
        self.student, self.teacher = student, teacher
        lam, kl_coeff, temp, kind = (float(settings["lambda_coeff"]), float(settings["kl_coeff"]),
                                     float(settings["temp"]), settings["logits_dist"])
        for p in teacher.parameters():
            p.requires_grad_(False)

        def loss_fn(frames, student_frames, pids):
            with torch.no_grad():
                t_emb, t_logits = teacher(frames)
            s_emb, s_logits = student(student_frames)
            tri = losses.triplet_batch_hard(s_emb, pids, None)
            ce = losses.cross_entropy(s_logits, pids)
            sim = losses.distance_preserving(s_emb, t_emb)
            kd = losses.kd_kl(s_logits, t_logits, temp) if kind == "kl" else losses.kd_mse(s_logits, t_logits)
            return tri + ce + lam * sim + kl_coeff * kd, tri, ce, sim, kd

        self.step = engine.TrainStep(student, optimizer, loss_fn, STUDENT_TERMS,
                                     (torch.float32, torch.float32, torch.int64), ms_mode)

    def train_step(self, frames: np.ndarray, student_frames: np.ndarray, pids: np.ndarray) -> Dict[str, float]:
        teacher_mode(self.teacher)
        student_mode(self.student)
        return self.step(frames, student_frames, pids)


def extract(model: TriNet, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Embeddings (N, D) of clips ``frames`` (N, V, 3, H, W) in eval mode."""
    return engine.extract(model, frames, batch_size)
