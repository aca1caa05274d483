"""Write a miniature CUHK03 ``cuhk-03.mat`` in the structure of the release (MATLAB v7.3, i.e.
HDF5), so that :mod:`common.data.cuhk03` can be tested reading it directly. Needs h5py.

Structure (as read by torchreid's and this project's CUHK03 code; MATLAB stores arrays
transposed, so every array is written in the transposed layout the readers undo with ``.T``):

* ``detected`` and ``labeled``: a (1, campuses) array of object references, one per campus,
  each to a (10, pids) array of references whose entry (image - 1, pid - 1) points to the
  image stored as (3, W, H) uint8, or to a ``uint64 [0, 0]`` array (MATLAB's empty matrix)
  for a missing shot; images 1-5 are view 1, 6-10 view 2;
* ``testsets``: a (1, splits) array of references, each to a (2, n) float64 array of the
  split's test identities (campus, pid), both 1-based.
"""
from typing import Dict, Sequence, Tuple

import numpy as np

SHOTS = 10  # images per identity in the release (5 per view)


def write_cuhk03_mat(path: str, pixels: Dict[Tuple[str, int, int, int], np.ndarray],
                     testsets: Sequence[Sequence[Tuple[int, int]]]) -> str:
    """Write ``path``: ``pixels[(kind, campus, pid, image_no)]`` is an H x W x 3 uint8 image
    (kind 'detected' or 'labeled', all numbers 1-based; absent entries become empty shots),
    ``testsets[s]`` the (campus, pid) pairs of classic split ``s``. Returns ``path``."""
    import h5py
    campuses = sorted({c for (_, c, _, _) in pixels})
    with h5py.File(path, "w") as f:
        store = f.create_group("#refs#")
        count = [0]

        def put(data):
            count[0] += 1
            return store.create_dataset(f"r{count[0]}", data=data).ref

        for kind in ("detected", "labeled"):
            campus_refs = []
            for campus in campuses:
                num_pids = max(p for (k, c, p, _) in pixels if k == kind and c == campus)
                table = np.empty((SHOTS, num_pids), dtype=h5py.ref_dtype)
                for pid in range(1, num_pids + 1):
                    for shot in range(1, SHOTS + 1):
                        img = pixels.get((kind, campus, pid, shot))
                        data = (np.zeros(2, np.uint64) if img is None
                                else np.ascontiguousarray(np.asarray(img, np.uint8).transpose(2, 1, 0)))
                        table[shot - 1, pid - 1] = put(data)
                campus_refs.append(put(table))
            f.create_dataset(kind, data=np.array([campus_refs], dtype=h5py.ref_dtype))
        split_refs = [put(np.asarray(pairs, np.float64).T) for pairs in testsets]
        f.create_dataset("testsets", data=np.array([split_refs], dtype=h5py.ref_dtype))
    return path
