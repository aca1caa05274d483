"""Training and feature-extraction engine for the PyTorch backend (SPEC sections 8 and 10).

``MVDTrainer.train_step`` is one forward, one backward and one optimizer step of the MVD
model on numpy batches; ``extract`` computes test features in eval mode without gradients.
The MindSpore twin (backends/mindspore/engine.py) has the same interface.
"""
from typing import Dict

import numpy as np
import torch

from common.config import DEFAULTS, engine_loss_settings

from .device import current_device
from .losses import mvd_loss

LOSS_DEFAULTS = engine_loss_settings(DEFAULTS["loss"])  # one source: common.config
LOSS_KEYS = tuple(LOSS_DEFAULTS)


def loss_settings(loss_cfg: dict) -> dict:
    """``loss_cfg`` completed with the MVD defaults (SPEC 7 totals); unknown keys -> ValueError."""
    cfg = dict(LOSS_DEFAULTS)
    unknown = sorted(set(loss_cfg or {}) - set(LOSS_KEYS))
    if unknown:
        raise ValueError(f"unknown loss settings {unknown}: expected keys among {list(LOSS_KEYS)}")
    cfg.update(loss_cfg or {})
    return cfg


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return current_device()


class MVDTrainer:
    """One MVD training step at a time (SPEC 8 MVD recipe; losses SPEC 7).

    ``ms_mode`` is accepted for interface symmetry with the MindSpore engine and ignored."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_cfg: dict,
                 ms_mode: str = "GRAPH"):
        self.model = model
        self.optimizer = optimizer
        self.loss_cfg = loss_settings(loss_cfg)
        self.device = _model_device(model)

    def _tensor(self, array, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=dtype, device=self.device)

    def train_step(self, rgb: np.ndarray, ir: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
        """Forward on (rgb, ir) NCHW float32, MVD loss against ``labels`` (int64), backward and
        one optimizer step, in train mode. Returns {'total', 'id', 'tri', 'kl'} floats."""
        self.model.train()
        rgb_t, ir_t = self._tensor(rgb), self._tensor(ir)
        labels_t = self._tensor(labels, dtype=torch.int64)
        outputs = self.model(rgb_t, ir_t)
        total, id_loss, tri_loss, kl_loss = mvd_loss(outputs, labels_t, **self.loss_cfg)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {"total": float(total.detach()), "id": float(id_loss.detach()),
                "tri": float(tri_loss.detach()), "kl": float(kl_loss.detach())}

    def extract(self, images: np.ndarray, modality: str, batch_size: int = 64) -> np.ndarray:
        """Test features (N, D) of NCHW float32 ``images`` seen as ``modality``."""
        return extract(self.model, images, modality, batch_size)


def extract(model: torch.nn.Module, images: np.ndarray, modality: str, batch_size: int = 64) -> np.ndarray:
    """``model.extract`` over ``images`` in batches, eval mode, no gradients (SPEC 6 test
    feature); the model's previous train/eval mode is restored afterwards."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    device = _model_device(model)
    model.eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = torch.as_tensor(np.asarray(images[start:start + batch_size], dtype=np.float32), device=device)
                chunks.append(model.extract(batch, modality).cpu().numpy())
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("extract got no images")
    return np.concatenate(chunks, axis=0)


def find_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The backbone of one encoder: ``model.backbone``, else ``model.visible.backbone``, else
    the model itself (a bare ResNet)."""
    if hasattr(model, "backbone"):
        return model.backbone
    if hasattr(model, "visible"):
        return model.visible.backbone
    return model


def forward_backward_backbone(model: torch.nn.Module, x) -> None:
    """Benchmark kernel: train-mode forward of one encoder's backbone on ``x`` (NCHW), then
    ``sum().backward()``; nothing returned (gradients are left in ``.grad``). Returns once
    the device has finished (CUDA is synchronised) so wall-clock timing is meaningful."""
    backbone = find_backbone(model)
    backbone.train()
    device = _model_device(backbone)
    x = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device) if not isinstance(x, torch.Tensor) else x
    backbone.zero_grad(set_to_none=True)
    backbone(x).sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
