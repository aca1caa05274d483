"""VKD training data, framework-free (follows aimagelab/VKD data/datasets.py, data/misc.py,
data/samplers.py, data/temporal_transforms.py, tools/train_v2v.py and tools/train_distill.py).

* :data:`SETTINGS` holds the per-dataset choices of the reference's ``get_transforms``: input
  size (MARS, Duke-Video 256x128; VeRi 224x224), bicubic resize, pad 10, random erasing p 0.5,
  area (0.02, 0.4), aspect (0.3, 3.3) or VeRi's (0.7, 1.4), 10 attempts (torchvision's
  RandomErasing of the reference's time), and which evaluation protocols and gallery
  augmentation the reference uses (``DATA_CONFS``).
* :class:`VideoTrainBatches` is the batch source (see :mod:`common.data.loader`) of both VKD
  training stages:

  - teacher (``train_v2v.py``): P identities x K tracklets per batch (:class:`PKSampler`, the
    reference's ``ReIDBatchSampler``: ``n_ids // P`` batches an epoch, K tracklets of an
    identity drawn without replacement, with replacement when it has fewer than K), N =
    ``num_train_images`` frames per tracklet by the random chunked crop ('chunk'); N = 1
    gives the image-to-image teacher (VeRi's ``--num_train_images 1``);
  - student (``train_distill.py``, ``num_student_images`` M > 0): the same sampler; each
    sample's N views come from the tracklets of its identity, any camera ('multiview'); the
    teacher sees the N augmented views, the student the SAME augmented frames at M positions
    drawn as the first M of a random permutation of the N views (the reference permutes the
    views of every sample in its training loop; here the permutation is part of the batch).

  Every frame is augmented independently (resize, pad, crop, flip, normalise, erase).

  Batch layout (the reference's net takes ``(B, V, C, H, W)`` and averages over V):
  ``frames`` float32 (P*K, N, 3, H, W), identity-major (row ``p*K + k``); ``pids`` int64
  (P*K,); ``camids`` int64 (P*K,) (the camera of the sampled tracklet, as the reference
  returns even for multiview samples); distillation adds ``student_idx`` int64 (P*K, M): the
  student's input is ``frames[b, student_idx[b]]`` (see :func:`student_views`).

The reference Dataset's ``teacher_mode`` (augmented plus un-augmented copies of each clip) is
never switched on by its training scripts and is not reproduced.

Bad input: a corrupt, zero-byte or missing frame raises :class:`DatasetLayoutError` naming the
file (from :func:`common.data.base.read_image`; raised in a worker it reaches the training
loop with the same type and message). Skipping would silently change the batch; the
reference's loader cut the clip short at a missing file and then failed to stack the batch.
Missing and zero-byte frames (an interrupted copy or extraction) are found up front by
:func:`check_frame_files` (one ``stat`` a frame, about a second for MARS), before a run
writes anything; a non-empty but undecodable frame only when it is read.
"""
import os
from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from common.data.base import Record, read_image
from common.data.loader import batch_rng
from common.data.temporal import STRATEGIES, select_frames
from common.errors import ConfigError, DatasetLayoutError
from common.samplers import PKSampler, group_by_pid
from common.transforms import VideoTest, VideoTrain

PROTOCOLS = ("I2V", "V2V", "I2I", "V2I")  # the reference's evaluation order


class VideoDataSettings(NamedTuple):
    """Per-dataset settings of the VKD reference (data/misc.py, data/datasets.py DATA_CONFS)."""
    name: str
    height: int
    width: int
    erase_aspect: Tuple[float, float]
    augment_gallery: bool          # queries prepended to the gallery at evaluation (MARS)
    protocols: Tuple[str, ...]     # the protocols the reference evaluates


SETTINGS: Dict[str, VideoDataSettings] = {
    "mars": VideoDataSettings("mars", 256, 128, (0.3, 3.3), True, ("I2V", "V2V")),
    "dukevideo": VideoDataSettings("dukevideo", 256, 128, (0.3, 3.3), False, ("I2V", "V2V")),
    "veri": VideoDataSettings("veri", 224, 224, (0.7, 1.4), False, PROTOCOLS),
}
ALIASES = {"duke-video-reid": "dukevideo", "duke_video": "dukevideo", "dukemtmc-videoreid": "dukevideo",
           "veri776": "veri", "veri-776": "veri"}
