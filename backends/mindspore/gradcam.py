"""Grad-CAM inputs of a VKD :class:`~backends.mindspore.vkd.TriNet`, MindSpore (follows
aimagelab/VKD tools/save_heatmaps.py ``extract_grad_cam``; mirrors backends/torch/gradcam.py,
the combination into maps is framework-free: ``common/gradcam.py``).

The forward is split at the backbone: its feature maps are the differentiated input of a
function running :meth:`TriNet.head` to the score, and ``mindspore.grad`` gives dscore/dmaps.
The work runs in PYNATIVE mode (switched on for the call when the context is GRAPH, and
switched back afterwards); the network runs in eval mode, as in VKD.
"""
from typing import Optional, Tuple

import numpy as np
import mindspore as ms

__all__ = ["feature_map_and_gradient"]


def feature_map_and_gradient(model, frames: np.ndarray, target: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(activations, gradients), both float32 (V, C, h, w), of one clip ``frames`` (1, V, 3,
    H, W): the last backbone stage's maps and the gradient of the score w.r.t. them. The
    score is the logit of class ``target``, or (None, VKD's choice) the largest logit."""
    x = np.asarray(frames, np.float32)
    if x.ndim != 5 or x.shape[0] != 1:
        raise ValueError(f"frames must be one clip (1, V, 3, H, W), got shape {x.shape}")
    mode, was_training = ms.get_context("mode"), model.training
    if mode != ms.PYNATIVE_MODE:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    model.set_train(False)
    try:
        b, v = x.shape[:2]
        maps = model.backbone(ms.Tensor(x.reshape((b * v,) + x.shape[2:])))
        index = None if target is None else _check_target(target, model.classifier.classifier.weight.shape[0])

        def score(feature_maps):
            logits = model.head(feature_maps, b, v)[1][0]
            return logits.max() if index is None else logits[index]

        grad = ms.grad(score, grad_position=0)(maps)
        return maps.asnumpy(), grad.asnumpy()
    finally:
        model.set_train(was_training)
        if mode != ms.PYNATIVE_MODE:
            ms.set_context(mode=mode)


def _check_target(target: int, num_classes: int) -> int:
    if not 0 <= int(target) < num_classes:
        raise ValueError(f"target class {target} is outside the network's {num_classes} classes")
    return int(target)
