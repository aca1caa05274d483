"""Cross-modal (SYSU-MM01, RegDB) data pipeline of MVD, framework-neutral.

* :func:`load_train_arrays` reads SYSU-MM01's preprocessed ``.npy`` files (or RegDB's trial
  lists, resized at load like the reference) into uint8 NHWC arrays with labels 0..C-1.
* :class:`CrossModalBatches` turns them into ``(rgb, ir, labels)`` float32 NCHW batches with an
  MVD identity sampler and MVD train transforms; every batch's randomness comes from
  ``np.random.default_rng([seed, epoch, batch])`` so a resumed epoch sees the same batches
  and ranks never overlap. A background thread prepares the next batch while the model runs.
* :func:`test_sets` yields the evaluation settings (SYSU all/indoor search per trial, RegDB
  both directions) as numpy image arrays with pids and 0-based camera ids.
"""
import queue
import threading
from typing import Dict, Iterator, List, NamedTuple, Tuple

import numpy as np

from common.data import regdb, sysu
from common.data.base import Record, read_image
from common.errors import ConfigError
from common.samplers import CrossModalIdentitySampler, EpochCrossModalSampler
from common.transforms import CrossModalTest, CrossModalTrain, resize  # noqa: F401 (re-exported)

SAMPLERS = ("port", "original", "routed")

DATASETS = ("SYSU", "RegDB")


