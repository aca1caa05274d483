"""KD-REID networks and training steps, MindSpore (recipe: ``common/recipes/kdreid.py``).
Mirrors backends/torch/kdreid.py name for name; see its docstring.

``teacher_mode``: MindSpore's BatchNorm has no switch that normalises with batch statistics
without updating the moving ones, so a frozen teacher runs in train mode: its outputs are the
reference's train-mode teacher's, and the moving statistics it updates are never read (a
distillation run neither evaluates nor saves its teachers). Teachers run inside the student's
step under ``ops.stop_gradient``; the gradient is taken w.r.t. the optimizer's (student's)
parameters only.
"""
from typing import Dict, Sequence

import numpy as np
import mindspore as ms
from mindspore import ops

from common.kdreid_models import DEFAULT_FC_DIM, OSNET_CHANNELS, RESNET_LAST_STRIDE

from . import engine, losses
from .backbones import build_reid_model

__all__ = ["build_net", "teacher_mode", "SourceTrainer", "DMMDTrainer", "KDTrainer", "extract", "SOURCE_TERMS",
           "DMMD_TERMS", "KD_TERMS"]

SOURCE_TERMS = ("total", "triplet", "ce")
DMMD_TERMS = ("total", "triplet", "ce", "mmd_wc", "mmd_bc", "mmd_global")
KD_TERMS = ("total", "kd_target", "kd_source", "da")


def build_net(arch: str, num_classes: int, fc_dim: int = DEFAULT_FC_DIM, width: int = 64,
              last_stride: int = RESNET_LAST_STRIDE, channels: Sequence[int] = (), blocks: Sequence[int] = ()):
    """``REID_MODELS[arch]`` (see backends/torch/kdreid.py ``build_net``)."""
    if arch in OSNET_CHANNELS:
        kwargs = {"blocks": tuple(blocks)} if blocks else {}
        return build_reid_model(arch, num_classes, fc_dim=fc_dim, channels=tuple(channels) or None, **kwargs)
    return build_reid_model(arch, num_classes, fc_dim=fc_dim, width=width, last_stride=last_stride)


def teacher_mode(model) -> None:
    """A frozen teacher: no gradient, train mode (batch statistics; module docstring)."""
    for p in model.get_parameters():
        p.requires_grad = False
    model.set_train(True)


class _ClassifierOnlyMode:
    """What TrainStep calls on its model: ``set_train()`` leaves all but the classifier in
    eval mode."""

    def __init__(self, net):
        self.net = net

    def set_train(self, mode: bool = True):
        self.net.set_train(False)
        self.net.classifier.set_train(mode)
        return self


class SourceTrainer:
    """One source step: images (B, 3, H, W), pids (B,) -> CE + triplet."""

    def __init__(self, model, optimizer, settings: dict, ms_mode: str = "GRAPH", classifier_only: bool = False):
        self.model = model
        eps, margin = float(settings["label_smooth"]), float(settings["margin"])

        def loss_fn(images, pids):
            if classifier_only:
                emb = ops.stop_gradient(model(images)[1])
                logits = model.classifier(emb)
            else:
                logits, emb = model(images)
            tri = losses.triplet_batch_hard(emb, pids, margin)
            ce = losses.cross_entropy(logits, pids, eps)
            return tri + ce, tri, ce

        shim = _ClassifierOnlyMode(model) if classifier_only else model
        self.step = engine.TrainStep(shim, optimizer, loss_fn, SOURCE_TERMS, (ms.float32, ms.int64), ms_mode)

    def train_step(self, images: np.ndarray, pids: np.ndarray) -> Dict[str, float]:
        return self.step(images, pids)


