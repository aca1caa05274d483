"""Parameter naming between frameworks (SPEC section 11).

The canonical naming is torch's. Names map by *module type* and *name suffix*, never by
position: a torch module is a BatchNorm when it owns ``running_mean``; a MindSpore cell is a
BatchNorm when it owns ``moving_mean``. Only BatchNorm leaves are renamed; Conv2d (OIHW) and
Linear/Dense ``(out, in)`` weights need no transpose, so a round trip is bit-exact.
"""
from typing import Dict, Iterable, List, Tuple

TORCH_TO_MS_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                  "running_var": "moving_variance"}
MS_TO_TORCH_BN = {v: k for k, v in TORCH_TO_MS_BN.items()}
DROPPED_TORCH = ("num_batches_tracked",)
# ImageNet loading (backends/<fw>/weights.py load_backbone_pretrained): modules called
# 'backbone' receive the file; its classifier is not part of a re-ID backbone, and this
# project's ShallowCAM additions keep their own initialisation.
BACKBONE_ATTR = "backbone"
PRETRAINED_IGNORED_PREFIXES = ("fc.",)
PRETRAINED_OPTIONAL_PREFIXES = ("shallow_cam.", "shallow_cam2.", "shallow_cam3.")


def _split(name: str) -> Tuple[str, str]:
    prefix, _, leaf = name.rpartition(".")
    return prefix, leaf


def bn_prefixes(names: Iterable[str], marker: str) -> set:
    """Prefixes of modules that own a leaf called ``marker`` (``running_mean`` or ``moving_mean``)."""
    return {_split(n)[0] for n in names if _split(n)[1] == marker}


def torch_to_ms_names(names: Iterable[str]) -> Dict[str, str]:
    """Map torch state-dict names to MindSpore parameter names; drop ``num_batches_tracked``."""
    names = list(names)
    bns = bn_prefixes(names, "running_mean")
    out = {}
    for n in names:
        prefix, leaf = _split(n)
        if leaf in DROPPED_TORCH:
            continue
        if prefix in bns and leaf in TORCH_TO_MS_BN:
            leaf = TORCH_TO_MS_BN[leaf]
        out[n] = f"{prefix}.{leaf}" if prefix else leaf
    return out


def ms_to_torch_names(names: Iterable[str]) -> Dict[str, str]:
    """Map MindSpore parameter names to torch state-dict names."""
    names = list(names)
    bns = bn_prefixes(names, "moving_mean")
    out = {}
    for n in names:
        prefix, leaf = _split(n)
        if prefix in bns and leaf in MS_TO_TORCH_BN:
            leaf = MS_TO_TORCH_BN[leaf]
        out[n] = f"{prefix}.{leaf}" if prefix else leaf
    return out


def rename(state: dict, mapping: Dict[str, str]) -> dict:
    """Apply ``mapping`` to the keys of ``state`` (keys missing from the mapping are dropped)."""
    return {mapping[k]: v for k, v in state.items() if k in mapping}


def diff_keys(expected: Iterable[str], given: Iterable[str]) -> Tuple[List[str], List[str]]:
    """(missing, unexpected) key lists, sorted."""
    e, g = set(expected), set(given)
    return sorted(e - g), sorted(g - e)


def describe_mismatch(missing, unexpected, shapes=(), limit=5) -> str:
    """One-line summary used by strict loaders' CheckpointError."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:limit])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:limit])})")
    if shapes:
        parts.append("shape mismatch: " + "; ".join(f"{k} expected {a} got {b}" for k, a, b in list(shapes)[:limit]))
    return ", ".join(parts)
