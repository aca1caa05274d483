"""common.config: the checked schema (types, choices, ranges), _base_ inheritance, overrides,
sections owned by recipes, saving; every shipped config resolves."""
import math
import os

import pytest
import yaml

from common.config import Key, check_value, defaults_of, load_config, parse_override, save_config, schema
from common.defaults import BASE
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
    assert cfg["data"]["height"] == 32 and cfg["data"]["width"] == BASE["data"]["width"].default


def test_overrides_win_and_parse_types(tmp_path):
    child = write(tmp_path / "c.yaml", {"optim": {"lr": 0.01}})
    cfg = load_config(child, ["optim.lr=3e-4", "mvd.ib_hidden=[8, 4]", "mvd.gray_ir=true",
                              "mvd.loss_func=id+tri+kldiv", "data.trial=3"])
    assert cfg["optim"]["lr"] == pytest.approx(3e-4)
    assert cfg["mvd"]["ib_hidden"] == [8, 4] and cfg["mvd"]["gray_ir"] is True
    assert cfg["mvd"]["loss_func"] == "id+tri+kldiv" and cfg["data"]["trial"] == 3
    assert parse_override("optim.lr=1") == {"optim": {"lr": 1}}


@pytest.mark.parametrize("override, fragment", [
    ("optim.lrr=0.1", "optim.lrr"),
    ("optimizer.lr=0.1", "optimizer"),
    ("optim.lr=fast", "optim.lr"),
    ("optim.name=rmsprop", "adam, sgd"),
    ("model.arch=resnet19", "resnet50"),
    ("lr=0.1", "section.key"),
    ("optim.lr", "section.key=value"),
])
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert fragment in str(e.value)


# every numeric key's range is checked before any data is read (hardening issue, class 8)
@pytest.mark.parametrize("override, fragment", [
    ("schedule.epochs=0", ">= 1"), ("schedule.epochs=-3", ">= 1"),
    ("optim.lr=-0.1", "> 0"), ("optim.lr=0", "> 0"), ("optim.lr=nan", "finite"), ("optim.lr=inf", "finite"),
    ("train.eval_every=0", ">= 1"), ("data.eval_trials=0", ">= 1"), ("data.test_batch=0", ">= 1"),
    ("data.height=-1", ">= 0"), ("data.max_batches=-1", ">= 0"), ("schedule.decay_factor=-1", "> 0"),
    ("mvd.z_dim=0", ">= 1"), ("data.trial=11", "<= 10"), ("optim.betas=[0.9, 1.5]", "<= 0.999999"),
    ("optim.betas=[0.9]", "2 values"), ("mvd.dropout=1.0", "<= 0.99"), ("train.seed=-1", ">= 0"),
    ("schedule.milestones=[-1]", ">= 0"), ("data.workers=-2", ">= 0"),
])
def test_numeric_ranges_are_checked(override, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert override.split("=")[0] in str(e.value) and fragment in str(e.value)


def test_every_numeric_key_declares_a_range():
    """A new numeric key without a range (or choices) would let a bad value crash mid-run."""
    for section, keys in schema("mvd").items():
        for name, key in keys.items():
            numeric = isinstance(key.default, (int, float)) and not isinstance(key.default, bool)
            numeric_list = isinstance(key.default, list) and key.default and isinstance(key.default[0], (int, float))
            if numeric or numeric_list:
                assert key.lo is not None or key.choices is not None or name in ("rank_margins", "rank_alphas",
                                                                                  "gray_coeffs"), f"{section}.{name}"
            assert key.doc, f"{section}.{name} has no comment"


def test_check_value_converts_and_bounds():
    key = Key(1.0, "x", lo=0.0, lo_open=True, hi=2.0)
    assert check_value("s.x", 2, key) == 2.0 and isinstance(check_value("s.x", 2, key), float)
    for bad in (0, 2.5, math.nan, True, "1"):
        with pytest.raises(ConfigError):
            check_value("s.x", bad, key)


def test_unknown_key_in_yaml_is_rejected(tmp_path):
    bad = write(tmp_path / "bad.yaml", {"train": {"epochz": 3}})
    with pytest.raises(ConfigError, match="train.epochz"):
        load_config(bad)


def test_method_sections_belong_to_their_method(tmp_path):
    cfg = load_config(None)
    assert "mvd" in cfg and cfg["method"]["name"] == "mvd"
    with pytest.raises(ConfigError, match="unknown config section 'nosuch'"):
        load_config(None, ["nosuch.x=1"])


def test_undecodable_and_directory_configs_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"optim: {lr: \xff\xfe}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path))


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


def test_defaults_of_matches_schema():
    d = defaults_of(schema("mvd"))
    assert d["optim"]["lr"] == BASE["optim"]["lr"].default and d["mvd"]["flow"] == "reference"


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".yaml")))
def test_shipped_configs_resolve(name):
    cfg = load_config(os.path.join(ROOT, "configs", name))
    assert set(cfg) == set(schema(cfg["method"]["name"]))
