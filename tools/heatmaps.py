"""Grad-CAM pictures of a VKD teacher and its student side by side, one PNG per tracklet
(follows aimagelab/VKD tools/save_heatmaps.py; the maps and the layout: ``common/gradcam.py``).

    python -m tools.heatmaps DATASET --data-path DIR --teacher FOLDER --student FOLDER
        [--tracklets 3] [--ids PID ...] [--num-frames 8] [--out DIR] [--backend torch|mindspore]
        [--teacher-chk chk_end] [--student-chk chk_di_1] [--height H --width W]

The tracklets are the test split's video queries (VeRi: the reference's video queries), the
first ``--tracklets`` of distinct identities, or the first query tracklet of each ``--ids``
identity; each is cut to ``--num-frames`` frames by the evaluation's chunked crop and goes
through the dataset's test transform. Each network runs in eval mode; its score is its largest
frame-averaged logit (VKD's choice). The input size is the teacher run's (its stored
configuration), else the dataset's reference size, unless ``--height/--width`` say otherwise.
A picture has three rows (the frames, the teacher's maps, the student's maps) and one column
per frame; it is written to ``OUT/<teacher>__vs__<student>/<n>_id<pid>_cam<c>.png`` (VKD's
``<net1>__vs__<net2>`` folder; n = the query's index, c = the 1-based camera) and its path
printed. Errors (missing folder or checkpoint, unknown identity, unreadable frame) are one
line on stderr and exit status 2.
"""
import argparse
import os
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np

from common.errors import CheckpointError, ConfigError

DEFAULT_OUT = "heatmaps_out"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.heatmaps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("dataset", help="mars, dukevideo or veri")
    p.add_argument("--data-path", required=True, help="dataset root folder")
    p.add_argument("--teacher", required=True, help="the teacher's run folder (VKD layout or train.py's)")
    p.add_argument("--student", required=True, help="the student's run folder")
    p.add_argument("--teacher-chk", default="chk_end", help="the teacher's checkpoint name (chk/<name>)")
    p.add_argument("--student-chk", default="chk_di_1", help="the student's checkpoint name (chk/<name>)")
    p.add_argument("--tracklets", type=int, default=3, help="query tracklets of distinct identities to draw")
    p.add_argument("--ids", type=int, nargs="+", default=None, help="draw the first query tracklet of these identities")
    p.add_argument("--num-frames", type=int, default=8, help="frames per tracklet (the evaluation's chunked crop)")
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    p.add_argument("--backend", default=None, help="torch or mindspore (default: $REID_BACKEND, then torch)")
    p.add_argument("--height", type=int, default=0, help="input height (0: the teacher run's, else the dataset's)")
    p.add_argument("--width", type=int, default=0, help="input width (0: the teacher run's, else the dataset's)")
    return p.parse_args(argv)


def load_network(B, folder: str, chk_name: str, what: str):
    """(network in eval mode, the run's stored configuration or {}) of a run folder."""
    from common.config import defaults_of, schema
    from common.recipes import vkd_folders
    from tools.convert_weights import read_weights
    if not os.path.isdir(folder):
        raise CheckpointError(f"{what} folder '{folder}' not found; expected a VKD run folder "
                              f"(train.py --method vkd-{what})")
    arch, num_classes = vkd_folders.folder_facts(folder)
    state, extra, _ = read_weights(vkd_folders.checkpoint_in(folder, chk_name))
    if vkd_folders.is_vkd_state(state):
        state = vkd_folders.vkd_to_canonical(state, arch)
    stored = extra.get("config") if isinstance(extra.get("config"), dict) else {}
    model_cfg = dict(defaults_of(schema())["model"], **(stored.get("model") or {}))
    model_cfg["arch"] = arch
    model = B.vkd.build_model({"model": model_cfg}, num_classes)
    B.weights.load_numpy_state(model, state)
    return model, stored


