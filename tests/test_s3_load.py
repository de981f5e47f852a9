"""The load suite on SeaweedFS: eight writer processes over two S3 gateways.

Half the processes talk to ``weed mini``'s gateway, half to a second ``weed s3`` on the
same filer (the ``gateway`` fixture), as clients behind a load balancer would: the
conditional writes must hold across gateways, not just inside one. One ``FIGURES:``
line for the module (``s3-load``, also in tests/artifacts/figures.jsonl).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck

from . import fault_helpers as fh
from . import figures
from . import writer_proc as wp
from .helpers import rng_image
from .test_load import many_writers

pytestmark = pytest.mark.slow
FIG: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if FIG:
        figures.record("s3-load", FIG)


def endpoints(seaweedfs, gateway, n: int) -> list[dict[str, str]]:
    """Environments of ``n`` processes, alternating between the two gateways."""
    return [{"AWS_ENDPOINT_URL": (seaweedfs, gateway)[i % 2].endpoint} for i in range(n)]


def test_eight_step_drivers_over_two_gateways(seaweedfs, gateway, tmp_path: Path) -> None:
    """8 processes x 25 real steps: 4 grow main, 4 their own branch; half per gateway.

    The same checks as the disk suite (tests/test_load.py): every reported commit in
    its branch's history and nothing else, every reflog a whole chain, events numbered
    without a gap, fsck clean; writers of one head queue behind its lease instead of
    paying for a step and losing it.
    """
    st = Store.init(seaweedfs.url(), endpoint=seaweedfs.endpoint, tile_size=64)
    figs = many_writers(tmp_path, 8, 25, 4, store=st, envs=endpoints(seaweedfs, gateway, 8))
    FIG["steps_8x25"] = figs
    assert figs["branch_moved"] == 0
    assert figs["waited_for_branch"] >= 1, "no writer waited: the test did not test contention"


def test_eight_cas_writers_over_two_gateways(seaweedfs, gateway, tmp_path: Path) -> None:
    """8 processes x 25 compare-and-swaps of one ref, no lease in front: real losers.

    Each writer re-reads the head and tries again when it gets BranchMoved (anything
    else ends it with an error). No update is lost: the reflog is one chain of 1 + 200
    moves, exactly the moves the writers reported, and the ref is its last entry.
    """
    procs_n, count = 8, 25
    st = Store.init(seaweedfs.url(), endpoint=seaweedfs.endpoint, tile_size=64)
    st.create_session("cas", rng_image(48, 64, seed=2))
    report, barrier = tmp_path / "report", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(wp.__file__)), st.location, "cas", "main", str(count)]
            + ["--mode", "cas", "--report", str(report), "--barrier", str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        for env in endpoints(seaweedfs, gateway, procs_n)
    ]
    try:
        fh.start_together(tmp_path, barrier, procs)
        started = time.monotonic()
        results = [p.communicate(timeout=600) for p in procs]
        seconds = time.monotonic() - started
    finally:
        for p in procs:
            if p.poll() is None:
                fh.kill9(p)
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, f"writer failed ({p.returncode}): {err[-2000:]}"
    summaries = [json.loads(out.splitlines()[-1]) for out, _ in results]
    assert [s["commits"] for s in summaries] == [count] * procs_n
    moved = sum(s["moved"] for s in summaries)

    moves = [tuple(ln) for ln in fh.report_lines(report)]
    assert len(moves) == procs_n * count
    log = st.refs.reflog("cas/heads/main")
    assert len(log) == 1 + procs_n * count  # the root and every move: none lost
    assert not fh.reflog_chain_problems(st, "cas/heads/main")
    assert {(e.old, e.new) for e in log[1:]} == set(moves)
    assert moved >= 1, "no writer lost a race: the test did not test contention"
    rep = fsck(st)
    assert rep.ok, (rep.damaged, rep.missing, rep.bad_refs)
    FIG["cas_8x25"] = {
        "procs": procs_n,
        "gateways": 2,
        "moves": len(moves),
        "branch_moved": moved,
        "lost": 0,
        "seconds": round(seconds, 1),
        "cas_per_s": round(len(moves) / seconds, 1),
    }


def test_step_drivers_sigkilled_mid_step_over_two_gateways(
    seaweedfs, gateway, tmp_path: Path
) -> None:
    """4 real step drivers (one branch each, two per gateway) SIGKILLed at random moments.

    After the kills: fsck clean, every head whole, every reflog a whole chain, nothing
    reported committed lost. A killed driver can leave its branch lease and its store
    lease behind (there is no flock to die with it): the next step on its branch waits
    until the lease is stale by the server's clock (``LEASE_TIMEOUT_S``), then commits;
    gc after that runs and loses nothing reachable.
    """
    import random

    from exquisite_store.store.gc import gc
    from exquisite_store.store.leases import LEASE_TIMEOUT_S

    rnd = random.Random(14)
    st = Store.init(seaweedfs.url(), endpoint=seaweedfs.endpoint, tile_size=64)
    _, root = st.create_session("kill", rng_image(48, 64, seed=3))
    branches = [f"k{i}" for i in range(4)]
    for b in branches:
        st.refs.update("kill", b, None, root, "a branch for a killed driver")
    report = tmp_path / "report"
    envs = endpoints(seaweedfs, gateway, 4)
    procs = [
        subprocess.Popen(
            fh.driver_cmd(st.location, "kill", b, 1000)
            + ["--backend", "pattern", "--px", "8", "--overlap", "2", "--seed", str(i)]
            + ["--report", str(report)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        for i, (b, env) in enumerate(zip(branches, envs, strict=True))
    ]
    try:
        for p in procs:
            fh.read_until(p, "ready", timeout=60)
        for p in procs:  # each at its own moment: after 1-3 steps began, somewhere inside
            for _ in range(rnd.randint(1, 3)):
                fh.read_until(p, "begin", timeout=120)
            time.sleep(rnd.uniform(0, 1.5))
            fh.kill9(p)
            assert p.returncode == -9
    finally:
        for p in procs:
            if p.poll() is None:
                fh.kill9(p)
    killed = time.monotonic()
    rep = fsck(st)
    assert rep.ok, (rep.damaged, rep.missing, rep.bad_refs)
    fh.check_heads_whole(st, "kill")
    for b in branches:
        ref = f"kill/heads/{b}"
        assert not fh.reflog_chain_problems(st, ref), fh.reflog_chain_problems(st, ref)
    committed = {ln[1] for ln in fh.report_lines(report) if ln[0] == "commit"}
    assert committed <= fh.reachable_steps(st, "kill"), "a reported commit was lost"

    # the next step on each killed branch gets past a dead driver's lease, then commits
    nxt = [
        subprocess.Popen(
            fh.driver_cmd(st.location, "kill", b, 1)
            + ["--backend", "pattern", "--px", "8", "--overlap", "2", "--seed", "99"]
            + ["--report", str(report)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        for b, env in zip(branches, envs, strict=True)
    ]
    results = [p.communicate(timeout=LEASE_TIMEOUT_S * 3) for p in nxt]
    next_s = time.monotonic() - killed
    for p, (_, err) in zip(nxt, results, strict=True):
        assert p.returncode == 0, err[-2000:]
    waited = sum(json.loads(out.splitlines()[-1])["waits"] for out, _ in results)
    committed = {ln[1] for ln in fh.report_lines(report) if ln[0] == "commit"}
    assert committed <= fh.reachable_steps(st, "kill")
    gc_rep = gc(st, grace_s=0)
    rep = fsck(st)
    assert rep.ok and not rep.missing, (rep.damaged, rep.missing, rep.bad_refs)
    assert committed <= fh.reachable_steps(st, "kill")
    FIG["kill_4_drivers"] = {
        "committed_before_kills": len(committed) - len(branches),
        "lost": 0,
        "next_steps_waited_on_dead_lease": waited,
        "next_steps_done_s": round(next_s, 1),
        "gc_removed_after": len(gc_rep.removed),
    }
