"""VKD network and training steps, MindSpore (ECCV 2020; recipe: ``common/recipes/vkd.py``).
Mirrors backends/torch/vkd.py name for name; see its docstring.

``teacher_mode``: MindSpore's BatchNorm has no switch that normalises with batch statistics
without updating the moving ones, so the frozen teacher simply runs in train mode: its outputs
are those of VKD's ``teacher_mode`` and the moving statistics it updates are never read (the
teacher is never evaluated or saved by a distillation run).

``StudentTrainer``: the teacher's forward is its own function (one compiled graph in GRAPH
mode, like torch's ``no_grad`` block) whose outputs enter the student's step as inputs. One
graph holding both networks cannot be compiled: a teacher and its student share every
parameter name (MindSpore 2.8: "its name 'backbone.conv1.weight' already exists").
"""
from typing import Dict

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from common.backbones import backbone_facts

from . import engine, losses
from .backbones import build_backbone
from .heads import BNNeck

__all__ = ["TriNet", "build_model", "teacher_mode", "student_mode", "TeacherTrainer", "StudentTrainer",
           "extract", "TEACHER_TERMS", "STUDENT_TERMS"]

TEACHER_TERMS = ("total", "triplet", "class")
STUDENT_TERMS = ("total", "triplet", "class", "similarity", "kl")


class TriNet(nn.Cell):
    """construct(x (B, V, 3, H, W)) -> (embedding (B, D), logits (B, C))."""

    def __init__(self, num_classes: int, arch: str = "resnet50", **backbone_kwargs):
        super().__init__()
        self.backbone = build_backbone(arch, **backbone_kwargs)
        self.feat_dim = self.backbone.feat_dim
        self.classifier = BNNeck(self.feat_dim, num_classes, bias_trainable=False, classifier_bias=False,
                                 init="project")

    def construct(self, x):
        b, v = x.shape[0], x.shape[1]
        return self.head(self.backbone(x.reshape((b * v,) + x.shape[2:])), b, v)

    def head(self, maps, b, v):
        """Everything after the backbone: feature maps (B*V, D, h, w) -> (embedding, logits)."""
        feats = ops.mean(maps, (2, 3))
        emb = ops.mean(feats.reshape(b, v, -1), 1)
        logits = self.classifier(feats)[1]
        return emb, ops.mean(logits.reshape(b, v, -1), 1)

    def extract(self, x):
        """The test feature: the frame-averaged embedding."""
        return self.construct(x)[0]


def build_model(cfg: dict, num_classes: int) -> TriNet:
    """TriNet of a run configuration (see backends/torch/vkd.py ``build_model``)."""
    facts = backbone_facts(cfg["model"]["arch"])
    kwargs = dict(facts.vkd_kwargs)
    if "last_stride" in facts.options:
        kwargs["last_stride"] = cfg["model"]["last_stride"]
    if facts.family.startswith("resnet"):
        kwargs["width"] = cfg["model"]["width"]
    return TriNet(num_classes, facts.name, **kwargs)


def teacher_mode(model) -> None:
    """Train mode (batch statistics); see the module docstring."""
    model.set_train(True)


def student_mode(model) -> None:
    """Train mode with moving statistics tracked (MindSpore's default train behaviour)."""
    model.set_train(True)


class TeacherTrainer:
    """One teacher (V2V) step: frames (B, N, 3, H, W), pids (B,) -> CE + soft triplet."""

    def __init__(self, model: TriNet, optimizer, settings: dict, ms_mode: str = "GRAPH"):
        self.model = model

        def loss_fn(frames, pids):
            emb, logits = model(frames)
            tri = losses.triplet_batch_hard(emb, pids, None)
            ce = losses.cross_entropy(logits, pids)
            return tri + ce, tri, ce

        self.step = engine.TrainStep(model, optimizer, loss_fn, TEACHER_TERMS, (ms.float32, ms.int64), ms_mode)

    def train_step(self, frames: np.ndarray, pids: np.ndarray) -> Dict[str, float]:
        return self.step(frames, pids)


class StudentTrainer:
    """One distillation step (see backends/torch/vkd.py ``StudentTrainer``)."""

    def __init__(self, student: TriNet, teacher: TriNet, optimizer, settings: dict, ms_mode: str = "GRAPH"):
        self.student, self.teacher = student, teacher
        lam, kl_coeff, temp = float(settings["lambda_coeff"]), float(settings["kl_coeff"]), float(settings["temp"])
        use_kl = settings["logits_dist"] == "kl"
        for p in teacher.get_parameters():
            p.requires_grad = False

        def teacher_forward(frames):
            t_emb, t_logits = teacher(frames)
            return ops.stop_gradient(t_emb), ops.stop_gradient(t_logits)

        def loss_fn(t_emb, t_logits, student_frames, pids):
            s_emb, s_logits = student(student_frames)
            tri = losses.triplet_batch_hard(s_emb, pids, None)
            ce = losses.cross_entropy(s_logits, pids)
            sim = losses.distance_preserving(s_emb, t_emb)
            if use_kl:
                kd = losses.kd_kl(s_logits, t_logits, temp)
            else:
                kd = losses.kd_mse(s_logits, t_logits)
            return tri + ce + lam * sim + kl_coeff * kd, tri, ce, sim, kd

        teacher_mode(teacher)
        self._teacher_forward = ms.jit(teacher_forward) if engine.check_mode(ms_mode) == "GRAPH" else teacher_forward
        self.step = engine.TrainStep(student, optimizer, loss_fn, STUDENT_TERMS,
                                     (ms.float32, ms.float32, ms.float32, ms.int64), ms_mode)

    def train_step(self, frames: np.ndarray, student_frames: np.ndarray, pids: np.ndarray) -> Dict[str, float]:
        teacher_mode(self.teacher)
        student_mode(self.student)
        t_emb, t_logits = self._teacher_forward(ms.Tensor(np.asarray(frames, np.float32)))
        # the student's step takes the teacher's outputs as host arrays (B x D, cheap): handed
        # the teacher graph's output tensors it runs ~1 s slower on the CPU (measured with
        # benchmarks/train_step.py --method vkd-student, 4 clips, 1 thread: 3.0 s -> 1.9 s;
        # ms.runtime.synchronize() alone does not help)
        return self.step(t_emb.asnumpy(), t_logits.asnumpy(), student_frames, pids)


def extract(model: TriNet, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Embeddings (N, D) of clips ``frames`` (N, V, 3, H, W) in eval mode."""
    return engine.extract(model, frames, batch_size)
