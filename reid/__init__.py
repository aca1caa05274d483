"""The Python API: ``train.py`` and ``test.py`` as objects, and the feature extractor.

    import reid
    run = reid.Run("configs/demo.yaml", data_path="demo_data/SYSU-MM01", backend="mindspore", epochs=5)
    summary = run.fit()                         # the same loop, checkpoints and logs as train.py
    print(run.evaluate())                       # test.py on the best checkpoint: one row per setting
    feats = reid.FeatureExtractor(run.checkpoint())(["a.jpg", "b.jpg"])   # (2, D) numpy array

Keyword arguments are train.py's flags (``data_path`` for ``--data-path``, ``num_train_images``
for VKD's ``--num_train_images``, ``ds`` for KD-REID's ``-ds``, ``as_`` for ``-as``; a list gives several values,
``True`` a switch), ``overrides`` any configuration key (``{"optim.lr": 1e-3}`` or
``["optim.lr=1e-3"]``); a positional list gives a reference's positionals (VKD:
``["mars", "logs/teacher"]``). Nothing else is needed: the configuration is resolved exactly as
on the command line (``run.config`` shows it).
"""
import os
from typing import Dict, Iterable, List, Optional, Sequence, Union

from common.errors import ConfigError

__all__ = ["Run", "FeatureExtractor"]


def __getattr__(name):
    if name == "FeatureExtractor":
        from common.feature_extractor import FeatureExtractor
        return FeatureExtractor
    raise AttributeError(f"module 'reid' has no attribute {name!r}")


def _option(parser, name: str) -> str:
    """The option string of ``parser`` that keyword ``name`` stands for."""
    options = {o for a in parser._actions for o in a.option_strings}
    name = name.rstrip("_")  # as_ for -as (a Python keyword)
    for candidate in (f"--{name.replace('_', '-')}", f"--{name}", f"-{name}", f"-{name.replace('_', '-')}"):
        if candidate in options:
            return candidate
    shown = ", ".join(sorted(o.lstrip("-").replace("-", "_") for o in options if o.startswith("--")))
    raise ConfigError(f"unknown argument {name!r}; expected one of train.py's flags: {shown}")


def command_line(parser, config: Optional[str], positionals: Sequence[str], overrides, flags: Dict) -> List[str]:
    """train.py/test.py arguments equivalent to the API call (module docstring)."""
    argv = list(positionals)
    if config:
        argv += ["--config", config]
    items = [f"{k}={v}" for k, v in overrides.items()] if isinstance(overrides, dict) else list(overrides)
    for item in items:
        argv += ["--set", item]
    for name, value in flags.items():
        opt = _option(parser, name)
        if value is True:
            argv.append(opt)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            argv += [opt, *map(str, value)]
        else:
            argv += [opt, str(value)]
    return argv


class Run:
    """One training run (module docstring): ``fit()``, ``evaluate()``, ``checkpoint()``."""

    def __init__(self, config: Optional[str] = None, positionals: Sequence[str] = (),
                 overrides: Union[Dict, Iterable[str]] = (), **flags):
        import train
        from common.cli import config_from_args
        self._parser, self._flags = train.make_parser()
        self.argv = command_line(self._parser, config, positionals, overrides, flags)
        self.config = config_from_args(self._parser.parse_intermixed_args(self.argv), self._flags)
        self.summary: Optional[dict] = None

    def fit(self) -> dict:
        """Train (``common.engine.loop.fit``); the summary: best score and epoch, the last
        evaluation rows, seconds per epoch, the run folder and its files."""
        import backends
        from common import recipes
        from common.engine.loop import fit
        recipe = recipes.get(self.config["method"]["name"])
        recipe.check(self.config)
        B = backends.get(self.config["runtime"]["backend"])
        self.summary = fit(self.config, B, recipe.build, structure_keys=recipe.STRUCTURE_KEYS)
        self._backend = B
        return self.summary

    @property
    def run_dir(self) -> str:
        return os.path.join(self.config["train"]["log_dir"], self.config["train"]["ckpt"])

    def checkpoint(self, which: str = "best") -> str:
        """Path of the run's ``best`` or ``last`` checkpoint (``<backend>_<which>.pth|ckpt``)."""
        import backends
        from common.engine.loop import MethodRun
        B = backends.get(self.config["runtime"]["backend"])
        path = os.path.join(self.run_dir, MethodRun(None, None, 0).checkpoint_names(B.name)[which])
        if not os.path.isfile(path):
            raise ConfigError(f"no {which} checkpoint at '{path}': call fit() first")
        return path

    def evaluate(self, which: str = "best", **flags) -> List[dict]:
        """test.py on the ``which`` checkpoint with this run's data (``flags``: test.py's,
        e.g. ``trials=10``); one row per setting (R1, R10, R20, mAP, mINP, ...)."""
        import test
        flags.setdefault("data_path", self.config["data"]["data_path"])
        flags.setdefault("backend", self.config["runtime"]["backend"])
        flags.setdefault("resume", self.checkpoint(which))
        parser = test.make_parser()
        args = parser.parse_intermixed_args(command_line(parser, None, (), (), flags))
        resolved = test.resolve(args)
        _, evaluate = test.load_model(resolved)
        return [row for row in evaluate() if "/" not in row["setting"]]
