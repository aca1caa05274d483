"""The configuration sections every method shares, with a comment on every default
(fast-reid's ``defaults.py`` habit). Each method's own section lives in its recipe
(``common/recipes/<name>.py``); :func:`common.config.schema` joins them.

Backbone settings live once, in ``model``; the seed's command-line flags map onto these
keys (``common/cli.py``).
"""
from common.backbones import BACKBONE_ALIASES, BACKBONE_NAMES
from common.config import Key
from common.engine.runtime import AMP_MODES

DATASETS = ("SYSU", "RegDB", "mars", "dukevideo", "veri", "market1501", "dukemtmcreid", "msmt17", "cuhk03")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("mvd", "warmup_multistep", "multistep")

BASE = {
    "method": {
        "name": Key("mvd", "training recipe (common/recipes): mvd, vkd-teacher, vkd-student, source, dmmd, kd-reid"),
    },
    "model": {
        "arch": Key("resnet50", "backbone network (backends/<fw>/backbones; common/backbones.py); '' = the "
                                "teacher's (VKD student)", choices=tuple(BACKBONE_NAMES) + tuple(BACKBONE_ALIASES) + ("",)),
        "width": Key(64, "stem width of the backbone; 64 is the real network, smaller values give tiny "
                         "test networks", lo=1),
        "last_stride": Key(1, "stride of the last stage (1 keeps a 2x larger final map, the re-ID habit)",
                           choices=(1, 2)),
        "pretrain": Key("", "ImageNet weights for the backbone (.pth in torchvision layout, or its "
                            ".safetensors conversion); '' trains from scratch"),
    },
    "data": {
        "dataset": Key("SYSU", "dataset name", choices=DATASETS),
        "data_path": Key("", "dataset root folder"),
        "trial": Key(1, "RegDB trial (one model per trial)", lo=1, hi=10),
        "height": Key(288, "input height in pixels (VKD: 0 = the dataset's reference size)", lo=0),
        "width": Key(144, "input width in pixels (VKD: 0 = the dataset's reference size)", lo=0),
        "num_ids": Key(8, "identities per training batch (P)", lo=1),
        "num_pos": Key(4, "images (or tracklets) per identity in a batch (K)", lo=1),
        "workers": Key(0, "data-loading worker processes (0: in the training process, with one "
                          "prefetch thread)", lo=0, hi=64),
        "test_batch": Key(64, "images per forward pass at evaluation", lo=1),
        "eval_trials": Key(10, "gallery draws evaluated (SYSU-MM01 has 10 official trials)", lo=1, hi=10),
        "max_batches": Key(0, "stop each epoch after this many batches (0: the whole epoch; for quick "
                              "checks)", lo=0),
    },
    "optim": {
        "name": Key("adam", "optimizer (torch.optim formulas in both backends)", choices=OPTIMIZERS),
        "lr": Key(3.5e-4, "base learning rate (the schedule scales it)", lo=0.0, lo_open=True),
        "weight_decay": Key(5e-4, "L2 weight decay added to the gradient (not AdamW)", lo=0.0),
        "momentum": Key(0.9, "SGD momentum", lo=0.0, hi=0.999999),
        "nesterov": Key(False, "SGD with Nesterov momentum"),
        "betas": Key([0.9, 0.999], "Adam (beta1, beta2)", lo=0.0, hi=0.999999, length=2),
        "backbone_lr_mult": Key(1.0, "learning-rate multiplier of backbone parameters", lo=0.0, lo_open=True),
        "head_lr_mult": Key(1.0, "learning-rate multiplier of every other trainable parameter",
                            lo=0.0, lo_open=True),
    },
    "schedule": {
        "kind": Key("mvd", "mvd (warm-up then decays between start_decay and end_decay), warmup_multistep "
                           "(linear warm-up from warmup_factor, gamma at milestones) or multistep",
                    choices=SCHEDULES),
        "epochs": Key(80, "training epochs", lo=1),
        "warmup_steps": Key(5, "warm-up epochs", lo=0),
        "warmup_factor": Key(0.01, "warmup_multistep: starting fraction of the learning rate", lo=0.0,
                             hi=1.0, lo_open=True),
        "start_decay": Key(15, "mvd: first epoch of the decay (1-based, as the seed)", lo=0),
        "end_decay": Key(27, "mvd: last epoch of the decay (1-based, as the seed)", lo=0),
        "decay": Key("step", "mvd: 'cascade' multiplies by decay_factor every epoch from start_decay to "
                             "end_decay (the MindSpore port's loop); 'step' once at start_decay and once "
                             "after end_decay", choices=("cascade", "step")),
        "decay_factor": Key(0.1, "mvd: decay multiplier", lo=0.0, hi=1.0, lo_open=True),
        "milestones": Key([100, 200], "multistep / warmup_multistep: epochs where the rate is multiplied "
                                      "by gamma", lo=0),
        "gamma": Key(0.1, "multistep / warmup_multistep decay multiplier", lo=0.0, hi=1.0, lo_open=True),
        "step_offset": Key(0, "epoch e trains with the rate of epoch e + step_offset (1 reproduces a "
                              "scheduler stepped before each epoch)", choices=(0, 1)),
    },
    "train": {
        "seed": Key(0, "random seed (sampling, augmentation, initialisation)", lo=0, hi=2 ** 31 - 1),
        "ckpt": Key("toy", "run name: logs, config and checkpoints go to <log_dir>/<ckpt>/"),
        "log_dir": Key("logs", "parent folder of the run folders"),
        "eval_every": Key(1, "evaluate every this many epochs (and after the last)", lo=1),
        "resume": Key("", "checkpoint to continue from (a <backend>_last file of an earlier run)"),
        "overwrite": Key(False, "allow a fresh run in a run folder that already holds results"),
        "nonfinite": Key("stop", "a non-finite loss: 'stop' (keep the last good checkpoint, exit 2) or "
                                 "'skip' the step without updating (as AMP loss scalers do)",
                         choices=("stop", "skip")),
        "tensorboard": Key(False, "also write the logged scalars (loss terms, learning rates, evaluation "
                                  "metrics) to <run>/tensorboard/ (tensorboardX; pip install 'reid-kd[viz]')"),
        "max_skipped": Key(20, "with nonfinite=skip: stop after this many consecutive skipped steps", lo=1),
        "sync_bn": Key(False, "distributed runs: BatchNorm statistics over the whole global batch (SyncBN) "
                              "instead of each process's own batch"),
    },
    "runtime": {
        "backend": Key("torch", "torch or mindspore (default: $REID_BACKEND, then torch)",
                       choices=("torch", "mindspore")),
        "device_target": Key("CPU", "CPU, GPU or Ascend", choices=("CPU", "GPU", "Ascend")),
        "gpu": Key(0, "device index", lo=0),
        "ms_mode": Key("GRAPH", "MindSpore execution mode of the training step", choices=("GRAPH", "PYNATIVE")),
        "compile_cache": Key("", "MindSpore: folder that keeps compiled graphs for later runs ('' = off)"),
        "amp": Key("off", "mixed precision of the training step: off, fp16 (with dynamic loss scaling) or bf16 "
                          "(evaluation stays float32)", choices=AMP_MODES),
    },
}
