"""A trained network from its checkpoint, as test.py evaluates it: the configuration stored
in the checkpoint (or the original MVD code's, or a VKD run folder's facts), what evaluation
may change in it, the recipe's network (``build_for_test``) and its weights. Used by
test.py, ``tools/export.py`` and :class:`common.feature_extractor.FeatureExtractor`.

Framework-free: the backend is imported lazily through :func:`backends.get`. A checkpoint of
either framework (or a neutral ``.safetensors``) loads into either backend: the other
framework's file is converted in memory by ``tools.convert_weights.read_weights`` (which
needs that framework installed to read it).
"""
import os
from typing import NamedTuple, Optional, Sequence

from common.errors import CheckpointError, ConfigError, ReidError

# what evaluation may change for every method (each recipe adds its TEST_KEYS)
COMMON_TEST_KEYS = ("train.resume", "train.seed", "data.*", "runtime.*", "method.name")
# data.data_path for a network built without data (recipes' checks want a dataset root;
# build_for_test reads nothing before evaluate() is called)
NO_DATA = "<no data: inference only>"


def allowed(dotted: str, patterns) -> bool:
    """Whether ``section.key`` matches one of ``patterns`` (``section.key`` or ``section.*``)."""
    section = dotted.split(".")[0]
    return any(p == dotted or p == f"{section}.*" for p in patterns)


def changed_keys(old: dict, new: dict):
    """The dotted keys whose value differs between two configurations."""
    for section, values in new.items():
        for key, value in values.items():
            if (old.get(section) or {}).get(key) != value:
                yield f"{section}.{key}"


def check_test_changes(stored: dict, cfg: dict, what: str = "test.py") -> None:
    """ConfigError when ``cfg`` changes a key of the checkpoint's configuration that shapes
    the trained model (anything but COMMON_TEST_KEYS and the recipe's TEST_KEYS)."""
    from common import recipes
    patterns = COMMON_TEST_KEYS + tuple(recipes.get(cfg["method"]["name"]).TEST_KEYS)
    bad = [k for k in changed_keys(stored, cfg) if not allowed(k, patterns)]
    if bad:
        raise ConfigError(f"{what} cannot change {', '.join(bad)} (it shapes the trained model); "
                          f"evaluation may change {', '.join(patterns)}")


def stored_config(path: str, extra: dict, stored: Optional[dict] = None, method_hint: str = ""):
    """(configuration, num_classes, imported) of a checkpoint from its ``extra``: the
    configuration train.py stored, or ``configs/mvd_original.yaml`` for a checkpoint of the
    original MVD code (``imported`` True), or ``stored`` (a VKD run folder's facts).
    ReidError when none describes the network (``method_hint``: how to describe it)."""
    from common import mvd_import, recipes
    from common.config import load_yaml, validate
    imported = False
    if extra.get("imported_from") == mvd_import.IMPORTED_FROM:
        stored = validate(load_yaml(os.path.join(recipes.CONFIG_DIR, mvd_import.CONFIG_FILE)))
        imported = True
    elif "config" in extra and "num_classes" in extra:
        stored = validate(extra["config"])
    elif stored is None:
        raise ReidError(f"'{path}' carries no reid-kd configuration; expected a checkpoint written by train.py, "
                        f"one of the original MVD code (checkpoint.pth.tar) or a VKD run folder{method_hint}")
    stored = dict(stored)
    num_classes = int(extra.get("num_classes") or stored.pop("num_classes", 0) or 0)
    stored.pop("num_classes", None)
    return stored, num_classes, imported


def read_any_extra(path: str) -> dict:
    """The ``extra`` of a checkpoint of either framework or safetensors (by content)."""
    from tools.convert_weights import read_weights
    return read_weights(path)[1]


def load_weights(B, model, path: str, cfg: dict, any_format: bool = False) -> None:
    """Weights of ``path`` into ``model``: the recipe's ``load_for_test`` when it has one,
    else the backend's strict ``load_checkpoint``; with ``any_format`` the other framework's
    file is converted in memory first (``tools.convert_weights.read_weights``)."""
    from common import recipes
    from common.checkpoint_io import sniff_format
    recipe = recipes.get(cfg["method"]["name"])
    if hasattr(recipe, "load_for_test"):
        recipe.load_for_test(B, model, path, cfg)
    elif any_format and sniff_format(path) not in (B.name, "safetensors"):
        from tools.convert_weights import read_weights
        state = read_weights(path)[0]
        try:
            B.weights.load_numpy_state(model, state, strict=True)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"'{path}' does not fit the network of its configuration: {exc}") from None
    else:
        B.checkpoint.load_checkpoint(path, model)


