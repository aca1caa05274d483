"""train.py / test.py for KD-REID (``--method source|dmmd|kd-reid``) on tiny synthetic Market
(source) -> Duke ('warm' style) + CUHK03 ('dim' style): the seed README's command lines, the
three methods end to end in torch and MindSpore (PYNATIVE), a torch checkpoint converted to
MindSpore giving the same multi-target table, and the refused inputs (one line, exit 2, no
run folder)."""
import hashlib
import json
import os

import pytest
import yaml

import test as test_cli
import train as train_cli
from common.data import synthetic

pytest.importorskip("torch")
TINY = ["--height", "64", "--width", "32", "-b", "4", "--num-instances", "2", "--features", "16",
        "--set", "model.width=8", "--set", "kdreid.osnet_channels=[8,64,64,64]", "--set", "kdreid.osnet_blocks=[1,1,1]",
        "--set", "data.max_batches=2", "--set", "data.test_batch=64", "-j", "0"]
SEED_COMMANDS = {  # the seed README's three commands, script name replaced by train.py --method
    "source": "-ds msmt17 -a resnet50 -data-dir {data}",
    "dmmd": "-ds msmt17 -dt market1501 -a resnet50 -data-dir {data} -mp {mp}",
    "kd-reid": "-ds msmt17 -dt market1501 dukemtmcreid cuhk03 -as osnet_x0_25 -at resnet50 -data-dir {data} "
               "-mps {mps} -mpt {t1} {t2} {t3}",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("kd_data"))
    synthetic.write("market1501", root, ids=4, seed=0)
    synthetic.write("dukemtmcreid", root, ids=4, seed=1, shift="warm")
    synthetic.write("cuhk03", root, ids=4, seed=2, shift="dim")
    return root


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("kd_logs")


def run(method, ckpt, logs, data, *extra, backend="torch"):
    argv = ["--method", method, "-ds", "market1501", "-data-dir", data, "--ckpt", ckpt, "--backend", backend,
            "--ms-mode", "PYNATIVE", "--set", f"train.log_dir={logs}", "--eval-freq", "1", *TINY, *extra]
    return train_cli.main(argv)


