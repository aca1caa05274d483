"""Error types that the command-line entry points turn into one clear line and exit 2."""


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
