"""Result tables and run logs (plain text, framework-neutral)."""
import json
import os
import time
from typing import Dict, List, Sequence

import numpy as np

RANKS = (1, 10, 20)


def summarize(result: dict) -> Dict[str, float]:
    """``{'R1','R10','R20','mAP','mINP'}`` in percent from an ``evaluate`` result."""
    cmc = np.asarray(result["cmc"])
    out = {f"R{r}": 100.0 * float(cmc[min(r, len(cmc)) - 1]) for r in RANKS}
    out["mAP"] = 100.0 * float(result["mAP"])
    out["mINP"] = 100.0 * float(result["mINP"])
    return out


def mean_rows(rows: Sequence[Dict[str, float]]) -> Dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def format_table(rows: List[dict], columns: Sequence[str]) -> str:
    """Fixed-width text table; floats with two decimals."""
    cells = [[f"{r[c]:.2f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join([line, sep, *body])


class RunLog:
    """Appends human-readable lines to ``train.log`` and JSON records to ``metrics.jsonl``."""

    def __init__(self, folder: str, echo=print):
        os.makedirs(folder, exist_ok=True)
        self.folder, self.echo = folder, echo

    def line(self, text: str) -> None:
        with open(os.path.join(self.folder, "train.log"), "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        if self.echo:
            self.echo(text)

    def record(self, **data) -> None:
        with open(os.path.join(self.folder, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(data) + "\n")