def records(folder):
    return [json.loads(line) for line in open(os.path.join(folder, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def torch_runs(data, logs):
    """source (ResNet-50 and OSNet), one D-MMD teacher per target, the KD student: torch."""
    assert run("source", "src_r", logs, data, "-a", "resnet50", "--epochs", "1") == 0
    assert run("source", "src_o", logs, data, "-a", "osnet_x0_25", "--epochs", "1") == 0
    for t in ("dukemtmcreid", "cuhk03"):
        assert run("dmmd", f"dmmd_{t}", logs, data, "-dt", t, "-mp", str(logs / "src_r" / "torch_best.pth"),
                   "--epochs", "2", "--set", "kdreid.mmd_start_epoch=1") == 0
    teachers = [str(logs / f"dmmd_{t}" / "torch_best.pth") for t in ("dukemtmcreid", "cuhk03")]
    assert run("kd-reid", "kd", logs, data, "-dt", "dukemtmcreid", "cuhk03", "-as", "osnet_x0_25", "-at", "resnet50",
               "-mps", str(logs / "src_o" / "torch_best.pth"), "-mpt", *teachers, "--epochs", "2") == 0
    return teachers


def test_seed_commands_parse_and_resolve(capsys):
    for method, line in SEED_COMMANDS.items():
        argv = ["--method", method] + line.format(data="/D", mp="m.pth", mps="s.pth", t1="a", t2="b", t3="c").split()
        assert train_cli.main(argv + ["--print-config"]) == 0
        cfg = yaml.safe_load(capsys.readouterr().out)
        k = cfg["kdreid"]
        assert cfg["method"]["name"] == method and cfg["data"]["data_path"] == "/D" and k["source"] == ["msmt17"]
        assert cfg["data"]["num_ids"] == 8 and cfg["data"]["num_pos"] == 4  # 32 = 8 ids x 4
        if method == "source":
            assert k["arch"] == "resnet50" and cfg["optim"]["name"] == "adam" and cfg["schedule"]["epochs"] == 100
            assert cfg["schedule"]["milestones"] == [50] and k["fixbase_epochs"] == 0
        if method == "dmmd":
            assert k["targets"] == ["market1501"] and k["model_path"] == "m.pth" and cfg["schedule"]["epochs"] == 200
        if method == "kd-reid":
            assert k["targets"] == ["market1501", "dukemtmcreid", "cuhk03"] and k["arch_student"] == "osnet_x0_25"
            assert k["model_path_student"] == "s.pth" and k["model_path_teachers"] == ["a", "b", "c"]
            assert cfg["optim"]["name"] == "sgd" and cfg["optim"]["lr"] == 0.01 and cfg["schedule"]["milestones"][:2] == [5, 10]
            assert k["target_alt"] == "batch" and k["kd_style"] == "only_outputs"
    # both spellings of the reference's flags
    assert train_cli.main(["--method", "kd-reid", "--data-dir", "/E", "--lkds-weight", "0.5", "--lda_weight", "2",
                           "--target-alt", "full", "--target-order", "shift", "--new-cuhk", "--print-config"]) == 0
    k = yaml.safe_load(capsys.readouterr().out)
    assert k["data"]["data_path"] == "/E" and k["kdreid"]["lkds_weight"] == 0.5 and k["kdreid"]["lda_weight"] == 2.0
    assert k["kdreid"]["target_alt"] == "full" and k["kdreid"]["new_cuhk"] is True


def test_source_dmmd_and_kd_train_and_report_every_target(torch_runs, logs):
    src = records(logs / "src_r")
    assert len(src) == 1 and src[0]["eval"][0]["setting"] == "market1501" and src[0]["triplet"] > 0
    for t in ("dukemtmcreid", "cuhk03"):
        rec = records(logs / f"dmmd_{t}")
        assert rec[0]["mmd_global"] == 0.0 and rec[1]["mmd_global"] > 0  # MMD terms from mmd_start_epoch on
        assert [r["setting"] for r in rec[1]["eval"]] == [t]
    kd = records(logs / "kd")
    rows = kd[-1]["eval"]
    assert [r["setting"] for r in rows] == ["dukemtmcreid", "cuhk03", "mean"]
    assert rows[2]["R1"] == pytest.approx((rows[0]["R1"] + rows[1]["R1"]) / 2)
    assert set(kd[0]) >= {"kd_target", "kd_source", "da"} and kd[0]["kd_target"] > 0
    text = open(logs / "kd" / "train.log").read()
    assert "2 resnet50 teachers" in text and "batch alternation" in text
    best = max(r["eval"][-1]["R1"] for r in kd)  # the model with the best MEAN Rank-1 is kept
    import torch
    ck = torch.load(logs / "kd" / "torch_best.pth", weights_only=False)
    assert ck["extra"]["best"] == pytest.approx(best) and ck["extra"]["arch"] == "osnet_x0_25"


def test_torch_checkpoint_converted_to_mindspore_gives_the_same_table(torch_runs, logs, data, capsys):
    pytest.importorskip("mindspore")
    from tools import convert_weights
    ck = str(logs / "kd" / "torch_best.pth")
    conv = str(logs / "kd" / "best_converted.ckpt")
    assert convert_weights.main([ck, conv]) == 0
    capsys.readouterr()
    tables = []
    for backend, path in (("torch", ck), ("mindspore", conv)):
        assert test_cli.main(["--resume", path, "--data-path", data, "--backend", backend, "--ms-mode", "PYNATIVE"]) == 0
        out = capsys.readouterr().out
        tables.append(out[out.index("setting"):])
    assert tables[0] == tables[1]
    assert "dukemtmcreid" in tables[0] and "cuhk03" in tables[0] and "mean" in tables[0]


def test_mindspore_source_and_kd(torch_runs, logs, data):
    pytest.importorskip("mindspore")
    from tools import convert_weights
    assert run("source", "ms_src", logs, data, "-a", "osnet_x0_25", "--epochs", "1", "--set", "data.max_batches=1",
               backend="mindspore") == 0
    assert os.path.isfile(logs / "ms_src" / "mindspore_best.ckpt")
    assert records(logs / "ms_src")[0]["eval"][0]["setting"] == "market1501"
    teachers = []
    for i, path in enumerate(torch_runs):
        teachers.append(str(logs / f"teacher{i}.ckpt"))
        assert convert_weights.main([path, teachers[-1]]) == 0
    assert run("kd-reid", "ms_kd", logs, data, "-dt", "dukemtmcreid", "cuhk03", "-as", "osnet_x0_25", "-at",
               "resnet50", "-mps", str(logs / "ms_src" / "mindspore_best.ckpt"), "-mpt", *teachers, "--epochs", "1",
               "--set", "data.max_batches=1", "--target-order", "shift", backend="mindspore") == 0
    rec = records(logs / "ms_kd")[0]
    assert [r["setting"] for r in rec["eval"]] == ["dukemtmcreid", "cuhk03", "mean"] and rec["kd_target"] > 0


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_bad_inputs_one_line_exit_2_nothing_written(torch_runs, logs, data, tmp_path, capsys):
    teachers = torch_runs
    before = {p: _digest(p) for p in teachers}
    kd = ["-dt", "dukemtmcreid", "cuhk03", "-as", "osnet_x0_25", "-at", "resnet50",
          "-mps", str(logs / "src_o" / "torch_best.pth")]
    cases = {
        "teacher count": (["--method", "kd-reid", *kd, "-mpt", teachers[0]], "1 teacher checkpoint(s)"),
        "wrong architecture": (["--method", "kd-reid", *kd, "-mpt", teachers[0], str(logs / "src_o" / "torch_best.pth")],
                               "does not fit a resnet50"),
        "source is a target": (["--method", "dmmd", "-dt", "market1501", "-mp", teachers[0]], "is also a target"),
        "P x K": (["--method", "source", "-b", "5"], "multiple of --num-instances 2"),
        "fewer than K": (["--method", "dmmd", "-dt", "cuhk03", "-mp", str(logs / "src_r" / "torch_best.pth"),
                          "-b", "10", "--num-instances", "5"], "no training identity has 5 images"),
    }
    for name, (extra, message) in cases.items():
        log_dir = tmp_path / name.replace(" ", "_")
        argv = ["-ds", "market1501", "-data-dir", data, "--set", f"train.log_dir={log_dir}", *TINY, *extra]
        assert train_cli.main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, (name, err)
        assert not log_dir.exists(), name
    # a CUHK03 release whose split file is missing: stops before extracting anything
    broken = tmp_path / "broken"
    (broken / "cuhk03" / "cuhk03_release").mkdir(parents=True)
    (broken / "cuhk03" / "cuhk03_release" / "cuhk-03.mat").write_bytes(b"\x89HDF\r\n\x1a\n")
    for folder in ("market1501",):
        os.symlink(os.path.join(data, folder), broken / folder)
    assert train_cli.main(["--method", "dmmd", "-ds", "market1501", "-dt", "cuhk03", "--new-cuhk", "-data-dir",
                           str(broken), "-mp", teachers[0], "--set", f"train.log_dir={tmp_path / 'cuhk'}", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "cuhk03_new_protocol_config_labeled.mat" in err and "\n" not in err
    assert not (tmp_path / "cuhk").exists() and sorted(os.listdir(broken / "cuhk03")) == ["cuhk03_release"]
    assert {p: _digest(p) for p in teachers} == before  # the teachers' files are never written


def test_pretrain_loads_imagenet_weights_by_name_and_warns_once_without(torch_runs, logs, data, tmp_path):
    import torch
    import backends
    B = backends.get("torch")
    assert open(logs / "src_r" / "train.log").read().count("starts from scratch") == 1  # warned once
    # a torchvision-style file: the trunk's keys plus the 1000-class fc, which never loads
    net = B.kdreid.build_net("resnet50", 4, fc_dim=16, width=8)
    state = {k: v + 0.5 for k, v in net.state_dict().items() if k.startswith(("conv1", "bn1", "layer"))}
    state.update({"fc.weight": torch.zeros(1000, 256), "fc.bias": torch.zeros(1000)})
    path = tmp_path / "resnet50_imagenet.pth"
    torch.save(state, path)
    assert run("source", "pre", tmp_path, data, "-a", "resnet50", "--epochs", "1", "--pretrain", str(path),
               "--set", "data.max_batches=1", "--set", f"train.log_dir={tmp_path}") == 0
    text = open(tmp_path / "pre" / "train.log").read()
    loaded = len([k for k in state if not k.endswith("num_batches_tracked")]) - 2
    assert f"ImageNet weights {path} -> resnet50: loaded {loaded} keys, skipped 2" in text
    assert "starts from scratch" not in text
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    assert run("source", "pre2", tmp_path, data, "-a", "resnet50", "--pretrain", str(tmp_path / "other.pth"),
               "--set", f"train.log_dir={tmp_path}") == 2
    assert not (tmp_path / "pre2").exists()


@pytest.mark.slow
def test_train_step_benchmark_kd_reid_quick():
    """benchmarks/train_step.py --method kd-reid: both backends print a positive step, bare and
    ratio = step / bare (up to the printed rounding)."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "benchmarks/train_step.py", "--method", "kd-reid", "--quick", "--ms-mode",
                        "PYNATIVE", "--teachers", "2"], cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[-3].split() == ["backend", "step_s", "bare_s", "ratio", "student_steps/s"]
    for name, line in zip(("torch", "mindspore"), lines[-2:]):
        fields = line.split()
        step, bare, ratio, rate = map(float, fields[1:])
        assert fields[0] == name and min(step, bare) > 0
        d = 5e-5  # step and bare are printed to 4 decimals, the ratio to 3 and the rate to 2
        assert (step - d) / (bare + d) - 5e-4 <= ratio <= (step + d) / (bare - d) + 5e-4
        assert 2 / (step + d) - 5e-3 <= rate <= 2 / (step - d) + 5e-3


def test_test_py_takes_a_kdreid_set_without_method(torch_runs, logs, data, capsys):
    """--set on the checkpoint's own section works without --method (the section is known
    only once the checkpoint is read): evaluating the KD student on one target only."""
    capsys.readouterr()
    assert test_cli.main(["--resume", str(logs / "kd" / "torch_best.pth"), "--data-path", data,
                          "--set", "kdreid.targets=[cuhk03]"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("setting"):]
    assert "cuhk03" in table and "dukemtmcreid" not in table
