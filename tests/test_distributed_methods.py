"""Every method trains distributed with no code of its own (slow: real launches, see
tests/test_distributed.py): a VKD teacher and then its student (two generations, the student's
own TrainStep rebuilt per generation, the frozen teacher's forward per rank) on 2 processes
end with the same parameters on both ranks, and rank 0 alone writes VKD's run-folder layout."""
import numpy as np
import pytest

from test_distributed import _ranks, launch
from vkd_tiny import make_mars, student_argv, teacher_argv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mars(tmp_path_factory):
    return make_mars(tmp_path_factory.mktemp("mars"))


def _same_on_both_ranks(out):
    r0, r1 = _ranks(out)
    params = [k for k in r0 if k.startswith("param:")]
    assert params and all(np.array_equal(r0[k], r1[k]) for k in params)
    return r0


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_vkd_teacher_and_student_train_on_two_processes(mars, tmp_path, backend):
    pytest.importorskip(backend)
    logs, t_out, s_out = tmp_path / "logs", tmp_path / "t-out", tmp_path / "s-out"
    t_out.mkdir()
    s_out.mkdir()
    teacher = launch(backend, ["tests/dist_worker.py", str(t_out), *teacher_argv(mars, logs, backend)],
                     tmp_path / "msrun-t")
    assert teacher.returncode == 0, teacher.stdout[-3000:] + teacher.stderr[-3000:]
    _same_on_both_ranks(t_out)
    folder = logs / "teacher"
    assert [p.stem for p in (folder / "chk").iterdir()] == ["chk_end"]  # MindSpore's file ends in .ckpt
    assert (folder / "params" / "hparams.json").exists()
    student = launch(backend, ["tests/dist_worker.py", str(s_out), *student_argv(mars, folder, logs, backend)],
                     tmp_path / "msrun-s")
    assert student.returncode == 0, student.stdout[-3000:] + student.stderr[-3000:]
    _same_on_both_ranks(s_out)
    assert sorted(p.stem for p in (logs / "student" / "chk").iterdir()) == ["chk_di_1", "chk_di_2"]
    assert "generation 2" in open(logs / "student" / "train.log").read()
