"""Heads on pooled features (SPEC section 6): BNNeck and MVD's information-bottleneck MLPs."""
from typing import Sequence, Tuple

import torch
from torch import nn


class BNNeck(nn.Module):
    """BNNeck (Luo et al. 2019): ``bottleneck`` BatchNorm1d (weight 1, bias 0 and frozen)
    followed by ``classifier`` Linear without bias, initialised normal(0, 0.001).

    forward(feat (N, D)) -> (bn_feat (N, D), logits (N, num_classes)); the classifier reads
    the BN feature.
    """

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.bottleneck = nn.BatchNorm1d(in_dim, eps=1e-5, momentum=0.1)
        nn.init.ones_(self.bottleneck.weight)
        nn.init.zeros_(self.bottleneck.bias)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(in_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, mean=0.0, std=0.001)

    def forward(self, feat: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        bn_feat = self.bottleneck(feat)
        return bn_feat, self.classifier(bn_feat)


class IBHead(nn.Module):
    """MVD's deterministic information-bottleneck encoder (SPEC section 6):
    z = Linear(in, h0) -> BN -> ReLU -> Linear(h0, h1) -> BN -> ReLU -> Linear(h1, z_dim).

    Parameter names: net.0, net.1, net.3, net.4, net.6.
    """

    def __init__(self, in_dim: int, z_dim: int = 512, hidden: Sequence[int] = (1000, 500)):
        super().__init__()
        h0, h1 = (int(h) for h in hidden)
        self.net = nn.Sequential(
            nn.Linear(in_dim, h0), nn.BatchNorm1d(h0), nn.ReLU(),
            nn.Linear(h0, h1), nn.BatchNorm1d(h1), nn.ReLU(),
            nn.Linear(h1, z_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class IBClassifier(nn.Module):
    """Classifier on the bottleneck code z (SPEC section 6):
    Linear(z_dim, hidden) -> BN -> LeakyReLU(0.1) -> Dropout(dropout) -> Linear(hidden, C).

    Parameter names: net.0, net.1, net.4. ``dropout=0`` puts an Identity at position 3 so
    the module is deterministic in train mode (used by parity tests).
    """

    def __init__(self, z_dim: int, num_classes: int, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.1),
            drop, nn.Linear(hidden, num_classes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
