"""The Python API (reid/__init__.py): keyword flags resolve exactly as train.py's command
line, fit() trains through the shared loop, evaluate() reproduces the run's own evaluation
from its best checkpoint, and the checkpoint feeds the FeatureExtractor."""
import numpy as np
import pytest

import reid
from common.errors import ConfigError
from tiny import TINY, make_sysu

pytest.importorskip("torch")
SETS = [TINY[i + 1] for i in range(0, len(TINY), 2)]  # TINY is ["--set", "k=v", ...]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = make_sysu(tmp_path_factory.mktemp("sysu"))
    log_dir = tmp_path_factory.mktemp("logs")
    run = reid.Run("configs/mvd_port.yaml", overrides=SETS + [f"train.log_dir={log_dir}"], data_path=root,
                   dataset="SYSU", backend="torch", epochs=1, ckpt="api", ms_mode="PYNATIVE", lr=0.001)
    return run, run.fit(), root


def test_keywords_resolve_like_the_command_line():
    import train
    from common.cli import config_from_args
    run = reid.Run("configs/mvd_port.yaml", overrides={"optim.lr": 0.5}, data_path="d", epochs=3,
                   loss_func="id+tri+kldiv", backend="mindspore")
    parser, flags = train.make_parser()
    argv = ["--config", "configs/mvd_port.yaml", "--set", "optim.lr=0.5", "--data-path", "d", "--epochs", "3",
            "--loss-func", "id+tri+kldiv", "--backend", "mindspore"]
    assert run.config == config_from_args(parser.parse_intermixed_args(argv), flags)
    assert run.config["optim"]["lr"] == 0.5 and run.config["schedule"]["epochs"] == 3


def test_reference_flag_spellings_and_lists():
    run = reid.Run(method="kd-reid", ds="market1501", dt=["dukemtmcreid", "cuhk03"], as_="osnet_x0_25")
    assert run.config["kdreid"]["source"] == ["market1501"] and run.config["kdreid"]["arch_student"] == "osnet_x0_25"
    assert run.config["kdreid"]["targets"] == ["dukemtmcreid", "cuhk03"]
    vkd = reid.Run(None, ["mars"], method="vkd-teacher", num_train_images=4, p=6)
    assert vkd.config["vkd"]["num_train_images"] == 4 and vkd.config["data"]["num_ids"] == 6


def test_unknown_keyword_is_one_clear_error():
    with pytest.raises(ConfigError, match="unknown argument 'learning_rate'"):
        reid.Run(learning_rate=0.1)


def test_fit_then_evaluate_reproduces_the_runs_evaluation(fitted):
    run, summary, _ = fitted
    assert summary["run_dir"] == run.run_dir and run.checkpoint().endswith("torch_best.pth")
    logged = [r for r in summary["rows"] if "/" not in r["setting"]]
    again = run.evaluate()
    assert [r["setting"] for r in again] == [r["setting"] for r in logged]
    for a, b in zip(again, logged):
        assert a["R1"] == pytest.approx(b["R1"]) and a["mAP"] == pytest.approx(b["mAP"])


def test_the_checkpoint_feeds_the_feature_extractor(fitted):
    run, _, root = fitted
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 20, 3), dtype=np.uint8) for _ in range(3)]
    feats = reid.FeatureExtractor(run.checkpoint())(images)
    assert feats.shape[0] == 3 and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1])
