"""Shared pieces of every dataset parser (SPEC section 2).

A parser returns plain :class:`Record` tuples ``(path, pid, camid)``: ``path`` is one image
path, or a tuple of frame paths for a tracklet; ``camid`` is 0-based. Train pids are
relabelled to ``0..C-1`` in ascending order of the raw pid (never by iterating a set). The
junk pid -1 is dropped everywhere; distractor pid 0 stays in galleries.
"""
import os
from typing import List, NamedTuple, Sequence, Tuple, Union

from common.errors import DatasetLayoutError


class Record(NamedTuple):
    path: Union[str, Tuple[str, ...]]
    pid: int
    camid: int


class ImageSplits(NamedTuple):
    """train / query / gallery record lists plus the number of train identities and cameras."""
    train: List[Record]
    query: List[Record]
    gallery: List[Record]
    num_train_pids: int
    num_train_cams: int


def relabel(records: Sequence[Record]) -> List[Record]:
    """Map raw pids to 0..C-1 in ascending order of the raw pid; drop junk pid -1."""
    kept = [r for r in records if r.pid != -1]
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in kept}))}
    return [Record(r.path, mapping[r.pid], r.camid) for r in kept]


def make_splits(train, query, gallery) -> ImageSplits:
    """Relabel train, drop junk from query/gallery and count train ids and cameras."""
    train = relabel(train)
    query = [r for r in query if r.pid != -1]
    gallery = [r for r in gallery if r.pid != -1]
    return ImageSplits(train, query, gallery, len({r.pid for r in train}),
                       len({r.camid for r in train}))


def require(path: str, layout: str) -> str:
    """Return ``path`` if it exists, else raise one clear error naming it and the layout."""
    if not os.path.exists(path):
        raise DatasetLayoutError(f"missing '{path}'. Expected layout: {layout}")
    return path


def require_dir(root: str, layout: str) -> str:
    if not os.path.isdir(root):
        raise DatasetLayoutError(f"dataset root '{root}' is not a folder. Expected layout: {layout}")
    return root


def path_label_lines(list_path: str, expected: str):
    """Yield ``(lineno, relpath, label)`` for each non-empty ``<relpath> <int label>`` line of a
    list file (RegDB ``idx/*.txt``, MSMT17 ``list_*.txt``); a malformed line raises
    DatasetLayoutError naming the file, the line and ``expected``."""
    with open(list_path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(None, 1)
            try:
                rel, label = parts[0], int(parts[1])
            except (IndexError, ValueError):
                raise DatasetLayoutError(f"'{list_path}' line {lineno} is {line!r}; expected "
                                         f"'{expected}'") from None
            yield lineno, rel.replace("\\", "/"), label


def list_images(folder: str, exts=(".jpg", ".jpeg", ".png", ".bmp")) -> List[str]:
    """Sorted image file names (not paths) inside ``folder``."""
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(exts))


def read_image(path: str):
    """Read an RGB image as a uint8 HxWx3 numpy array; a corrupt file raises DatasetLayoutError."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DatasetLayoutError(f"missing image '{path}'") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetLayoutError(f"cannot read image '{path}' ({e}); expected a JPEG/PNG/BMP file") from None
