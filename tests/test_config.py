"""common.config: _base_ inheritance, overrides, unknown keys, types, choices, saving."""
import os

import pytest
import yaml

from common.config import DEFAULTS, load_config, parse_override, save_config
from common.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_defaults_and_base_inheritance(tmp_path):
    write(tmp_path / "base.yaml", {"optim": {"lr": 0.1, "name": "sgd"}, "data": {"height": 32}})
    child = write(tmp_path / "child.yaml", {"_base_": "base.yaml", "optim": {"lr": 0.01}})
    cfg = load_config(child)
    assert cfg["optim"]["lr"] == 0.01 and cfg["optim"]["name"] == "sgd"   # child wins, base kept
    assert cfg["data"]["height"] == 32 and cfg["data"]["width"] == DEFAULTS["data"]["width"]


def test_overrides_win_and_parse_types(tmp_path):
    child = write(tmp_path / "c.yaml", {"optim": {"lr": 0.01}})
    cfg = load_config(child, ["optim.lr=3e-4", "model.ib_hidden=[8, 4]", "model.gray_ir=true",
                              "loss.func=id+tri+kldiv", "data.trial=3"])
    assert cfg["optim"]["lr"] == pytest.approx(3e-4)
    assert cfg["model"]["ib_hidden"] == [8, 4] and cfg["model"]["gray_ir"] is True
    assert cfg["loss"]["func"] == "id+tri+kldiv" and cfg["data"]["trial"] == 3
    assert parse_override("optim.lr=1") == {"optim": {"lr": 1}}


@pytest.mark.parametrize("override, fragment", [
    ("optim.lrr=0.1", "optim.lrr"),
    ("optimizer.lr=0.1", "optimizer"),
    ("optim.lr=fast", "optim.lr"),
    ("optim.name=rmsprop", "adam, sgd"),
    ("model.depth=19", "18, 34, 50, 101"),
    ("lr=0.1", "section.key"),
    ("optim.lr", "section.key=value"),
])
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert fragment in str(e.value)


def test_unknown_key_in_yaml_is_rejected(tmp_path):
    bad = write(tmp_path / "bad.yaml", {"train": {"epochz": 3}})
    with pytest.raises(ConfigError, match="train.epochz"):
        load_config(bad)


def test_missing_file_and_cycle(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"))
    write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(tmp_path / "a.yaml"))


def test_save_config_round_trip(tmp_path):
    cfg = load_config(None, ["optim.lr=0.5"])
    path = save_config(cfg, str(tmp_path / "run"))
    assert load_config(path) == cfg
    assert not [f for f in os.listdir(tmp_path / "run") if ".tmp" in f]


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".yaml")))
def test_shipped_configs_resolve(name):
    cfg = load_config(os.path.join(ROOT, "configs", name))
    assert set(cfg) == set(DEFAULTS)
