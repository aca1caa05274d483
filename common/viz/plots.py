"""CMC curves and training curves of runs, from their ``metrics.jsonl`` (the loop's record of
every epoch: ``epoch``, ``lrs``, ``seconds``, the loss terms and, for an evaluated epoch,
``eval``: one row per setting with R1, R10, R20, mAP, mINP and ``cmc``, the curve's first
ranks in percent; common/engine/loop.py, common/report.py).

The data preparation (:func:`load_run`, :func:`cmc_curve`, :func:`training_panels`) is kept
apart from the drawing (:func:`draw_cmc`, :func:`draw_curves`, matplotlib's object API without
pyplot's global state), so the plotted numbers can be checked against the file.
"""
import json
import os
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from common.errors import ReidError
from common.optional import require

METRICS_FILE = "metrics.jsonl"
EVAL_METRICS = ("R1", "R10", "R20", "mAP", "mINP")
_NOT_LOSSES = ("epoch", "lrs", "seconds", "eval")


class Run(NamedTuple):
    label: str
    path: str                     # the metrics.jsonl file
    records: List[dict]           # one per epoch, ascending (a repeated epoch: its last record)


class Curve(NamedTuple):
    label: str
    x: np.ndarray
    y: np.ndarray


def load_run(path: str, label: Optional[str] = None) -> Run:
    """A run folder (holding ``metrics.jsonl``) or a ``metrics.jsonl`` file; refused in one
    line when missing, empty or not JSON lines."""
    if os.path.isdir(path):
        folder, file = path, os.path.join(path, METRICS_FILE)
        if not os.path.isfile(file):
            raise ReidError(f"'{path}' holds no {METRICS_FILE}; expected a train.py run folder (or its "
                            f"{METRICS_FILE})")
    elif os.path.isfile(path):
        folder, file = os.path.dirname(os.path.abspath(path)), path
    else:
        raise ReidError(f"run '{path}' not found; expected a train.py run folder or its {METRICS_FILE}")
    by_epoch: Dict[int, dict] = {}
    with open(file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                by_epoch[int(rec["epoch"])] = rec
            except (ValueError, KeyError, TypeError):
                raise ReidError(f"line {n} of '{file}' is not an epoch record of train.py (JSON with 'epoch')") \
                    from None
    if not by_epoch:
        raise ReidError(f"'{file}' holds no epoch yet; the run has not finished an epoch")
    name = label or os.path.basename(os.path.normpath(folder)) or "run"
    return Run(name, file, [by_epoch[e] for e in sorted(by_epoch)])


def _row(run: Run, rec: dict, setting: Optional[str]) -> dict:
    rows = rec["eval"]
    if not setting:
        return rows[0]
    for r in rows:
        if r.get("setting") == setting:
            return r
    raise ReidError(f"{run.label}: epoch {rec['epoch']} has no setting {setting!r}; it has "
                    + ", ".join(str(r.get("setting")) for r in rows))


def cmc_curve(run: Run, setting: Optional[str] = None, epoch: Optional[int] = None) -> Curve:
    """The CMC curve (ranks 1..n, percent) of ``setting`` (default the first row: SYSU ``all``,
    RegDB ``v2t``, VKD's first protocol) at evaluated ``epoch`` (default the last one)."""
    evaluated = [r for r in run.records if r.get("eval")]
    if not evaluated:
        raise ReidError(f"{run.label}: '{run.path}' holds no evaluation yet (no epoch with 'eval')")
    if epoch is None:
        rec = evaluated[-1]
    else:
        found = [r for r in evaluated if int(r["epoch"]) == int(epoch)]
        if not found:
            raise ReidError(f"{run.label}: epoch {epoch} was not evaluated; evaluated epochs: "
                            + ", ".join(str(r["epoch"]) for r in evaluated))
        rec = found[0]
    row = _row(run, rec, setting)
    if "cmc" not in row:
        raise ReidError(f"{run.label}: the evaluation rows of '{run.path}' hold no CMC curve (runs before "
                        "the 'cmc' field); evaluate again with train.py or plot R1/R10/R20 from the table")
    values = np.asarray(row["cmc"], np.float64)
    return Curve(f"{run.label} ({row.get('setting')}, epoch {rec['epoch']})", np.arange(1, len(values) + 1), values)


def _curve(label: str, xy) -> Curve:
    x, y = zip(*xy)
    return Curve(label, np.asarray(x, np.float64), np.asarray(y, np.float64))


def training_panels(runs: Sequence[Run]) -> "OrderedDict[str, List[Curve]]":
    """Panel title -> curves over the epochs: every loss term (``loss: <term>``), the learning
    rate (one curve per parameter group, one when the groups agree), then each evaluation
    metric per setting (the rows averaged over trials; per-trial rows are left out)."""
    losses: "OrderedDict[str, List[Curve]]" = OrderedDict()
    lrs: List[Curve] = []
    evals: "OrderedDict[str, List[Curve]]" = OrderedDict((m, []) for m in EVAL_METRICS)
    for run in runs:
        epochs = np.array([r["epoch"] for r in run.records], np.float64)
        terms: List[str] = []
        for r in run.records:
            terms += [k for k, v in r.items() if k not in terms and k not in _NOT_LOSSES
                      and isinstance(v, (int, float)) and not isinstance(v, bool)]
        for term in terms:
            losses.setdefault(f"loss: {term}", []).append(
                _curve(run.label, [(r["epoch"], r[term]) for r in run.records if term in r]))
        width = max(len(r.get("lrs") or ()) for r in run.records) or 1
        groups = np.array([(list(r.get("lrs") or ()) + [np.nan] * width)[:width] for r in run.records], np.float64)
        same = bool(np.all(groups == groups[:, :1]))
        for g in range(1 if same else groups.shape[1]):
            lrs.append(Curve(run.label if same else f"{run.label}: group {g}", epochs, groups[:, g]))
        settings: List[str] = []
        for r in run.records:
            settings += [row["setting"] for row in r.get("eval") or () if "/" not in str(row.get("setting"))
                         and row["setting"] not in settings]
        for metric in EVAL_METRICS:
            for s in settings:
                xy = [(r["epoch"], row[metric]) for r in run.records for row in r.get("eval") or ()
                      if row.get("setting") == s and metric in row]
                if xy:
                    evals[metric].append(_curve(run.label if len(settings) == 1 else f"{run.label}: {s}", xy))
    panels = OrderedDict(losses)
    panels["learning rate"] = lrs
    panels.update((f"eval: {m}", c) for m, c in evals.items() if c)
    return panels


def _figure(width: float, height: float):
    require("matplotlib", "tools.visualize plots")
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=100)


