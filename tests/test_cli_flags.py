"""Seed flags -> configuration keys (SPEC 9), backend selection order, the MVD schedule."""
import pytest

from common.cli import SEED_FLAGS, build_parser, config_from_args
from common.schedule import group_lrs, multistep_lr, mvd_lr

VALUES = {str: "x", int: 3, float: 0.125}
CHOICE_VALUES = {"--dataset": "RegDB", "--optim": "sgd", "--device-target": "GPU",
                 "--loss-func": "id+tri+kldiv", "--backend": "mindspore", "--ms-mode": "PYNATIVE"}


@pytest.mark.parametrize("flag", sorted(SEED_FLAGS))
def test_every_seed_flag_sets_its_key(flag):
    key, typ, _ = SEED_FLAGS[flag]
    value = CHOICE_VALUES.get(flag, VALUES[typ])
    args = build_parser("t").parse_args([flag, str(value)])
    cfg = config_from_args(args)
    section, name = key.split(".")
    assert cfg[section][name] == value


def test_flags_win_over_set_and_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 0.5}\nschedule: {epochs: 7}\n")
    args = build_parser("t").parse_args(["--config", str(path), "--set", "optim.lr=0.25", "--lr", "0.125",
                                         "--set", "schedule.epochs=9"])
    cfg = config_from_args(args)
    assert cfg["optim"]["lr"] == 0.125 and cfg["schedule"]["epochs"] == 9


def test_backend_order_flag_then_environment_then_torch(monkeypatch):
    parse = build_parser("t").parse_args
    monkeypatch.delenv("REID_BACKEND", raising=False)
    assert config_from_args(parse([]))["runtime"]["backend"] == "torch"
    monkeypatch.setenv("REID_BACKEND", "mindspore")
    assert config_from_args(parse([]))["runtime"]["backend"] == "mindspore"
    assert config_from_args(parse(["--backend", "torch"]))["runtime"]["backend"] == "torch"


def test_mvd_schedule_matches_the_seed():
    # warm-up 5 epochs, x0.5 at 15 and again at 27 (SPEC 8)
    lrs = [mvd_lr(e, 0.1, 5, 15, 27, 0.5) for e in range(30)]
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5] == lrs[14] == 0.1
    assert lrs[15] == lrs[26] == pytest.approx(0.05)
    assert lrs[27] == lrs[29] == pytest.approx(0.025)
    with pytest.raises(ValueError):
        mvd_lr(-1, 0.1)


def test_multistep_and_group_lrs():
    assert [multistep_lr(e, 1.0, (2, 4), 0.1) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert group_lrs(0.01, 10.0) == pytest.approx([0.01, 0.1])
