"""MVD network and training step, MindSpore (Tian et al., CVPR 2021; recipe:
``common/recipes/mvd.py``). Mirrors ``backends/torch/mvd.py`` name for name; see its
docstring for the flows and the test features.

A MindSpore Cell starts in inference mode (``training`` False) whereas a torch Module starts
in train mode; callers use ``set_train``.
"""
from typing import Dict, Sequence, Tuple

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from common.errors import ConfigError
from common.netspec import MVD_FLOWS, MVD_TEST_FEATURES, MVD_TEST_NORMS

from . import engine
from .backbones import build_backbone
from .heads import BNNeck, IBClassifier, IBHead
from .mvd_loss import objective

__all__ = ["l2_normalize_rows", "MVDEncoder", "MVDNet", "MVDTrainer", "build_model", "extract", "grayscale3", "global_average_pool"]


NORM_EPS = 1e-12  # the floor of torch.nn.functional.normalize


def global_average_pool(feature_map):
    """(N, C, H, W) -> (N, C) mean over the spatial positions."""
    return ops.mean(feature_map, (2, 3))


def grayscale3(x, coeffs: Sequence[float] = (0.2989, 0.5870, 0.1440)):
    """``c_R·R + c_G·G + c_B·B`` of ``x`` (N, 3, H, W) replicated to 3 channels (both MVD codebases'
    ``to_edge``, applied to the normalised batch)."""
    gray = coeffs[0] * x[:, 0:1] + coeffs[1] * x[:, 1:2] + coeffs[2] * x[:, 2:3]
    return ops.tile(gray, (1, 3, 1, 1))


def l2_normalize_rows(x):
    """x / max(||x||_2, 1e-12) row-wise, as torch.nn.functional.normalize(p=2, dim=1)."""
    return x / ops.clamp(ops.norm(x, dim=1, keepdim=True), min=NORM_EPS)


def _check(name: str, value: str, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(allowed)}")
    return value


class MVDEncoder(nn.Cell):
    """One MVD view encoder: backbone, BNNeck (``neck``), IB encoder (``ib``) and IB classifier
    (``ib_classifier``). construct(x) -> (logit, feat, zlogit, z): BNNeck logits, BN feature,
    IB logits, IB code."""

    def __init__(self, num_classes: int, arch: str, width: int, last_stride: int, shallow_cam: bool,
                 z_dim: int, ib_hidden: Sequence[int], cls_hidden: int, dropout: float, neck_bias: str,
                 classifier_bias: bool, head_init: str):
        super().__init__()
        self.backbone = build_backbone(arch, width=width, last_stride=last_stride, shallow_cam=shallow_cam)
        dim = self.backbone.feat_dim
        self.neck = BNNeck(dim, num_classes, bias_trainable=(neck_bias == "trainable"),
                           classifier_bias=classifier_bias, init=head_init)
        self.ib = IBHead(dim, z_dim, ib_hidden, init=head_init)
        self.ib_classifier = IBClassifier(z_dim, num_classes, cls_hidden, dropout, init=head_init)

    def construct(self, x):
        feat, logit = self.neck(global_average_pool(self.backbone(x)))
        z = self.ib(feat)
        return logit, feat, self.ib_classifier(z), z


