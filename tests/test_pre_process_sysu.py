"""pre_process_sysu.py never leaves partial files and never dies silently: signals, SIGKILL
leftovers, full disks, umask, and the user's broken files and folders (one line, exit 2);
plus common.errors.os_error_message, which words those lines."""
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple

import numpy as np
import pytest
from PIL import Image

import pre_process_sysu as pre
from common.data import sysu
from common.errors import os_error_message

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "pre_process_sysu.py")
OUTPUTS = sorted(sysu.NPY_FILES)
N_RGB, N_IR, H, W = 24, 12, 16, 8  # the tree below: 3 training pids x 2 images per camera


def _tree(root) -> str:
    """Training pids 5, 2 (+ val 9), test pid 3; two 12x6 JPEGs per pid and camera."""
    root = str(root)
    rng = np.random.default_rng(0)
    for pid in (2, 3, 5, 9):
        for cam in range(1, 7):
            folder = os.path.join(root, f"cam{cam}", f"{pid:04d}")
            os.makedirs(folder)
            for k in (1, 2):
                Image.fromarray(rng.integers(0, 255, (12, 6, 3), dtype=np.uint8)).save(
                    os.path.join(folder, f"{k:04d}.jpg"))
    os.makedirs(os.path.join(root, "exp"))
    for name, text in (("train", "5,2"), ("val", "9"), ("test", "3")):
        with open(os.path.join(root, "exp", f"{name}_id.txt"), "w") as f:
            f.write(text)
    return root


def _written(root):
    """Outputs and temporaries in ``root`` (everything but the input tree)."""
    return sorted(f for f in os.listdir(root) if f.endswith(".npy") or ".part" in f)


def _run(root, *extra):
    return pre.main(["--data-path", root, "--height", str(H), "--width", str(W), "--no-progress", *extra])


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ------------------------------------------------------------------------- signals, SIGKILL

