"""Resize the SYSU-MM01 training images into four .npy arrays (SPEC section 2.1).

    python pre_process_sysu.py --data-path ROOT [--height 288 --width 144]

Reads the pids of ``exp/train_id.txt`` and ``exp/val_id.txt``, resizes every training image
of the RGB cameras (1, 2, 4, 5) and of the IR cameras (3, 6) to ``width x height`` with PIL
LANCZOS, and writes into ROOT::

    train_rgb_resized_img.npy   (N_rgb, H, W, 3) uint8     train_rgb_resized_label.npy (int64)
    train_ir_resized_img.npy    (N_ir, H, W, 3) uint8      train_ir_resized_label.npy  (int64)

Labels are 0..C-1 in ascending order of the raw pid, one map shared by both modalities
(built from every pid that has a training image). Images are ordered by pid, then camera,
then file name.

Never a partial result:

* Each array is first written to ``ROOT/.<name>.part-<pid>`` and the four files are renamed
  into place only after every image was read and written (and fsync'ed). Any error, SIGINT
  or SIGTERM removes the temporary files; the run then prints one line and exits 2 (error),
  130 (SIGINT) or 143 (SIGTERM). A signal that arrives during the final renames is acted on
  once the four files are in place.
* SIGKILL cannot be caught: every run starts by removing ``.<name>.part-<pid>`` files of
  earlier runs whose process is gone (PIDs are checked on this machine only). A temporary
  file of a live process stops the run with one line: two runs must not write one folder.
* Free space is checked up front against the exact output size (headers + N x H x W x 3
  bytes + 8 bytes per label) plus :data:`SPACE_MARGIN`; a full disk met later anyway
  (ENOSPC) is one line too, never a SIGBUS: the arrays are streamed row by row into plain
  files (``.npy`` header from ``np.lib.format.write_array_header_1_0``), not memory-mapped,
  so the 2.8 GB RGB array of the real data set never sits in memory either.
* Files are created with mode 0666 minus the process umask, like any normally created file.
* OSError / UnicodeError from the user's files (unreadable or undecodable id file, a folder
  where a file is expected, a read-only folder, ...) is one line naming the path; exit 2.
"""
import argparse
import contextlib
import io
import os
import re
import shutil
import signal
import sys
import threading
import time

import numpy as np

from common.data import sysu
from common.data.base import read_image, relabel
from common.errors import DatasetLayoutError, ReidError, os_error_message

# ``.<final name>.part-<pid>``: the temporary file of one output written by process <pid>
TEMP_RE = re.compile(r"^\.(train_(?:rgb|ir)_resized_(?:img|label)\.npy)\.part-(\d+)$")
# temporary files of older versions of this script (``tempfile.mkstemp``): no PID to check,
# so they are only reported, never removed
LEGACY_TEMP_RE = re.compile(r"^\.train_(?:rgb|ir)_resized_(?:img|label)\.npy\.[A-Za-z0-9_]+\.part$")
SPACE_MARGIN = 4 << 20  # bytes asked for on top of the exact output size (file-system bookkeeping)
# Test-only hook: seconds to sleep after each image, so that tests can signal a run mid-way.
TEST_DELAY_ENV = "REID_PREPROCESS_TEST_DELAY_S"
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException so that no ``except Exception`` keeps the
    run going). ``after_commit`` is True when the four files were already in place."""

    def __init__(self, signum: int, after_commit: bool = False):
        super().__init__(signum)
        self.signum, self.after_commit = signum, after_commit


_DEFER = {"on": False, "pending": None}  # signal deferral during the final renames


def _on_signal(signum, frame):
    for s in SIGNAL_EXIT:  # a second signal must not cut the clean-up short
        signal.signal(s, signal.SIG_IGN)
    if _DEFER["on"]:
        _DEFER["pending"] = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_raise():
    """Turn SIGINT and SIGTERM into :class:`Interrupted` inside the block (main thread only;
    a signal the parent set to ignore stays ignored); restore the handlers afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in SIGNAL_EXIT}
    for s, handler in saved.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def temp_name(name: str, pid: int = None) -> str:
    """File name of the temporary file of output ``name`` written by process ``pid``."""
    return f".{name}.part-{os.getpid() if pid is None else pid}"