PAD = 10
ERASE_P = 0.5
ERASE_AREA = (0.02, 0.4)
ERASE_ATTEMPTS = 10      # torchvision RandomErasing (0.4-0.7), which the reference used
TEST_BATCH = 32          # reference --test_batch (video sides)
IMG_TEST_BATCH = 512     # reference --img_test_batch (image sides)
# the reference's commands.txt: teacher (train_v2v.py) per dataset, student (train_distill.py)
TEACHER_ARGS = {"mars": {"P": 8, "K": 4, "num_train_images": 8, "strategy": "chunk"},
                "dukevideo": {"P": 8, "K": 4, "num_train_images": 8, "strategy": "chunk"},
                "veri": {"P": 18, "K": 4, "num_train_images": 1, "strategy": "chunk"}}
STUDENT_ARGS = {"P": 12, "K": 4, "num_train_images": 8, "num_student_images": 2, "strategy": "multiview"}


def settings(name: str) -> VideoDataSettings:
    """The :data:`SETTINGS` of dataset ``name`` (case-insensitive; reference names accepted)."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in SETTINGS:
        raise ConfigError(f"unknown VKD dataset {name!r}; expected one of {', '.join(SETTINGS)}")
    return SETTINGS[key]


def _size(s: VideoDataSettings, size) -> Tuple[int, int]:
    return (int(size[0]), int(size[1])) if size else (s.height, s.width)


def train_transform(name: str, erase_p: float = ERASE_P, size=None) -> VideoTrain:
    """The reference's train pipeline for dataset ``name`` (``erase_p=0``: no erasing);
    ``size`` = (height, width) overrides the dataset's input size."""
    s = settings(name)
    h, w = _size(s, size)
    return VideoTrain(h, w, erase_p=erase_p, erase_area=ERASE_AREA,
                      erase_aspect=s.erase_aspect, erase_attempts=ERASE_ATTEMPTS, pad=PAD)


def test_transform(name: str, size=None) -> VideoTest:
    """The reference's test pipeline for dataset ``name``: bicubic resize, normalise
    (``size`` overrides the dataset's input size)."""
    return VideoTest(*_size(settings(name), size))


test_transform.__test__ = False  # not a pytest test


def student_views(frames: np.ndarray, student_idx: np.ndarray) -> np.ndarray:
    """The student's input ``(B, M, 3, H, W)``: ``frames[b, student_idx[b]]`` for every row b."""
    idx = np.asarray(student_idx, dtype=np.int64)
    return np.take_along_axis(frames, idx[:, :, None, None, None], axis=1)


def check_frame_files(frame_lists: Sequence[Sequence[str]], what: str) -> None:
    """DatasetLayoutError naming the first missing or zero-byte frame of ``frame_lists`` (and
    how many there are); ``what`` says which split they belong to."""
    bad = []
    for frames in frame_lists:
        for path in frames:
            try:
                empty = os.stat(path).st_size == 0
            except OSError:
                empty = True
            if empty:
                bad.append(path)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DatasetLayoutError(f"{what} frame '{bad[0]}' is missing or empty (0 bytes){more}; expected a "
                                 "JPEG/PNG/BMP file: copy or extract the dataset again")


