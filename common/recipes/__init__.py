"""Method recipes, by name (a plain table, as torchreid's model table).

A recipe is one module here that owns a configuration section (``SECTION``, ``KEYS``), its
default configuration file (``DEFAULT_CONFIG``, under ``configs/``), and builds a
:class:`common.engine.loop.MethodRun` (data, model, optimizer, training step, evaluation)
with ``build(cfg, B, log)``. Adding a method adds one module here, one method module per
backend and its configs; no other method's files change.
"""
import importlib
import os
from typing import Dict, Tuple

from common.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(ROOT, "configs")

# method name -> recipe module
RECIPES: Dict[str, str] = {
    "mvd": "common.recipes.mvd",
    "vkd-teacher": "common.recipes.vkd",
    "vkd-student": "common.recipes.vkd",
    "source": "common.recipes.kdreid",
    "dmmd": "common.recipes.kdreid",
    "kd-reid": "common.recipes.kdreid",
}
METHODS = tuple(RECIPES)
# test.py names for a network whatever stage trained it (VKD's eval.py evaluates any TriNet)
TEST_ALIASES = {"vkd": "vkd-teacher"}


def get(method: str):
    """The recipe module of ``method`` (ConfigError naming the known methods otherwise)."""
    if method not in RECIPES:
        raise ConfigError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return importlib.import_module(RECIPES[method])


def section_of(method: str) -> Tuple[str, dict]:
    """(section name, its keys) owned by ``method``'s recipe."""
    recipe = get(method)
    return recipe.SECTION, recipe.KEYS


def owner_of_section(section: str) -> str:
    """The method names whose recipe owns ``section`` ('' when none)."""
    return ", ".join(m for m in METHODS if get(m).SECTION == section)


def default_config(method: str) -> str:
    """Path of ``method``'s default configuration file (the bottom layer of every run); a
    recipe of several methods maps each to its file."""
    name = get(method).DEFAULT_CONFIG
    return os.path.join(CONFIG_DIR, name[method] if isinstance(name, dict) else name)
