"""MTDA-KD-REID's ResNet-50 re-ID model (source model and D-MMD teachers), PyTorch backend.

Follows fremigereau/MTDA_KD_REID ``torchreid/models/resnet.py`` ``resnet50``: torchvision
trunk with last stride 2, global average pooling, ``feat`` Linear + ``feat_bn`` BatchNorm1d
(no ReLU) when ``fc_dim > 0``, ``classifier`` Linear with bias. Parameter names are flat and
the reference's (``conv1.weight``, ``layer4.2.bn3.*``, ``feat.*``, ``feat_bn.*``,
``classifier.*``), so torchvision ImageNet files and the reference's checkpoints load by
name (see ``backbones.pretrained.load_pretrained_by_name``).

Differences from the reference, all without effect on the outputs used by KD-REID:

* The reference's blocks apply ReLU at their *input* and return the pre-activation sum
  (Heo et al.'s feature-distillation layout), with one more ReLU after layer4. Composed, this
  is exactly torchvision's post-ReLU blocks (ReLU is idempotent and the stem ends with ReLU
  + max pool), so the trunk here is :class:`.resnet.ResNet` unchanged.
* The reference builds ``feat`` as Linear(2048, 2048) whatever ``fc_dim`` is (its classifier
  then expects ``fc_dim`` inputs, so any ``fc_dim`` other than 2048 or <= 0 fails there);
  here ``feat`` is Linear(2048, fc_dim), identical for the 2048 that MTDA uses.
* Not built: the feature-map KD outputs of ``loss='kd_reid'`` (``margin1..4`` buffers of
  teachers and ``feat_matcher_list`` 1x1 convs of students, used only when ``kd_style`` is
  'all' / 'only_feats'; the default 'only_outputs' ignores them) and ``feat_fc_multi``
  (``--multi-head``). Such checkpoint keys are reported as skipped when loading.

``forward`` returns ``(logits, embedding)`` in both modes (the reference's train-mode
``(y, v)``); :meth:`ReIDResNet.extract` is its eval-mode output, the L2-normalised embedding.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from common.kdreid_models import DEFAULT_FC_DIM, RESNET_DEPTH, RESNET_LAST_STRIDE

from .resnet import BN_EPS, BN_MOMENTUM, ResNet

__all__ = ["ReIDResNet", "build_reid_resnet"]


class ReIDResNet(ResNet):
    """ResNet trunk (:class:`.resnet.ResNet`, flat torchvision names) + MTDA head.

    ``pooled_dim`` = trunk ``feat_dim`` of the bare ResNet (2048 for ResNet-50 at width 64);
    ``feat_dim`` = ``fc_dim`` when positive, else ``pooled_dim``. ``width`` is the size knob
    for tests. Head init as the reference: Linear weights normal(0, 0.01), biases 0,
    BatchNorm1d 1/0 (the trunk keeps :class:`.resnet.ResNet`'s kaiming / BN init, the same
    as the reference's).
    """

    def __init__(self, num_classes: int, fc_dim: int = DEFAULT_FC_DIM, depth: int = RESNET_DEPTH,
                 last_stride: int = RESNET_LAST_STRIDE, width: int = 64):
        super().__init__(depth=depth, last_stride=last_stride, width=width, shallow_cam=False)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.pooled_dim = self.feat_dim
        self.fc_dim = int(fc_dim) if fc_dim and fc_dim > 0 else 0
        self.feat_dim = self.fc_dim or self.pooled_dim
        if self.fc_dim:
            self.feat = nn.Linear(self.pooled_dim, self.fc_dim)
            self.feat_bn = nn.BatchNorm1d(self.fc_dim, eps=BN_EPS, momentum=BN_MOMENTUM)
            nn.init.normal_(self.feat.weight, 0.0, 0.01)
            nn.init.zeros_(self.feat.bias)
            nn.init.ones_(self.feat_bn.weight)
            nn.init.zeros_(self.feat_bn.bias)
        self.classifier = nn.Linear(self.feat_dim, num_classes)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def featuremaps(self, x: torch.Tensor) -> torch.Tensor:
        """layer4 output after ReLU (N, pooled_dim, H/32, W/32) at last stride 2."""
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, num_classes), embedding (N, feat_dim)); the embedding is MTDA's ``v``
        (post-``feat_bn``, pre-classifier, not normalised) read by D-MMD, triplet and the
        relational KD loss."""
        v = self.featuremaps(x).mean(dim=(2, 3))
        if self.fc_dim:
            v = self.feat_bn(self.feat(v))
        return self.classifier(v), v

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """Test feature: the L2-normalised embedding (MTDA's eval-mode output; call
        ``eval()`` first for the reference's behaviour)."""
        return F.normalize(self(x)[1], p=2, dim=1)


def build_reid_resnet(num_classes: int, fc_dim: int = DEFAULT_FC_DIM, width: int = 64, **kwargs) -> ReIDResNet:
    """MTDA's ``resnet50`` re-ID model; ``width`` < 64 gives small test networks."""
    return ReIDResNet(num_classes, fc_dim=fc_dim, width=width, **kwargs)
