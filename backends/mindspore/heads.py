"""Heads on pooled features in MindSpore: BNNeck and MVD's information-bottleneck MLPs.

Names mirror the torch backend (``bottleneck``, ``classifier``, ``net.<i>``); BatchNorm1d
uses eps 1e-5 and MindSpore momentum 0.9 (== torch 0.1). The initialisation styles
(``init``) are those of ``backends/torch/heads.py`` (see its docstring), drawn with
MindSpore's initializers."""
from typing import Sequence

from mindspore import nn
from mindspore.common.initializer import HeNormal, Normal, Zero, initializer

from common.netspec import HEAD_INIT_STYLES as INIT_STYLES, head_init_rules

from .backbones.resnet import BN_EPS, BN_MOMENTUM

__all__ = ["INIT_STYLES", "BNNeck", "IBHead", "IBClassifier", "init_linear", "init_bn"]





def batch_norm1d(channels):
    """BatchNorm1d with weight 1, bias 0, eps 1e-5, momentum matching torch 0.1."""
    return nn.BatchNorm1d(channels, eps=BN_EPS, momentum=BN_MOMENTUM, gamma_init="ones", beta_init="zeros")


def init_linear(layer: nn.Dense, rule: str) -> None:
    """Initialise one Dense by ``rule`` (see backends/torch/heads.py ``init_linear``)."""
    if rule == "default":
        return
    shape, dtype = layer.weight.shape, layer.weight.dtype
    if rule == "normal0.01":
        init = Normal(sigma=0.01)
    elif rule == "normal0.001":
        init = Normal(sigma=0.001)
    elif rule == "kaiming_fan_out":
        init = HeNormal(negative_slope=0, mode="fan_out", nonlinearity="leaky_relu")
    else:
        raise ValueError(f"unknown linear init rule {rule!r}")
    layer.weight.set_data(initializer(init, shape, dtype))
    if layer.has_bias:
        layer.bias.set_data(initializer(Zero(), layer.bias.shape, layer.bias.dtype))


def init_bn(bn: nn.BatchNorm1d, rule: str) -> None:
    """'ones' (weight 1, bias 0) or 'normal1_0.02' (weight N(1, 0.02), bias 0)."""
    if rule == "normal1_0.02":
        bn.gamma.set_data(initializer(Normal(sigma=0.02, mean=1.0), bn.gamma.shape, bn.gamma.dtype))
    elif rule != "ones":
        raise ValueError(f"unknown BN init rule {rule!r}")


class BNNeck(nn.Cell):
    """BNNeck (Luo et al. 2019): ``bottleneck`` BatchNorm1d then ``classifier`` Dense on the
    BN feature; ``bias_trainable`` and ``classifier_bias`` as in the torch twin.
    forward(feat (N, D)) -> (bn_feat (N, D), logits (N, num_classes))."""

    def __init__(self, in_dim, num_classes, bias_trainable=False, classifier_bias=False, init="project"):
        super().__init__()
        rules = head_init_rules(init)
        self.bottleneck = batch_norm1d(in_dim)
        self.bottleneck.beta.requires_grad = bool(bias_trainable)
        self.classifier = nn.Dense(in_dim, num_classes, has_bias=bool(classifier_bias))
        init_linear(self.classifier, rules[0])

    def construct(self, feat):
        bn_feat = self.bottleneck(feat)
        return bn_feat, self.classifier(bn_feat)


class IBHead(nn.Cell):
    """MVD deterministic information-bottleneck encoder (utlis.py ``ChannelCompress``):
    z = Dense(in, h0) -> BN -> ReLU -> Dense(h0, h1) -> BN -> ReLU -> Dense(h1, z_dim).
    Parameter names: net.0, net.1, net.3, net.4, net.6."""

    def __init__(self, in_dim, z_dim=512, hidden: Sequence[int] = (1000, 500), init="project"):
        super().__init__()
        h0, h1 = (int(h) for h in hidden)
        self.net = nn.SequentialCell([
            nn.Dense(in_dim, h0), batch_norm1d(h0), nn.ReLU(),
            nn.Dense(h0, h1), batch_norm1d(h1), nn.ReLU(),
            nn.Dense(h1, z_dim)])
        _, lin, bn, _ = head_init_rules(init)
        for i in (0, 3, 6):
            init_linear(self.net[i], lin)
        for i in (1, 4):
            init_bn(self.net[i], bn)

    def construct(self, x):
        return self.net(x)


class IBClassifier(nn.Cell):
    """Classifier on the bottleneck code z (reid/models/newresnet.py ``VIB.classifier``):
    Dense(z_dim, hidden) -> BN -> LeakyReLU(0.1) -> Dropout(dropout) -> Dense(hidden, C).
    Parameter names: net.0, net.1, net.4. ``dropout=0`` puts an Identity at position 3, so
    the cell is deterministic in train mode (parity tests)."""

    def __init__(self, z_dim, num_classes, hidden=256, dropout=0.5, init="project"):
        super().__init__()
        drop = nn.Dropout(p=float(dropout)) if dropout > 0 else nn.Identity()
        self.net = nn.SequentialCell([
            nn.Dense(z_dim, hidden), batch_norm1d(hidden), nn.LeakyReLU(0.1),
            drop, nn.Dense(hidden, num_classes)])
        rule = head_init_rules(init)[3]
        for i in (0, 4):
            init_linear(self.net[i], rule)

    def construct(self, z):
        return self.net(z)