class LoadedModel(NamedTuple):
    """A network ready for ``extract``: backend, model, configuration, the
    number of classes and the :class:`common.inference.InputSpec` of its test feature."""
    B: object
    model: object
    cfg: dict
    num_classes: int
    spec: object


def _config_of(path: str, method: Optional[str], overrides: Sequence[str]):
    """(path, configuration, num_classes) of a checkpoint file or VKD run folder."""
    from common import recipes
    from common.config import merge, parse_override, resolve, validate
    asked, method = method, recipes.TEST_ALIASES.get(method, method) if method else None
    hint = "; pass --method to describe it by the method's default configuration"
    base = None
    if method:
        base = validate(resolve(recipes.default_config(method), overrides, method=method))
        recipe = recipes.get(method)
        base = recipe.finalize(base) if hasattr(recipe, "finalize") else base
    if os.path.isdir(path):
        recipe = recipes.get(method) if method else None
        if recipe is None or not hasattr(recipe, "test_checkpoint"):
            raise ReidError(f"'{path}' is a folder; expected a checkpoint file (or a VKD run folder with "
                            "--method vkd)")
        path, stored = recipe.test_checkpoint(dict(base, train=dict(base["train"], resume=path)))
    elif not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: '{path}'")
    else:
        stored = base
    stored, num_classes, imported = stored_config(path, read_any_extra(path), stored, "" if method else hint)
    if method and recipes.get(method) is not recipes.get(stored["method"]["name"]):
        raise ConfigError(f"'{path}' holds a {stored['method']['name']!r} model, not {asked!r}")
    cfg = stored
    for item in overrides:
        cfg = merge(cfg, parse_override(item))
    cfg = validate(cfg)
    if not imported:  # the original MVD code's checkpoint: --set describes its network, as in test.py
        check_test_changes(stored, cfg, "export")
    return path, cfg, num_classes


def infer_num_classes(B, cfg: dict, path: str) -> int:
    """The number of classes of a checkpoint that does not store it: the size in which its
    classifier tensors differ from those of the network of ``cfg`` built for one class."""
    from common import recipes
    from tools.convert_weights import read_weights
    state = read_weights(path)[0]
    one = B.weights.state_to_numpy(recipes.get(cfg["method"]["name"]).build_for_test(cfg, B, 1)[0])
    sizes = {int(v.shape[d]) for k, v in state.items() if k in one and v.shape != one[k].shape
             and v.ndim == one[k].ndim for d in range(v.ndim) if one[k].shape[d] == 1 and v.shape[d] != 1}
    if len(sizes) != 1:
        raise CheckpointError(f"cannot tell the number of classes of '{path}' (it stores none and its "
                              "classifier does not fit the network of its configuration)")
    return sizes.pop()


def open_checkpoint(path: str, backend: Optional[str] = None, method: Optional[str] = None,
                    modality: Optional[str] = None, overrides: Sequence[str] = (), device: str = "CPU",
                    gpu: int = 0) -> LoadedModel:
    """The network of checkpoint ``path`` (either framework's file, a ``.safetensors``, or a VKD
    run folder with ``method``) built by ``backend`` (default: ``$REID_BACKEND``, then torch)
    with its weights. ``method`` describes a checkpoint that stores no
    configuration (by the method's default configuration and ``overrides``); ``overrides``
    (``section.key=value``) may change what test.py may change."""
    import backends
    from common import recipes
    from common.inference import test_input
    path, cfg, num_classes = _config_of(os.fspath(path), method, overrides)
    B = backends.get(backend)
    cfg["runtime"] = dict(cfg["runtime"], backend=B.name, device_target=device, gpu=int(gpu))
    cfg["train"] = dict(cfg["train"], resume=path)
    spec = test_input(cfg, modality)
    B.device.select_device(device, int(gpu))
    build_cfg = dict(cfg, data=dict(cfg["data"], data_path=cfg["data"]["data_path"] or NO_DATA))
    if num_classes < 1:
        num_classes = infer_num_classes(B, build_cfg, path)
    model = recipes.get(cfg["method"]["name"]).build_for_test(build_cfg, B, num_classes)[0]
    load_weights(B, model, path, cfg, any_format=True)
    return LoadedModel(B, model, cfg, num_classes, spec)
