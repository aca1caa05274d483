"""VKD run folders (aimagelab/VKD utils/saver.py): reading the reference's, writing ours.

Layout::

    <run>/params/params.json    the run's arguments (``dataset_name``, ``backbone``, ...)
    <run>/params/hparams.json   TriNet's ``{"backbone_type", "num_classes", "pretrained"}``
    <run>/chk/<name>            the network's weights: ``chk_end`` (teacher), ``chk_di_<g>``
                                (student generation g)

A reference folder's ``chk/<name>`` is a torch ``state_dict`` with VKD's module names
(``backbone.features_layers.<i>...``, ``classifier.bottleneck.*``, ``classifier.classifier.*``),
mapped here by name onto this project's (``common.backbones.vkd_checkpoint_key``; the
classifier names are the same). The folders this project writes hold the same JSON files and
``chk/<name>`` in the backend's own checkpoint format (torch: as written by
``backends/torch/checkpoint.py``; MindSpore: ``chk/<name>.ckpt``), so a run of either
framework, or of the reference, can be a teacher or a student, or be evaluated.
This project's own run folders (``config.yaml`` + ``<backend>_last.*``) are accepted too.
"""
import json
import os
from typing import Dict, Tuple

import numpy as np

from common.backbones import canonical_backbone_name, vkd_checkpoint_key
from common.errors import CheckpointError, ConfigError

PARAMS, HPARAMS, CHK = ("params", "params.json"), ("params", "hparams.json"), "chk"
_DATASET_NAMES = {"dukevideo": "duke-video-reid", "mars": "mars", "veri": "veri"}


def is_vkd_state(keys) -> bool:
    """True for the keys of a VKD TriNet state dict."""
    return any(k.startswith("backbone.features_layers.") for k in keys)


