"""Heads on pooled features in MindSpore (SPEC section 6): BNNeck and MVD's
information-bottleneck MLPs. Names mirror the torch backend (``bottleneck``, ``classifier``,
``net.<i>``); BatchNorm1d uses eps 1e-5 and MindSpore momentum 0.9 (== torch 0.1)."""
from typing import Sequence

from mindspore import nn
from mindspore.common.initializer import Normal

from .backbones.resnet import BN_EPS, BN_MOMENTUM


def batch_norm1d(channels):
    """BatchNorm1d with weight 1, bias 0, eps 1e-5, momentum matching torch 0.1."""
    return nn.BatchNorm1d(channels, eps=BN_EPS, momentum=BN_MOMENTUM,
                          gamma_init="ones", beta_init="zeros")


class BNNeck(nn.Cell):
    """BNNeck (Luo et al. 2019, SPEC 6): ``bottleneck`` BatchNorm1d (weight 1, bias 0, bias
    frozen: ``beta.requires_grad = False``) then ``classifier`` Dense without bias, init
    normal(0, 0.001). forward(feat (N, D)) -> (bn_feat (N, D), logits (N, num_classes))."""

    def __init__(self, in_dim, num_classes):
        super().__init__()
        self.bottleneck = batch_norm1d(in_dim)
        self.bottleneck.beta.requires_grad = False
        self.classifier = nn.Dense(in_dim, num_classes, has_bias=False,
                                   weight_init=Normal(sigma=0.001))

    def construct(self, feat):
        bn_feat = self.bottleneck(feat)
        return bn_feat, self.classifier(bn_feat)


class IBHead(nn.Cell):
    """MVD deterministic information-bottleneck encoder (SPEC 6):
    z = Dense(in, h0) -> BN -> ReLU -> Dense(h0, h1) -> BN -> ReLU -> Dense(h1, z_dim).
    Parameter names: net.0, net.1, net.3, net.4, net.6."""

    def __init__(self, in_dim, z_dim=512, hidden: Sequence[int] = (1000, 500)):
        super().__init__()
        h0, h1 = (int(h) for h in hidden)
        self.net = nn.SequentialCell([
            nn.Dense(in_dim, h0), batch_norm1d(h0), nn.ReLU(),
            nn.Dense(h0, h1), batch_norm1d(h1), nn.ReLU(),
            nn.Dense(h1, z_dim)])

    def construct(self, x):
        return self.net(x)


class IBClassifier(nn.Cell):
    """Classifier on the bottleneck code z (SPEC 6):
    Dense(z_dim, hidden) -> BN -> LeakyReLU(0.1) -> Dropout(dropout) -> Dense(hidden, C).
    Parameter names: net.0, net.1, net.4. ``dropout=0`` puts an Identity at position 3, so
    the cell is deterministic in train mode (parity tests)."""

    def __init__(self, z_dim, num_classes, hidden=256, dropout=0.5):
        super().__init__()
        drop = nn.Dropout(p=float(dropout)) if dropout > 0 else nn.Identity()
        self.net = nn.SequentialCell([
            nn.Dense(z_dim, hidden), batch_norm1d(hidden), nn.LeakyReLU(0.1),
            drop, nn.Dense(hidden, num_classes)])

    def construct(self, z):
        return self.net(z)
