"""A full disk during training, in both backends: the run stops with one line that names the
checkpoint file and says the disk is full, exits 2, and leaves no temporary file behind (nor
MindSpore's own ``<name>.tmp``). The log folder is a small tmpfs mounted in a private user and
mount namespace (``unshare -rm``); the test is skipped where that is not available."""
import os
import shutil
import subprocess
import sys

import pytest

from tiny import make_sysu, train_argv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_sysu(tmp_path_factory.mktemp("sysu"))


def _train_on_tmpfs(root, mnt, backend, size="160k"):
    if not shutil.which("unshare"):
        pytest.skip("no unshare(1) on this machine")
    os.makedirs(mnt, exist_ok=True)
    argv = train_argv(root, str(mnt), backend, extra=["--epochs", "1"])
    script = ('mount -t tmpfs -o size="$1" tmpfs "$2" || exit 97; shift 2; "$@"; rc=$?; '
              '(cd "$MNT" && find . -mindepth 1) > "$MNT.listing" 2>/dev/null; exit $rc')
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", size, str(mnt), sys.executable, "train.py",
                          *argv], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, MNT=str(mnt)))
    if res.returncode == 97 or (res.returncode != 0 and "unshare" in res.stderr):
        pytest.skip(f"cannot mount a private tmpfs here: {res.stderr.strip()[:200]}")
    listing = open(f"{mnt}.listing").read().split() if os.path.exists(f"{mnt}.listing") else []
    return res, listing


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_full_disk_is_one_line_and_leaves_no_temporary_file(root, tmp_path, backend):
    res, listing = _train_on_tmpfs(root, tmp_path / "logs", backend)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 2, res.stderr[-1000:]
    assert len(errors) == 1 and "disk full" in errors[0] and "_best" in errors[0], errors
    assert "CRITICAL" not in res.stderr  # MindSpore's own logger stays quiet: one line
    # no checkpoint could be written, so the fresh run removed what it wrote: nothing is left
    # on the full disk (no temporary file, no half run folder)
    assert os.path.exists(f"{tmp_path / 'logs'}.listing") and listing == [], listing
