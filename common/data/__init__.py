"""Dataset parsers (SPEC section 2): plain records, 0-based camera ids, sorted relabelling."""
from common.data.base import Record, ImageSplits, relabel  # noqa: F401
