"""MVD network and training step, PyTorch (Tian et al., CVPR 2021; recipe:
``common/recipes/mvd.py``).

:class:`MVDNet` holds three encoders (``visible``, ``infrared``, ``shared``), each a backbone
-> global average pooling -> BNNeck -> information-bottleneck encoder -> IB classifier.
``forward(rgb, ir)`` returns the 16 tensors of ``common.netspec.MVD_OUTPUT_NAMES``:

* ``flow='reference'`` (both reference codebases: the MindSpore port's ``src/models/mvd.py``
  and the original's ``reid/models/newresnet.py``): the batch x = [rgb; ir] (2B images) goes
  through four paths: visible(x), infrared(grey(x)), shared(x), shared(grey(x)), where
  grey(x) = c_R·R + c_G·G + c_B·B of the normalised tensor copied to 3 channels
  (``gray_coeffs``: port 0.2989/0.5870/0.1440, original 0.2989/0.5870/0.1140). Every path
  has 2B rows; the shared encoder runs twice (two sets of BatchNorm batch statistics).
* ``flow='routed'`` (the paper's reading, this project's earlier default): visible(rgb),
  infrared(ir) (or infrared(grey(rgb)) with ``gray_ir``), shared([rgb; ir]) in one call
  split into its rgb and ir halves. Every path has B rows.

:class:`MVDTrainer` computes the recipe's objective (``mvd.loss``: port, original or routed;
``backends/torch/losses.py``) and applies one optimizer step through
:class:`backends.torch.engine.TrainStep`. The MindSpore twin (backends/mindspore/mvd.py)
mirrors this module name for name.
"""
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from common.errors import ConfigError
from common.netspec import MVD_FLOWS, MVD_TEST_FEATURES, MVD_TEST_NORMS

from . import engine
from .backbones import build_backbone
from .device import current_device
from .heads import BNNeck, IBClassifier, IBHead
from .mvd_loss import objective

__all__ = ["MVDEncoder", "MVDNet", "MVDTrainer", "build_model", "extract", "grayscale3", "global_average_pool"]


def global_average_pool(feature_map: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) mean over the spatial positions."""
    return feature_map.mean(dim=(2, 3))


def grayscale3(x: torch.Tensor, coeffs: Sequence[float] = (0.2989, 0.5870, 0.1440)) -> torch.Tensor:
    """``c_R·R + c_G·G + c_B·B`` of ``x`` (N, 3, H, W) replicated to 3 channels (both MVD codebases'
    ``to_edge``, applied to the normalised batch)."""
    gray = coeffs[0] * x[:, 0:1] + coeffs[1] * x[:, 1:2] + coeffs[2] * x[:, 2:3]
    return gray.expand(-1, 3, -1, -1).contiguous()


def _check(name: str, value: str, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(allowed)}")
    return value


class MVDEncoder(nn.Module):
    """One MVD view encoder: backbone, BNNeck (``neck``), IB encoder (``ib``) and IB classifier
    (``ib_classifier``). forward(x) -> (logit, feat, zlogit, z): BNNeck logits, BN feature,
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

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        feat, logit = self.neck(global_average_pool(self.backbone(x)))
        z = self.ib(feat)
        return logit, feat, self.ib_classifier(z), z


class MVDNet(nn.Module):
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

    def grey(self, x: torch.Tensor) -> torch.Tensor:
        return grayscale3(x, self.gray_coeffs)

    def forward(self, rgb: torch.Tensor, ir: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.flow == "reference":
            x = torch.cat([rgb, ir], dim=0)
            g = self.grey(x)
            paths = (self.visible(x), self.infrared(g), self.shared(x), self.shared(g))
        else:
            b = rgb.shape[0]
            shared = self.shared(torch.cat([rgb, ir], dim=0))
            paths = (self.visible(rgb), self.infrared(self.grey(rgb) if self.gray_ir else ir),
                     tuple(t[:b] for t in shared), tuple(t[b:] for t in shared))
        return tuple(t for path in paths for t in path)

    def extract(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """Test feature of ``x`` seen as ``modality`` ('visible' or 'infrared'); see the class
        docstring."""
        if modality not in ("visible", "infrared"):
            raise ValueError(f"unknown modality {modality!r}: expected 'visible' or 'infrared'")
        if self.test_feature == "four":
            g = self.grey(x)
            parts = (self.visible(x)[1], self.shared(x)[1], self.infrared(g)[1], self.shared(g)[1])
            if self.test_norm == "parts":
                return torch.cat([F.normalize(p, p=2, dim=1) for p in parts], dim=1)
            return F.normalize(torch.cat(parts, dim=1), p=2, dim=1)
        shared = self.shared(x)[1]
        if self.test_feature == "shared":
            return F.normalize(shared, p=2, dim=1)
        need_ir = modality == "infrared" or self.test_feature == "all"
        need_v = modality == "visible" or self.test_feature == "all"
        infrared = self.infrared(self.grey(x) if self.gray_ir else x)[1] if need_ir else None
        visible = self.visible(x)[1] if need_v else None
        if self.test_feature == "all":
            parts = (visible, infrared, shared)
        else:
            parts = (visible if modality == "visible" else infrared, shared)
        return F.normalize(torch.cat(parts, dim=1), p=2, dim=1)


def build_model(cfg: dict, num_classes: int) -> MVDNet:
    """MVDNet from a run configuration (its ``model`` and ``mvd`` sections), on the device of
    ``--device-target``/``--gpu`` (:func:`backends.torch.device.current_device`)."""
    m, mv = cfg["model"], cfg["mvd"]
    try:
        net = MVDNet(num_classes, arch=m["arch"], width=m["width"], last_stride=m["last_stride"],
                     shallow_cam=mv["shallow_cam"], z_dim=mv["z_dim"], ib_hidden=mv["ib_hidden"],
                     cls_hidden=mv["cls_hidden"], dropout=mv["dropout"], flow=mv["flow"],
                     gray_coeffs=mv["gray_coeffs"], gray_ir=mv["gray_ir"], neck_bias=mv["neck_bias"],
                     classifier_bias=mv["classifier_bias"], head_init=mv["head_init"],
                     test_feature=mv["test_feature"], test_norm=mv["test_norm"])
    except ValueError as exc:  # a bad combination: report as a configuration problem
        raise ConfigError(f"MVD network: {exc}") from None
    return net.to(current_device())


class MVDTrainer:
    """One MVD training step at a time: the objective of ``settings`` (the ``mvd`` section)
    on the 16 outputs, one backward, one optimizer step (skipped when non-finite).
    ``ms_mode`` is accepted for symmetry with the MindSpore engine and ignored."""

    def __init__(self, model: MVDNet, optimizer, settings: dict, ms_mode: str = "GRAPH"):
        self.model, self.optimizer = model, optimizer
        loss_fn, self.names = objective(settings, model.flow)

        def forward_loss(rgb, ir, labels):
            return loss_fn(model(rgb, ir), labels)

        self.step = engine.TrainStep(model, optimizer, forward_loss, self.names,
                                     (torch.float32, torch.float32, torch.int64))

    def train_step(self, rgb: np.ndarray, ir: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
        """(rgb, ir) NCHW float32 batches of B images each and their ``labels`` (B,), identity
        aligned; returns the loss terms as floats ('total' first)."""
        return self.step(rgb, ir, labels)


def extract(model: MVDNet, images: np.ndarray, modality: str, batch_size: int = 64) -> np.ndarray:
    """Test features (N, D) of NCHW float32 ``images`` seen as ``modality`` (eval mode)."""
    return engine.extract(model, images, batch_size, modality=modality)
