"""Features of images from a trained network, in five lines:

    from common.feature_extractor import FeatureExtractor
    extract = FeatureExtractor("logs/toy/torch_best.pth")       # or model.onnx / model.mindir
    feats = extract(["query.jpg", "g1.jpg", "g2.jpg"])           # (3, D) float32
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)        # unit length (MVD, KD-REID: already)
    ranking = np.argsort(-feats[1:] @ feats[0])                  # gallery by cosine similarity

:class:`FeatureExtractor` takes a checkpoint of either framework (run by ``backend``, default
``$REID_BACKEND`` then torch, through the method's ``extract`` as test.py evaluates it) or a
file written by ``python -m tools.export``: ``.onnx`` runs on onnxruntime alone (neither
torch nor MindSpore is imported), ``.mindir`` on MindSpore. Each image (a path, a PIL image
or a uint8 H x W x 3 array) goes through the method's own test transform (rebuilt from the
exported file's description for an exported file; :mod:`common.inference`), in batches of
``batch_size``. VKD sees every image as a one-frame clip (its image-to-X query side); MVD
computes the feature of ``modality`` (fixed in an exported file).
"""
import os
from typing import Optional

import numpy as np

from common.errors import ReidError
from common.exported import OnnxRunner, format_of, read_spec

# lists longer than this show a tqdm bar (on a terminal: tqdm's disable=None)
PROGRESS_MIN_IMAGES = 256


def parse_device(device: str):
    """('CPU', 0) for 'cpu'; ('GPU', N) for 'cuda', 'gpu', 'cuda:N', 'gpu:N'."""
    name, _, index = str(device).lower().partition(":")
    if name == "cpu" and not index:
        return "CPU", 0
    if name in ("cuda", "gpu") and (not index or index.isdigit()):
        return "GPU", int(index or 0)
    raise ReidError(f"unknown device {device!r}; expected cpu, cuda or cuda:N")


def to_array(item, index: int = 0) -> np.ndarray:
    """A uint8 H x W x 3 array from a path, a PIL image or such an array (ReidError naming
    the file or the item otherwise)."""
    if isinstance(item, (str, os.PathLike)):
        from common.data.base import read_image
        return read_image(os.fspath(item))
    if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        return np.asarray(item.convert("RGB"))
    if isinstance(item, np.ndarray):
        if item.ndim == 3 and item.shape[2] == 3 and item.dtype == np.uint8:
            return item
        raise ReidError(f"image {index}: expected a uint8 H x W x 3 array, got {item.dtype} {item.shape}")
    raise ReidError(f"image {index}: expected a file path, a PIL image or a uint8 H x W x 3 array, "
                    f"got {type(item).__name__}")


class FeatureExtractor:
    """``extractor(images) -> (N, D) float32`` (see the module docstring).

    ``path``: a checkpoint (.pth, .ckpt, .safetensors; a VKD run folder with ``method``) or
    an exported ``.onnx`` / ``.mindir``. ``backend``: the framework that runs a checkpoint
    (an exported file runs on its own runtime: ``None``, or 'onnxruntime' / 'mindspore').
    ``device``: 'cpu' or 'cuda[:N]'. ``modality``: MVD's feature (default visible; an
    exported file's is fixed). ``method`` and ``overrides`` describe a checkpoint as
    ``tools.export`` does."""

    def __init__(self, path, backend: Optional[str] = None, device: str = "cpu", batch_size: int = 64,
                 modality: Optional[str] = None, method: Optional[str] = None, overrides=()):
        self.source = os.fspath(path)
        if int(batch_size) < 1:
            raise ReidError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        target, gpu = parse_device(device)
        fmt = format_of(self.source)
        if fmt is None:
            self._open_checkpoint(backend, target, gpu, modality, method, overrides)
            return
        runtime = {"onnx": "onnxruntime", "mindir": "mindspore"}[fmt]
        if backend not in (None, runtime):
            raise ReidError(f"'{self.source}' runs on {runtime}, not {backend}; pass backend=None")
        if fmt == "onnx":
            runner = OnnxRunner(self.source, device)
            self.spec, self._run = runner.spec, runner
        else:
            self.spec = read_spec(self.source)
            import backends
            B = backends.get("mindspore")
            B.device.select_device(target, gpu)
            self._run = B.export.load_exported(self.source)
        self.runtime = runtime
        if modality is not None and modality != self.spec.modality:
            has = f"the {self.spec.modality} feature" if self.spec.modality else "one feature for every modality"
            raise ReidError(f"'{self.source}' computes {has}, not {modality}; export it with --modality {modality}"
                            if self.spec.modality else f"'{self.source}' computes {has}; drop the modality")

    def _open_checkpoint(self, backend, target, gpu, modality, method, overrides):
        from common.checkpoint_model import open_checkpoint
        loaded = open_checkpoint(self.source, backend=backend, method=method, modality=modality,
                                 overrides=overrides, device=target, gpu=gpu)
        self.spec, self.runtime = loaded.spec, loaded.B.name
        B, model, kwargs = loaded.B, loaded.model, loaded.spec.extract_kwargs

        def run(x: np.ndarray) -> np.ndarray:
            return B.engine.extract(model, x, len(x), **kwargs)
        self._run = run

    def transform(self, images) -> np.ndarray:
        """The network input of ``images`` (paths, PIL images, uint8 arrays)."""
        return self.spec.batch([to_array(im, i) for i, im in enumerate(images)])

    def __call__(self, images, progress: Optional[bool] = None) -> np.ndarray:
        """(N, D) float32 features of ``images``: a list of paths, PIL images or uint8
        H x W x 3 arrays, a uint8 N x H x W x 3 array, or one image. ``progress``: a tqdm bar
        (None: for lists longer than PROGRESS_MIN_IMAGES, on a terminal)."""
        if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 3) \
                or hasattr(images, "convert"):
            images = [images]
        items = list(images)
        if not items:
            raise ReidError("FeatureExtractor got no images")
        from tqdm import tqdm
        disable = (None if len(items) > PROGRESS_MIN_IMAGES else True) if progress is None else not progress
        chunks = []
        with tqdm(total=len(items), unit="img", desc="features", leave=False, disable=disable) as bar:
            for start in range(0, len(items), self.batch_size):
                part = items[start:start + self.batch_size]
                batch = self.spec.batch([to_array(im, start + i) for i, im in enumerate(part)])
                chunks.append(np.asarray(self._run(batch), dtype=np.float32))
                bar.update(len(part))
        return np.concatenate(chunks, axis=0)

    def __repr__(self):
        mod = f", modality={self.spec.modality!r}" if self.spec.modality else ""
        return (f"FeatureExtractor({self.source!r}, {self.spec.method}, {self.runtime}, "
                f"{self.spec.height}x{self.spec.width}{mod})")
