"""Result tables and run logs (plain text, framework-neutral)."""
import json
import os
import time
from typing import Dict, List, Sequence

import numpy as np

RANKS = (1, 10, 20)
CMC_RANKS = 20  # length of the CMC curve kept in every evaluation row (tools/visualize.py cmc)


def summarize(result: dict) -> Dict[str, object]:
    """``{'R1','R10','R20','mAP','mINP'}`` in percent from an ``evaluate`` result, and
    ``'cmc'``: the curve's first :data:`CMC_RANKS` ranks in percent (a list; ``cmc[r - 1]``
    equals ``R<r>``). Tables print the named columns only."""
    cmc = np.asarray(result["cmc"])
    out: Dict[str, object] = {f"R{r}": 100.0 * float(cmc[min(r, len(cmc)) - 1]) for r in RANKS}
    out["mAP"] = 100.0 * float(result["mAP"])
    out["mINP"] = 100.0 * float(result["mINP"])
    out["cmc"] = [100.0 * float(c) for c in cmc[:CMC_RANKS]]
    return out


def mean_rows(rows: Sequence[Dict[str, object]]) -> Dict[str, object]:
    """Key-wise mean of summarised rows (a list, such as ``cmc``, rank by rank)."""
    return {k: [float(v) for v in np.mean([r[k] for r in rows], axis=0)] if isinstance(rows[0][k], list)
            else float(np.mean([r[k] for r in rows])) for k in rows[0]}


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