def check_dataset(name: str) -> str:
    if name not in DATASETS:
        raise ConfigError(f"unknown cross-modal dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return name


def load_images(paths: List[str], h: int, w: int, desc: str = "loading", method: str = "lanczos") -> np.ndarray:
    """Read and resize (``method``: 'lanczos' or 'bilinear') images to a uint8 (N, h, w, 3)
    array, with a progress bar."""
    from tqdm import tqdm
    out = np.empty((len(paths), h, w, 3), np.uint8)
    for i, p in enumerate(tqdm(paths, desc=desc, leave=False, disable=len(paths) < 200)):
        out[i] = resize(read_image(p), h, w, method)
    return out


def _relabel(labels: np.ndarray, mapping: Dict[int, int]) -> np.ndarray:
    return np.array([mapping[int(v)] for v in labels], np.int64)


def load_train_arrays(dataset: str, root: str, trial: int = 1, h: int = 288, w: int = 144):
    """``(rgb_img, rgb_label, ir_img, ir_label, num_classes)`` for training.

    SYSU: the ``.npy`` files of ``pre_process_sysu.py`` (labels already 0..C-1, SPEC 2.1).
    RegDB: ``idx/train_{visible,thermal}_<trial>.txt`` read and resized to h x w; labels are
    relabelled in ascending order of the file's labels (SPEC 2).
    """
    check_dataset(dataset)
    if dataset == "SYSU":
        rgb, rgb_y, ir, ir_y = sysu.load_preprocessed(root)
        mapping = {v: i for i, v in enumerate(sorted(set(rgb_y.tolist()) | set(ir_y.tolist())))}
        return rgb, _relabel(rgb_y, mapping), ir, _relabel(ir_y, mapping), len(mapping)
    vis = regdb.trial_records(root, trial, "train", "visible")
    the = regdb.trial_records(root, trial, "train", "thermal")
    mapping = {v: i for i, v in enumerate(sorted({r.pid for r in vis} | {r.pid for r in the}))}
    rgb = load_images([r.path for r in vis], h, w, "RegDB visible")
    ir = load_images([r.path for r in the], h, w, "RegDB thermal")
    return (rgb, _relabel(np.array([r.pid for r in vis]), mapping), ir,
            _relabel(np.array([r.pid for r in the]), mapping), len(mapping))


def make_sampler(kind: str, rgb_labels, ir_labels, num_ids: int, num_pos: int, seed: int):
    """The identity sampler of a recipe: 'port' (ids without replacement per batch, images with
    replacement, ``N // (B*P)`` batches: the MindSpore port's ``IdentitySampler`` after
    ``drop_remainder``), 'routed' (the same with ``N // (B*P) + 1`` batches) or 'original'
    (an epoch permutation of identities: the original code's ``CamRandomIdentitySampler``)."""
    if kind not in SAMPLERS:
        raise ConfigError(f"unknown cross-modal sampler {kind!r}; expected one of {', '.join(SAMPLERS)}")
    try:
        if kind == "original":
            return EpochCrossModalSampler(rgb_labels, ir_labels, num_ids, num_pos, seed)
        return CrossModalIdentitySampler(rgb_labels, ir_labels, num_ids, num_pos, seed,
                                         extra_batch=(kind == "routed"))
    except ValueError as e:  # too few identities for data.num_ids: a configuration problem
        raise ConfigError(f"{e}; lower data.num_ids (--set data.num_ids=N)") from None


class CrossModalBatches:
    """The MVD training batch source (the contract of :mod:`common.data.loader`): a sampler from
    :func:`make_sampler` and one train transform per stream (``rgb_tf``, ``ir_tf``:
    :class:`common.transforms.CrossModalTrain`). ``B.data.make_loader(source, epoch, workers)``
    serves it from worker processes; :meth:`epoch` is the in-process iterator with a prefetch
    thread."""

    columns = ("rgb", "ir", "labels")

    def __init__(self, rgb, rgb_labels, ir, ir_labels, rgb_tf, ir_tf, sampler, seed=0, max_batches=0,
                 rank=0, world_size=1):
        self.rgb, self.ir = rgb, ir
        self.rgb_labels, self.ir_labels = np.asarray(rgb_labels), np.asarray(ir_labels)
        self.sampler, self.rgb_tf, self.ir_tf = sampler, rgb_tf, ir_tf
        self.seed, self.max_batches = seed, max_batches
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        n = self.sampler.num_batches // self.world_size
        return min(n, self.max_batches) if self.max_batches else n

    def items(self, epoch: int) -> list:
        """This rank's sampler items of ``epoch``: ``(rgb_idx, ir_idx, labels)`` per batch."""
        return self.sampler.batches(epoch, self.rank, self.world_size)[:len(self)]

    def make_batch(self, epoch: int, index: int, item) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        rgb_idx, ir_idx, labels = item
        rng = np.random.default_rng([self.seed, epoch, index, self.rank])
        rgb = np.stack([self.rgb_tf(self.rgb[i], rng) for i in rgb_idx])
        ir = np.stack([self.ir_tf(self.ir[i], rng) for i in ir_idx])
        return rgb, ir, labels

    def epoch(self, epoch: int, prefetch: int = 2) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield this rank's batches of ``epoch``; a worker thread keeps ``prefetch`` ready."""
        items = self.items(epoch)
        if prefetch <= 0:
            for i, it in enumerate(items):
                yield self.make_batch(epoch, i, it)
            return
        q: "queue.Queue" = queue.Queue(maxsize=prefetch)
        stop = threading.Event()

        def work():
            try:
                for i, it in enumerate(items):
                    if stop.is_set():
                        return
                    q.put(self.make_batch(epoch, i, it))
                q.put(None)
            except BaseException as e:  # surface loader errors in the consumer
                q.put(e)

        t = threading.Thread(target=work, daemon=True)
        t.start()
        try:
            while True:
                got = q.get()
                if got is None:
                    return
                if isinstance(got, BaseException):
                    raise got
                yield got
        finally:
            stop.set()


class EvalSet(NamedTuple):
    """One evaluation setting: query/gallery images (uint8 NHWC), pids, cameras, modalities."""
    name: str
    protocol: str
    query: np.ndarray
    q_pids: np.ndarray
    q_cams: np.ndarray
    q_modality: str
    gallery: np.ndarray
    g_pids: np.ndarray
    g_cams: np.ndarray
    g_modality: str


def _arrays(records: List[Record], h, w, desc, method="lanczos"):
    return (load_images([r.path for r in records], h, w, desc, method),
            np.array([r.pid for r in records], np.int64), np.array([r.camid for r in records], np.int64))


def check_trials(dataset: str, root: str, trials: int) -> str:
    """The SYSU-MM01 gallery source ('rand_perm_cam.mat' or 'seeded draw'), after checking
    that the permutation file (when present) holds ``trials`` rows; '' for RegDB."""
    if dataset != "SYSU":
        return ""
    available = sysu.gallery_trials(root)
    if available is not None and trials > available:
        raise ConfigError(f"data.eval_trials={trials} but {sysu.rand_perm_path(root)} holds {available} trials; "
                          f"pass --trials {available} or fewer")
    return sysu.gallery_source(root)


def test_sets(dataset: str, root: str, h: int, w: int, trials=range(10), modes=("all", "indoor"),
              regdb_trial: int = 1, seed: int = 0, method: str = "lanczos",
              number_shot: int = 1) -> Iterator[EvalSet]:
    """Evaluation settings (SPEC 2.1, 2.2, 5).

    SYSU: query = IR images of cams 3/6 (read once); for each mode and trial a single-shot
    (``number_shot=1``) or multi-shot (10) gallery from ``rand_perm_cam.mat`` when the root has one, else drawn with
    ``default_rng([seed, trial])`` (see ``sysu.gallery_source``; names like ``all/trial0``). The
    gallery images are read once and indexed per trial. RegDB: ``v2t`` and ``t2v`` of
    ``regdb_trial``.
    """
    check_dataset(dataset)
    if dataset == "RegDB":
        for direction in ("v2t", "t2v"):
            q, g = regdb.test_sets(root, regdb_trial, direction)
            qa, ga = _arrays(q, h, w, "RegDB query", method), _arrays(g, h, w, "RegDB gallery", method)
            qm, gm = ("visible", "infrared") if direction == "v2t" else ("infrared", "visible")
            yield EvalSet(direction, "regdb", *qa, qm, *ga, gm)
        return
    query = _arrays(sysu.query_records(root), h, w, "SYSU query", method)
    for mode in modes:
        full = sysu.gallery_pool(root, mode)
        index = {r.path: i for i, r in enumerate(full)}
        images, pids, cams = _arrays(full, h, w, f"SYSU {mode} gallery", method)
        for trial in trials:
            pick = np.array([index[r.path] for r in sysu.gallery_records(root, mode, trial, number_shot, seed)])
            yield EvalSet(f"{mode}/trial{trial}", "sysu", *query, "infrared",
                          images[pick], pids[pick], cams[pick], "visible")


def to_batches(images: np.ndarray, h: int, w: int, batch_size: int, method: str = "lanczos") -> Iterator[np.ndarray]:
    """Test-transform ``images`` (uint8 NHWC) into float32 NCHW batches."""
    tf = CrossModalTest(h, w, method)
    for s in range(0, len(images), batch_size):
        yield np.stack([tf(im) for im in images[s:s + batch_size]])
