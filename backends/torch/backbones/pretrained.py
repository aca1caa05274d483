"""Load a checkpoint into a KD-REID model by name and shape, PyTorch backend.

Follows fremigereau/MTDA_KD_REID ``torchreid/utils/torchtools.py`` ``load_pretrained_weights``
(and torchreid's OSNet ``init_pretrained_weights``): keys present in the model with the same
shape load (after dropping a ``module.`` prefix); all others are skipped and reported, e.g.
the 1000-class ``classifier.*`` and torchreid's ``fc.*`` of an ``osnet_x*_imagenet.pth``,
or ``fc.*`` of torchvision's ResNet-50. The matching itself is
``common.kdreid_models.match_state_by_name``; the MindSpore twin has the same signature.
"""
from typing import Mapping, Union

import numpy as np
from torch import nn

from common.kdreid_models import LoadReport, match_state_by_name, strip_module_prefix

__all__ = ["load_pretrained_by_name"]


def load_pretrained_by_name(model: nn.Module, source: Union[str, Mapping]) -> LoadReport:
    """Copy the entries of ``source`` (a ``.pth`` / ``.safetensors`` path or a name -> array
    mapping with torch names) that fit ``model`` by name and shape; returns the
    :class:`~common.kdreid_models.LoadReport` (loaded, skipped with reasons, untouched).
    Raises CheckpointError when the file cannot be read."""
    from ..weights import read_weights_file, load_numpy_state, state_to_numpy  # weights imports backbones

    state = read_weights_file(str(source)) if isinstance(source, str) else dict(source)
    model_shapes = {k: v.shape for k, v in state_to_numpy(model).items()}
    report = match_state_by_name(model_shapes, {k: np.shape(v) for k, v in state.items()})
    by_key = {strip_module_prefix(k): v for k, v in state.items()}
    load_numpy_state(model, {k: by_key[k] for k in report.loaded}, strict=False)
    return report
