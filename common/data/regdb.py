"""RegDB visible-thermal parser (SPEC section 2.2).

Layout under ``root``::

    Visible/<dir>/<file>.bmp, Thermal/<dir>/<file>.bmp
    idx/{train,test}_{visible,thermal}_{1..10}.txt   lines "Visible/<dir>/<file>.bmp <label>"

Trials are numbered 1..10 (the reference indexed them off by one). Records carry the label
written in the index file as their pid (training callers relabel with
:func:`common.data.base.relabel`); camid is 0 for visible and 1 for thermal.
"""
import numbers
import os
from typing import List, Tuple

from common.data.base import Record, path_label_lines, require, require_dir
from common.errors import ConfigError, DatasetLayoutError

LAYOUT = ("ROOT/Visible/<dir>/<file>.bmp, ROOT/Thermal/<dir>/<file>.bmp and "
          "ROOT/idx/{train,test}_{visible,thermal}_{1..10}.txt with lines "
          "'Visible/<dir>/<file>.bmp <label>'")

TRIALS = tuple(range(1, 11))
SPLITS = ("train", "test")
MODALITY_CAMID = {"visible": 0, "thermal": 1}
DIRECTIONS = {"v2t": ("visible", "thermal"), "t2v": ("thermal", "visible")}


def _check_choice(value, allowed, what: str):
    if value not in allowed:
        raise ConfigError(f"unknown RegDB {what} {value!r}; expected one of "
                          f"{', '.join(str(a) for a in allowed)}")


def check_trial(trial) -> int:
    """Return ``trial`` as an int if it is one of 1..10 (SPEC 2.2), else raise ConfigError."""
    if isinstance(trial, numbers.Integral) and not isinstance(trial, bool) and int(trial) in TRIALS:
        return int(trial)
    if isinstance(trial, str) and trial.strip().isdigit() and int(trial) in TRIALS:
        return int(trial)
    raise ConfigError(f"RegDB trial must be an integer in 1..10, got {trial!r}")


def trial_records(root: str, trial: int, split: str = "train",
                  modality: str = "visible") -> List[Record]:
    """Records of one index file ``idx/{split}_{modality}_{trial}.txt`` (SPEC 2.2), in file
    order, with image paths joined to ``root``; every listed image must exist."""
    trial = check_trial(trial)
    _check_choice(split, SPLITS, "split")
    _check_choice(modality, tuple(MODALITY_CAMID), "modality")
    require_dir(root, LAYOUT)
    index = require(os.path.join(root, "idx", f"{split}_{modality}_{trial}.txt"), LAYOUT)
    camid = MODALITY_CAMID[modality]
    records = []
    for _, rel, label in path_label_lines(index, "Visible/<dir>/<file>.bmp <label>"):
        path = require(os.path.join(root, *rel.split("/")), LAYOUT)
        records.append(Record(path, label, camid))
    if not records:
        raise DatasetLayoutError(f"'{index}' lists no images. Expected layout: {LAYOUT}")
    return records


def test_sets(root: str, trial: int, direction: str = "v2t") -> Tuple[List[Record], List[Record]]:
    """``(query, gallery)`` of one trial's test identities (SPEC 2.2): ``'v2t'`` queries
    visible images against the thermal gallery, ``'t2v'`` the reverse."""
    _check_choice(direction, tuple(DIRECTIONS), "direction")
    query_mod, gallery_mod = DIRECTIONS[direction]
    return (trial_records(root, trial, "test", query_mod),
            trial_records(root, trial, "test", gallery_mod))
