"""KD-REID data (the ``source``, ``dmmd`` and ``kd-reid`` recipes of
``common/recipes/kdreid.py``): datasets, P x K batch plans, the batch source, evaluation.

Follows fremigereau/MTDA_KD_REID ``torchreid/data/datamanager.py`` (``ImageDataManager``
with ``train_sampler='RandomIdentitySampler'``, ``load_train_targets=True``: one P x K train
loader for the source and one per target, ``drop_last``) and the engines' loops:

* every stream is a :class:`common.samplers.RandomIdentitySampler` over a train set (target
  identities are used only to lay batches out P x K, as the reference's target loaders do);
  its epoch ``key`` (:func:`stream_key`) gives a fresh permutation, so a stream restarted in
  the middle of an epoch draws a new one, as re-creating a DataLoader iterator does;
* a plan is the list of one epoch's batch items; an item is ``(parts, extras)`` with parts
  ``(stream_id, indices)`` and small int extras. :class:`PlannedBatches` turns a plan into
  the batch-source contract of ``common/data/loader.py`` (images read from disk and
  transformed per batch, randomness from ``(seed, epoch, index)``).
"""
from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from common.data.base import ImageSplits, Record, read_image
from common.data.loader import batch_rng
from common.data.registry import load_image_dataset
from common.errors import ConfigError
from common.samplers import RandomIdentitySampler

IMAGE_DATASETS = ("market1501", "dukemtmcreid", "msmt17", "cuhk03")
SUB_KEYS = 4096  # permutations per stream and epoch (restarts, target positions)
METRIC = "sqeuclidean"  # evaluation distance (torchreid's default 'euclidean' is the squared distance)


def stream_key(epoch: int, sub: int = 0) -> int:
    """The sampler 'epoch' of permutation ``sub`` of ``epoch`` (see the module docstring)."""
    return int(epoch) * SUB_KEYS + int(sub)


def load_dataset(name: str, cfg: dict) -> ImageSplits:
    """Dataset ``name`` under ``data.data_path``; CUHK03 labelled (``kdreid.cuhk03_labeled``)
    with the classic split 0, or the new protocol with ``kdreid.new_cuhk`` (MTDA's scripts:
    ``cuhk03_labeled=True, cuhk03_classic_split=not args.new_cuhk``)."""
    k = cfg["kdreid"]
    kw = {"labeled": k["cuhk03_labeled"], "classic": not k["new_cuhk"]} if name == "cuhk03" else {}
    return load_image_dataset(name, cfg["data"]["data_path"], **kw)


def protocol_of(name: str, cfg: dict) -> str:
    """Evaluation protocol: the CUHK03 single-gallery-shot metric for the classic split, the
    standard one otherwise. (MTDA passes ``use_metric_cuhk03=True`` for every target, which
    its Cython evaluator applies to every data set and to the new CUHK03 protocol too; that
    evaluation bug is not reproduced.)"""
    return "cuhk03" if name == "cuhk03" and not cfg["kdreid"]["new_cuhk"] else "market1501"


def combine_train(splits: Sequence[ImageSplits]) -> Tuple[List[Record], int]:
    """Train records of several data sets with pids offset one after the other (torchreid's
    ``sum(trainset)``) and the total number of identities."""
    out, offset = [], 0
    for s in splits:
        out += [Record(r.path, r.pid + offset, r.camid) for r in s.train]
        offset += s.num_train_pids
    return out, offset


def reference_length(pids: Sequence[int], P: int, K: int) -> int:
    """``len(DataLoader)`` of torchreid's RandomIdentitySampler with ``drop_last``: its
    estimated length ``sum_pid (max(n, K) - max(n, K) % K)`` divided by the batch size P*K
    (MTDA's batch engine runs this many steps per pass, restarting exhausted loaders)."""
    _, counts = np.unique(np.asarray(pids), return_counts=True)
    length = sum(max(int(n), K) - max(int(n), K) % K for n in counts)
    return length // (P * K)


class Stream:
    """One train set's P x K permutations (``perm(key)``), with the set's records."""

    def __init__(self, name: str, records: Sequence[Record], P: int, K: int, seed: int):
        self.name, self.records, self.P, self.K = name, list(records), int(P), int(K)
        pids = [r.pid for r in self.records]
        counts = np.unique(pids, return_counts=True)[1] if pids else np.zeros(0)
        if counts.size < self.P:
            raise ConfigError(f"{name}: {counts.size} training identities, fewer than the {self.P} a batch needs "
                              f"(--batch-size / --num-instances); use a smaller batch")
        if counts.max() < self.K:
            raise ConfigError(f"{name}: no training identity has {self.K} images (at most {int(counts.max())}); "
                              f"a P x K batch would repeat every image: lower --num-instances")
        self.sampler = RandomIdentitySampler(pids, self.P, self.K, seed)
        self.reference_len = reference_length(pids, self.P, self.K)

    def perm(self, key: int) -> List[List[int]]:
        return self.sampler.batches(key)


