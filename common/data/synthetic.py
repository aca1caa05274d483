"""Write a miniature dataset in a real on-disk layout (SPEC section 2, synthetic generator).

    python -m common.data.synthetic --layout NAME --out DIR [--ids N] [--seed S] [--rand-perm]
                                    [--shift STYLE] [--mat]

Layouts: sysu, regdb, market1501, dukemtmcreid, msmt17, cuhk03, mars, dukevideo, veri.
Images come from :mod:`common.data.appearance` (identity learnable, camera weak, IR distinct).
``--rand-perm`` (sysu only) also writes ``exp/rand_perm_cam.mat`` in the structure of the
official SYSU-MM01 evaluation kit, so the gallery follows the official protocol.
``--shift STYLE`` (market1501, dukemtmcreid, msmt17, cuhk03) renders the whole set in a dataset
style of :data:`common.data.appearance.DOMAIN_SHIFTS` ('warm', 'dim'; default 'none' = the
unshifted images), a domain shift for adaptation experiments. ``--mat`` (cuhk03, needs h5py)
writes the release's ``cuhk-03.mat`` instead of the extracted image folders.
"""
import argparse
import sys

from common.data.appearance import DOMAIN_SHIFTS

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


# layout -> extra keyword options its writer takes (``write(..., **options)``)
OPTIONS = {"sysu": ("rand_perm",), "market1501": ("shift",), "dukemtmcreid": ("shift",), "msmt17": ("shift",),
           "cuhk03": ("shift", "mat")}


def write(layout: str, out: str, ids: int = 8, seed: int = 0, **options) -> str:
    """Write ``layout`` under ``out`` with ``ids`` identities; return the parser's root.
    ``options`` go to the writer (see :data:`OPTIONS`, e.g. ``rand_perm=True`` for sysu)."""
    import importlib
    if layout not in WRITERS:
        raise ReidError(f"unknown layout {layout!r}; expected one of {', '.join(WRITERS)}")
    unknown = sorted(set(options) - set(OPTIONS.get(layout, ())))
    if unknown:
        raise ReidError(f"layout {layout!r} takes no option {', '.join(unknown)}; options: "
                        f"{', '.join(OPTIONS.get(layout, ())) or 'none'}")
    module, fn = WRITERS[layout]
    return getattr(importlib.import_module(module), fn)(out, ids, seed, **options)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", required=True, choices=sorted(WRITERS))
    p.add_argument("--out", required=True, help="folder to write into (created)")
    p.add_argument("--ids", type=int, default=8, help="number of identities per split (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rand-perm", action="store_true",
                   help="sysu only: also write exp/rand_perm_cam.mat (official gallery permutations)")
    p.add_argument("--shift", default="none", choices=sorted(DOMAIN_SHIFTS),
                   help="market1501, dukemtmcreid, msmt17, cuhk03: dataset style (domain shift); default none")
    p.add_argument("--mat", action="store_true", help="cuhk03 only: write cuhk-03.mat (HDF5, needs h5py)")
    a = p.parse_args(argv)
    options = {"rand_perm": True} if a.rand_perm else {}
    if a.shift != "none":
        options["shift"] = a.shift
    if a.mat:
        options["mat"] = True
    try:
        root = write(a.layout, a.out, a.ids, a.seed, **options)
    except ReidError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
