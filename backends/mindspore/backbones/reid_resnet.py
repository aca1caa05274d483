"""MTDA-KD-REID's ResNet-50 re-ID model (source model and D-MMD teachers), MindSpore backend.

Mirrors ``backends/torch/backbones/reid_resnet.py`` name for name (fremigereau/MTDA_KD_REID
``torchreid/models/resnet.py`` ``resnet50``): torchvision trunk (:class:`.resnet.ResNet`,
flat names) with last stride 2, global average pooling, ``feat`` Dense + ``feat_bn``
BatchNorm1d (no ReLU) when ``fc_dim > 0``, ``classifier`` Dense with bias. The torch module
lists the differences from the reference (pre-activation block layout composed to the same
trunk output; ``feat`` is Dense(2048, fc_dim); feature-map KD parts not built).
``construct`` returns ``(logits, embedding)``; :meth:`ReIDResNet.extract` the test feature.
"""
from mindspore import nn, ops
from mindspore.common.initializer import Normal

from common.kdreid_models import DEFAULT_FC_DIM, RESNET_DEPTH, RESNET_LAST_STRIDE

from .osnet import l2_normalize_rows
from .resnet import BN_EPS, BN_MOMENTUM, ResNet

__all__ = ["ReIDResNet", "build_reid_resnet"]


class ReIDResNet(ResNet):
    """ResNet trunk + MTDA head; attributes ``pooled_dim``, ``fc_dim``, ``feat_dim`` as the
    torch twin. Head init: Dense weights normal(0, 0.01), biases 0, BatchNorm1d 1/0."""

    def __init__(self, num_classes, fc_dim=DEFAULT_FC_DIM, depth=RESNET_DEPTH,
                 last_stride=RESNET_LAST_STRIDE, width=64):
        super().__init__(depth=depth, last_stride=last_stride, width=width, shallow_cam=False)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.pooled_dim = self.feat_dim
        self.fc_dim = int(fc_dim) if fc_dim and fc_dim > 0 else 0
        self.feat_dim = self.fc_dim or self.pooled_dim
        self.feat = nn.Dense(self.pooled_dim, self.fc_dim, weight_init=Normal(sigma=0.01),
                             bias_init="zeros") if self.fc_dim else None
        self.feat_bn = nn.BatchNorm1d(self.fc_dim, eps=BN_EPS, momentum=BN_MOMENTUM, gamma_init="ones",
                                      beta_init="zeros") if self.fc_dim else None
        self.classifier = nn.Dense(self.feat_dim, num_classes, weight_init=Normal(sigma=0.01),
                                   bias_init="zeros")

    def featuremaps(self, x):
        """layer4 output after ReLU (N, pooled_dim, H/32, W/32) at last stride 2 (the
        trunk of :class:`.resnet.ResNet`, written out so GRAPH mode needs no super() call)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def construct(self, x):
        """(logits (N, num_classes), embedding (N, feat_dim)): the embedding is MTDA's
        ``v`` (post-``feat_bn``, pre-classifier, not normalised)."""
        v = ops.mean(self.featuremaps(x), (2, 3))
        if self.feat is not None:
            v = self.feat_bn(self.feat(v))
        return self.classifier(v), v

    def extract(self, x):
        """Test feature: the L2-normalised embedding (MTDA's eval-mode output; call
        ``set_train(False)`` first for the reference's behaviour)."""
        return l2_normalize_rows(self.construct(x)[1])


def build_reid_resnet(num_classes, fc_dim=DEFAULT_FC_DIM, width=64, **kwargs):
    """MTDA's ``resnet50`` re-ID model; ``width`` < 64 gives small test networks."""
    return ReIDResNet(num_classes, fc_dim=fc_dim, width=width, **kwargs)
