"""Convert model weights between torch ``.pth``, MindSpore ``.ckpt`` and neutral ``.safetensors``
(SPEC section 11; contract of backends/*/checkpoint.py).

    python -m tools.convert_weights IN OUT [--to torch|mindspore|safetensors]
    python -m tools.convert_weights VKD_RUN_FOLDER OUT [--chk-name chk_end] [--backbone NAME]

The input format is recognised from the file's first bytes, the output format from OUT's
suffix (``.pth``/``.pt`` torch, ``.ckpt`` mindspore, ``.safetensors`` neutral) or ``--to``.
Names are mapped by module type and name suffix with ``common.weights`` (BatchNorm
``weight/bias/running_mean/running_var`` <-> ``gamma/beta/moving_mean/moving_variance``;
``num_batches_tracked`` dropped); values are copied bit-exactly. Optimizer state is dropped
(with a note): it is tied to one backend's optimizer. Reading or writing ``.pth`` needs
torch, ``.ckpt`` needs mindspore, safetensors needs neither. Errors are one line on stderr
and exit status 2; the output is written to a temporary file in the same folder and moved
into place only when complete, so nothing is ever half-written.

A checkpoint of aimagelab/VKD (utils/saver.py: ``torch.save(TriNet.state_dict())`` to
``<run>/chk/<name>``, no suffix; names ``backbone.features_layers.<i>...``) is mapped onto this
project's names by ``common.recipes.vkd_folders.vkd_to_canonical``, which needs the backbone:
``--backbone``, else ``backbone_type`` of ``params/hparams.json`` next to its ``chk/`` folder.
IN may be such a run folder (its ``chk/<--chk-name>``, default ``chk_end``); the output then
carries ``num_classes`` and ``arch`` of the folder.

The framework-free file helpers live in :mod:`common.checkpoint_io`.
"""
import argparse
import os
import sys
from typing import Dict, Optional, Tuple

import numpy as np

from common.errors import CheckpointError

from common.checkpoint_io import (FORMAT_SUFFIX, FORMAT_TAG, FORMATS, SUFFIX_FORMATS,  # noqa: F401
                                  atomic_output, first_line, jsonable, read_safetensors,
                                  sniff_format, suggested_output, write_safetensors,
                                  wrong_backend_error)


def read_weights(path) -> Tuple[Dict[str, np.ndarray], dict, bool]:
    """(canonical state, extra, whether optimizer state was present) of any supported file."""
    fmt = sniff_format(path)
    if fmt == "safetensors":
        state, extra, _ = read_safetensors(path)
        return state, extra, False
    module = _backend_checkpoint(fmt, f"reading '{path}'")
    state, extra, optimizer_state = module.read_file(path)
    return state, extra, optimizer_state is not None


def write_weights(path, fmt: str, state: Dict[str, np.ndarray], extra: dict) -> None:
    """Write canonical ``state`` (+ extra) as ``fmt``, atomically."""
    if fmt == "safetensors":
        write_safetensors(path, state, "neutral", extra)
        return
    _backend_checkpoint(fmt, f"writing '{path}'").write_file(path, state, extra)


def _backend_checkpoint(fmt: str, action: str):
    """Import backends.<fmt>.checkpoint lazily; CheckpointError if the framework is missing."""
    try:
        if fmt == "torch":
            from backends.torch import checkpoint
        else:
            from backends.mindspore import checkpoint
    except ImportError as exc:
        if getattr(exc, "name", "") in ("torch", "mindspore"):
            raise CheckpointError(f"{action} needs the package '{exc.name}', which is not installed; "
                                  "convert on a machine that has it, or use .safetensors") from None
        raise
    return checkpoint