def draw_cmc(curves: Sequence[Curve], out: str, title: str = "CMC"):
    """Write the CMC curves into ``out`` (PNG); return the matplotlib Figure."""
    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    for c in curves:
        ax.plot(c.x, c.y, marker="o", markersize=3, label=c.label)
    ax.set(xlabel="rank", ylabel="matching rate (%)", title=title, ylim=(0, 100.5))
    last = max(len(c.x) for c in curves)
    ax.set_xlim(1, last)
    ax.set_xticks([1] + list(range(5, last + 1, 5)))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, out)
    return fig


def draw_curves(panels: "OrderedDict[str, List[Curve]]", out: str, columns: int = 4):
    """Write one subplot per panel into ``out`` (PNG); return the matplotlib Figure."""
    names = [n for n, c in panels.items() if c]
    rows = -(-len(names) // columns)
    fig = _figure(4.0 * min(columns, len(names)), 3.0 * rows)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, min(columns, len(names)), i + 1)
        for c in panels[name]:
            ax.plot(c.x, c.y, marker="." if len(c.x) < 30 else None, label=c.label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        if name == "learning rate" and all(np.all(c.y > 0) for c in panels[name]):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if len(panels[name]) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, out)
    return fig


def _save(fig, out: str) -> None:
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out, format="png")


def ranks_and_values(fig) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """(axes title, x, y) of every line drawn in ``fig`` (what the picture shows)."""
    return [(ax.get_title(), np.asarray(line.get_xdata(), np.float64), np.asarray(line.get_ydata(), np.float64))
            for ax in fig.axes for line in ax.get_lines()]