def vkd_to_canonical(state: Dict, arch: str) -> Dict:
    """A VKD TriNet state dict under this project's names (num_batches_tracked dropped)."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.startswith("backbone."):
            new = vkd_checkpoint_key(arch, key[len("backbone."):])
            if new is None:
                raise CheckpointError(f"unknown key {key!r} in a VKD checkpoint of a {arch}")
            out[f"backbone.{new}"] = value
        else:
            out[key] = value
    return out


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read '{path}': {e}") from None


def folder_facts(folder: str) -> Tuple[str, int]:
    """(backbone name, number of classes) of a VKD-layout or project run folder."""
    hp = os.path.join(folder, *HPARAMS)
    if os.path.isfile(hp):
        h = _read_json(hp)
        if "backbone_type" not in h or "num_classes" not in h:
            raise CheckpointError(f"'{hp}' lacks backbone_type / num_classes; expected VKD's TriNet hparams")
        return canonical_backbone_name(h["backbone_type"]), int(h["num_classes"])
    cfg_path = os.path.join(folder, "config.yaml")
    if os.path.isfile(cfg_path):
        import yaml
        with open(cfg_path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f) or {}
        arch = (cfg.get("model") or {}).get("arch")
        last = [n for n in os.listdir(folder) if n.endswith(("_last.pth", "_last.ckpt"))]
        if arch and last:
            from tools.convert_weights import read_weights
            return canonical_backbone_name(arch), int(read_weights(os.path.join(folder, last[0]))[1]["num_classes"])
    raise CheckpointError(f"'{folder}' is not a VKD run folder: expected {os.path.join(*HPARAMS)} (with "
                          f"{os.path.join(*PARAMS)} and {CHK}/<name>) or a train.py run folder")


def checkpoint_in(folder: str, name: str) -> str:
    """The file of checkpoint ``name`` in a run folder (VKD's ``chk/<name>``, the MindSpore
    ``chk/<name>.ckpt``, or this project's ``<backend>_last.*`` when ``name`` is chk_end and the
    folder has no chk/)."""
    chk = os.path.join(folder, CHK)
    for candidate in (os.path.join(chk, name), os.path.join(chk, name + ".ckpt"),
                      os.path.join(chk, name + ".safetensors")):
        if os.path.isfile(candidate):
            return candidate
    if not os.path.isdir(chk):
        for candidate in ("torch_last.pth", "mindspore_last.ckpt"):
            if name == "chk_end" and os.path.isfile(os.path.join(folder, candidate)):
                return os.path.join(folder, candidate)
        raise CheckpointError(f"'{folder}' has no {CHK}/ folder; expected VKD's layout ({CHK}/{name})")
    found = sorted(os.listdir(chk))
    raise CheckpointError(f"no checkpoint '{name}' in '{chk}' (found: {', '.join(found) or 'nothing'})")


def load_state(path: str, arch: str) -> Dict[str, np.ndarray]:
    """Canonical weights of any checkpoint file (VKD's plain state dicts mapped by name)."""
    from tools.convert_weights import read_weights
    state, _, _ = read_weights(path)
    return vkd_to_canonical(state, arch) if is_vkd_state(state) else state


def folder_dataset(folder: str) -> str:
    """The dataset a run folder was trained on (``dataset_name`` of params/params.json, in
    this project's spelling), or '' when the folder does not say."""
    path = os.path.join(folder, *PARAMS)
    name = _read_json(path).get("dataset_name", "") if os.path.isfile(path) else ""
    from common.data.video import ALIASES
    return ALIASES.get(str(name).lower(), str(name).lower())


def locate(source: str, chk_name: str, arch: str, num_classes: int, what: str, dataset: str = "") -> Tuple[str, str]:
    """(checkpoint file, backbone) of ``source`` (a run folder or a checkpoint file) after
    checking it against this run: ``arch`` ('' = take the folder's), ``num_classes`` and, when
    both say, the dataset (VKD's Saver.load_net asserts it)."""
    if os.path.isdir(source):
        folder_arch, folder_classes = folder_facts(source)
        trained_on = folder_dataset(source)
        if dataset and trained_on and trained_on != dataset:
            raise ConfigError(f"the {what} in '{source}' was trained on {trained_on}, this run is on {dataset}; "
                              "expected a network trained on this dataset")
        if arch and canonical_backbone_name(arch) != folder_arch:
            raise ConfigError(f"the {what} in '{source}' is a {folder_arch}, but --backbone says {arch}")
        if folder_classes != num_classes:
            raise ConfigError(f"the {what} in '{source}' has {folder_classes} classes, the training set "
                              f"{num_classes} identities; expected a network trained on this dataset")
        return checkpoint_in(source, chk_name), folder_arch
    if not os.path.isfile(source):
        raise CheckpointError(f"{what} '{source}' not found; expected a run folder or a checkpoint file")
    if not arch:
        raise ConfigError(f"the {what} '{source}' is a file: pass --backbone")
    return source, canonical_backbone_name(arch)


def write_run_folder(run_dir: str, B, model, cfg: dict, num_classes: int, chk_name: str) -> str:
    """Write VKD's layout into ``run_dir`` (params/*.json and chk/<chk_name> in the backend's
    format); returns the checkpoint path."""
    from common.checkpoint_io import atomic_output
    for parts, data in ((PARAMS, params_json(cfg)),
                        (HPARAMS, {"backbone_type": cfg["model"]["arch"], "num_classes": num_classes,
                                   "pretrained": bool(cfg["vkd"]["pretrained"])})):
        path = os.path.join(run_dir, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_output(path) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
    path = os.path.join(run_dir, CHK, chk_name + (".ckpt" if B.name == "mindspore" else ""))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    B.checkpoint.save_checkpoint(path, model, None, {"config": cfg, "num_classes": num_classes})
    return path


def params_json(cfg: dict) -> dict:
    """The ``params.json`` VKD's Saver writes (``vars(args)`` of tools/train_v2v.py for
    ``vkd-teacher``, of tools/train_distill.py for ``vkd-student``: the same keys) with this
    run's values. Unlike the reference, ``backbone`` of a student is its real backbone (VKD
    records its unused ``--backbone`` default there)."""
    v, d, s, o = cfg["vkd"], cfg["data"], cfg["schedule"], cfg["optim"]
    common = {"dataset_name": _DATASET_NAMES.get(d["dataset"], d["dataset"]), "backbone": cfg["model"]["arch"],
              "pretrained": v["pretrained"], "set_determinism": v["set_determinism"], "test_batch": d["test_batch"],
              "img_test_batch": v["img_test_batch"], "verbose": v["verbose"], "workers": d["workers"],
              "p": d["num_ids"], "k": d["num_pos"], "num_test_images": v["num_test_images"]}
    schedule = {"num_epochs": s["epochs"], "eval_epoch_interval": cfg["train"]["eval_every"],
                "print_epoch_interval": v["print_epoch_interval"]}
    milestones = {"gamma": s["gamma"], "first_milestone": v["first_milestone"], "step_milestone": v["step_milestone"]}
    if cfg["method"]["name"] == "vkd-student":
        return {**common, "teacher": v["teacher"], "teacher_chk_name": v["teacher_chk_name"],
                "student": v["student"] or None, "student_chk_name": v["student_chk_name"],
                "exp_name": cfg["train"]["ckpt"], "num_generations": v["num_generations"], **schedule,
                "lr": o["lr"], "lr_decay": v["lr_decay"], "temp": v["temp"], "lambda_coeff": v["lambda_coeff"],
                "kl_coeff": v["kl_coeff"], "num_train_images": v["num_train_images"],
                "num_student_images": v["num_student_images"], "train_strategy": v["train_strategy"], **milestones,
                "reinit_l4": v["reinit_l4"], "reinit_l3": v["reinit_l3"], "logits_dist": v["logits_dist"],
                "use_random_erasing": v["use_random_erasing"]}
    return {**common, "exp_name": cfg["train"]["ckpt"], "metric": v["metric"],
            "num_train_images": v["num_train_images"], **schedule, "save_epoch_interval": v["save_epoch_interval"],
            "wd": o["weight_decay"], **milestones, "use_random_erasing": v["use_random_erasing"],
            "train_strategy": v["train_strategy"]}
