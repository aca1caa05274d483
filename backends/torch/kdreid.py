"""KD-REID networks and training steps, PyTorch (recipe: ``common/recipes/kdreid.py``;
Remigereau et al., ICIP 2022; D-MMD: Mekhazni et al., ECCV 2020).

Networks are ``backbones.REID_MODELS`` (MTDA's ResNet-50 and OSNet: forward -> (logits,
embedding), ``extract`` -> the L2-normalised embedding). Steps, each on
:class:`engine.TrainStep`, follow fremigereau/MTDA_KD_REID ``torchreid/engine/image/``:

* :class:`SourceTrainer` (``triplet.py``): label-smoothed CE on the logits + batch-hard
  triplet on the embedding. ``classifier_only`` is torchreid's ``open_specified_layers(model,
  ['classifier'])``: everything but the classifier in eval mode and frozen (the trunk runs
  without gradient), the optimizer holding the classifier only.
* :class:`DMMDTrainer` (``mmd.py``): source and target batches through the same network in
  train mode (the target forward runs every step, so BN statistics see both domains); CE +
  triplet on the source, plus, with ``with_mmd``, the within-class, between-class and global
  MMD of ``losses.dmmd`` on the P x K layouts (source distance sets detached; the global
  term reaches the source features when ``global_source_grad``, as the reference).
* :class:`KDTrainer` (``KD_one_by_one_engine.py`` / ``KD_batch_engine.py``): one step for
  target ``ix``: the student on the source batch (when a term reads it, or always with
  ``student_source_forward`` as the reference) and on the target batch; teacher ``ix``
  (frozen, BatchNorm on batch statistics, no gradient) on the target batch (and the source
  batch for ``lkds_weight``); ``total = lkdt * rel(S(x_t), T(x_t)) [+ lkds * rel(S(x_s),
  T(x_s))] [+ l_da]`` with ``rel = losses.cosine_relation_kd`` (MTDA's ``LogEuclidLoss`` with
  ``log=False``) and ``l_da`` = D-MMD(S(x_s), S(x_t)) + CE + triplet on the source, weighted
  1 (full engine) or ``lda_weight / 100`` (batch engine). :meth:`KDTrainer.measure_shift` is
  the engines' shift measure (train-mode forwards without gradient, as there).

The MindSpore twin (``backends/mindspore/kdreid.py``) has the same names and behaviour.
"""
from typing import Dict, Sequence

import numpy as np
import torch
from torch import nn

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
    """``REID_MODELS[arch]``: OSNet with ``channels`` / ``blocks`` (empty: the named
    variant's), ResNet-50 with ``width`` and ``last_stride``."""
    if arch in OSNET_CHANNELS:
        kwargs = {"blocks": tuple(blocks)} if blocks else {}
        return build_reid_model(arch, num_classes, fc_dim=fc_dim, channels=tuple(channels) or None, **kwargs)
    return build_reid_model(arch, num_classes, fc_dim=fc_dim, width=width, last_stride=last_stride)


def teacher_mode(model: nn.Module) -> None:
    """A frozen teacher: no gradient, BatchNorm normalising with batch statistics (the
    reference's train-mode teachers) without touching the running ones."""
    for p in model.parameters():
        p.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
    model.train()


class _ClassifierOnlyMode:
    """What TrainStep calls on its model: ``train()`` leaves all but the classifier in eval mode."""

    def __init__(self, net: nn.Module):
        self.net = net

    def train(self, mode: bool = True):
        self.net.eval()
        self.net.classifier.train(mode)
        return self

    def parameters(self):
        return self.net.parameters()


class SourceTrainer:
    """One source step: images (B, 3, H, W), pids (B,) -> CE + triplet (module docstring)."""

    def __init__(self, model: nn.Module, optimizer, settings: dict, ms_mode: str = "GRAPH",
                 classifier_only: bool = False):
        self.model = model
        eps, margin = float(settings["label_smooth"]), float(settings["margin"])

        def loss_fn(images, pids):
            if classifier_only:
                with torch.no_grad():
                    emb = model(images)[1]
                logits = model.classifier(emb)
            else:
                logits, emb = model(images)
            tri = losses.triplet_batch_hard(emb, pids, margin)
            ce = losses.cross_entropy(logits, pids, eps)
            return tri + ce, tri, ce

        shim = _ClassifierOnlyMode(model) if classifier_only else model
        self.step = engine.TrainStep(shim, optimizer, loss_fn, SOURCE_TERMS, (torch.float32, torch.int64), ms_mode)

    def train_step(self, images: np.ndarray, pids: np.ndarray) -> Dict[str, float]:
        return self.step(images, pids)


