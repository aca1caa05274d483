"""SyncBN (``train.sync_bn``; backends/<fw>/distributed.py ``SyncBatchNorm``, this project's
own because neither framework's SyncBatchNorm has a CPU kernel). Slow: real 2-process
launches (see tests/test_distributed.py).

* tests/dist_syncbn_worker.py: a converted BatchNorm2d on two ranks, each holding half of a
  global batch, gives the output, the input gradient, the summed parameter gradients and the
  running statistics of one plain BatchNorm2d over the whole batch (MindSpore in both modes);
* a tiny MVD run with ``--set train.sync_bn=true`` ends with the same running statistics on
  both ranks (without it they differ: tests/test_distributed.py)."""
import json

import numpy as np
import pytest

from test_distributed import _ranks, _worker_run, launch, root  # noqa: F401  (root: a fixture)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend, mode", [("torch", "PYNATIVE"), ("mindspore", "PYNATIVE"),
                                           ("mindspore", "GRAPH")])
def test_sync_batchnorm_equals_one_batchnorm_over_the_global_batch(tmp_path, backend, mode):
    pytest.importorskip(backend)
    proc = launch(backend, ["tests/dist_syncbn_worker.py", backend, mode, str(tmp_path)], tmp_path / "msrun")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for r in range(2):
        errors = json.load(open(tmp_path / f"rank{r}.json"))
        assert errors.pop("bias_grad_size") > 1.0 and errors.pop("running_var_moved") > 0.01
        assert max(errors.values()) <= 1e-5, (r, errors)


def test_sync_bn_key_gives_both_ranks_the_same_statistics(root, tmp_path):  # noqa: F811
    pytest.importorskip("torch")
    proc, out = _worker_run("torch", root, tmp_path, extra=["--set", "train.sync_bn=true"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = _ranks(out)
    stats = [k for k in r0 if k.startswith("stat:")]
    assert stats and all(np.allclose(r0[k], r1[k], rtol=0, atol=1e-6) for k in stats)
    assert all(np.array_equal(r0[k], r1[k]) for k in r0 if k.startswith("param:"))