class MVDNet(nn.Cell):
    """Three-encoder MVD model; see the module docstring for ``flow``. Defaults equal the
    configuration schema's (``common/defaults.py`` model section, ``common/recipes/mvd.py``
    mvd section); the recipes' YAML files set each reference's values.

    Test feature (:meth:`extract`), ``test_feature``:
    * ``'four'`` (both references): BN features of visible(x), shared(x), infrared(grey(x)),
      shared(grey(x)); ``test_norm='parts'`` L2-normalises each (the port), ``'joint'`` the
      concatenation (the original); the same for query and gallery, whatever the modality;
    * ``'shared'``: the shared encoder's BN feature of x;
    * ``'concat'``: (the modality's own encoder, shared), jointly normalised;
    * ``'all'``: (visible, infrared, shared) of the same image, jointly normalised.
    """

    def __init__(self, num_classes: int, arch: str = "resnet50", width: int = 64, last_stride: int = 1,
                 shallow_cam: bool = False, z_dim: int = 512, ib_hidden: Sequence[int] = (1000, 500),
                 cls_hidden: int = 256, dropout: float = 0.5, flow: str = "reference",
                 gray_coeffs: Sequence[float] = (0.2989, 0.5870, 0.1440), gray_ir: bool = False,
                 neck_bias: str = "trainable", classifier_bias: bool = True, head_init: str = "port",
                 test_feature: str = "four", test_norm: str = "parts"):
        super().__init__()
        args = (num_classes, arch, width, last_stride, shallow_cam, z_dim, tuple(ib_hidden), cls_hidden, dropout,
                _check("neck_bias", neck_bias, ("trainable", "frozen")), classifier_bias, head_init)
        self.visible = MVDEncoder(*args)
        self.infrared = MVDEncoder(*args)
        self.shared = MVDEncoder(*args)
        self.flow = _check("flow", flow, MVD_FLOWS)
        self.gray_coeffs = tuple(float(c) for c in gray_coeffs)
        self.gray_ir = bool(gray_ir)
        self.test_feature = _check("test_feature", test_feature, MVD_TEST_FEATURES)
        self.test_norm = _check("test_norm", test_norm, MVD_TEST_NORMS)
        if self.test_feature == "four" and self.flow == "routed":
            raise ValueError("test_feature 'four' needs flow 'reference'")
        self.feat_dim = self.visible.backbone.feat_dim

    def grey(self, x):
        return grayscale3(x, self.gray_coeffs)

    def construct(self, rgb, ir):
        if self.flow == "reference":
            x = ops.concat((rgb, ir), axis=0)
            g = self.grey(x)
            return self.visible(x) + self.infrared(g) + self.shared(x) + self.shared(g)
        b = rgb.shape[0]
        shared = self.shared(ops.concat((rgb, ir), axis=0))
        if self.gray_ir:
            out_i = self.infrared(self.grey(rgb))
        else:
            out_i = self.infrared(ir)
        return (self.visible(rgb) + out_i + (shared[0][:b], shared[1][:b], shared[2][:b], shared[3][:b])
                + (shared[0][b:], shared[1][b:], shared[2][b:], shared[3][b:]))

    def extract(self, x, modality: str):
        """Test feature of ``x`` seen as ``modality`` ('visible' or 'infrared'); see the class
        docstring."""
        if modality not in ("visible", "infrared"):
            raise ValueError(f"unknown modality {modality!r}: expected 'visible' or 'infrared'")
        if self.test_feature == "four":
            g = self.grey(x)
            parts = (self.visible(x)[1], self.shared(x)[1], self.infrared(g)[1], self.shared(g)[1])
            if self.test_norm == "parts":
                return ops.concat([l2_normalize_rows(p) for p in parts], axis=1)
            return l2_normalize_rows(ops.concat(parts, axis=1))
        shared = self.shared(x)[1]
        if self.test_feature == "shared":
            return l2_normalize_rows(shared)
        need_ir = modality == "infrared" or self.test_feature == "all"
        need_v = modality == "visible" or self.test_feature == "all"
        infrared = self.infrared(self.grey(x) if self.gray_ir else x)[1] if need_ir else None
        visible = self.visible(x)[1] if need_v else None
        if self.test_feature == "all":
            parts = (visible, infrared, shared)
        else:
            parts = (visible if modality == "visible" else infrared, shared)
        return l2_normalize_rows(ops.concat(parts, axis=1))


def build_model(cfg: dict, num_classes: int) -> MVDNet:
    """MVDNet from a run configuration (its ``model`` and ``mvd`` sections)."""
    m, mv = cfg["model"], cfg["mvd"]
    try:
        return MVDNet(num_classes, arch=m["arch"], width=m["width"], last_stride=m["last_stride"],
                      shallow_cam=mv["shallow_cam"], z_dim=mv["z_dim"], ib_hidden=mv["ib_hidden"],
                      cls_hidden=mv["cls_hidden"], dropout=mv["dropout"], flow=mv["flow"],
                      gray_coeffs=mv["gray_coeffs"], gray_ir=mv["gray_ir"], neck_bias=mv["neck_bias"],
                      classifier_bias=mv["classifier_bias"], head_init=mv["head_init"],
                      test_feature=mv["test_feature"], test_norm=mv["test_norm"])
    except ValueError as exc:  # a bad combination: report as a configuration problem
        raise ConfigError(f"MVD network: {exc}") from None


class MVDTrainer:
    """One MVD training step at a time: the objective of ``settings`` (the ``mvd`` section)
    on the 16 outputs, one backward, one optimizer step (skipped when non-finite).
    In GRAPH ``ms_mode`` the whole step (forward, gradient, update) is one compiled graph."""

    def __init__(self, model: MVDNet, optimizer, settings: dict, ms_mode: str = "GRAPH"):
        self.model, self.optimizer = model, optimizer
        loss_fn, self.names = objective(settings, model.flow)

        def forward_loss(rgb, ir, labels):
            return loss_fn(model(rgb, ir), labels)

        self.step = engine.TrainStep(model, optimizer, forward_loss, self.names,
                                     (ms.float32, ms.float32, ms.int64), ms_mode)

    def train_step(self, rgb: np.ndarray, ir: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
        """(rgb, ir) NCHW float32 batches of B images each and their ``labels`` (B,), identity
        aligned; returns the loss terms as floats ('total' first)."""
        return self.step(rgb, ir, labels)


def extract(model: MVDNet, images: np.ndarray, modality: str, batch_size: int = 64) -> np.ndarray:
    """Test features (N, D) of NCHW float32 ``images`` seen as ``modality`` (eval mode)."""
    return engine.extract(model, images, batch_size, modality=modality)
