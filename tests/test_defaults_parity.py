"""Parameter names and defaults: the numpy spec (common.losses), backends/torch and
backends/mindspore agree (``inspect.signature``: names, kinds, defaults, in order), and a
default that stands for a configuration key equals the schema's default
(``common.config.schema``: the shared sections and every recipe's section).

The table ``ROWS`` is the only thing to edit: a new loss, optimizer or network constructor
joins with one row (``test_every_shared_callable_has_a_row`` fails until it does).
"""
import importlib
import inspect
from typing import Dict, NamedTuple, Optional, Tuple

import pytest

from common import recipes
from common.config import defaults_of, schema

DEFAULTS = {}
for _method in recipes.METHODS:
    DEFAULTS.update(defaults_of(schema(_method)))

BOTH = ("torch", "mindspore")


class Row(NamedTuple):
    module: str                       # backend module, e.g. "losses" -> backends.<fw>.losses
    name: str                         # name in the backends
    spec: Optional[str] = None        # name in common.losses (None: no numpy spec)
    keys: Dict[str, str] = {}         # parameter -> "section.key" of common.config.DEFAULTS
    backends: Tuple[str, ...] = BOTH  # backends that define it


LOSS_KEYS = {"loss_func": "mvd.loss_func", "margin": "mvd.margin", "T": "mvd.T", "kl_form": "mvd.kl_form",
             "vml_weight": "mvd.vml_weight"}
SINKHORN_KEYS = {"eps": "mvd.sinkhorn_eps", "max_iter": "mvd.sinkhorn_iter", "thresh": "mvd.sinkhorn_thresh"}
MVD_NET_KEYS = {"arch": "model.arch", "width": "model.width", "last_stride": "model.last_stride",
                **{k: f"mvd.{k}" for k in ("shallow_cam", "z_dim", "ib_hidden", "cls_hidden", "dropout", "flow",
                                           "gray_coeffs", "gray_ir", "neck_bias", "classifier_bias", "head_init",
                                           "test_feature", "test_norm")}}
ROWS = [
    # losses: numpy spec and both backends
    Row("losses", "cross_entropy", "cross_entropy"),
    Row("losses", "triplet_batch_hard", "triplet_batch_hard", {"margin": "mvd.margin"}),
    Row("losses", "pairwise_distances", "pairwise_distances"),
    Row("losses", "pairwise_squared_distances", "pairwise_squared_distances"),
    Row("losses", "log_softmax", "log_softmax", backends=("mindspore",)),
    Row("losses", "kd_kl", "kd_kl", {"tau": "vkd.temp"}),
    Row("losses", "kd_mse", "kd_mse"),
    Row("losses", "distance_preserving", "distance_preserving"),
    Row("losses", "vsd", "vsd", {"T": "mvd.T"}),
    Row("losses", "vcd", "vcd", {"T": "mvd.T"}),
    Row("losses", "vml", "vml"),
    Row("losses", "kl_div_original", "kl_div_original", {"T": "mvd.T"}),
    Row("losses", "rank_loss", "rank_loss"),
    Row("losses", "sinkhorn_distance", "sinkhorn_distance", SINKHORN_KEYS),
    Row("losses", "mmd_kernel", "mmd_kernel"),
    Row("losses", "mmd", "mmd"),
    Row("losses", "dmmd_distance_sets", "dmmd_distance_sets"),
    Row("losses", "dmmd", "dmmd"),
    Row("losses", "cosine_distance_matrix", "cosine_distance_matrix"),
    Row("losses", "cosine_relation_kd", "cosine_relation_kd"),
    Row("losses", "mvd_loss", "mvd_total", LOSS_KEYS),
    Row("losses", "mvd_port_total", "mvd_port_total", {k: LOSS_KEYS[k] for k in ("loss_func", "margin", "T")}),
    Row("losses", "mvd_original_total", "mvd_original_total",
        {"epsilon": "mvd.label_smooth", "T": "mvd.T", "w_cml": "mvd.w_cml", "w_vsd": "mvd.w_vsd",
         "w_vcd": "mvd.w_vcd", "sinkhorn_eps": "mvd.sinkhorn_eps", "sinkhorn_iter": "mvd.sinkhorn_iter",
         "sinkhorn_thresh": "mvd.sinkhorn_thresh"}),
    # optimizers
    Row("optim", "build_optimizer", keys={k: f"optim.{k}" for k in ("name", "lr", "weight_decay", "momentum",
                                                                    "nesterov", "betas")}),
    Row("optim", "split_groups"),
    Row("optim", "set_group_lrs"),
    Row("optim", "get_group_lrs"),
    # networks
    Row("backbones", "build_backbone"),
    Row("backbones", "build_reid_model"),
    Row("backbones", "load_pretrained_by_name"),
    Row("backbones.resnet", "ResNet", keys={"width": "model.width", "last_stride": "model.last_stride"}),
    Row("backbones.resnet", "BasicBlock"),
    Row("backbones.resnet", "Bottleneck"),
    Row("backbones.resnet", "ChannelAttention"),
    Row("backbones.resnet", "batch_norm2d"),
    Row("heads", "BNNeck"),
    Row("heads", "IBHead", keys={"z_dim": "mvd.z_dim", "hidden": "mvd.ib_hidden"}),
    Row("heads", "IBClassifier", keys={"hidden": "mvd.cls_hidden", "dropout": "mvd.dropout"}),
    Row("heads", "init_linear"),
    Row("heads", "init_bn"),
    Row("mvd", "MVDEncoder"),
    Row("mvd", "MVDNet", keys=MVD_NET_KEYS),
    Row("mvd", "MVDTrainer"),
    Row("mvd", "build_model"),
    Row("mvd", "extract"),
    Row("mvd", "global_average_pool"),
    Row("mvd", "grayscale3"),
    Row("vkd", "TriNet", keys={"arch": "model.arch"}),
    Row("vkd", "TeacherTrainer"),
    Row("vkd", "StudentTrainer"),
    Row("vkd", "build_model"),
    Row("vkd", "extract"),
    Row("vkd", "teacher_mode"),
    Row("vkd", "student_mode"),
    Row("reid", "ReIDNet", keys={"arch": "model.arch", "width": "model.width", "last_stride": "model.last_stride"}),
    Row("engine", "TrainStep"),
    Row("engine", "extract"),
]
# Disagreements with common.config known today, with the reason. The test fails when one is
# fixed (delete its entry) and on any disagreement not listed here.
KNOWN_CONFIG_MISMATCHES = {}
SEARCHED = ("losses", "optim", "heads", "mvd", "vkd", "reid", "engine", "backbones", "backbones.resnet")