def pick_tracklets(pids: Sequence[int], ids: Optional[Sequence[int]], count: int, dataset: str) -> List[int]:
    """Indices of the query tracklets to draw: the first of each identity in ``ids``, else the
    first ``count`` of distinct identities."""
    pids = [int(p) for p in pids]
    if ids:
        missing = [i for i in ids if i not in pids]
        if missing:
            known = sorted(set(pids))
            shown = ", ".join(map(str, known[:20])) + (" ..." if len(known) > 20 else "")
            raise ConfigError(f"identity {missing[0]} has no query tracklet in the {dataset} test split; "
                              f"expected one of {shown}")
        return [pids.index(int(i)) for i in ids]
    if count < 1:
        raise ConfigError(f"--tracklets must be >= 1, got {count}")
    out, seen = [], set()
    for n, pid in enumerate(pids):
        if pid not in seen:
            seen.add(pid)
            out.append(n)
        if len(out) == count:
            break
    return out


def input_size(dataset: str, stored: dict, height: int, width: int) -> Tuple[int, int]:
    from common.data.video import settings
    s = settings(dataset)
    data = stored.get("data") or {}
    h = height or int(data.get("height") or 0) or s.height
    w = width or int(data.get("width") or 0) or s.width
    if h < 1 or w < 1:
        raise ConfigError(f"--height and --width must be positive, got {h} x {w}")
    return h, w


def load_clip(paths: Sequence[str], transform) -> np.ndarray:
    """(1, V, 3, H, W) float32 of the frame files through the test transform."""
    from common.data.base import read_image
    return np.stack([transform.one(read_image(p)) for p in paths])[None].astype(np.float32)


def write_heatmaps(args) -> List[str]:
    """Write the pictures; return their paths (module docstring)."""
    import backends
    from common import gradcam
    from common.data.video import settings, test_transform
    from common.data.video_eval import eval_protocols, load_vkd_splits
    dataset = settings(args.dataset).name
    if args.num_frames < 1:
        raise ConfigError(f"--num-frames must be >= 1, got {args.num_frames}")
    B = backends.get(args.backend)
    teacher, stored = load_network(B, args.teacher, args.teacher_chk, "teacher")
    student, _ = load_network(B, args.student, args.student_chk, "student")
    if not os.path.isdir(args.data_path):
        raise ConfigError(f"dataset folder '{args.data_path}' not found; expected the {dataset} root")
    splits = load_vkd_splits(dataset, args.data_path)
    side = eval_protocols(dataset, protocols=["V2V"], num_test_images=args.num_frames, augment_gallery=False,
                          splits=splits)["V2V"].query
    chosen = pick_tracklets(side.pids, args.ids, args.tracklets, dataset)
    transform = test_transform(dataset, input_size(dataset, stored, args.height, args.width))
    folder = os.path.join(args.out, f"{_run_name(args.teacher)}__vs__{_run_name(args.student)}")
    os.makedirs(folder, exist_ok=True)
    written = []
    for n in chosen:
        clip = load_clip(side.frames[n], transform)
        cams = [(label, gradcam.grad_cam(*B.gradcam.feature_map_and_gradient(net, clip)))
                for label, net in (("teacher", teacher), ("student", student))]
        pid, cam = int(side.pids[n]), int(side.camids[n]) + 1
        picture = gradcam.tracklet_picture(f"{dataset} query {n}: id {pid}, cam {cam}", clip[0], cams)
        path = os.path.join(folder, f"{n}_id{pid}_cam{cam}.png")
        picture.save(path)
        written.append(path)
        print(path, flush=True)
    return written


def _run_name(folder: str) -> str:
    return os.path.basename(os.path.normpath(folder)) or "run"


def main(argv=None) -> int:
    from common.cli import run_main
    args = parse_args(argv)

    def run() -> int:
        write_heatmaps(args)
        return 0
    return run_main(run)


if __name__ == "__main__":
    sys.exit(main())
