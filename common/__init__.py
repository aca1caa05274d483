"""Framework-neutral core of reid-kd (numpy only; never imports torch or mindspore)."""


def __getattr__(name):
    """``from common import FeatureExtractor`` (imported on first use)."""
    if name == "FeatureExtractor":
        from common.feature_extractor import FeatureExtractor
        return FeatureExtractor
    raise AttributeError(f"module 'common' has no attribute {name!r}")