def _check_train_args(records, P, K, N, M, strategy, world_size):
    if not records:
        raise ConfigError("the VKD train split holds no tracklets; check the dataset root")
    if int(N) < 1:
        raise ConfigError(f"num_train_images must be >= 1, got {N}")
    if int(M) < 0 or int(M) > int(N):
        raise ConfigError(f"num_student_images={M} must be at most num_train_images={N} (the student "
                          f"sees a subset of the teacher's views) and >= 0 (0: teacher training)")
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown train strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if int(P) < 1 or int(K) < 1:
        raise ConfigError(f"P and K must be >= 1, got P={P}, K={K}")
    counts = [len(v) for v in group_by_pid([r.pid for r in records]).values()]
    if int(P) > len(counts):
        raise ConfigError(f"P={P} identities per batch but the train split has only {len(counts)} "
                          f"identities; lower P (--p)")
    if max(counts) < int(K):
        raise ConfigError(f"every identity has fewer than K={K} tracklets (at most {max(counts)}); "
                          f"lower K (--k) to {max(counts)} or less")
    if len(counts) // int(P) < int(world_size):
        raise ConfigError(f"an epoch has {len(counts) // int(P)} batches of P={P} identities, fewer "
                          f"than the {world_size} ranks; lower P or use fewer ranks")


class VideoTrainBatches:
    """Batch source of VKD teacher (``num_student_images=0``) or student training (module
    docstring). ``records`` are the relabelled train tracklets of a VKD parser."""

    def __init__(self, records: Sequence[Record], transform: VideoTrain, P: int = 18, K: int = 4,
                 num_train_images: int = 8, num_student_images: int = 0, strategy: str = "",
                 seed: int = 0, rank: int = 0, world_size: int = 1, max_batches: int = 0):
        strategy = strategy or ("multiview" if num_student_images else "chunk")
        _check_train_args(records, P, K, num_train_images, num_student_images, strategy, world_size)
        self.records = list(records)
        self.transform = transform
        self.num_train_images, self.num_student_images = int(num_train_images), int(num_student_images)
        self.strategy = strategy
        self.seed, self.rank, self.world_size, self.max_batches = int(seed), int(rank), int(world_size), int(max_batches)
        self.sampler = PKSampler([r.pid for r in self.records], P, K, seed)
        by_pid = group_by_pid([r.pid for r in self.records])
        self.candidates = {pid: [self.records[i].path for i in idx] for pid, idx in by_pid.items()}
        self.columns = ("frames", "pids", "camids") + (("student_idx",) if self.num_student_images else ())

    @property
    def frames_per_batch(self) -> int:
        return self.sampler.P * self.sampler.K * self.num_train_images

    def __len__(self) -> int:
        n = self.sampler.num_batches // self.world_size
        return min(n, self.max_batches) if self.max_batches else n

    def items(self, epoch: int) -> List[List[int]]:
        """This rank's batches of ``epoch``: lists of P*K tracklet indices (identity-major)."""
        return self.sampler.batches(epoch, self.rank, self.world_size)[:len(self)]

    def make_batch(self, epoch: int, index: int, item: Sequence[int]) -> Tuple[np.ndarray, ...]:
        rng = batch_rng(self.seed, epoch, index, self.rank)
        N, tf = self.num_train_images, self.transform
        frames = np.empty((len(item), N, 3, tf.h, tf.w), np.float32)
        for b, t in enumerate(item):
            rec = self.records[int(t)]
            paths = select_frames(self.strategy, rec.path, N, rng, self.candidates[rec.pid])
            for n, path in enumerate(paths):
                frames[b, n] = tf.one(read_image(path), rng)
        pids = np.array([self.records[int(t)].pid for t in item], np.int64)
        camids = np.array([self.records[int(t)].camid for t in item], np.int64)
        if not self.num_student_images:
            return frames, pids, camids
        student = np.stack([rng.permutation(N)[:self.num_student_images] for _ in item]).astype(np.int64)
        return frames, pids, camids, student


def build_train_batches(dataset: str, records: Sequence[Record], P: int, K: int, num_train_images: int,
                        num_student_images: int = 0, strategy: str = "", seed: int = 0, rank: int = 0,
                        world_size: int = 1, max_batches: int = 0, erase_p: float = ERASE_P,
                        size=None) -> VideoTrainBatches:
    """:class:`VideoTrainBatches` with the reference's transform for ``dataset`` (input
    ``size`` = (height, width) when given)."""
    return VideoTrainBatches(records, train_transform(dataset, erase_p, size), P, K, num_train_images,
                             num_student_images, strategy, seed, rank, world_size, max_batches)