class DMMDTrainer:
    """One D-MMD step: source images and pids, target images (both P x K) -> see the module
    docstring; ``with_mmd`` selects the step with the MMD terms (epoch >= 25)."""

    def __init__(self, model: nn.Module, optimizer, settings: dict, ms_mode: str = "GRAPH"):
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
                    zero = tri.new_zeros(())
                    return tri + ce, tri, ce, zero, zero, zero
                wc, bc, gl = losses.dmmd(s, t, P, K, global_grad)
                return tri + ce + wc + bc + gl, tri, ce, wc, bc, gl
            dtypes = (torch.float32, torch.int64, torch.float32)
            return engine.TrainStep(model, optimizer, loss_fn, DMMD_TERMS, dtypes, ms_mode)

        self.steps = {False: make(False), True: make(True)}

    def train_step(self, src: np.ndarray, pids: np.ndarray, tgt: np.ndarray, with_mmd: bool) -> Dict[str, float]:
        return self.steps[bool(with_mmd)](src, pids, tgt)


class KDTrainer:
    """Multi-teacher distillation steps, one per teacher (module docstring)."""

    def __init__(self, student: nn.Module, teachers: Sequence[nn.Module], optimizer, settings: dict,
                 ms_mode: str = "GRAPH"):
        self.student, self.teachers = student, list(teachers)
        self.P, self.K = int(settings["P"]), int(settings["K"])
        for t in self.teachers:
            teacher_mode(t)
        self.steps = [self._make_step(t, optimizer, settings, ms_mode) for t in self.teachers]

    def _make_step(self, teacher, optimizer, s, ms_mode):
        student, P, K = self.student, self.P, self.K
        lkdt, lkds, lda = float(s["lkdt_weight"]), float(s["lkds_weight"]), float(s["lda_weight"])
        da_scale = 1.0 if s["target_alt"] == "full" else lda / 100.0
        eps, margin, global_grad = float(s["label_smooth"]), float(s["margin"]), bool(s["global_source_grad"])
        need_src = lda > 0 or lkds > 0 or bool(s["student_source_forward"])

        def loss_fn(src, pids, tgt):
            if need_src:
                s_logits, s_src = student(src)
            s_tgt = student(tgt)[1]
            with torch.no_grad():
                t_tgt = teacher(tgt)[1]
                t_src = teacher(src)[1] if lkds > 0 else None
            zero = s_tgt.new_zeros(())
            kdt = lkdt * losses.cosine_relation_kd(s_tgt, t_tgt) if lkdt > 0 else zero
            kds = lkds * losses.cosine_relation_kd(s_src, t_src) if lkds > 0 else zero
            if lda > 0:
                wc, bc, gl = losses.dmmd(s_src, s_tgt, P, K, global_grad)
                da = da_scale * (wc + bc + gl + losses.cross_entropy(s_logits, pids, eps)
                                 + losses.triplet_batch_hard(s_src, pids, margin))
            else:
                da = zero
            return kds + kdt + da, kdt, kds, da

        dtypes = (torch.float32, torch.int64, torch.float32)
        return engine.TrainStep(student, optimizer, loss_fn, KD_TERMS, dtypes, ms_mode)

    def train_step(self, src: np.ndarray, pids: np.ndarray, tgt: np.ndarray, target: int) -> Dict[str, float]:
        teacher_mode(self.teachers[target])
        return self.steps[target](src, pids, tgt)

    def measure_shift(self, src: np.ndarray, tgt: np.ndarray, kind: str = "global") -> float:
        """Source-to-target shift of the student: the global MMD between its embeddings of the
        two batches, or (``kind='dmmd'``) within + between + global as MTDA's
        domain_shift_measure.py; train-mode forwards without gradient (BN statistics move)."""
        device = engine.model_device(self.student)
        self.student.train()
        with torch.no_grad():
            s = self.student(torch.as_tensor(np.asarray(src, np.float32), device=device))[1]
            t = self.student(torch.as_tensor(np.asarray(tgt, np.float32), device=device))[1]
            wc, bc, gl = losses.dmmd(s, t, self.P, self.K)
        return float(gl) if kind == "global" else float(wc + bc + gl)


def extract(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Test features (N, D): the L2-normalised embeddings, eval mode."""
    return engine.extract(model, images, batch_size)
