"""Error types that the command-line entry points turn into one clear line and exit 2, and
:func:`os_error_message`, which words an OSError or UnicodeError from a user's files as such a line."""


class ReidError(Exception):
    """Base class: a user-facing problem (bad input, bad flag, bad layout)."""


class DatasetLayoutError(ReidError):
    """A dataset root is missing a file or folder. The message names both the missing path
    and the expected layout (SPEC section 2)."""


class ConfigError(ReidError):
    """Unknown configuration key, bad value or bad YAML."""


class CheckpointError(ReidError):
    """Checkpoint of the wrong backend, wrong shape, corrupt or missing."""


class DeviceError(ReidError):
    """The requested device is not available."""


# errno -> wording of :func:`os_error_message` (errno names missing on a platform are skipped)
_ERRNO_WORDS = (
    ("ENOSPC", "no space left on device (disk full)"),
    ("EDQUOT", "disk quota exceeded"),
    ("EFBIG", "file too large for this file system"),
    ("EACCES", "permission denied (check the file's and its folders' permissions)"),
    ("EPERM", "operation not permitted (check the file's and its folders' permissions)"),
    ("EROFS", "read-only file system, nothing can be written there"),
    ("EISDIR", "is a directory, expected a file"),
    ("ENOTDIR", "a part of the path is a file, expected a directory"),
    ("ENOENT", "no such file or directory"),
    ("EEXIST", "already exists"),
    ("ENOTEMPTY", "directory not empty"),
    ("EIO", "input/output error (failing disk or network share?)"),
    ("ENAMETOOLONG", "file name too long"),
    ("ELOOP", "too many levels of symbolic links"),
    ("EMFILE", "too many open files"),
    ("ENXIO", "no such device or address"),
    ("ESTALE", "stale network file handle"),
)


def os_error_message(exc: BaseException, path=None) -> str:
    """One line describing an ``OSError`` or ``UnicodeError`` raised while reading or writing a
    user's file, naming the path and the problem, e.g.
    ``'/data/SYSU/exp/test_id.txt': is a directory, expected a file``.

    ``path`` overrides the exception's own ``filename`` (``UnicodeDecodeError`` carries none,
    so pass the file being decoded). Common errno values get plain wording (ENOSPC "no space
    left on device (disk full)", EACCES/EPERM permission, EROFS read-only, EISDIR, ENOTDIR,
    ENOENT, EIO, ...); others fall back to the system's ``strerror``. A UnicodeDecodeError
    reads ``cannot decode '<path>' as UTF-8 text (byte 0xff at offset 3)``. Entry points print
    the line after ``error: `` and exit 2."""
    import errno as _errno
    if isinstance(exc, UnicodeDecodeError):
        where = f"'{path}'" if path else "the input"
        codec = "UTF-8" if exc.encoding.replace("-", "").lower() == "utf8" else exc.encoding
        bad = exc.object[exc.start:exc.start + 1]
        byte = f"byte 0x{bad[0]:02x} at offset {exc.start}" if bad else f"offset {exc.start}"
        return f"cannot decode {where} as {codec} text ({byte}); save it as {codec} text"
    if isinstance(exc, UnicodeError):
        where = f"'{path}': " if path else ""
        return f"{where}cannot encode or decode text ({exc})".replace("\n", " ")
    if not isinstance(exc, OSError):
        where = f"'{path}': " if path else ""
        return f"{where}{exc}".replace("\n", " ")
    words = {getattr(_errno, name): text for name, text in _ERRNO_WORDS if hasattr(_errno, name)}
    problem = words.get(exc.errno) or exc.strerror or str(exc) or type(exc).__name__
    path = path if path is not None else exc.filename
    if path is None:
        return problem.replace("\n", " ")
    target = f" -> '{exc.filename2}'" if getattr(exc, "filename2", None) else ""
    return f"'{path}'{target}: {problem}".replace("\n", " ")
