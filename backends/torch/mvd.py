"""MVD (Multi-View Distillation) network and the plain BNNeck re-ID model (SPEC section 6).

MVDNet holds three encoders (visible, infrared, shared), each ResNet -> GAP -> BNNeck ->
information-bottleneck head -> IB classifier. ``build_model`` turns the ``model`` section of
a run configuration into a network.
"""
from typing import Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from common.config import model_settings
from common.errors import ConfigError

from .heads import BNNeck, IBClassifier, IBHead
from .backbones.resnet import ResNet

MVD_OUTPUTS = ("feat_v", "bn_v", "logit_v", "z_v", "zlogit_v",
               "feat_i", "bn_i", "logit_i", "z_i", "zlogit_i",
               "feat_s", "bn_s", "logit_s", "z_s", "zlogit_s")

MODEL_DEFAULTS = model_settings()  # one source: common.config DEFAULTS["model"]
MODEL_NAMES = ("mvd", "reid")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def global_average_pool(feature_map: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) mean over the spatial positions (SPEC section 6)."""
    return feature_map.mean(dim=(2, 3))


TEST_FEATURES = ("concat", "shared", "all")


def check_test_feature(name: str) -> str:
    if name not in TEST_FEATURES:
        raise ValueError(f"unknown test_feature {name!r}: expected one of {', '.join(TEST_FEATURES)}")
    return name


def grayscale3(rgb: torch.Tensor) -> torch.Tensor:
    """0.299R + 0.587G + 0.114B replicated to 3 channels (original MVD code's gray branch).

    Applied to whatever tensor is given (the original code converts the normalised batch).
    """
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    gray = GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b
    return gray.expand(-1, 3, -1, -1).contiguous()


class MVDEncoder(nn.Module):
    """One MVD view encoder: backbone, BNNeck, IB head and IB classifier (SPEC section 6).

    forward(x) -> (feat, bn_feat, logits, z, z_logits) with feat the pooled backbone map.
    """

    def __init__(self, num_classes: int, depth: int, width: int, last_stride: int, z_dim: int,
                 ib_hidden: Sequence[int], cls_hidden: int, dropout: float, shallow_cam: bool):
        super().__init__()
        self.backbone = ResNet(depth=depth, last_stride=last_stride, width=width, shallow_cam=shallow_cam)
        feat_dim = self.backbone.feat_dim
        self.neck = BNNeck(feat_dim, num_classes)
        self.ib = IBHead(feat_dim, z_dim, ib_hidden)
        self.ib_classifier = IBClassifier(z_dim, num_classes, cls_hidden, dropout)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        feat = global_average_pool(self.backbone(x))
        bn_feat, logits = self.neck(feat)
        z = self.ib(bn_feat)
        return feat, bn_feat, logits, z, self.ib_classifier(z)


class MVDNet(nn.Module):
    """Three-encoder MVD model (SPEC section 6). forward(rgb, ir) returns the 15 tensors named
    in :data:`MVD_OUTPUTS`: visible encoder on rgb (B rows), infrared encoder on ir (or on
    grayscale(rgb) when ``gray_ir``; B rows), shared encoder on concat([rgb, ir]) (2B rows).
    """

    def __init__(self, num_classes: int, depth: int = 50, width: int = 64, last_stride: int = 1,
                 z_dim: int = 512, ib_hidden: Sequence[int] = (1000, 500), cls_hidden: int = 256,
                 dropout: float = 0.5, gray_ir: bool = False, shallow_cam: bool = False,
                 test_feature: str = "concat"):
        super().__init__()
        args = (num_classes, depth, width, last_stride, z_dim, tuple(ib_hidden), cls_hidden, dropout, shallow_cam)
        self.visible = MVDEncoder(*args)
        self.infrared = MVDEncoder(*args)
        self.shared = MVDEncoder(*args)
        self.gray_ir = gray_ir
        self.test_feature = check_test_feature(test_feature)
        self.feat_dim = self.visible.backbone.feat_dim

    def forward(self, rgb: torch.Tensor, ir: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out_v = self.visible(rgb)
        out_i = self.infrared(grayscale3(rgb) if self.gray_ir else ir)
        out_s = self.shared(torch.cat([rgb, ir], dim=0))
        return tuple(out_v) + tuple(out_i) + tuple(out_s)

    def extract(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """Test feature (SPEC section 6), L2-normalised, chosen by ``test_feature``:

        * ``'concat'`` (SPEC 6 wording): concat(enc.bn_feat, shared.bn_feat) with enc the
          visible encoder for 'visible' and the infrared one for 'infrared' -> 2*feat_dim;
        * ``'shared'``: the shared (modality-consistent) encoder's bn_feat -> feat_dim;
        * ``'all'`` (the original code's layout): visible, infrared and shared bn_feat of
          the same image -> 3*feat_dim.

        With ``'concat'`` a query and a gallery image are described by different encoders, so
        the two modality-specific halves only agree as far as training aligned them; on the
        synthetic SYSU-MM01 ``'shared'`` ranks far better (README, MVD notes). When
        ``gray_ir`` the infrared encoder sees grayscale(x), as in training.
        """
        if modality not in ("visible", "infrared"):
            raise ValueError(f"unknown modality {modality!r}: expected 'visible' or 'infrared'")
        shared = self.shared(x)[1]
        if self.test_feature == "shared":
            return F.normalize(shared, p=2, dim=1)
        infrared = self.infrared(grayscale3(x) if self.gray_ir else x)[1] if (
            modality == "infrared" or self.test_feature == "all") else None
        visible = self.visible(x)[1] if (modality == "visible" or self.test_feature == "all") else None
        if self.test_feature == "all":
            parts = (visible, infrared, shared)
        else:
            parts = (visible if modality == "visible" else infrared, shared)
        return F.normalize(torch.cat(parts, dim=1), p=2, dim=1)


class ReIDNet(nn.Module):
    """Plain BNNeck re-ID model: ResNet -> GAP -> BNNeck (SPEC section 6).

    forward(x) -> (feat, bn_feat, logits).
    """

    def __init__(self, num_classes: int, depth: int = 50, width: int = 64, last_stride: int = 1):
        super().__init__()
        self.backbone = ResNet(depth=depth, last_stride=last_stride, width=width)
        self.neck = BNNeck(self.backbone.feat_dim, num_classes)
        self.feat_dim = self.backbone.feat_dim

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        feat = global_average_pool(self.backbone(x))
        bn_feat, logits = self.neck(feat)
        return feat, bn_feat, logits


def build_model(cfg_model: dict, num_classes: int) -> nn.Module:
    """Build MVDNet ('mvd') or ReIDNet ('reid') from a config ``model`` section (network
    contract). Missing keys take :data:`MODEL_DEFAULTS`; keys not used by the chosen model
    are ignored (the configuration loader validates key names).
    """
    cfg = dict(MODEL_DEFAULTS)
    cfg.update(cfg_model or {})
    name = cfg["name"]
    if name not in MODEL_NAMES:
        raise ConfigError(f"unknown model.name {name!r}: expected one of {list(MODEL_NAMES)}")
    try:
        if name == "reid":
            return ReIDNet(num_classes, depth=int(cfg["depth"]), width=int(cfg["width"]),
                           last_stride=int(cfg["last_stride"]))
        return _build_mvd(cfg, num_classes)
    except ValueError as exc:  # bad depth etc.: report as a configuration problem
        raise ConfigError(f"model section: {exc}") from exc


def _build_mvd(cfg: dict, num_classes: int) -> MVDNet:
    """MVDNet from a completed model configuration (defaults already filled in)."""
    return MVDNet(num_classes, depth=int(cfg["depth"]), width=int(cfg["width"]),
                  last_stride=int(cfg["last_stride"]), z_dim=int(cfg["z_dim"]),
                  ib_hidden=tuple(int(h) for h in cfg["ib_hidden"]), cls_hidden=int(cfg["cls_hidden"]),
                  dropout=float(cfg["dropout"]), gray_ir=bool(cfg["gray_ir"]),
                  shallow_cam=bool(cfg["shallow_cam"]),
                  test_feature=str(cfg["test_feature"]))
