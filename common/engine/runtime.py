"""The process's runtime policy, framework-free: its place in a distributed launch (rank,
world size, local rank) and the training precision (``--amp``), plus SyncBN. The shared loop
(:func:`common.engine.loop.fit`) sets it once per run with :func:`configure`; each backend's
``engine.TrainStep`` reads it when it is built (:func:`current`), so every method's step gets
gradient averaging, mixed precision and SyncBN without method-specific code.

Launch detection (:func:`detect`): no extra flag; each backend has its launcher.

* torch: ``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``): the process group is gloo on CPU, NCCL on GPU.
* MindSpore: ``msrun`` or MindSpore's dynamic-cluster variables (``MS_ROLE``,
  ``MS_SCHED_HOST``, ``MS_SCHED_PORT``, ``MS_WORKER_NUM``, ``MS_NODE_ID``):
  ``mindspore.communication.init()`` (MindSpore's own collectives on CPU, NCCL on GPU, HCCL
  on Ascend). ``msrun`` also runs the script as its *scheduler* (``MS_ROLE=MS_SCHED``), which
  ends inside ``init()``; it counts as a non-main process.

A process started by the other framework's launcher is refused in one line. Batches are per
process: each rank trains on its own ``data.num_ids`` x ``data.num_pos`` batch (the torchrun
DDP habit), so the global batch is ``world_size`` times larger and an epoch has
``1/world_size`` as many steps per rank (common/samplers.py ``split_for_rank``); gradients
and the logged loss terms are the means over the ranks.
"""
import contextlib
import os
from typing import Mapping, NamedTuple, Optional

from common.errors import ConfigError

AMP_MODES = ("off", "fp16", "bf16")
# dynamic loss scaling of --amp fp16 (torch.amp.GradScaler's defaults; MindSpore's
# amp.DynamicLossScaler gets the same numbers)
LOSS_SCALE_INIT = 2.0 ** 16
LOSS_SCALE_FACTOR = 2
LOSS_SCALE_WINDOW = 2000
# an fp16 overflow (finite loss, non-finite gradient) skips the step and halves the scale
# quietly; once the scale is at or below this, a smaller scale cannot help and the step is
# reported as non-finite (train.nonfinite decides)
MIN_LOSS_SCALE = 1.0
# how long a collective may wait (minutes): the other ranks wait while rank 0 evaluates
COLLECTIVE_TIMEOUT_MINUTES = 180


class Launch(NamedTuple):
    """Where this process sits in a launch (``launcher`` '' for a plain single process)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = ""

    @property
    def distributed(self) -> bool:
        return bool(self.launcher)

    @property
    def is_main(self) -> bool:
        return self.rank == 0 and self.launcher != "msrun-scheduler"


class Runtime(NamedTuple):
    """What every training step of this process follows (see the module docstring)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp: str = "off"
    sync_bn: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_state = {"runtime": Runtime()}


def current() -> Runtime:
    return _state["runtime"]


def configure(**values) -> Runtime:
    """Replace fields of the current policy (unknown names or a bad ``amp`` raise)."""
    new = current()._replace(**values)
    if new.amp not in AMP_MODES:
        raise ConfigError(f"unknown --amp {new.amp!r}: expected one of {', '.join(AMP_MODES)}")
    _state["runtime"] = new
    return new


def reset() -> Runtime:
    """Back to a single process in full precision."""
    _state["runtime"] = Runtime()
    return _state["runtime"]


@contextlib.contextmanager
def using(**values):
    """``with using(amp='bf16'): ...`` (tests): the policy inside, the previous one after."""
    before = current()
    configure(**values)
    try:
        yield current()
    finally:
        _state["runtime"] = before


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    try:
        return int(value) if value != "" else default
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (set by the launcher)") from None


def _torch_launch(env: Mapping[str, str]) -> Optional[Launch]:
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    world = _int(env, "WORLD_SIZE", 1)
    rank = _int(env, "RANK", 0)
    local = _int(env, "LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"the launcher set RANK={rank}, WORLD_SIZE={world}; expected 0 <= RANK < WORLD_SIZE")
    return Launch(rank, world, local, "torchrun")


def _ms_launch(env: Mapping[str, str]) -> Optional[Launch]:
    role = env.get("MS_ROLE", "")
    if not role:
        return None
    world = _int(env, "MS_WORKER_NUM", 1)
    if role == "MS_SCHED":
        return Launch(0, world, 0, "msrun-scheduler")
    # msrun exports RANK_ID; the plain dynamic-cluster variables give MS_NODE_ID (the rank
    # mindspore.communication.get_rank() confirms after init)
    rank = _int(env, "RANK_ID", _int(env, "MS_NODE_ID", 0))
    local = _int(env, "DEVICE_ID", rank)
    return Launch(rank, world, local, "msrun")


def detect(backend: str, env: Optional[Mapping[str, str]] = None) -> Launch:
    """This process's :class:`Launch` from the launcher's environment (module docstring)."""
    env = os.environ if env is None else env
    torch_launch, ms_launch = _torch_launch(env), _ms_launch(env)
    if backend == "torch":
        if ms_launch is not None and torch_launch is None:
            raise ConfigError("msrun started this process but --backend torch runs distributed under torchrun: "
                              "torchrun --nproc_per_node N train.py ... --backend torch")
        return torch_launch or Launch()
    if ms_launch is None and torch_launch is not None and torch_launch.world_size > 1:
        raise ConfigError("torchrun started this process but --backend mindspore runs distributed under msrun: "
                          "msrun --worker_num N --local_worker_num N train.py ... --backend mindspore")
    return ms_launch or Launch()


def launched_rank(env: Optional[Mapping[str, str]] = None) -> int:
    """This process's rank as the launcher's environment gives it, before any framework is
    initialised (-1 for msrun's scheduler; 0 without a launcher): only rank 0 prints errors."""
    env = os.environ if env is None else env
    try:
        launch = _ms_launch(env) or _torch_launch(env) or Launch()
    except ConfigError:
        return 0
    return -1 if launch.launcher == "msrun-scheduler" else launch.rank


def too_many_ranks(batches: int, world_size: int, num_ids: int, num_pos: int) -> ConfigError:
    """The one-line refusal when the sampler cannot give every rank a batch."""
    return ConfigError(f"an epoch gives {batches} training batch(es) of data.num_ids x data.num_pos = {num_ids} x "
                       f"{num_pos}, fewer than the {world_size} processes launched (each trains on batches of its "
                       f"own): launch at most {batches} process(es) or lower data.num_ids / data.num_pos")
