"""Training and feature-extraction engine for the MindSpore backend (SPEC sections 1, 8, 10).

One training step is ``mindspore.value_and_grad(forward_fn, None, optimizer.parameters,
has_aux=True)`` followed by the optimizer update, the whole step wrapped in
``mindspore.jit`` when ``ms_mode == 'GRAPH'``. The forward runs exactly once per step:
there is never a separate forward before the gradient (the reference port's mistake,
SPEC 1). Feature extraction runs PYNATIVE in eval mode (``model.extract``).
"""
from typing import Dict

import numpy as np
import mindspore as ms

from common.config import DEFAULTS, engine_loss_settings

from .losses import mvd_loss

LOSS_DEFAULTS = engine_loss_settings(DEFAULTS["loss"])  # one source: common.config
LOSS_KEYS = tuple(LOSS_DEFAULTS)
MS_MODES = ("GRAPH", "PYNATIVE")


def loss_settings(loss_cfg: dict) -> dict:
    """``loss_cfg`` completed with the MVD defaults (SPEC 7 totals); unknown keys -> ValueError.
    Values become Python constants of the compiled graph."""
    cfg = dict(LOSS_DEFAULTS)
    unknown = sorted(set(loss_cfg or {}) - set(LOSS_KEYS))
    if unknown:
        raise ValueError(f"unknown loss settings {unknown}: expected keys among {list(LOSS_KEYS)}")
    cfg.update(loss_cfg or {})
    cfg["margin"] = None if cfg["margin"] is None else float(cfg["margin"])
    cfg["T"], cfg["vml_weight"] = float(cfg["T"]), float(cfg["vml_weight"])
    return cfg


def _check_mode(ms_mode: str) -> str:
    if ms_mode not in MS_MODES:
        raise ValueError(f"unknown ms_mode {ms_mode!r}: expected 'GRAPH' or 'PYNATIVE'")
    return ms_mode


class MVDTrainer:
    """One MVD training step at a time (SPEC 8 MVD recipe; losses SPEC 7).

    The optimizer must expose ``parameters`` (the trainable parameters it updates) and be
    callable on the gradient tuple, as backends/mindspore/optim.py's optimizers are."""

    def __init__(self, model, optimizer, loss_cfg: dict, ms_mode: str = "GRAPH"):
        self.model = model
        self.optimizer = optimizer
        self.loss_cfg = loss_settings(loss_cfg)
        self.ms_mode = _check_mode(ms_mode)
        cfg = self.loss_cfg
        loss_func, margin, temperature = cfg["loss_func"], cfg["margin"], cfg["T"]
        kl_form, vml_weight = cfg["kl_form"], cfg["vml_weight"]

        def forward_fn(rgb, ir, labels):
            outputs = model(rgb, ir)
            return mvd_loss(outputs, labels, loss_func, margin, temperature, kl_form, vml_weight)

        grad_fn = ms.value_and_grad(forward_fn, None, optimizer.parameters, has_aux=True)

        def train_step_fn(rgb, ir, labels):
            losses, grads = grad_fn(rgb, ir, labels)
            optimizer(grads)
            return losses

        self._step = ms.jit(train_step_fn) if self.ms_mode == "GRAPH" else train_step_fn

    def train_step(self, rgb: np.ndarray, ir: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
        """Forward on (rgb, ir) NCHW float32, MVD loss against ``labels`` (int64), gradient and
        one optimizer step, in train mode. Returns {'total', 'id', 'tri', 'kl'} floats."""
        self.model.set_train(True)
        total, id_loss, tri_loss, kl_loss = self._step(
            ms.Tensor(np.asarray(rgb, dtype=np.float32)), ms.Tensor(np.asarray(ir, dtype=np.float32)),
            ms.Tensor(np.asarray(labels, dtype=np.int64)))
        return {"total": float(total.asnumpy()), "id": float(id_loss.asnumpy()),
                "tri": float(tri_loss.asnumpy()), "kl": float(kl_loss.asnumpy())}

    def extract(self, images: np.ndarray, modality: str, batch_size: int = 64) -> np.ndarray:
        """Test features (N, D) of NCHW float32 ``images`` seen as ``modality``."""
        return extract(self.model, images, modality, batch_size)


def extract(model, images: np.ndarray, modality: str, batch_size: int = 64) -> np.ndarray:
    """``model.extract`` over ``images`` in batches, eval mode (PYNATIVE, no gradient is
    taken) (SPEC 6 test feature); the previous train/eval mode is restored afterwards."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.set_train(False)
    chunks = []
    try:
        for start in range(0, len(images), batch_size):
            batch = ms.Tensor(np.asarray(images[start:start + batch_size], dtype=np.float32))
            chunks.append(model.extract(batch, modality).asnumpy())
    finally:
        model.set_train(was_training)
    if not chunks:
        raise ValueError("extract got no images")
    return np.concatenate(chunks, axis=0)


def find_backbone(model):
    """The backbone of one encoder: ``model.backbone``, else ``model.visible.backbone``, else
    the model itself (a bare ResNet)."""
    if hasattr(model, "backbone"):
        return model.backbone
    if hasattr(model, "visible"):
        return model.visible.backbone
    return model


_BACKBONE_STEPS = {}


def forward_backward_backbone(model, x, ms_mode: str = "GRAPH") -> None:
    """Benchmark kernel: train-mode forward of one encoder's backbone on ``x`` (NCHW) and the
    gradient of ``sum()`` w.r.t. its trainable parameters; nothing returned. The gradient
    function is built (and, in GRAPH mode, compiled) once per backbone and mode."""
    backbone = find_backbone(model)
    backbone.set_train(True)
    key = (id(backbone), _check_mode(ms_mode))
    cached = _BACKBONE_STEPS.get(key)
    if cached is None or cached[0] is not backbone:
        def loss_fn(images):
            return backbone(images).sum()
        grad_fn = ms.grad(loss_fn, None, backbone.trainable_params())

        def step_fn(images):
            return grad_fn(images)
        cached = (backbone, ms.jit(step_fn) if ms_mode == "GRAPH" else step_fn)
        _BACKBONE_STEPS[key] = cached
    x = x if isinstance(x, ms.Tensor) else ms.Tensor(np.asarray(x, dtype=np.float32))
    grads = cached[1](x)
    grads[0].asnumpy()  # wait for the (asynchronous) computation to finish
