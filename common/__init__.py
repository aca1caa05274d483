"""Framework-neutral core of reid-kd (numpy only; never imports torch or mindspore)."""
