"""Write a miniature dataset in a real on-disk layout (SPEC section 2, synthetic generator).

    python -m common.data.synthetic --layout NAME --out DIR [--ids N] [--seed S]

Layouts: sysu, regdb, market1501, dukemtmcreid, msmt17, cuhk03, mars, dukevideo, veri.
Images come from :mod:`common.data.appearance` (identity learnable, camera weak, IR distinct).
"""
import argparse
import sys

from common.errors import ReidError

# layout name -> (module, function); each writer is ``write(out: str, ids: int, seed: int) -> str``
# returning the dataset root that the matching parser takes.
WRITERS = {
    "sysu": ("common.data.synthetic_image", "write_sysu"),
    "regdb": ("common.data.synthetic_image", "write_regdb"),
    "market1501": ("common.data.synthetic_image", "write_market1501"),
    "dukemtmcreid": ("common.data.synthetic_image", "write_dukemtmcreid"),
    "msmt17": ("common.data.synthetic_image", "write_msmt17"),
    "cuhk03": ("common.data.synthetic_image", "write_cuhk03"),
    "mars": ("common.data.synthetic_video", "write_mars"),
    "dukevideo": ("common.data.synthetic_video", "write_dukevideo"),
    "veri": ("common.data.synthetic_video", "write_veri"),
}


def write(layout: str, out: str, ids: int = 8, seed: int = 0) -> str:
    """Write ``layout`` under ``out`` with ``ids`` identities; return the parser's root."""
    import importlib
    if layout not in WRITERS:
        raise ReidError(f"unknown layout {layout!r}; expected one of {', '.join(WRITERS)}")
    module, fn = WRITERS[layout]
    return getattr(importlib.import_module(module), fn)(out, ids, seed)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", required=True, choices=sorted(WRITERS))
    p.add_argument("--out", required=True, help="folder to write into (created)")
    p.add_argument("--ids", type=int, default=8, help="number of identities per split (default 8)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        root = write(a.layout, a.out, a.ids, a.seed)
    except ReidError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
