"""Resize the SYSU-MM01 training images into four .npy arrays (SPEC section 2.1).

    python pre_process_sysu.py --data-path ROOT [--height 288 --width 144]

Reads the pids of ``exp/train_id.txt`` and ``exp/val_id.txt``, resizes every training image
of the RGB cameras (1, 2, 4, 5) and of the IR cameras (3, 6) to ``width x height`` with PIL
LANCZOS, and writes into ROOT::

    train_rgb_resized_img.npy   (N_rgb, H, W, 3) uint8     train_rgb_resized_label.npy (int64)
    train_ir_resized_img.npy    (N_ir, H, W, 3) uint8      train_ir_resized_label.npy  (int64)

Labels are 0..C-1 in ascending order of the raw pid, one map shared by both modalities
(built from every pid that has a training image). Images are ordered by pid, then camera,
then file name. Each array is first written to a temporary file inside ROOT (memory-mapped,
so the 2.8 GB RGB array of the real data set never sits in memory) and the four files are
renamed into place only after every image was read: an error leaves nothing half-written.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

from common.data import sysu
from common.data.base import read_image, relabel
from common.errors import DatasetLayoutError, ReidError


def _resize(path: str, height: int, width: int) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(read_image(path)).resize((width, height), Image.LANCZOS))


def _temp_npy(root: str, name: str) -> str:
    fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=root)
    os.close(fd)
    return path


def preprocess(root: str, height: int = 288, width: int = 144, progress: bool = True) -> dict:
    """Write the four training arrays of SYSU-MM01 into ``root`` (SPEC 2.1); return the
    counts ``{'rgb': N_rgb, 'ir': N_ir, 'ids': C}``. Raises ReidError on a wrong root or a
    corrupt image, leaving no new ``.npy`` behind."""
    if height < 1 or width < 1:
        raise ReidError(f"--height and --width must be positive, got {height}x{width}")
    records = relabel(sysu.train_records(root))
    groups = {"rgb": [r for r in records if not sysu.is_ir(r.camid)],
              "ir": [r for r in records if sysu.is_ir(r.camid)]}
    for modality, group in groups.items():
        if not group:
            cams = sysu.IR_CAMS if modality == "ir" else sysu.RGB_CAMS
            raise DatasetLayoutError(
                f"no {modality.upper()} training images under '{root}' in cams "
                f"{','.join(map(str, cams))} for the pids of exp/train_id.txt and exp/val_id.txt. "
                f"Expected layout: {sysu.LAYOUT}")
    from tqdm import tqdm
    temps = {}  # final name -> temporary path
    try:
        with tqdm(total=len(records), desc="SYSU-MM01 train", unit="img", disable=not progress) as bar:
            for modality, group in groups.items():
                img_name = f"train_{modality}_resized_img.npy"
                temps[img_name] = _temp_npy(root, img_name)
                images = np.lib.format.open_memmap(temps[img_name], mode="w+", dtype=np.uint8,
                                                   shape=(len(group), height, width, 3))
                for i, r in enumerate(group):
                    images[i] = _resize(r.path, height, width)
                    bar.update(1)
                images.flush()
                del images
                label_name = f"train_{modality}_resized_label.npy"
                temps[label_name] = _temp_npy(root, label_name)
                with open(temps[label_name], "wb") as f:
                    np.save(f, np.array([r.pid for r in group], dtype=np.int64))
        for name, tmp in temps.items():
            os.replace(tmp, os.path.join(root, name))
        temps.clear()
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.remove(tmp)
    return {"rgb": len(groups["rgb"]), "ir": len(groups["ir"]), "ids": len({r.pid for r in records})}


def main(argv=None) -> int:
    """Command line of :func:`preprocess`; prints ``error: ...`` and returns 2 on a ReidError."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-path", required=True, help="SYSU-MM01 root (holds cam1..cam6 and exp/)")
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=144)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    a = p.parse_args(argv)
    try:
        counts = preprocess(a.data_path, a.height, a.width, progress=not a.no_progress)
    except ReidError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {counts['rgb']} RGB and {counts['ir']} IR images of {counts['ids']} identities "
          f"({a.height}x{a.width}) to {a.data_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
