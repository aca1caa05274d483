"""Grad-CAM inputs of a VKD :class:`~backends.torch.vkd.TriNet`, PyTorch (follows
aimagelab/VKD tools/save_heatmaps.py ``extract_grad_cam``; the combination into maps is
framework-free: ``common/gradcam.py``). The MindSpore twin is backends/mindspore/gradcam.py.

The forward is split at the backbone: its feature maps (the last stage's output, the layer
VKD hooks) become a leaf tensor, :meth:`TriNet.head` maps them to the frame-averaged logits,
and autograd gives dscore/dmaps. The network runs in eval mode, as in VKD.
"""
from typing import Optional, Tuple

import numpy as np
import torch

from .engine import model_device

__all__ = ["feature_map_and_gradient"]


def feature_map_and_gradient(model, frames: np.ndarray, target: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(activations, gradients), both float32 (V, C, h, w), of one clip ``frames`` (1, V, 3,
    H, W): the last backbone stage's maps and the gradient of the score w.r.t. them. The
    score is the logit of class ``target``, or (None, VKD's choice) the largest logit."""
    x = np.asarray(frames, np.float32)
    if x.ndim != 5 or x.shape[0] != 1:
        raise ValueError(f"frames must be one clip (1, V, 3, H, W), got shape {x.shape}")
    was_training = model.training
    model.eval()
    try:
        tensor = torch.from_numpy(x).to(model_device(model))
        b, v = tensor.shape[:2]
        with torch.no_grad():
            maps = model.backbone(tensor.reshape(b * v, *tensor.shape[2:]))
        maps = maps.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model.head(maps, b, v)[1][0]
            score = logits.max() if target is None else logits[_check_target(target, logits.shape[0])]
            (grad,) = torch.autograd.grad(score, maps)
    finally:
        model.train(was_training)
    return maps.detach().cpu().numpy(), grad.cpu().numpy()


def _check_target(target: int, num_classes: int) -> int:
    if not 0 <= int(target) < num_classes:
        raise ValueError(f"target class {target} is outside the network's {num_classes} classes")
    return int(target)