def _pid_alive(pid: int) -> bool:
    """True when process ``pid`` runs on this machine (zombies count as gone). Our own PID
    counts as gone: this run has not created anything yet, so such a file is a leftover of a
    killed run whose PID was reused."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except (OverflowError, ValueError, OSError):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def remove_stale_temps(root: str) -> int:
    """Remove ``.<name>.part-<pid>`` files in ``root`` left by runs that are gone (SIGKILL,
    power loss); return the bytes freed. A live owner is a ReidError (two runs, one folder)."""
    freed, legacy = 0, []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        match = TEMP_RE.match(entry.name)
        if LEGACY_TEMP_RE.match(entry.name):
            legacy.append(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match.group(2))
        if _pid_alive(pid):
            raise ReidError(f"another pre_process_sysu.py (pid {pid}) is writing into '{root}' "
                            f"(temporary file {entry.name}); wait for it to finish, or delete "
                            f"that file if no such run exists")
        try:
            size = entry.stat(follow_symlinks=False).st_size
            os.remove(entry.path)
        except OSError as e:
            raise ReidError(f"cannot remove the stale temporary file {os_error_message(e, entry.path)}") from None
        freed += size
        print(f"removed stale temporary file '{entry.path}' ({size:,} bytes) of an interrupted "
              f"run (pid {pid})", file=sys.stderr)
    if legacy:
        print(f"note: '{root}' holds temporary files of an older pre_process_sysu.py: "
              f"{', '.join(legacy)}; delete them if no such run is active", file=sys.stderr)
    return freed


def npy_header(shape, dtype) -> bytes:
    """The version 1.0 ``.npy`` header of a C-ordered array of ``shape`` and ``dtype``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def output_bytes(counts, height: int, width: int) -> int:
    """Exact size in bytes of the four arrays for image counts ``counts`` (one per modality)."""
    return sum(len(npy_header((n, height, width, 3), np.uint8)) + n * height * width * 3
               + len(npy_header((n,), np.int64)) + 8 * n for n in counts)


def check_free_space(root: str, needed: int) -> None:
    """ReidError (one line, needed and available bytes) when ``root``'s disk lacks ``needed``."""
    try:
        free = shutil.disk_usage(root).free
    except OSError as e:
        raise ReidError(f"cannot check the free space of {os_error_message(e, root)}") from None
    if free < needed:
        raise ReidError(f"not enough free space for the training arrays in '{root}': need "
                        f"{needed:,} bytes ({needed / 2**30:.2f} GiB), only {free:,} bytes "
                        f"({free / 2**30:.2f} GiB) available on that disk")


def _resize(path: str, height: int, width: int) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.fromarray(read_image(path)).resize((width, height), Image.LANCZOS))


