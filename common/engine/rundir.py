"""Run folders (``<log_dir>/<ckpt>/``): protection, late creation, stale-file cleanup, logs.

Rules (a run folder is a user's result; nothing overwrites one by accident):

* A fresh run into a folder that already holds results refuses, naming the folder and its
  files, unless ``--resume`` continues that run or ``--overwrite`` (``train.overwrite``)
  replaces it. The check runs before any data is read.
* Nothing is written until the run is known to start (data loaded, model built, resume
  checkpoint read): a run that fails earlier leaves no folder, no ``config.yaml`` and no
  half-written log behind. Lines logged before the start are kept and written then.
* A fresh run that fails before its first checkpoint (a corrupt image met in the first
  epoch, divergence, an interrupt) removes what it wrote (:meth:`RunDir.discard`); the
  error names the cause, and the same command can simply be run again.
* At the start: with ``--overwrite`` the previous run's files (``tensorboard/`` included)
  are removed; temporary files of killed runs (``*.tmp-<pid>*`` whose process is gone) are
  removed; a run resumed from another folder gets a copy of that folder's best checkpoint,
  so every file the final message names exists.
"""
import glob
import json
import os
import re
import shutil
import time
from typing import List, Optional

from common.errors import ConfigError

RUN_FILES = ("config.yaml", "train.log", "metrics.jsonl")
RUN_FOLDERS = ("tensorboard",)  # written by a run (train.tensorboard); replaced with it
_TMP_RE = re.compile(r"\.tmp-(\d+)")


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temp_files(folder: str) -> List[str]:
    """Temporary files of atomic writes (``<name>.tmp-<pid>[...]``) whose process is gone."""
    out = []
    for path in glob.glob(os.path.join(glob.escape(folder), "*.tmp-*")):
        m = _TMP_RE.search(os.path.basename(path))
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            out.append(path)
    return sorted(out)


def _writable_ancestor(path: str) -> Optional[str]:
    """The nearest existing ancestor of ``path`` (itself included)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path


class RunDir:
    """One run folder; see the module docstring for the rules."""

    def __init__(self, log_dir: str, ckpt: str, checkpoint_names: dict):
        self.path = os.path.join(log_dir, ckpt)
        self.names = dict(checkpoint_names)  # which -> file name, e.g. {'last': 'torch_last.pth'}
        self.started, self.created, self._before = False, False, set()

    def file(self, which: str) -> str:
        return os.path.join(self.path, self.names[which])

    def existing_results(self) -> List[str]:
        if not os.path.isdir(self.path):
            return []
        return sorted(n for n in os.listdir(self.path) if not _TMP_RE.search(n))

    def check_can_start(self, resume: str, overwrite: bool) -> None:
        """Refuse (ConfigError, before any data is read) a fresh run into a folder holding
        results, a run folder that is a file, and an unwritable log folder."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ConfigError(f"run folder '{self.path}' is a file; expected a folder (choose another --ckpt)")
        found = self.existing_results()
        resuming_here = bool(resume) and os.path.abspath(os.path.dirname(resume)) == os.path.abspath(self.path)
        if found and not (resuming_here or overwrite):
            shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
            hint = (f"pass --resume {self.file('last')} to continue it" if os.path.isfile(self.file("last"))
                    else "it holds no last checkpoint to resume")
            raise ConfigError(f"run folder '{self.path}' already holds a run ({shown}); {hint}, "
                              f"--overwrite to replace it, or choose another --ckpt")
        anchor = _writable_ancestor(self.path)
        if anchor is None or not os.access(anchor, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write the run folder '{self.path}': '{anchor}' is not writable; "
                              f"choose a writable --set train.log_dir=DIR")

    def start(self, overwrite: bool, resume: str = "") -> None:
        """Create the folder and apply the start rules (module docstring)."""
        self.created = not os.path.isdir(self.path)
        os.makedirs(self.path, exist_ok=True)
        if overwrite:
            for name in list(RUN_FILES) + list(self.names.values()):
                p = os.path.join(self.path, name)
                if os.path.isfile(p):
                    os.remove(p)
            for name in RUN_FOLDERS:
                p = os.path.join(self.path, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
        for p in stale_temp_files(self.path):
            os.remove(p)
        if resume and os.path.abspath(os.path.dirname(resume)) != os.path.abspath(self.path):
            best = os.path.join(os.path.dirname(resume), self.names["best"])
            if os.path.isfile(best) and not os.path.exists(self.file("best")):
                shutil.copy2(best, self.file("best"))
        self._before = set(os.listdir(self.path))
        self.started = True

    def discard(self) -> None:
        """Remove what this run wrote since :meth:`start` (and the folder when the run created
        it and it is left empty): a fresh run that failed before its first checkpoint."""
        if not self.started:
            return
        for name in set(os.listdir(self.path)) - self._before:
            p = os.path.join(self.path, name)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
        if self.created and not os.listdir(self.path):
            os.rmdir(self.path)
        self.started = False

    def summary(self) -> str:
        """'<folder>: a, b, c' listing the files that exist now."""
        names = [n for n in (self.names.get("best"), self.names.get("last")) if n and
                 os.path.isfile(os.path.join(self.path, n))]
        return f"{self.path}: " + (", ".join(names + ["config.yaml", "train.log"]) if names else "no checkpoint")


class RunLog:
    """Human-readable ``train.log`` and JSON-lines ``metrics.jsonl`` of a run. Lines logged
    before :meth:`open` are echoed at once and written when the folder exists."""

    def __init__(self, echo=print, enabled: bool = True):
        self.echo, self.folder, self._pending = echo, None, []
        self.enabled = enabled  # False: a distributed run's rank > 0, which logs nothing

    def open(self, folder: str) -> None:
        self.folder = folder
        pending, self._pending = self._pending, []
        for stamp, text in pending:
            self._write("train.log", f"{stamp} {text}\n")

    def _write(self, name: str, text: str) -> None:
        with open(os.path.join(self.folder, name), "a", encoding="utf-8") as f:
            f.write(text)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        if self.folder is None:
            self._pending.append((stamp, text))
        else:
            self._write("train.log", f"{stamp} {text}\n")
        if self.echo:
            self.echo(text)

    def record(self, **data) -> None:
        if self.enabled and self.folder is not None:
            self._write("metrics.jsonl", json.dumps(data) + "\n")
