"""Grad-CAM pictures of two re-ID networks side by side, framework-free (numpy, scipy, PIL).

Follows aimagelab/VKD tools/save_heatmaps.py (Selvaraju et al., "Grad-CAM", ICCV 2017, eq. 1-2):

* the layer is the output of the last backbone stage (VKD hooks ``features_layers[4]``, i.e.
  ResNet ``layer4`` without its last ReLU); the score is the LARGEST of the network's
  frame-averaged logits (the predicted training identity, VKD ``torch.max(logits, 1)``), not a
  chosen identity nor the embedding; the backends' ``gradcam.feature_map_and_gradient`` give
  the activations A and dscore/dA of every frame;
* :func:`grad_cam`: channel weights = the spatial mean of the gradient, cam = ReLU(sum_c w_c
  A_c), then each frame's map is divided by its L2 norm (VKD ``normalize`` on the flattened
  map), which puts two networks' maps on one footing;
* :func:`upsample`: VKD's ``cv2.blur`` 3x3 (box filter, mirrored border) and bicubic resize
  to the frame size (PIL's bicubic here, cv2's in VKD: the kernels differ slightly);
* :func:`unit_range` scales maps to [0, 1] by their joint minimum and maximum, as matplotlib's
  ``imshow`` scales the colours; VKD's side-by-side picture (``both/``) shows the two networks'
  maps of a frame with ONE colour scale, and so does :func:`tracklet_picture`;
* :func:`jet` is matplotlib's 'jet' colour map (piecewise linear, computed here with numpy);
  :func:`blend` lays it over the de-normalised frame with VKD's alpha 0.4;
* :func:`grid_image` lays out one PNG per tracklet: rows = input frames, first network,
  second network; columns = frames; a text label above and left of the rows (VKD writes
  separate files per frame instead).
"""
from typing import List, NamedTuple, Sequence, Tuple

import numpy as np

from common.transforms import IMAGENET_MEAN, IMAGENET_STD

ALPHA = 0.4          # VKD save_img: the heat map's opacity over the frame
BLUR = 3             # VKD: cv2.blur(attn, (3, 3)) before the resize
LABEL_WIDTH = 56     # pixels left of the cells for the row labels
HEADER_HEIGHT = 14   # pixels above the cells for the tracklet's label
GAP = 2              # pixels after every cell (right and below)
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)

# matplotlib's 'jet' (_cm.py _jet_data): (position, value) breakpoints per channel
_JET = {
    "red": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    "blue": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}


def grad_cam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM maps (V, h, w) of activations and gradients (V, C, h, w): ReLU(sum_c w_c A_c)
    with w_c the spatial mean of dscore/dA_c, each frame's map divided by its L2 norm (a map
    that is zero everywhere stays zero)."""
    a, g = np.asarray(activations, np.float64), np.asarray(gradients, np.float64)
    if a.ndim != 4 or a.shape != g.shape:
        raise ValueError(f"activations and gradients must both be (V, C, h, w), got {a.shape} and {g.shape}")
    weights = g.mean(axis=(2, 3), keepdims=True)
    cam = np.maximum((weights * a).sum(axis=1), 0.0)
    norms = np.sqrt((cam.reshape(len(cam), -1) ** 2).sum(axis=1)).reshape(-1, 1, 1)
    return (cam / np.maximum(norms, 1e-12)).astype(np.float32)


def upsample(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """One map (h, w) blurred by a 3x3 box filter and resized bicubically to (height, width)."""
    from PIL import Image
    from scipy.ndimage import uniform_filter
    blurred = uniform_filter(np.asarray(cam, np.float32), size=BLUR, mode="mirror")
    return np.asarray(Image.fromarray(blurred, mode="F").resize((int(width), int(height)), Image.BICUBIC),
                      np.float32)


def unit_range(maps: np.ndarray) -> np.ndarray:
    """``maps`` scaled to [0, 1] by their joint minimum and maximum (all zeros when constant)."""
    m = np.asarray(maps, np.float32)
    lo, hi = float(m.min()), float(m.max())
    return np.zeros_like(m) if hi - lo <= 0 else (m - lo) / (hi - lo)


def jet(values: np.ndarray) -> np.ndarray:
    """matplotlib's 'jet' colours (..., 3) in [0, 1] of values in [0, 1] (clipped)."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    channels = []
    for name in ("red", "green", "blue"):
        xs, ys = zip(*_JET[name])
        channels.append(np.interp(v, xs, ys))
    return np.stack(channels, axis=-1)