def target_format(out, to: Optional[str] = None) -> str:
    """The output format from ``--to`` or OUT's suffix; CheckpointError when neither says
    or when they disagree (MindSpore insists on the .ckpt suffix)."""
    by_suffix = SUFFIX_FORMATS.get(os.path.splitext(os.fspath(out))[1].lower())
    if to is None:
        if by_suffix is None:
            raise CheckpointError(f"cannot tell the output format of '{out}': use a .pth, .pt, .ckpt or "
                                  ".safetensors suffix or --to torch|mindspore|safetensors")
        return by_suffix
    if to not in FORMATS:
        raise CheckpointError(f"unknown --to {to!r}: expected one of {', '.join(FORMATS)}")
    if by_suffix is not None and by_suffix != to:
        raise CheckpointError(f"--to {to} contradicts the suffix of '{out}' ({by_suffix})")
    if to == "mindspore" and by_suffix is None:
        raise CheckpointError(f"MindSpore checkpoints must end in .ckpt, got '{out}'")
    return to


def _vkd_run_folder(path) -> Optional[str]:
    """The VKD run folder holding checkpoint file ``path`` (``<run>/chk/<name>``), if any."""
    run = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    return run if os.path.isfile(os.path.join(run, "params", "hparams.json")) else None


def _from_vkd(src, state: dict, extra: dict, backbone: str) -> Tuple[dict, dict, str]:
    """A VKD state dict under canonical names, its extra, and a note."""
    from common.backbones import canonical_backbone_name
    from common.recipes import vkd_folders
    run = _vkd_run_folder(src)
    if backbone:
        arch = canonical_backbone_name(backbone)
    elif run:
        arch, num_classes = vkd_folders.folder_facts(run)
        extra = {**extra, "num_classes": num_classes, "arch": arch}
    else:
        raise CheckpointError(f"'{src}' is a VKD checkpoint (backbone.features_layers.* names) with no "
                              "params/hparams.json next to its chk/ folder: pass --backbone NAME")
    return vkd_folders.vkd_to_canonical(state, arch), extra, f"VKD checkpoint: names mapped for a {arch}"


def convert(src, dst, to: Optional[str] = None, backbone: str = "", chk_name: str = "chk_end") -> list:
    """Convert ``src`` (a file, or a VKD run folder) into ``dst`` (see module docstring);
    returns notes for the user."""
    fmt = target_format(dst, to)
    if os.path.isdir(src):
        from common.recipes import vkd_folders
        vkd_folders.folder_facts(src)  # a VKD run folder, or a one-line error saying what is expected
        src = vkd_folders.checkpoint_in(src, chk_name)
    if os.path.abspath(src) == os.path.abspath(dst):
        raise CheckpointError(f"input and output are the same file: '{src}'")
    state, extra, had_optimizer = read_weights(src)
    if not state:
        raise CheckpointError(f"'{src}' holds no model weights")
    notes = []
    if any(k.startswith("backbone.features_layers.") for k in state):
        state, extra, note = _from_vkd(src, state, extra, backbone)
        notes.append(note)
    if had_optimizer:
        notes.append("optimizer state dropped (it belongs to one backend's optimizer); "
                     "a resumed run starts with fresh optimizer moments")
    write_weights(dst, fmt, state, extra)
    notes.append(f"wrote {len(state)} tensors to '{dst}' ({fmt})")
    return notes


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 on a user-facing error)."""
    parser = argparse.ArgumentParser(prog="python -m tools.convert_weights",
                                     description="Convert model weights between torch .pth, "
                                                 "MindSpore .ckpt and .safetensors (SPEC 11).")
    parser.add_argument("src", metavar="IN", help="checkpoint to read (format recognised from its content), or a "
                                                  "VKD run folder")
    parser.add_argument("dst", metavar="OUT", help="file to write (.pth/.pt, .ckpt or .safetensors)")
    parser.add_argument("--to", choices=FORMATS, default=None, help="output format (default: from OUT's suffix)")
    parser.add_argument("--backbone", default="", help="backbone of a VKD checkpoint with no params/hparams.json "
                                                       "next to its chk/ folder")
    parser.add_argument("--chk-name", default="chk_end", help="checkpoint name in a VKD run folder's chk/")
    args = parser.parse_args(argv)

    def go():
        for note in convert(args.src, args.dst, args.to, args.backbone, args.chk_name):
            print(f"note: {note}", file=sys.stderr)
        return 0
    from common.cli import run_main
    return run_main(go)


if __name__ == "__main__":
    sys.exit(main())
