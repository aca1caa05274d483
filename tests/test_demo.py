"""`make demo` (tools/demo.py) end to end at one epoch with torch: each method's table
prints the numbers its runs logged (metrics.jsonl), for every model it trained."""
import json

import pytest

from tools import demo

pytest.importorskip("torch")


def _last_eval(run):
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    return {r["setting"]: r for r in [e for e in rows if "eval" in e][-1]["eval"]}


def _table(out, title):
    """The data rows of the table printed after the line starting with ``title``."""
    lines = out[out.index(title):].splitlines()
    header = lines[1].split()
    body = []
    for line in lines[3:]:
        if not line.strip():
            break
        body.append(line.split())
    return header, body


def test_demo_tables_show_what_the_runs_logged(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--methods", "mvd,vkd", "--backends", "torch", "--epochs", "1",
                      "--ids", "8"]) == 0
    out = capsys.readouterr().out
    logs = tmp_path / "logs"
    _, rows = _table(out, "MVD (port recipe) on synthetic")
    mvd = _last_eval(logs / "mvd_torch")
    assert rows[0][0] == "torch" and float(rows[0][1]) == pytest.approx(mvd["all"]["R1"], abs=0.006)
    assert float(rows[0][2]) == pytest.approx(mvd["all"]["mAP"], abs=0.006)
    _, rows = _table(out, "VKD on synthetic MARS")
    assert [r[:2] for r in rows] == [["torch", "teacher"], ["torch", "student"]]
    for row, run in zip(rows, ("vkd_teacher_torch", "vkd_student_torch")):
        ev = _last_eval(logs / run)
        got = [float(v) for v in row[2:6]]
        want = [ev["I2V"]["R1"], ev["I2V"]["mAP"], ev["V2V"]["R1"], ev["V2V"]["mAP"]]
        assert got == pytest.approx(want, abs=0.006)
    assert (logs / "vkd_student_torch" / "chk").is_dir()


def test_unknown_method_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        demo.main(["--methods", "mvd,xyz"])
    assert info.value.code == 2 and "xyz" in capsys.readouterr().err
