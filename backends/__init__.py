"""The one place that picks a backend (Keras-3 style).

Order: the explicit ``name`` (the ``--backend`` flag), then the ``REID_BACKEND`` environment
variable, then ``torch``. Only the chosen framework is imported, and only when a submodule
is first touched, so a torch-only machine never imports mindspore and vice versa.

    B = backends.get("mindspore")
    model = B.mvd.build_model(cfg, num_classes)
"""
import importlib
import os

from common.errors import ReidError

BACKENDS = ("torch", "mindspore")
# the backend contract: every backend has these modules, with the same public names and
# signatures (tests/test_backend_contract.py)
MODULES = ("backbones", "heads", "losses", "weights", "optim", "engine", "checkpoint", "device", "bench",
           "data", "reid", "mvd", "mvd_loss", "vkd", "gradcam", "kdreid", "export", "distributed",
           "precision")
ENV_VAR = "REID_BACKEND"


def resolve_name(name=None) -> str:
    """Backend name from the flag, then ``$REID_BACKEND``, then ``'torch'``; validated."""
    chosen = name or os.environ.get(ENV_VAR) or "torch"
    if chosen not in BACKENDS:
        raise ReidError(f"unknown backend {chosen!r}; expected one of {', '.join(BACKENDS)} "
                        f"(--backend or ${ENV_VAR})")
    return chosen


class Backend:
    """Lazy namespace over ``backends.<name>.<module>``."""

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, module: str):
        if module not in MODULES:
            raise AttributeError(f"backend has no module {module!r}; modules: {', '.join(MODULES)}")
        try:
            mod = importlib.import_module(f"backends.{self.name}.{module}")
        except ImportError as e:
            if getattr(e, "name", "") in ("torch", "mindspore"):
                raise ReidError(f"backend {self.name!r} needs the package '{e.name}', which is not "
                                f"installed (run 'make install' or pip install it)") from None
            raise
        setattr(self, module, mod)
        return mod

    def __repr__(self):
        return f"Backend({self.name!r})"


def get(name=None) -> Backend:
    """Return the lazy :class:`Backend` for ``name`` (see :func:`resolve_name`)."""
    return Backend(resolve_name(name))