def _row_id(row: Row) -> str:
    return f"{row.module}.{row.name}"


def _signature(obj):
    """(name, kind, default) of every parameter, in order; annotations are ignored."""
    return [(p.name, p.kind.name, p.default) for p in inspect.signature(obj).parameters.values()]


def _same(default, configured) -> bool:
    """Equal values; a tuple default matches a YAML list, a float default an int value, and
    bools match bools only."""
    if isinstance(default, (list, tuple)) and isinstance(configured, (list, tuple)):
        return tuple(default) == tuple(configured)
    if isinstance(default, bool) or isinstance(configured, bool):
        return type(default) is type(configured) and default == configured
    return default == configured


@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_names_and_defaults_agree(row):
    places = {}
    if row.spec is not None:
        places["spec"] = getattr(importlib.import_module("common.losses"), row.spec)
    for fw in row.backends:
        pytest.importorskip(fw)
        places[fw] = getattr(importlib.import_module(f"backends.{fw}.{row.module}"), row.name)
    assert len(places) >= 2, f"{_row_id(row)}: a row needs at least two places"
    sigs = {place: _signature(obj) for place, obj in places.items()}
    first, reference = next(iter(sigs.items()))
    for place, sig in sigs.items():
        assert sig == reference, f"{_row_id(row)}: {place} has {sig}, {first} has {reference}"

    defaults = {name: default for name, _, default in reference}
    mismatches = {}
    for param, key in row.keys.items():
        section, name = key.split(".")
        assert param in defaults, f"{_row_id(row)} has no parameter {param!r} (stale row)"
        assert name in DEFAULTS[section], f"no configuration key {key!r} (stale row)"
        if not _same(defaults[param], DEFAULTS[section][name]):
            mismatches[(_row_id(row), param)] = (defaults[param], DEFAULTS[section][name])
    known = {k for k in KNOWN_CONFIG_MISMATCHES if k[0] == _row_id(row)}
    assert set(mismatches) == known, (f"defaults vs common.config.DEFAULTS (default, config): {mismatches}; "
                                      f"known: {sorted(known)}")


def _defined_in(module_name):
    module = importlib.import_module(module_name)
    return {n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))
            and getattr(getattr(module, n), "__module__", None) == module_name}


def test_every_shared_callable_has_a_row():
    """Every public function or class defined in both backends' module (of SEARCHED), or in
    the numpy spec and a backend, is in ROWS."""
    pytest.importorskip("torch")
    pytest.importorskip("mindspore")
    listed = {(r.module, r.name) for r in ROWS}
    spec_module = importlib.import_module("common.losses")
    spec = {n for n in spec_module.__all__ if callable(getattr(spec_module, n))}
    missing = []
    for module in SEARCHED:
        torch_names = _defined_in(f"backends.torch.{module}")
        ms_names = _defined_in(f"backends.mindspore.{module}")
        shared = torch_names & ms_names
        if module == "losses":
            shared |= (torch_names | ms_names) & spec
        missing += [(module, n) for n in sorted(shared) if (module, n) not in listed]
    assert not missing, f"add a row to ROWS for {missing}"