class DMMDTrainer:
    """One D-MMD step (see backends/torch/kdreid.py ``DMMDTrainer``)."""

    def __init__(self, model, optimizer, settings: dict, ms_mode: str = "GRAPH"):
        self.model = model
        eps, margin = float(settings["label_smooth"]), float(settings["margin"])
        P, K, global_grad = int(settings["P"]), int(settings["K"]), bool(settings["global_source_grad"])

        def make(with_mmd):
            def loss_fn(src, pids, tgt):
                logits, s = model(src)
                t = model(tgt)[1]
                tri = losses.triplet_batch_hard(s, pids, margin)
                ce = losses.cross_entropy(logits, pids, eps)
                if not with_mmd:
                    zero = ops.zeros((), ms.float32)
                    return tri + ce, tri, ce, zero, zero, zero
                wc, bc, gl = losses.dmmd(s, t, P, K, global_grad)
                return tri + ce + wc + bc + gl, tri, ce, wc, bc, gl
            dtypes = (ms.float32, ms.int64, ms.float32)
            return engine.TrainStep(model, optimizer, loss_fn, DMMD_TERMS, dtypes, ms_mode)

        self.steps = {False: make(False), True: make(True)}

    def train_step(self, src: np.ndarray, pids: np.ndarray, tgt: np.ndarray, with_mmd: bool) -> Dict[str, float]:
        return self.steps[bool(with_mmd)](src, pids, tgt)


class KDTrainer:
    """Multi-teacher distillation steps, one per teacher (see backends/torch/kdreid.py)."""

    def __init__(self, student, teachers: Sequence, optimizer, settings: dict, ms_mode: str = "GRAPH"):
        self.student, self.teachers = student, list(teachers)
        self.P, self.K = int(settings["P"]), int(settings["K"])
        for i, t in enumerate(self.teachers):
            teacher_mode(t)
            # one compiled step holds student and teacher: MindSpore needs distinct parameter
            # names (the attribute paths, which name the weights everywhere else, stay as they are)
            for path, p in t.parameters_and_names():
                p.name = f"teacher{i}.{path}"
        self.steps = [self._make_step(t, optimizer, settings, ms_mode) for t in self.teachers]

    def _make_step(self, teacher, optimizer, s, ms_mode):
        student, P, K = self.student, self.P, self.K
        lkdt, lkds, lda = float(s["lkdt_weight"]), float(s["lkds_weight"]), float(s["lda_weight"])
        da_scale = 1.0 if s["target_alt"] == "full" else lda / 100.0
        eps, margin, global_grad = float(s["label_smooth"]), float(s["margin"]), bool(s["global_source_grad"])
        need_src = lda > 0 or lkds > 0 or bool(s["student_source_forward"])
        use_kdt, use_kds, use_da = lkdt > 0, lkds > 0, lda > 0

        def loss_fn(src, pids, tgt):
            s_logits, s_src = None, None
            if need_src:
                s_logits, s_src = student(src)
            s_tgt = student(tgt)[1]
            t_tgt = ops.stop_gradient(teacher(tgt)[1])
            zero = ops.zeros((), ms.float32)
            kdt, kds, da = zero, zero, zero
            if use_kdt:
                kdt = lkdt * losses.cosine_relation_kd(s_tgt, t_tgt)
            if use_kds:
                kds = lkds * losses.cosine_relation_kd(s_src, ops.stop_gradient(teacher(src)[1]))
            if use_da:
                wc, bc, gl = losses.dmmd(s_src, s_tgt, P, K, global_grad)
                da = da_scale * (wc + bc + gl + losses.cross_entropy(s_logits, pids, eps)
                                 + losses.triplet_batch_hard(s_src, pids, margin))
            return kds + kdt + da, kdt, kds, da

        dtypes = (ms.float32, ms.int64, ms.float32)
        return engine.TrainStep(student, optimizer, loss_fn, KD_TERMS, dtypes, ms_mode)

    def train_step(self, src: np.ndarray, pids: np.ndarray, tgt: np.ndarray, target: int) -> Dict[str, float]:
        teacher_mode(self.teachers[target])
        return self.steps[target](src, pids, tgt)

    def measure_shift(self, src: np.ndarray, tgt: np.ndarray, kind: str = "global") -> float:
        """Source-to-target shift of the student (see backends/torch/kdreid.py)."""
        self.student.set_train(True)
        s = self.student(ms.Tensor(np.asarray(src, np.float32)))[1]
        t = self.student(ms.Tensor(np.asarray(tgt, np.float32)))[1]
        wc, bc, gl = losses.dmmd(s, t, self.P, self.K)
        return float(gl.asnumpy()) if kind == "global" else float((wc + bc + gl).asnumpy())


def extract(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Test features (N, D): the L2-normalised embeddings, eval mode."""
    return engine.extract(model, images, batch_size)
