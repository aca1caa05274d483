"""DukeMTMC-VideoReID parser (SPEC section 2.4).

Each ``<split>/<pid>/<tracklet>/`` folder is read in sorted file order and cut into runs of
consecutive files sharing pid and camera (normally one run per folder). Unlike the VKD
reference, which grouped the whole sorted split list by the file-name prefix and so could
merge two folders of the same pid and camera into one tracklet, runs never cross folders.
pid and camera come from the file name; cameras C1..C8 become 0..7.
"""
import os
import re
from typing import List

from common.data.base import Record, list_images, require_dir
from common.data.video_base import VideoSplits, make_video_splits, require_subdir, split_runs
from common.errors import DatasetLayoutError

LAYOUT = ("ROOT/{train,query,gallery}/<pid>/<tracklet>/<pid>_C<cam>_F<frame>_X<...>.jpg "
          "(cameras C1..C8)")

_NAME = re.compile(r"^(-?\d+)_C(\d+)_F(\d+)")


def _parse_name(name: str, folder: str):
    m = _NAME.match(name)
    if m is None:
        raise DatasetLayoutError(f"cannot parse '{os.path.join(folder, name)}'; expected a name "
                                 f"like 0001_C6_F0001_X30001.jpg. Expected layout: {LAYOUT}")
    pid, cam = int(m.group(1)), int(m.group(2))
    if cam < 1:
        raise DatasetLayoutError(f"camera C{cam} in '{os.path.join(folder, name)}'; expected C1..C8")
    return pid, cam - 1


def read_split(split_dir: str) -> List[Record]:
    """All tracklets of one split folder, in sorted pid-folder / tracklet-folder order
    (SPEC 2.4); a tracklet folder whose files change pid or camera gives several runs."""
    records = []
    for pid_name in sorted(os.listdir(split_dir)):
        pid_dir = os.path.join(split_dir, pid_name)
        if not os.path.isdir(pid_dir):
            continue
        for track_name in sorted(os.listdir(pid_dir)):
            track_dir = os.path.join(pid_dir, track_name)
            if not os.path.isdir(track_dir):
                continue
            files = [(f, _parse_name(f, track_dir)) for f in list_images(track_dir)]
            for run in split_runs(files, key=lambda item: item[1]):
                pid, camid = run[0][1]
                records.append(Record(tuple(os.path.join(track_dir, f) for f, _ in run), pid, camid))
    return records


def load_dukevideo(root: str, augmented_gallery: bool = False) -> VideoSplits:
    """Parse DukeMTMC-VideoReID (SPEC 2.4) into tracklet records ``(frame paths, pid, camid)``.

    Train pids are relabelled in ascending raw-pid order; junk pid -1 (if any) is dropped.
    ``augmented_gallery`` appends the queries to the gallery as for MARS; it defaults to
    False because the VKD reference evaluates Duke-Video without that augmentation.
    """
    require_dir(root, LAYOUT)
    splits = [read_split(require_subdir(root, name, LAYOUT)) for name in ("train", "query", "gallery")]
    return make_video_splits(*splits, augmented_gallery=augmented_gallery)
