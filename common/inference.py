"""What one test feature takes: the input of a method's ``extract`` and the test transform
that makes it from an image, framework-free, so that an exported graph (``tools/export.py``)
can carry it and :class:`common.feature_extractor.FeatureExtractor` can rebuild it without
the checkpoint or the configuration.

A recipe describes its test input with the optional hook ``test_input(cfg, modality)``
returning a dict with

* ``layout``: ``'images'`` (``extract`` takes NCHW float32) or ``'clips'`` (``extract`` takes
  ``(N, T, 3, H, W)``; a single image is a one-frame clip);
* ``resize``: the PIL filter of the test resize (``common.transforms.resize``);
* ``modality``: the modality the feature is computed for ('' when the method has one test
  feature for every input) and ``extract_kwargs``, the keyword arguments of ``extract``.

Without the hook a recipe gets :data:`DEFAULT_TEST_INPUT`: NCHW images, bilinear resize, no
keyword arguments (torchreid's test transform, ``common.transforms.ImageTest``, as KD-REID
evaluates). Every method normalises with the ImageNet mean and standard deviation
(``common.transforms.normalize``); the input size is ``data.height`` x ``data.width``.
"""
import json
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np

from common.errors import ReidError
from common.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, resize

LAYOUTS = ("images", "clips")
MODALITIES = ("visible", "infrared")
DEFAULT_TEST_INPUT = {"layout": "images", "resize": "bilinear", "modality": "", "extract_kwargs": {}}
# keys of an exported graph's metadata (ONNX metadata_props, the MindIR sidecar JSON)
META_PREFIX = "reid."
META_VERSION = 1


@dataclass
class InputSpec:
    """The test input of one exported or loaded network (see the module docstring)."""

    method: str
    layout: str
    height: int
    width: int
    resize: str
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    modality: str = ""
    extract_kwargs: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ReidError(f"unknown input layout {self.layout!r}; expected one of {', '.join(LAYOUTS)}")
        self.height, self.width = int(self.height), int(self.width)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)

    @property
    def input_name(self) -> str:
        """The graph input's name: ``images`` or ``clips``."""
        return self.layout

    def input_shape(self) -> tuple:
        """The graph input's shape, ``None`` for the dynamic dimensions (batch; frames)."""
        chw = (3, self.height, self.width)
        return (None,) + chw if self.layout == "images" else (None, None) + chw

    def transform(self, image: np.ndarray) -> np.ndarray:
        """uint8 H x W x 3 -> float32 3 x H x W: the test resize, then ``(x / 255 - mean) / std``
        (``common.transforms.normalize``'s table when the statistics are ImageNet's)."""
        x = resize(image, self.height, self.width, self.resize)
        if self.mean == tuple(IMAGENET_MEAN) and self.std == tuple(IMAGENET_STD):
            return normalize(x)
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return (x.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0) - mean) / std

    def batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The network input of uint8 H x W x 3 ``images``: ``(N, 3, H, W)``, or ``(N, 1, 3, H, W)``
        one-frame clips for the ``clips`` layout."""
        out = np.stack([self.transform(im) for im in images]).astype(np.float32, copy=False)
        return out if self.layout == "images" else out[:, None]

    def to_metadata(self) -> Dict[str, str]:
        """String key/values (ONNX ``metadata_props``): ``reid.<field>`` = JSON of the field."""
        out = {f"{META_PREFIX}{k}": json.dumps(v) for k, v in asdict(self).items()}
        out[f"{META_PREFIX}version"] = str(META_VERSION)
        return out

    @classmethod
    def from_metadata(cls, meta: Dict[str, str], source: str) -> "InputSpec":
        """The spec stored by :meth:`to_metadata`; ReidError naming ``source`` when it is missing."""
        fields = {k[len(META_PREFIX):]: v for k, v in meta.items() if k.startswith(META_PREFIX)}
        if "layout" not in fields:
            raise ReidError(f"'{source}' carries no reid-kd input description; expected a file written by "
                            "python -m tools.export")
        try:
            values = {k: json.loads(fields[k]) for k in cls.__dataclass_fields__ if k in fields}
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ReidError(f"'{source}' has a damaged reid-kd input description ({exc})") from None


def test_input(cfg: dict, modality: Optional[str] = None) -> InputSpec:
    """The :class:`InputSpec` of a run configuration's network; ``modality`` (MVD: 'visible'
    or 'infrared', default 'visible') is refused for a method with one test feature."""
    from common import recipes
    method = cfg["method"]["name"]
    recipe = recipes.get(method)
    if modality is not None and modality not in MODALITIES:
        raise ReidError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    hook = getattr(recipe, "test_input", None)
    info = dict(DEFAULT_TEST_INPUT, **(hook(cfg, modality) if hook else {}))
    if modality is not None and not info["modality"]:
        raise ReidError(f"method {method!r} has one test feature for every modality; drop the modality")
    return InputSpec(method=method, layout=info["layout"], height=cfg["data"]["height"],
                     width=cfg["data"]["width"], resize=info["resize"], modality=info["modality"],
                     extract_kwargs=dict(info["extract_kwargs"]))


test_input.__test__ = False  # not a pytest test
