"""Heads on pooled features (PyTorch): BNNeck and MVD's information-bottleneck MLPs.

Initialisation styles (``init``), shared with the MindSpore twin (``backends/mindspore/heads.py``):

* ``'project'``: BNNeck BN weight 1 / bias 0, classifier N(0, 0.001) (Luo et al. 2019);
  IB layers keep the framework default (torch's ``nn.Linear`` rule);
* ``'port'``: what the MVD MindSpore port ends up with (its init helpers match class names
  that MindSpore 1.3 cells do not have, so nothing is applied): MindSpore 1.3 defaults,
  every Linear weight N(0, 0.01) and bias 0, BN weight 1 / bias 0;
* ``'original'``: the original MVD code (utlis.py ``ChannelCompress``,
  reid/models/newresnet.py ``VIB``, reid/models/baseline.py): IB encoder Linear kaiming-normal
  fan_out with bias 0 and BN1d weight N(1, 0.02) / bias 0; every classifier Linear N(0,
  0.001) with bias 0; BNNeck BN weight 1 / bias 0;
* ``'framework'``: torch's ``nn.Linear`` default everywhere.
"""
from typing import Sequence, Tuple

import torch
from torch import nn

from common.netspec import HEAD_INIT_STYLES as INIT_STYLES, head_init_rules

__all__ = ["INIT_STYLES", "BNNeck", "IBHead", "IBClassifier", "init_linear", "init_bn"]





def init_linear(layer: nn.Linear, rule: str) -> None:
    """Initialise one Linear by ``rule``: 'default' (keep torch's), 'normal0.01',
    'normal0.001' or 'kaiming_fan_out' (kaiming normal, a=0); the bias becomes 0 except for
    'default'."""
    with torch.no_grad():
        if rule == "default":
            return
        if rule == "normal0.01":
            nn.init.normal_(layer.weight, 0.0, 0.01)
        elif rule == "normal0.001":
            nn.init.normal_(layer.weight, 0.0, 0.001)
        elif rule == "kaiming_fan_out":
            nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_out")
        else:
            raise ValueError(f"unknown linear init rule {rule!r}")
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def init_bn(bn: nn.BatchNorm1d, rule: str) -> None:
    """'ones' (weight 1, bias 0) or 'normal1_0.02' (weight N(1, 0.02), bias 0)."""
    with torch.no_grad():
        if rule == "ones":
            nn.init.ones_(bn.weight)
        elif rule == "normal1_0.02":
            nn.init.normal_(bn.weight, 1.0, 0.02)
        else:
            raise ValueError(f"unknown BN init rule {rule!r}")
        nn.init.zeros_(bn.bias)




class BNNeck(nn.Module):
    """BNNeck (Luo et al. 2019): ``bottleneck`` BatchNorm1d then ``classifier`` Linear on the
    BN feature. ``bias_trainable``: the BN shift trains (MVD port) or stays 0 (reid/models/
    baseline.py, VKD model/net.py); ``classifier_bias``: the classifier has a bias (both MVD
    codebases) or not (VKD, Luo et al.).

    forward(feat (N, D)) -> (bn_feat (N, D), logits (N, num_classes))."""

    def __init__(self, in_dim: int, num_classes: int, bias_trainable: bool = False,
                 classifier_bias: bool = False, init: str = "project"):
        super().__init__()
        rules = head_init_rules(init)
        self.bottleneck = nn.BatchNorm1d(in_dim, eps=1e-5, momentum=0.1)
        init_bn(self.bottleneck, "ones")
        self.bottleneck.bias.requires_grad_(bool(bias_trainable))
        self.classifier = nn.Linear(in_dim, num_classes, bias=bool(classifier_bias))
        init_linear(self.classifier, rules[0])

    def forward(self, feat: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        bn_feat = self.bottleneck(feat)
        return bn_feat, self.classifier(bn_feat)


class IBHead(nn.Module):
    """MVD's deterministic information-bottleneck encoder (utlis.py ``ChannelCompress``):
    z = Linear(in, h0) -> BN -> ReLU -> Linear(h0, h1) -> BN -> ReLU -> Linear(h1, z_dim).

    Parameter names: net.0, net.1, net.3, net.4, net.6."""

    def __init__(self, in_dim: int, z_dim: int = 512, hidden: Sequence[int] = (1000, 500), init: str = "project"):
        super().__init__()
        h0, h1 = (int(h) for h in hidden)
        self.net = nn.Sequential(
            nn.Linear(in_dim, h0), nn.BatchNorm1d(h0), nn.ReLU(),
            nn.Linear(h0, h1), nn.BatchNorm1d(h1), nn.ReLU(),
            nn.Linear(h1, z_dim))
        _, lin, bn, _ = head_init_rules(init)
        for i in (0, 3, 6):
            init_linear(self.net[i], lin)
        for i in (1, 4):
            init_bn(self.net[i], bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class IBClassifier(nn.Module):
    """Classifier on the bottleneck code z (reid/models/newresnet.py ``VIB.classifier``):
    Linear(z_dim, hidden) -> BN -> LeakyReLU(0.1) -> Dropout(dropout) -> Linear(hidden, C).

    Parameter names: net.0, net.1, net.4. ``dropout=0`` puts an Identity at position 3 so
    the module is deterministic in train mode (used by parity tests)."""

    def __init__(self, z_dim: int, num_classes: int, hidden: int = 256, dropout: float = 0.5,
                 init: str = "project"):
        super().__init__()
        drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.1),
            drop, nn.Linear(hidden, num_classes))
        rule = head_init_rules(init)[3]
        for i in (0, 4):
            init_linear(self.net[i], rule)
        init_bn(self.net[1], "ones")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