class Cursor:
    """Batches of a stream one after the other across restarts (a DataLoader iterator that
    is re-created when exhausted). ``restart='continue'`` walks each fresh permutation to its
    end; ``'reference'`` reproduces MTDA's batch engine, which re-creates an exhausted target
    loader for every later batch without keeping the new iterator, so each later batch is the
    FIRST batch of yet another fresh permutation."""

    def __init__(self, stream: Stream, epoch: int, first_sub: int = 0, restart: str = "continue"):
        self.stream, self.epoch, self.sub, self.restart = stream, int(epoch), int(first_sub), restart
        self.batches, self.pos, self.exhausted = stream.perm(stream_key(epoch, self.sub)), 0, False

    def next(self) -> List[int]:
        if self.pos >= len(self.batches):
            self.sub += 1
            self.batches, self.pos = self.stream.perm(stream_key(self.epoch, self.sub)), 0
            self.exhausted = True
        batch = self.batches[self.pos]
        self.pos = len(self.batches) if self.exhausted and self.restart == "reference" else self.pos + 1
        return batch


class PlannedBatches:
    """Batch source (``common/data/loader.py``) of one epoch's plan. A batch holds, for each
    part ``(stream_id, indices)``, the transformed images (float32 NCHW) and the pids, then
    each extra as an int64 array."""

    def __init__(self, streams: Sequence[Stream], transform, seed: int, epoch: int, plan: list, columns):
        self.streams, self.transform, self.seed = list(streams), transform, int(seed)
        self.epoch, self.plan, self.columns = int(epoch), list(plan), tuple(columns)

    def __len__(self) -> int:
        return len(self.plan)

    def items(self, epoch: int) -> list:
        if epoch != self.epoch:
            raise ValueError(f"this plan is for epoch {self.epoch}, not {epoch}")
        return self.plan

    def make_batch(self, epoch: int, index: int, item) -> Tuple[np.ndarray, ...]:
        parts, extras = item
        rng = batch_rng(self.seed, epoch, index, 0)
        out = []
        for stream_id, indices in parts:
            records = [self.streams[stream_id].records[i] for i in indices]
            out.append(np.stack([self.transform(read_image(r.path), rng) for r in records]).astype(np.float32))
            out.append(np.array([r.pid for r in records], dtype=np.int64))
        out += [np.asarray(e, dtype=np.int64) for e in extras]
        return tuple(out)


def cut(plan: list, max_batches: int) -> list:
    return plan[:max_batches] if max_batches else plan


# ---------------------------------------------------------------- evaluation

class EvalSet(NamedTuple):
    name: str
    query: List[Record]
    gallery: List[Record]
    protocol: str


class ImageBatches:
    """Batch source of test images (one epoch, no randomness): ``(images,)`` per batch."""

    columns = ("images",)

    def __init__(self, records: Sequence[Record], transform, batch_size: int):
        self.records, self.transform, self.batch_size = list(records), transform, int(batch_size)

    def __len__(self) -> int:
        return -(-len(self.records) // self.batch_size)

    def items(self, epoch: int) -> list:
        return [list(range(s, min(s + self.batch_size, len(self.records))))
                for s in range(0, len(self.records), self.batch_size)]

    def make_batch(self, epoch: int, index: int, item) -> Tuple[np.ndarray]:
        return (np.stack([self.transform(read_image(self.records[i].path)) for i in item]).astype(np.float32),)


def eval_sets(cfg: dict, names: Sequence[str], splits: Dict[str, ImageSplits] = None) -> List[EvalSet]:
    """The test sets of ``names`` (loaded unless given in ``splits``)."""
    out = []
    for name in names:
        s = splits[name] if splits and name in splits else load_dataset(name, cfg)
        out.append(EvalSet(name, s.query, s.gallery, protocol_of(name, cfg)))
    return out


def extract_features(B, model, records: Sequence[Record], cfg: dict) -> np.ndarray:
    """Test features (N, D) of ``records``: the L2-normalised embeddings of the test transform
    (resize to ``data.height`` x ``data.width``, ImageNet normalisation), eval mode."""
    from common.transforms import ImageTest
    d = cfg["data"]
    src = ImageBatches(records, ImageTest(d["height"], d["width"]), d["test_batch"])
    parts = [B.kdreid.extract(model, b[0], d["test_batch"]) for b in B.data.make_loader(src, 0, d["workers"])]
    return np.concatenate(parts)


def evaluate_sets(B, model, sets: Sequence[EvalSet], cfg: dict) -> List[dict]:
    """One row per set (``setting`` = the data set's name) and, with several sets, a ``mean``
    row (MTDA's ``Engine.test``: the mean Rank-1 and mAP over the targets). Test feature:
    :func:`extract_features`; distance: :data:`METRIC` (torchreid's default metric)."""
    from common.metrics import evaluate_features
    from common.report import mean_rows, summarize
    rows = []
    for s in sets:
        qf, gf = extract_features(B, model, s.query, cfg), extract_features(B, model, s.gallery, cfg)
        res = evaluate_features(qf, gf, [r.pid for r in s.query], [r.pid for r in s.gallery],
                                [r.camid for r in s.query], [r.camid for r in s.gallery],
                                protocol=s.protocol, metric=METRIC, max_rank=20)
        rows.append({"setting": s.name, **summarize(res)})
    if len(rows) > 1:
        rows.append({"setting": "mean", **mean_rows([{k: v for k, v in r.items() if k != "setting"} for r in rows])})
    return rows
