"""A distributed test worker: ``torchrun ... tests/dist_worker.py OUT_DIR train.py-args`` (or
under msrun) runs ``train.main(args)`` and then writes this process's trainable parameters
and BatchNorm running statistics to ``OUT_DIR/rank<r>.npz`` (the run's networks as the
recipe built them), and its exit code to ``OUT_DIR/rank<r>.code``. Used by
tests/test_distributed.py; not part of the toolkit."""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _rank() -> str:
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        return ""
    return os.environ.get("RANK", os.environ.get("RANK_ID", "0"))


def model_arrays(B, model) -> dict:
    """``param:<name>`` for every trainable parameter and ``stat:<name>`` for every BatchNorm
    running statistic of ``model``, under the canonical (torch) names."""
    state = B.weights.state_to_numpy(model)
    if B.name == "torch":
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    else:
        from common.weights import ms_to_torch_names
        named = dict(model.parameters_and_names())
        mapping = ms_to_torch_names(named)
        trainable = {mapping[n] for n, p in named.items() if p.requires_grad}
    out = {f"stat:{n}": v for n, v in state.items() if n.endswith(("running_mean", "running_var"))}
    out.update({f"param:{n}": v for n, v in state.items() if n in trainable})
    return out


def main(out: str, argv) -> int:
    import train
    from common import recipes
    built = {}
    for method in recipes.METHODS:
        recipe = recipes.get(method)
        if not getattr(recipe, "_dist_worker_wrapped", False):
            original = recipe.build

            def build(cfg, B, log, original=original):
                run = original(cfg, B, log)
                built["run"], built["B"] = run, B
                return run
            recipe.build, recipe._dist_worker_wrapped = build, True
    code = train.main(argv)
    rank = _rank()
    if rank:
        with open(os.path.join(out, f"rank{rank}.code"), "w") as f:
            f.write(str(code))
        if "run" in built:
            np.savez(os.path.join(out, f"rank{rank}.npz"), **model_arrays(built["B"], built["run"].model))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
