"""Export a checkpoint's test feature as ONNX or MindIR.

The graph computes what the method's ``extract`` computes for one batch of transformed images:

    python -m tools.export CKPT --format onnx --out model.onnx [--modality visible|infrared]
    python -m tools.export CKPT --format mindir --out model.mindir [--method M] [--set KEY=VALUE]

* ONNX is written by the torch backend (``torch.onnx.export``), MindIR by the MindSpore backend
  (``mindspore.export``); a checkpoint of the other framework (or a ``.safetensors``) is
  converted in memory first (``tools.convert_weights.read_weights``), so either format comes
  from either framework's checkpoint. The format comes from ``--format``, else from the
  suffix of ``--out``, else from ``--backend``.
* The graph's input is float32 and already transformed (resize, ImageNet normalisation):
  ``images`` (N, 3, H, W) for MVD and KD-REID, ``clips`` (N, T, 3, H, W) for VKD (T frames
  averaged; an image is a one-frame clip); N (and T) are dynamic. The output ``features``
  is (N, D). MVD's modality is fixed at export (``--modality``, default visible; it matters
  for ``mvd.test_feature=concat`` only).
* The input description (method, layout, size, resize filter, mean/std, modality) is stored
  in the ONNX ``metadata_props`` and, for MindIR, in ``<out>.json``; that is what
  :class:`common.feature_extractor.FeatureExtractor` rebuilds the test transform from.
* The checkpoint's stored configuration describes the network (``--set`` may change what
  test.py may change, e.g. ``mvd.test_feature``); a checkpoint without one needs
  ``--method`` (its default configuration, with ``--set``, then describes the network). A
  VKD run folder is accepted with ``--method vkd``, as test.py does.

Errors are one line on stderr and exit status 2.
"""
import argparse
import os
import sys
from typing import NamedTuple, Optional, Sequence

from common.exported import FORMAT_BACKEND, FORMAT_SUFFIX, FORMATS, format_of


class Exported(NamedTuple):
    """What :func:`export` wrote."""
    path: str
    format: str
    spec: object  # common.inference.InputSpec
    files: tuple  # every file written (MindIR: the file and its sidecar JSON)


def choose_format(out: str, fmt: Optional[str] = None, backend: Optional[str] = None) -> str:
    """The output format from ``fmt``, else ``out``'s suffix, else ``backend``; ReidError when
    they disagree (ONNX needs the torch backend, MindIR MindSpore; the suffix must match)."""
    from common.errors import ReidError
    by_backend = {b: f for f, b in FORMAT_BACKEND.items()}
    if fmt is not None and fmt not in FORMATS:
        raise ReidError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    chosen = fmt or format_of(out) or by_backend.get(backend or "")
    if chosen is None:
        raise ReidError(f"cannot tell the export format of '{out}': pass --format onnx|mindir or use a "
                        ".onnx or .mindir suffix")
    if format_of(out) != chosen:
        raise ReidError(f"--out '{out}' must end in {FORMAT_SUFFIX[chosen]} for {chosen}")
    if backend and backend != FORMAT_BACKEND[chosen]:
        raise ReidError(f"{chosen} is written by the {FORMAT_BACKEND[chosen]} backend, not {backend} "
                        f"(drop --backend or pass --backend {FORMAT_BACKEND[chosen]})")
    return chosen


def export(checkpoint: str, out: str, fmt: Optional[str] = None, method: Optional[str] = None,
           backend: Optional[str] = None, modality: Optional[str] = None, overrides: Sequence[str] = ()) -> Exported:
    """Export the test feature of ``checkpoint`` to ``out`` (see the module docstring)."""
    from common.checkpoint_model import open_checkpoint
    fmt = choose_format(out, fmt, backend)
    loaded = open_checkpoint(checkpoint, backend=FORMAT_BACKEND[fmt], method=method, modality=modality,
                             overrides=overrides)
    spec = loaded.spec
    meta = dict(spec.to_metadata(), **{"reid.backend": loaded.B.name,
                                       "reid.checkpoint": os.path.basename(os.path.abspath(checkpoint))})
    loaded.B.export.export_features(loaded.model, out, spec.input_shape(), spec.extract_kwargs, meta,
                                    spec.input_name)
    files = (out,) if fmt == "onnx" else (out, out + ".json")
    return Exported(out, fmt, spec, files)


def describe(result: Exported) -> str:
    """One line saying what was written."""
    s = result.spec
    dims = ["batch"] + (["frames"] if s.layout == "clips" else []) + [3, s.height, s.width]
    mod = f", modality {s.modality}" if s.modality else ""
    return (f"wrote {' and '.join(result.files)}: {s.method} test feature as {result.format}, input "
            f"'{s.input_name}' {dims} float32 (resize {s.resize}, ImageNet mean/std){mod} -> 'features' [batch, D]")


def make_parser() -> argparse.ArgumentParser:
    from common import recipes
    p = argparse.ArgumentParser(prog="python -m tools.export", description=__doc__.split("\n")[0],
                                allow_abbrev=False)
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint (.pth, .ckpt, .safetensors) or VKD run folder")
    p.add_argument("--out", required=True, help="file to write (.onnx or .mindir)")
    p.add_argument("--format", choices=FORMATS, default=None, help="onnx or mindir (default: from --out)")
    p.add_argument("--method", default=None, choices=tuple(recipes.METHODS) + tuple(recipes.TEST_ALIASES),
                   help="the method of a checkpoint that stores no configuration")
    p.add_argument("--backend", choices=("torch", "mindspore"), default=None,
                   help="must match the format (onnx: torch, mindir: mindspore)")
    p.add_argument("--modality", choices=("visible", "infrared"), default=None,
                   help="MVD: the modality the feature is computed for (default visible)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="configuration override test.py would accept, e.g. mvd.test_feature=shared")
    return p


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)

    def go():
        print(describe(export(args.checkpoint, args.out, args.format, args.method, args.backend, args.modality,
                              args.overrides)))
        return 0
    from common.cli import run_main
    return run_main(go)


if __name__ == "__main__":
    sys.exit(main())
