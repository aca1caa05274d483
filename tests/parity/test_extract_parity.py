"""MVD test features in both backends for every ``mvd.test_feature`` / ``mvd.test_norm``
choice: dimensions, norms, and torch vs MindSpore agreement from identical weights."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ms = pytest.importorskip("mindspore")

from backends.mindspore.device import select_device  # noqa: E402
from backends.mindspore.mvd import build_model as ms_build  # noqa: E402
from backends.mindspore.weights import load_numpy_state  # noqa: E402
from backends.torch.mvd import build_model as torch_build  # noqa: E402
from backends.torch.weights import state_to_numpy  # noqa: E402
from tests.parity.tolerances import FORWARD_MAX_REL, UNIT_NORM_RTOL  # noqa: E402

from common.config import load_config  # noqa: E402
from common.errors import ConfigError  # noqa: E402

TINY = ["model.arch=resnet18", "model.width=4", "mvd.z_dim=8", "mvd.ib_hidden=[16,8]", "mvd.cls_hidden=8",
        "mvd.dropout=0.0"]
DIMS = {"shared": 1, "concat": 2, "all": 3, "four": 4, "four-joint": 4}
NORMS = {"four": 2.0}  # four parts normalised one by one (the port); the others are unit vectors


def _cfg(feature):
    if feature.startswith("four"):
        norm = "joint" if feature.endswith("joint") else "parts"
        return load_config("configs/mvd_port.yaml", TINY + [f"mvd.test_norm={norm}"])
    return load_config("configs/mvd_routed.yaml", TINY + [f"mvd.test_feature={feature}",
                                                           f"mvd.gray_ir={str(feature == 'all').lower()}"])


# (modality, feature, MindSpore mode): GRAPH compiles every encoder cell (2-6 s a case), so
# one GRAPH case runs by default and the others are slow
CASES = [pytest.param(modality, feature, mode, id=f"{modality}-{feature}-{mode}",
                      marks=[pytest.mark.slow] if mode == "GRAPH" and (modality, feature) != ("infrared", "four")
                      else [])
         for mode in ("PYNATIVE", "GRAPH") for modality in ("visible", "infrared") for feature in sorted(DIMS)]


@pytest.mark.parametrize("modality, feature, ms_mode", CASES, indirect=["ms_mode"])
def test_extract_matches_across_backends(feature, modality, ms_mode):
    """MindSpore as the evaluation runs it: ``extract`` called in the context mode that
    ``runtime.ms_mode`` sets."""
    select_device("CPU", 0)
    torch.manual_seed(0)
    cfg = _cfg(feature)
    t_model = torch_build(cfg, 5).eval()
    m_model = ms_build(cfg, 5)
    load_numpy_state(m_model, state_to_numpy(t_model))
    m_model.set_train(False)
    x = np.random.default_rng(1).standard_normal((3, 3, 64, 32)).astype(np.float32)
    with torch.no_grad():
        ft = t_model.extract(torch.from_numpy(x), modality).numpy()
    fm = m_model.extract(ms.Tensor(x), modality).asnumpy()
    assert ft.shape == (3, DIMS[feature] * t_model.feat_dim)
    np.testing.assert_allclose(np.linalg.norm(ft, axis=1), NORMS.get(feature, 1.0), rtol=UNIT_NORM_RTOL)
    assert np.abs(ft - fm).max() / np.abs(ft).max() <= FORWARD_MAX_REL


def test_unknown_or_impossible_test_feature_is_a_config_error():
    with pytest.raises(ConfigError, match="test_feature"):
        load_config("configs/mvd_port.yaml", ["mvd.test_feature=mean"])
    cfg = load_config("configs/mvd_routed.yaml", TINY + ["mvd.test_feature=four"])
    with pytest.raises(ConfigError, match="four"):
        torch_build(cfg, 5)
