"""Command-line tools of reid-kd (run as ``python -m tools.<name>``)."""