def _create(path: str):
    """Open a new file for writing with mode 0666 & ~umask (no mkstemp, whose 0600 ignores it)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                             0o666), "wb")


def _create_temps(root: str, names, temps: dict) -> dict:
    """Create the temporary file of every output (registered in ``temps`` before it exists,
    so that the caller's clean-up finds it) and return ``{name: open file}``; done before the
    long loop so that a read-only folder fails at once."""
    files = {}
    try:
        for name in names:
            temps[name] = os.path.join(root, temp_name(name))
            files[name] = _create(temps[name])
    except OSError as e:
        for f in files.values():
            f.close()
        raise ReidError(f"cannot write the training arrays into {os_error_message(e, root)}") from None
    return files


def _write_outputs(root: str, groups: dict, height: int, width: int, files: dict, bar, delay: float):
    """Stream the four arrays into their (open) temporary files, fsync and close them."""
    for modality, group in groups.items():
        for kind in ("img", "label"):
            name = f"train_{modality}_resized_{kind}.npy"
            try:
                with files[name] as f:
                    if kind == "label":
                        np.save(f, np.array([r.pid for r in group], dtype=np.int64))
                    else:
                        f.write(npy_header((len(group), height, width, 3), np.uint8))
                        for r in group:
                            f.write(np.ascontiguousarray(_resize(r.path, height, width), np.uint8).tobytes())
                            bar.update(1)
                            if delay:
                                time.sleep(delay)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise ReidError(f"writing {os_error_message(e, os.path.join(root, name))}; "
                                f"removed the temporary files, nothing was written") from None


def _commit(root: str, temps: dict) -> None:
    """Rename the temporary files into place; SIGINT/SIGTERM wait until all four are done."""
    _DEFER.update(on=True, pending=None)
    try:
        for name in list(temps):
            os.replace(temps[name], os.path.join(root, name))
            del temps[name]
    finally:
        _DEFER["on"] = False
    if _DEFER["pending"] is not None:
        raise Interrupted(_DEFER["pending"], after_commit=True)


def preprocess(root: str, height: int = 288, width: int = 144, progress: bool = True) -> dict:
    """Write the four training arrays of SYSU-MM01 into ``root`` (SPEC 2.1); return the
    counts ``{'rgb': N_rgb, 'ir': N_ir, 'ids': C}``. Raises ReidError on a wrong root, a
    corrupt image, too little disk space or a failed write, leaving no new file behind
    (see the module docstring)."""
    if height < 1 or width < 1:
        raise ReidError(f"--height and --width must be positive, got {height}x{width}")
    records = relabel(sysu.train_records(root))
    groups = {"rgb": [r for r in records if not sysu.is_ir(r.camid)],
              "ir": [r for r in records if sysu.is_ir(r.camid)]}
    for modality, group in groups.items():
        if not group:
            cams = sysu.IR_CAMS if modality == "ir" else sysu.RGB_CAMS
            raise DatasetLayoutError(
                f"no {modality.upper()} training images under '{root}' in cams "
                f"{','.join(map(str, cams))} for the pids of exp/train_id.txt and exp/val_id.txt. "
                f"Expected layout: {sysu.LAYOUT}")
    remove_stale_temps(root)
    delay = float(os.environ.get(TEST_DELAY_ENV) or 0)
    from tqdm import tqdm
    temps, files = {}, {}  # final name -> temporary path (registered before creation) / open file
    try:
        files = _create_temps(root, [f"train_{m}_resized_{k}.npy" for m in groups for k in ("img", "label")], temps)
        check_free_space(root, output_bytes([len(g) for g in groups.values()], height, width) + SPACE_MARGIN)
        with tqdm(total=len(records), desc="SYSU-MM01 train", unit="img", disable=not progress) as bar:
            _write_outputs(root, groups, height, width, files, bar, delay)
        _commit(root, temps)
    finally:
        for f in files.values():
            with contextlib.suppress(OSError):
                f.close()
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                os.remove(tmp)
    return {"rgb": len(groups["rgb"]), "ir": len(groups["ir"]), "ids": len({r.pid for r in records})}


def main(argv=None) -> int:
    """Command line of :func:`preprocess`: prints ``error: ...`` and returns 2 on a ReidError,
    an OSError or a UnicodeError; 130 / 143 after SIGINT / SIGTERM (temporary files removed)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-path", required=True, help="SYSU-MM01 root (holds cam1..cam6 and exp/)")
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=144)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    a = p.parse_args(argv)
    try:
        with signals_raise():
            counts = preprocess(a.data_path, a.height, a.width, progress=not a.no_progress)
    except Interrupted as e:
        name = signal.Signals(e.signum).name
        if e.after_commit:
            print(f"error: interrupted by {name} after the four arrays were written to "
                  f"{a.data_path}", file=sys.stderr)
        else:
            print(f"error: interrupted by {name}; removed the temporary files, nothing was "
                  f"written", file=sys.stderr)
        return SIGNAL_EXIT.get(e.signum, 128 + e.signum)
    except ReidError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, UnicodeError) as e:
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    print(f"wrote {counts['rgb']} RGB and {counts['ir']} IR images of {counts['ids']} identities "
          f"({a.height}x{a.width}) to {a.data_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
