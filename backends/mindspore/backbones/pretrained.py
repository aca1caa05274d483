"""Load a checkpoint into a KD-REID model by name and shape, MindSpore backend.

Mirrors ``backends/torch/backbones/pretrained.py`` (torchreid ``load_pretrained_weights``
rule: same name and shape loads, everything else is skipped and reported); names are the
canonical torch names, mapped to MindSpore BatchNorm leaves by ``common.weights``.
"""
from typing import Mapping, Union

import numpy as np
from mindspore import nn

from common.kdreid_models import LoadReport, match_state_by_name, strip_module_prefix

__all__ = ["load_pretrained_by_name"]


def load_pretrained_by_name(model: nn.Cell, source: Union[str, Mapping]) -> LoadReport:
    """Copy the entries of ``source`` (a ``.pth`` path, which needs torch, a ``.safetensors``
    path, or a name -> array mapping with torch names) that fit ``model`` by name and shape;
    returns the :class:`~common.kdreid_models.LoadReport`. Raises CheckpointError when the
    file cannot be read."""
    from ..weights import read_weights_file, load_numpy_state, state_to_numpy  # weights imports backbones

    state = read_weights_file(str(source)) if isinstance(source, str) else dict(source)
    model_shapes = {k: v.shape for k, v in state_to_numpy(model).items()}
    report = match_state_by_name(model_shapes, {k: np.shape(v) for k, v in state.items()})
    by_key = {strip_module_prefix(k): v for k, v in state.items()}
    load_numpy_state(model, {k: by_key[k] for k in report.loaded}, strict=False)
    return report
