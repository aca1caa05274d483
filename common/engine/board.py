"""TensorBoard scalars of a run (``train.py --tensorboard``), written with tensorboardX so that
neither backend needs the other framework's writer, and read back without TensorBoard.

:class:`ScalarBoard` receives each epoch's ``metrics.jsonl`` entry (the loop calls
:meth:`ScalarBoard.epoch` after :meth:`common.engine.rundir.RunLog.record`) and writes, at
step = the epoch (0-based):

* ``loss/<term>``: the epoch's mean of every loss term the method logs (``total`` included);
* ``lr/group<i>``: the learning rate of every optimizer parameter group;
* ``time/epoch_seconds``;
* ``eval/<setting>/<metric>``: R1, R10, R20, mAP, mINP of every evaluation row of an
  evaluated epoch (per-trial rows included, e.g. ``eval/all/trial0/R1``; the ``cmc`` list is
  left to ``metrics.jsonl``).

TensorBoard stores a scalar as float32: a value read back equals ``np.float32`` of the
logged number. The writer is opened after the run folder exists and closed by the loop in
every case (``<run>/tensorboard/``; ``--overwrite`` removes the previous one).
"""
import glob
import math
import os
import struct
from collections import defaultdict
from typing import Dict, List, Tuple

from common.optional import require

FOLDER = "tensorboard"
PURPOSE = "train.py --tensorboard"
_SKIPPED = ("epoch", "lrs", "seconds", "eval")


def _tag(text: str) -> str:
    """TensorBoard's tag alphabet: letters, digits, '_', '-', '.', '/'; anything else -> '_'."""
    return "".join(c if c.isalnum() or c in "_-./" else "_" for c in str(text))


def scalars_of(entry: dict) -> Dict[str, float]:
    """The scalars of one ``metrics.jsonl`` epoch entry (tags in the module docstring)."""
    out = {f"loss/{_tag(k)}": float(v) for k, v in entry.items()
           if k not in _SKIPPED and isinstance(v, (int, float)) and not isinstance(v, bool)}
    for g, lr in enumerate(entry.get("lrs", ())):
        out[f"lr/group{g}"] = float(lr)
    if "seconds" in entry:
        out["time/epoch_seconds"] = float(entry["seconds"])
    for row in entry.get("eval") or ():
        for k, v in row.items():
            if k != "setting" and isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"eval/{_tag(row.get('setting', ''))}/{_tag(k)}"] = float(v)
    return out


class ScalarBoard:
    """A tensorboardX writer into ``<run folder>/tensorboard``; :meth:`close` is idempotent."""

    def __init__(self, run_dir: str):
        tbx = require("tensorboardX", PURPOSE)
        self.folder = os.path.join(run_dir, FOLDER)
        self.writer = tbx.SummaryWriter(logdir=self.folder, flush_secs=30)

    def epoch(self, entry: dict) -> None:
        """Write the scalars of one epoch entry and flush (TensorBoard shows them at once)."""
        step = int(entry["epoch"])
        for tag, value in scalars_of(entry).items():
            if math.isfinite(value):
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _records(path: str):
    """The payloads of a TFRecord file (length u64, its masked CRC u32, data, data CRC u32)."""
    with open(path, "rb") as f:
        while True:
            head = f.read(12)
            if len(head) < 12:
                return
            (length,) = struct.unpack("<Q", head[:8])
            data = f.read(length)
            f.read(4)
            if len(data) < length:
                return
            yield data


def read_scalars(folder: str) -> Dict[str, List[Tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of every event file under ``folder`` (files in name
    order, i.e. in order of creation; a resumed run adds a file), parsed with tensorboardX's
    ``Event`` protocol buffer."""
    event_pb2 = require("tensorboardX.proto.event_pb2", "reading TensorBoard event files")
    out: Dict[str, List[Tuple[int, float]]] = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), "events.out.tfevents.*"))):
        for data in _records(path):
            event = event_pb2.Event.FromString(data)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out[value.tag].append((int(event.step), float(value.simple_value)))
    return dict(out)
