"""Command line -> configuration: every flag sets its key, the layer order, the backend order,
--print-config, and the schedules the flags drive (hand-computed values)."""
import pytest
import yaml

import train as train_cli
from common.cli import OVERWRITE, SEED_FLAGS, all_flags, build_parser, config_from_args
from common.schedule import epoch_lr, group_lrs, multistep_lr, mvd_lr, warmup_multistep_lr

VALUES = {str: "x", int: 3, float: 0.125}
CHOICE_VALUES = {"--dataset": "RegDB", "--optim": "sgd", "--device-target": "GPU",
                 "--loss-func": "id+tri+kldiv", "--backend": "mindspore", "--ms-mode": "PYNATIVE"}
FLAGS = all_flags((OVERWRITE,))


def parse(argv):
    args = build_parser("t", FLAGS).parse_args(argv)
    return config_from_args(args, FLAGS)


@pytest.mark.parametrize("flag", [f for f in SEED_FLAGS], ids=lambda f: f.names[0])
def test_every_seed_flag_sets_its_key(flag):
    value = CHOICE_VALUES.get(flag.names[0], VALUES[flag.type])
    cfg = parse([flag.names[0], str(value)])
    section, name = flag.key.split(".")
    assert cfg[section][name] == value


def test_flags_win_over_set_and_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 0.5}\nschedule: {epochs: 7}\n")
    cfg = parse(["--config", str(path), "--set", "optim.lr=0.25", "--lr", "0.125", "--set", "schedule.epochs=9"])
    assert cfg["optim"]["lr"] == 0.125 and cfg["schedule"]["epochs"] == 9


def test_the_seed_command_resolves_to_the_port_recipe():
    """Without --config the method's default file (configs/mvd_port.yaml) is the bottom layer."""
    cfg = parse(["--dataset", "SYSU", "--data-path", "d", "--optim", "adam", "--lr", "0.00035",
                 "--device-target", "GPU", "--gpu", "0"])
    assert cfg["mvd"]["loss"] == "port" and cfg["mvd"]["flow"] == "reference"
    assert cfg["model"]["last_stride"] == 2 and cfg["schedule"]["decay"] == "cascade"
    assert cfg["optim"]["backbone_lr_mult"] == 0.1 and cfg["mvd"]["test_feature"] == "four"


def test_backend_order_flag_then_environment_then_torch(monkeypatch):
    monkeypatch.delenv("REID_BACKEND", raising=False)
    assert parse([])["runtime"]["backend"] == "torch"
    monkeypatch.setenv("REID_BACKEND", "mindspore")
    assert parse([])["runtime"]["backend"] == "mindspore"
    assert parse(["--backend", "torch"])["runtime"]["backend"] == "torch"


def test_print_config_prints_yaml_and_touches_no_data(capsys, tmp_path):
    assert train_cli.main(["--data-path", str(tmp_path / "absent"), "--epochs", "3", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["schedule"]["epochs"] == 3 and cfg["data"]["data_path"].endswith("absent")
    assert not (tmp_path / "absent").exists()


def test_bad_flag_value_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--optim", "rmsprop"])
    assert e.value.code == 2 and "rmsprop" in capsys.readouterr().err


def test_out_of_range_flag_is_one_line(capsys):
    assert train_cli.main(["--epochs", "-3", "--data-path", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "schedule.epochs" in err[0]


def test_port_schedule_cascade_and_step():
    """research/cv/MVD/src/utils.py LRScheduler, 1-based epochs: warm-up e/5 for e < 5, then
    the cascade x0.1 per epoch from 15 to 27 (value of 27 afterwards)."""
    lrs = [mvd_lr(e, 1.0, 5, 15, 27, 0.1, "cascade") for e in range(30)]
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lrs[5] == lrs[13] == 1.0
    assert lrs[14] == pytest.approx(0.1) and lrs[15] == pytest.approx(0.01)
    assert lrs[26] == pytest.approx(1e-13) and lrs[29] == pytest.approx(1e-13)
    step = [mvd_lr(e, 1.0, 5, 15, 27, 0.5, "step") for e in range(30)]
    assert step[13] == 1.0 and step[14] == step[26] == 0.5 and step[27] == 0.25
    with pytest.raises(ValueError):
        mvd_lr(-1, 0.1)


def test_original_schedule_with_the_offset_quirk():
    """utlis.py WarmupMultiStepLR(milestones [210], warmup 10 from 0.01) stepped before each
    epoch: epoch 0 trains with step 1's rate 0.01*0.9 + 0.1."""
    lr0 = warmup_multistep_lr(0, 1.0, (210,), 0.1, 0.01, 10, step_offset=1)
    assert lr0 == pytest.approx(0.109)
    assert warmup_multistep_lr(0, 1.0, (210,), 0.1, 0.01, 10, step_offset=0) == pytest.approx(0.01)
    assert warmup_multistep_lr(8, 1.0, (210,), 0.1, 0.01, 10, 1) == pytest.approx(0.01 * 0.1 + 0.9)
    assert warmup_multistep_lr(9, 1.0, (210,), 0.1, 0.01, 10, 1) == 1.0
    assert warmup_multistep_lr(208, 1.0, (210,), 0.1, 0.01, 10, 1) == 1.0
    assert warmup_multistep_lr(209, 1.0, (210,), 0.1, 0.01, 10, 1) == pytest.approx(0.1)


def test_epoch_lr_reads_the_schedule_section():
    cfg = parse(["--config", "configs/mvd_original.yaml"])
    assert epoch_lr(cfg["schedule"], 2.6e-4, 0) == pytest.approx(2.6e-4 * 0.109)
    assert [multistep_lr(e, 1.0, (2, 4), 0.1) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert group_lrs(0.01, [0.1, 1.0]) == pytest.approx([0.001, 0.01])