def _start_slow_run(root):
    """Start the script in a subprocess that sleeps 0.05 s per image (test-only hook) and
    return it once its RGB temporary file holds a few images."""
    env = dict(os.environ, PYTHONPATH=REPO, **{pre.TEST_DELAY_ENV: "0.05"})
    proc = subprocess.Popen([sys.executable, SCRIPT, "--data-path", root, "--height", str(H),
                             "--width", str(W), "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = os.path.join(root, f".train_rgb_resized_img.npy.part-{proc.pid}")
    header = len(pre.npy_header((N_RGB, H, W, 3), np.uint8))
    deadline = time.time() + 20
    while not (os.path.exists(part) and os.path.getsize(part) >= header + 2 * H * W * 3):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"no temporary file {part} appeared: {proc.communicate()}")
        time.sleep(0.01)
    return proc, part


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_run_removes_temporaries(tmp_path, signum, code):
    root = _tree(tmp_path)
    proc, part = _start_slow_run(root)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == code
    assert f"interrupted by {signal.Signals(signum).name}" in _one_error_line(err)
    assert _written(root) == []  # neither the .part file nor any final .npy


def test_sigkill_leftover_is_removed_by_the_next_run(tmp_path, capsys):
    root = _tree(tmp_path)
    proc, part = _start_slow_run(root)
    proc.kill()
    proc.wait(timeout=20)
    assert os.path.exists(part)  # SIGKILL cannot be caught: the leftover is real
    legacy = os.path.join(root, ".train_rgb_resized_img.npy.k2j4x9qa.part")  # mkstemp-era name
    open(legacy, "wb").close()
    assert _run(root) == 0
    err = capsys.readouterr().err
    assert f"removed stale temporary file '{part}'" in err and f"(pid {proc.pid})" in err
    assert "older pre_process_sysu.py" in err and os.path.exists(legacy)  # reported, left alone
    assert _written(root) == sorted(OUTPUTS + [os.path.basename(legacy)])
    rgb, rgb_y, ir, ir_y = sysu.load_preprocessed(root)
    assert rgb.shape == (N_RGB, H, W, 3) and ir.shape == (N_IR, H, W, 3)
    assert pre.output_bytes([N_RGB, N_IR], H, W) == sum(
        os.path.getsize(os.path.join(root, f)) for f in OUTPUTS)  # the space estimate is exact


def test_temporary_file_of_a_live_run_stops_the_run(tmp_path, capsys):
    root = _tree(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = os.path.join(root, pre.temp_name("train_ir_resized_label.npy", sleeper.pid))
        open(live, "wb").close()
        assert _run(root) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert f"another pre_process_sysu.py (pid {sleeper.pid})" in line and os.path.exists(live)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert _run(root) == 0 and not os.path.exists(live)  # its owner is gone now


# ------------------------------------------------------------------------- disk space, umask

def test_free_space_is_checked_up_front(tmp_path, monkeypatch, capsys):
    root = _tree(tmp_path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(pre.shutil, "disk_usage", lambda path: usage(10 ** 9, 0, 1000))
    assert _run(root) == 2
    needed = (N_RGB + N_IR) * (H * W * 3 + 8) + 4 * 128 + pre.SPACE_MARGIN  # 128-byte headers
    line = _one_error_line(capsys.readouterr().err)
    assert f"need {needed:,} bytes" in line and "only 1,000 bytes" in line
    assert _written(root) == []


class _FullDisk(io.FileIO):
    """A file on a disk that fills up after 2000 bytes."""

    def write(self, data):
        if self.tell() + len(data) > 2000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_disk_full_while_writing_is_one_line(tmp_path, monkeypatch, capsys):
    root = _tree(tmp_path)
    monkeypatch.setattr(pre, "_create", lambda path: _FullDisk(
        os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w"))
    assert _run(root) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"'{os.path.join(root, 'train_rgb_resized_img.npy')}': no space left on device (disk full)" in line
    assert _written(root) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    root = _tree(tmp_path)
    old = os.umask(umask)
    try:
        assert _run(root) == 0
    finally:
        os.umask(old)
    assert {f: os.stat(os.path.join(root, f)).st_mode & 0o777 for f in OUTPUTS} == dict.fromkeys(OUTPUTS, mode)


# ------------------------------------------------------------ the user's files and folders

def test_undecodable_id_file(tmp_path, capsys):
    root = _tree(tmp_path)
    path = os.path.join(root, "exp", "train_id.txt")
    with open(path, "wb") as f:
        f.write(b"5,\xff2")
    assert _run(root) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"cannot decode '{path}' as UTF-8 text (byte 0xff at offset 2)" in line
    assert _written(root) == []


def test_directory_where_a_file_is_expected_and_the_reverse(tmp_path, capsys):
    root = _tree(tmp_path)
    path = os.path.join(root, "exp", "val_id.txt")
    os.remove(path)
    os.mkdir(path)
    assert _run(root) == 2
    assert f"'{path}': is a directory, expected a file" in _one_error_line(capsys.readouterr().err)
    os.rmdir(path)
    with open(path, "w") as f:
        f.write("9")
    cam4 = os.path.join(root, "cam4")
    shutil.rmtree(cam4)
    open(cam4, "w").close()
    assert _run(root) == 2
    assert f"'{cam4}' is a file, expected a folder" in _one_error_line(capsys.readouterr().err)
    assert _written(root) == []


def test_read_only_data_folder(tmp_path, capsys):
    root = _tree(tmp_path)
    os.chmod(root, 0o555)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("running as root: a 0555 folder stays writable (see the tmpfs read-only test)")
        assert _run(root) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert f"cannot write the training arrays into '{root}': permission denied" in line
        assert _written(root) == []
    finally:
        os.chmod(root, 0o755)


# --------------------------------------------------------- a real full / read-only tmpfs disk

CHILD = """
import json, os, sys
import pre_process_sysu as p
root, mode = sys.argv[1], sys.argv[2]
if mode == "no-check":
    p.check_free_space = lambda *a: None  # reach the write itself
rc = p.main(["--data-path", root, "--height", "256", "--width", "128", "--no-progress"])
print(json.dumps({"rc": rc, "files": sorted(f for f in os.listdir(root) if ".npy" in f)}))
"""


def _in_private_tmpfs(tmp_path, size, mode, read_only=False):
    """Copy a tree into a tmpfs of ``size`` mounted in a private user+mount namespace and run
    the script there; skip where unprivileged namespaces or tmpfs mounts are unavailable."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare(1) on this machine")
    src, mnt = _tree(tmp_path / "src"), tmp_path / "mnt"
    mnt.mkdir()
    remount = 'mount -o remount,ro "$1" && ' if read_only else ""
    shell = (f'mount -t tmpfs -o size={size} tmpfs "$1" || exit 97; cp -r "$2"/. "$1"/ && '
             f'{remount}exec "$3" -c "$4" "$1" "$5"')
    res = subprocess.run(["unshare", "-rm", "sh", "-c", shell, "sh", str(mnt), src, sys.executable,
                          CHILD, mode], env=dict(os.environ, PYTHONPATH=REPO),
                         capture_output=True, text=True, timeout=60)
    if res.returncode == 97 or (res.returncode != 0 and "unshare" in res.stderr):
        pytest.skip(f"cannot mount a private tmpfs here: {res.stderr.strip()}")
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


def test_full_tmpfs_disk(tmp_path):
    out, err = _in_private_tmpfs(tmp_path, "1m", "check")
    assert out == {"rc": 2, "files": []}
    assert "not enough free space" in _one_error_line(err) and "available on that disk" in err
    out, err = _in_private_tmpfs(tmp_path / "b", "1m", "no-check")  # the write meets ENOSPC
    assert out == {"rc": 2, "files": []}
    assert "no space left on device (disk full)" in _one_error_line(err)


def test_read_only_tmpfs_disk(tmp_path):
    out, err = _in_private_tmpfs(tmp_path, "4m", "check", read_only=True)
    assert out == {"rc": 2, "files": []}
    assert "cannot write the training arrays into" in _one_error_line(err)
    assert "read-only file system" in err


# ----------------------------------------------------------------------- os_error_message

@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "no space left on device (disk full)"),
    (errno.EACCES, "permission denied"),
    (errno.EPERM, "operation not permitted"),
    (errno.EROFS, "read-only file system"),
    (errno.EISDIR, "is a directory, expected a file"),
    (errno.ENOTDIR, "expected a directory"),
    (errno.ENOENT, "no such file or directory"),
    (errno.EIO, "input/output error"),
])
def test_os_error_message_words(code, words):
    exc = OSError(code, os.strerror(code), "/data/x.npy")
    assert os_error_message(exc).startswith("'/data/x.npy': ") and words in os_error_message(exc)
    assert os_error_message(exc, "/other").startswith("'/other': ") and words in os_error_message(exc, "/other")


def test_os_error_message_fallbacks_and_unicode():
    assert os_error_message(OSError(errno.ENOSPC, "No space left")) == "no space left on device (disk full)"
    assert os_error_message(OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b")) \
        == "'/a' -> '/b': Invalid cross-device link"
    try:
        b"ok\n\xc3(".decode("utf-8")
    except UnicodeDecodeError as e:
        assert os_error_message(e, "/ids.txt") == ("cannot decode '/ids.txt' as UTF-8 text (byte 0xc3 "
                                                  "at offset 3); save it as UTF-8 text")
        assert "\n" not in os_error_message(e)
