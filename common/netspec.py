"""Framework-free facts about the networks, shared by both backends (one place for every
constant that is not framework code).

Head initialisation styles (``backends/<fw>/heads.py``): per style, the rule of
(BNNeck classifier, IB-encoder Linears, IB-encoder BatchNorms, IB-classifier Linears):

* ``project``: classifier N(0, 0.001) (Luo et al. 2019); IB layers keep the framework default;
* ``port``: the MVD MindSpore port's effective initialisation (its init helpers look for
  class names MindSpore 1.3 cells do not have, so MindSpore 1.3 defaults apply: every Dense
  N(0, 0.01), zero bias);
* ``original``: the original MVD code (utlis.py ``ChannelCompress``, newresnet.py ``VIB``,
  baseline.py): IB Linear kaiming-normal fan_out, IB BN weight N(1, 0.02), classifiers
  N(0, 0.001);
* ``framework``: torch's ``nn.Linear`` default (MindSpore 2.x Dense has the same rule).
"""

HEAD_INIT_STYLES = ("project", "port", "original", "framework")
HEAD_INIT_RULES = {
    "project": ("normal0.001", "default", "ones", "default"),
    "port": ("normal0.01", "normal0.01", "ones", "normal0.01"),
    "original": ("normal0.001", "kaiming_fan_out", "normal1_0.02", "normal0.001"),
    "framework": ("default", "default", "ones", "default"),
}


def head_init_rules(style: str):
    """The four rules of ``style`` (ValueError naming the known styles otherwise)."""
    if style not in HEAD_INIT_RULES:
        raise ValueError(f"unknown head init {style!r}: expected one of {', '.join(HEAD_INIT_STYLES)}")
    return HEAD_INIT_RULES[style]

# MVD network outputs (backends/<fw>/mvd.py): four paths x four head outputs, a flat
# path-major tuple of 16 tensors (the names live with the loss specs that read them).
from common.losses.mvd_total import (MVD_HEAD_OUTPUTS, MVD_ORIGINAL_TERMS, MVD_OUTPUT_NAMES,  # noqa: E402
                                     MVD_PATHS, MVD_PORT_TERMS)

MVD_FLOWS = ("reference", "routed")
MVD_TEST_FEATURES = ("four", "shared", "concat", "all")
MVD_TEST_NORMS = ("parts", "joint")
# loss terms each MVD objective reports after 'total' (backends/<fw>/mvd_loss.py)
MVD_LOSS_TERMS = {"port": MVD_PORT_TERMS, "original": MVD_ORIGINAL_TERMS, "routed": ("id", "tri", "kl")}
__all__ = ["HEAD_INIT_STYLES", "HEAD_INIT_RULES", "head_init_rules", "MVD_PATHS", "MVD_HEAD_OUTPUTS",
           "MVD_OUTPUT_NAMES", "MVD_FLOWS", "MVD_TEST_FEATURES", "MVD_TEST_NORMS", "MVD_LOSS_TERMS"]