def denormalize(chw: np.ndarray) -> np.ndarray:
    """A test-transformed frame (3, H, W) back to RGB (H, W, 3) in [0, 1] (VKD: ``img * std +
    mean``, clipped)."""
    img = np.asarray(chw, np.float64).transpose(1, 2, 0)
    return np.clip(img * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN), 0.0, 1.0)


def to_uint8(rgb01: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(rgb01) * 255.0), 0, 255).astype(np.uint8)


def blend(rgb01: np.ndarray, heat01: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """uint8 (H, W, 3): ``alpha * jet(heat) + (1 - alpha) * frame``."""
    return to_uint8(alpha * jet(heat01) + (1.0 - alpha) * np.asarray(rgb01, np.float64))


def pair_heatmaps(cams: Sequence[np.ndarray], height: int, width: int) -> List[np.ndarray]:
    """Per network, its frames' maps (V, height, width) in [0, 1]: every map upsampled, and
    the networks' maps of one frame scaled together (one colour scale per frame, module
    docstring)."""
    n_frames = {len(c) for c in cams}
    if len(n_frames) != 1:
        raise ValueError(f"the networks' maps cover different numbers of frames: {sorted(n_frames)}")
    up = np.stack([[upsample(m, height, width) for m in c] for c in cams])  # (networks, V, H, W)
    for f in range(up.shape[1]):
        up[:, f] = unit_range(up[:, f])
    return list(up)


class Layout(NamedTuple):
    """Pixel geometry of a grid picture (cell (r, c) at ``cell_box(r, c)``)."""
    rows: int
    cols: int
    cell_h: int
    cell_w: int

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) of the whole picture."""
        return (LABEL_WIDTH + self.cols * (self.cell_w + GAP), HEADER_HEIGHT + self.rows * (self.cell_h + GAP))

    def cell_box(self, row: int, col: int) -> Tuple[int, int, int, int]:
        """(left, top, right, bottom) of a cell, PIL's crop box."""
        left = LABEL_WIDTH + col * (self.cell_w + GAP)
        top = HEADER_HEIGHT + row * (self.cell_h + GAP)
        return left, top, left + self.cell_w, top + self.cell_h


def grid_image(title: str, rows: Sequence[Tuple[str, Sequence[np.ndarray]]]):
    """A PIL RGB image: ``title`` on top, then one row per ``(label, cells)``; every cell is a
    uint8 (H, W, 3) array of the same size, the label is written left of its row."""
    from PIL import Image, ImageDraw, ImageFont
    if not rows or not rows[0][1]:
        raise ValueError("a grid picture needs at least one row with one cell")
    h, w = np.asarray(rows[0][1][0]).shape[:2]
    cols = max(len(cells) for _, cells in rows)
    layout = Layout(len(rows), cols, h, w)
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((2, 1), title, fill=TEXT, font=font)
    for r, (label, cells) in enumerate(rows):
        top = layout.cell_box(r, 0)[1]
        draw.text((2, top + max(0, (h - 10) // 2)), label, fill=TEXT, font=font)
        for c, cell in enumerate(cells):
            cell = np.asarray(cell, np.uint8)
            if cell.shape != (h, w, 3):
                raise ValueError(f"cell ({r}, {c}) is {cell.shape}, expected {(h, w, 3)}")
            canvas.paste(Image.fromarray(cell, "RGB"), layout.cell_box(r, c)[:2])
    return canvas


def tracklet_picture(title: str, frames: np.ndarray, cams: Sequence[Tuple[str, np.ndarray]]):
    """The picture of one tracklet: ``frames`` (V, 3, H, W) as the test transform gives them
    and per network ``(label, grad_cam maps (V, h, w))``; rows = the frames, then each network's
    heat maps over them."""
    frames = np.asarray(frames)
    height, width = frames.shape[2:]
    rgb = [denormalize(f) for f in frames]
    heat = pair_heatmaps([c for _, c in cams], height, width)
    rows = [("input", [to_uint8(x) for x in rgb])]
    rows += [(label, [blend(x, m) for x, m in zip(rgb, maps)]) for (label, _), maps in zip(cams, heat)]
    return grid_image(title, rows)
