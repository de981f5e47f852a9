"""Faults: SIGKILL mid-step (CLI, driver and viewer), full disks and I/O errors at every
write of a step, gc racing writers, and stale locks of killed writers.

One ``FIGURES:`` line for the whole module (also appended to tests/artifacts/figures.jsonl).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from exquisite_store.backends.patchmatch import PatchMatchBackend
from exquisite_store.errors import ArtifactWriteError, LockHeld, StepFailure
from exquisite_store.manifests import Attempt
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from exquisite_store.store.gc import gc
from exquisite_store.store.locks import unlock

from . import fault_helpers as fh
from . import figures
from . import writer_proc as wp
from .fakes.backends import PatternBackend, PermanentErrorBackend
from .helpers import TickClock, rng_image

# the fault, load and crash suites run in `make test-all` (CI), not in the fast loop
pytestmark = pytest.mark.slow
FIG: dict[str, Any] = {}
PX, OVERLAP = 16, 4
CLOCK0 = 1_700_000_000_000


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if FIG:
        figures.record("faults", FIG)


def fsck_ok(store: Store, when: str = "") -> list[str]:
    """Assert fsck finds no damage; the lock lines it reported."""
    rep = fsck(store)
    assert rep.ok, f"{when}: damaged={rep.damaged} missing={rep.missing} bad_refs={rep.bad_refs}"
    return rep.locks


def unlock_dead(store: Store) -> list[str]:
    """`exq unlock`: remove locks of dead writers (asserting none is live); the actions."""
    reports = unlock(store)
    for r in reports:
        assert r.action.startswith("removed"), f"a live writer's lock in a quiet store: {r}"
    assert not fh.ref_locks(store.root)
    return [r.action for r in reports]


# --- 1. SIGKILL at random moments ------------------------------------------------------------


class KillCampaign:
    """Steps by three kinds of writers, each SIGKILLed at random moments."""

    def __init__(self, tmp_path: Path, seed: int) -> None:
        self.tmp = tmp_path
        self.rnd = random.Random(seed)
        self.seed = seed
        self.store = Store.init(tmp_path / "store", tile_size=64)
        self.store.create_session("kill", rng_image(48, 64, seed=1), title="kill -9")
        self.store.create_session("web", rng_image(48, 64, seed=2), title="kill -9 viewer")
        self.report = tmp_path / "driver-report.txt"
        self.reported: dict[str, set[str]] = {"kill": set(), "web": set()}
        self.cli_prefixes: list[str] = []
        self.kills = Counter()
        self.steps_tried = Counter()
        self.stale_locks = 0
        self.reflog_recovered = 0
        self.abandoned = 0
        self.abandoned_in_commit = 0  # died in the commit phase before moving its ref

    # after every kill
    def check(self, when: str) -> None:
        st = self.store
        locks = fsck_ok(st, when)
        if locks:
            actions = unlock_dead(st)
            self.stale_locks += len(actions)
            self.reflog_recovered += sum("recovered" in a for a in actions)
        fsck_ok(st, when + " (after unlock)")
        for session in ("kill", "web"):
            fh.check_heads_whole(st, session)
            for ref in st.storage.list_refs(f"{session}/heads/"):
                assert not fh.reflog_chain_problems(st, ref), fh.reflog_chain_problems(st, ref)
        self.reported["kill"] |= {ln[1] for ln in fh.report_lines(self.report) if ln[0] == "commit"}
        lost = self.lost()
        assert not lost, f"{when} (seed {self.seed}): committed steps lost: {lost}"

    def lost(self) -> dict[str, set[str]]:
        out = {}
        for session, ids in self.reported.items():
            have = fh.reachable_steps(self.store, session)
            missing = {i for i in ids if i not in have}
            if session == "kill":
                missing |= {p for p in self.cli_prefixes if not any(h.startswith(p) for h in have)}
            if missing:
                out[session] = missing
        return out

    # the in-process driver: run_step with the real PatchMatchBackend in a loop
    def driver_round(self, max_sleep_s: float) -> None:
        proc = subprocess.Popen(
            fh.driver_cmd(self.store.root, "kill", "main", 1000)
            + ["--report", str(self.report), "--seed", str(self.rnd.randrange(2**31))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        fh.read_until(proc, "ready")
        time.sleep(self.rnd.uniform(0, max_sleep_s))
        out, err = fh.kill9(proc)
        assert proc.returncode == -9, f"driver ended on its own ({proc.returncode}): {err}"
        self.kills["driver"] += 1
        self.steps_tried["driver"] += out.splitlines().count("begin")
        self.check(f"driver kill {self.kills['driver']}")

    # `exq step`, the CLI, killed anywhere from start-up to its last line
    def cli_round(self, max_sleep_s: float) -> None:
        proc = subprocess.Popen(
            fh.exq_cmd("--store", str(self.store.root))
            + ["step", "kill", "--backend", "patchmatch", "--px", str(PX)]
            + ["--overlap", str(OVERLAP), "--seed", str(self.rnd.randrange(2**31))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its patchmatch worker dies with it
            cwd=fh.ROOT,
        )
        time.sleep(self.rnd.uniform(0.1, max_sleep_s))
        out, err = fh.kill9(proc, group=True)
        self.steps_tried["cli"] += 1
        if proc.returncode == -9:
            self.kills["cli"] += 1
        else:
            assert proc.returncode == 0, f"exq step failed: {out}\n{err}"
        self.cli_prefixes += re.findall(r"^committed ([0-9a-f]{12}) on ", out, re.M)
        self.check(f"cli round {self.steps_tried['cli']}")

    # the viewer: POST extend, SIGKILL the server mid-job, restart it
    def viewer_round(self, srv: fh.Server, max_sleep_s: float) -> fh.Server:
        jobs = [
            srv.extend(
                "web",
                backend="patchmatch",
                extension_px=PX,
                overlap_px=OVERLAP,
                seed=self.rnd.randrange(2**31),
            )
            for _ in range(self.rnd.choice((1, 1, 2)))
        ]
        self.steps_tried["viewer"] += len(jobs)
        time.sleep(self.rnd.uniform(0, max_sleep_s))
        before = srv.jobs("web")
        srv.kill()
        self.kills["viewer"] += 1
        for state in before.values():
            if state["state"] == "succeeded":
                self.reported["web"].update(state["result"]["step_ids"])
        self.check(f"viewer kill {self.kills['viewer']}")  # unlock before the restart
        srv = fh.Server(self.store.root, log=self.tmp / "serve.log").start()
        after = srv.jobs("web")
        attempts = {a.id: a for a in self.store.attempts("web")}
        for job in jobs:
            st = after[job]
            assert st["state"] in ("succeeded", "failed"), (job, st)
            if st["state"] == "succeeded":  # it finished between our look and the kill
                self.reported["web"].update(st["result"]["step_ids"])
                continue
            if before.get(job, {}).get("state") == "failed":
                continue
            # unfinished when killed: the restart recorded it as an abandoned attempt
            assert st["result"]["kind"] == "TransientBackendError", st
            aid = st["result"]["attempt_id"]
            assert aid in attempts and "abandoned" in attempts[aid].message
            att = self.store.objects.get_manifest(aid, Attempt)
            assert att.details["job"] == job
            self.abandoned += 1
            self.abandoned_in_commit += att.details.get("phase") == "commit"
        return srv

    def succeeded_in_logs(self, session: str) -> set[str]:
        out: set[str] = set()
        for ev in self.store.events(session):
            if ev.type == "succeeded":
                out.update(ev.data.get("step_ids", []))
        return out


def run_kill_campaign(
    tmp_path: Path, total_steps: int, viewer_rounds: int, cli_rounds: int, seed: int
):
    camp = KillCampaign(tmp_path, seed)
    started = time.monotonic()
    budget_s = 60 + total_steps * 1.5
    srv = fh.Server(camp.store.root, log=tmp_path / "serve.log").start()
    try:
        for _ in range(viewer_rounds):
            srv = camp.viewer_round(srv, max_sleep_s=0.35)
        # settle: the last server finishes what it was given, then a step through it works
        job = srv.extend("web", backend="patchmatch", extension_px=PX, overlap_px=OVERLAP, seed=1)
        assert srv.wait_jobs("web", [job])[job]["state"] == "succeeded"
    finally:
        srv.stop()
    for _ in range(cli_rounds):
        camp.cli_round(max_sleep_s=0.5)
    while sum(camp.steps_tried.values()) < total_steps:
        assert time.monotonic() - started < budget_s, f"too slow (seed {seed})"
        camp.driver_round(max_sleep_s=0.35)

    # every step any writer reported (driver report, CLI line, succeeded event) is reachable
    camp.reported["web"] |= camp.succeeded_in_logs("web")
    camp.reported["kill"] |= camp.succeeded_in_logs("kill")
    camp.check("end")
    st = camp.store
    # the next step works, from the CLI and in process
    res = subprocess.run(
        fh.exq_cmd("--store", str(st.root), "step", "kill")
        + ["--backend", "patchmatch", "--px", str(PX), "--overlap", str(OVERLAP), "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=fh.ROOT,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    head = st.refs.head("kill", "main")
    assert re.search(rf"^committed {head[:12]} on main", res.stdout, re.M), res.stdout
    out = run_step(
        st,
        "web",
        backend_impl=PatchMatchBackend(in_process=True),
        extension_px=PX,
        overlap_px=OVERLAP,
        seed=3,
    )
    assert st.refs.head("web", "main") == out.step_ids[0]
    fsck_ok(st, "after the next steps")

    committed = {s: len(fh.reachable_steps(st, s)) - 1 for s in ("kill", "web")}
    everything = fh.reachable_steps(st, "kill")
    cli_ids = {h for p in camp.cli_prefixes for h in everything if h.startswith(p)}
    reported = {"kill": len(camp.reported["kill"] | cli_ids), "web": len(camp.reported["web"])}
    lost = sum(len(v) for v in camp.lost().values())
    return {
        "seed": seed,
        "kills": sum(camp.kills.values()),
        "kills_by": dict(camp.kills),
        "steps_tried": sum(camp.steps_tried.values()),
        "steps_tried_by": dict(camp.steps_tried),
        "steps_committed": sum(committed.values()) - 2,  # less the two "next steps"
        "steps_reported": sum(reported.values()),
        "steps_lost": lost,
        "stale_locks_unlocked": camp.stale_locks,
        "reflog_lines_recovered": camp.reflog_recovered,
        "abandoned_jobs": camp.abandoned,
        "abandoned_in_commit_phase": camp.abandoned_in_commit,
        "leftover_tmp": len(fh.leftover_tmp(st.root)),
        "seconds": round(time.monotonic() - started, 1),
    }


def test_sigkill_quick(tmp_path: Path) -> None:
    # a fixed seed: the same kill schedule (moments, writers, seeds) on every run
    figs = run_kill_campaign(tmp_path, total_steps=30, viewer_rounds=2, cli_rounds=2, seed=20261129)
    FIG["kill_quick"] = figs
    assert figs["steps_lost"] == 0


@pytest.mark.slow
def test_sigkill_200_steps(tmp_path: Path) -> None:
    # a new schedule on every run, named in any failure so that it can be replayed
    seed = int.from_bytes(os.urandom(4), "big")
    figs = run_kill_campaign(tmp_path, total_steps=200, viewer_rounds=8, cli_rounds=8, seed=seed)
    FIG["kill_200"] = figs
    assert figs["steps_lost"] == 0
    assert figs["kills"] >= 40


# --- 2. full disk and I/O errors at every write of a step -------------------------------------

S = "disk"


def disk_template(root: Path) -> Path:
    st = Store.init(root, tile_size=64, clock=TickClock(CLOCK0))
    st.create_session(S, rng_image(48, 64, seed=4))
    one_step(st, seed=1)
    return root


def one_step(st: Store, seed: int):
    # the write path does not depend on the backend: the fast fake keeps 3 x 70 runs quick
    return run_step(
        st,
        S,
        backend_impl=PatternBackend(),
        extension_px=PX,
        overlap_px=OVERLAP,
        seed=seed,
        retry_delays=(0.0, 0.0),
    )


def store_problems(st: Store, when: str, reflog_gap_ok: bool = False) -> list[str]:
    """Everything wrong with a store that should be whole and quiet.

    ``reflog_gap_ok``: the newest move may lack its reflog line (lost to the disk after
    the ref moved); the next update of the ref must log it, so check again after one.
    """
    out = []
    rep = fsck(st)
    if not rep.ok:
        out.append(f"{when}: fsck damaged={rep.damaged} missing={rep.missing} bad={rep.bad_refs}")
    if fh.ref_locks(st.root):
        out.append(f"{when}: locks left {fh.ref_locks(st.root)}")
    if fh.leftover_tmp(st.root):
        out.append(f"{when}: tmp files left {fh.leftover_tmp(st.root)}")
    if fh.stray_object_files(st.root):
        out.append(f"{when}: stray files under objects/ {fh.stray_object_files(st.root)}")
    for ref in st.storage.list_refs(f"{S}/heads/"):
        gaps = fh.reflog_chain_problems(st, ref)
        if reflog_gap_ok:
            gaps = [g for g in gaps if "last entry new=" not in g]
        out += [f"{when}: {p}" for p in gaps]
    return out


FAULTS = {  # errno, sticky (every later call fails too), which later calls
    "ENOSPC-disk-stays-full": (errno.ENOSPC, True, fh.OPS),
    "ENOSPC-writes-fail-fsyncs-work": (errno.ENOSPC, True, ("write",)),
    "EIO-once": (errno.EIO, False, fh.OPS),
}


def post_rename_ops(ops: list[tuple[str, str]]) -> set[int]:
    """The 1-based op numbers between the branch ref's rename and its reflog line's fsync."""
    ref = f"/refs/{S}/heads/main"
    r = next(i for i, (name, what) in enumerate(ops) if name == "replace" and what.endswith(ref))
    assert ops[r + 1][0] == "fsync" and ops[r + 1][1].endswith(f"/refs/{S}/heads")
    assert ops[r + 2][0] == "write" and ops[r + 2][1].endswith(f"/logs/refs/{S}/heads/main")
    assert ops[r + 3][0] == "fsync" and ops[r + 3][1].endswith(f"/logs/refs/{S}/heads/main")
    return {r + 2, r + 3, r + 4}


def sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, post_rename: bool):
    """Fail the k-th write-path call of one step for every k (see the tests below)."""
    err, sticky, sticky_ops = FAULTS[fault]
    template = disk_template(tmp_path / "template")
    faulty = fh.FaultyOs().install(monkeypatch)
    probe = tmp_path / "probe"
    shutil.copytree(template, probe)
    faulty.arm(None)
    one_step(Store.open(probe, clock=TickClock(CLOCK0 + 10**6)), seed=2)
    n_ops = faulty.n
    assert n_ops > 20
    clean_ops = list(faulty.log)
    after_rename = post_rename_ops(clean_ops)
    ks = (
        sorted(after_rename)
        if post_rename
        else [k for k in range(1, n_ops + 1) if k not in after_rename]
    )
    problems: list[str] = []
    outcome = Counter()
    for k in ks:
        root = tmp_path / f"k{k}"
        shutil.copytree(template, root)
        st = Store.open(root, clock=TickClock(CLOCK0 + 10**6))
        before = st.refs.branches(S)
        op = f"k={k} {clean_ops[k - 1][0]} {clean_ops[k - 1][1].replace(str(probe), '')}"
        faulty.arm(k, err, sticky, sticky_ops)
        try:
            out = one_step(st, seed=2)
            raised = None
        except ArtifactWriteError as exc:
            raised = exc
        except Exception as exc:  # anything else reaching the caller is a finding
            raised = exc
            problems.append(f"{op}: raised {type(exc).__name__}: {exc}")
        finally:
            faulty.arm(None)
        after = st.refs.branches(S)
        if raised is None:
            outcome["committed"] += 1
            if after["main"] != out.step_ids[0] or st.step(after["main"]).parent != before["main"]:
                problems.append(f"{op}: returned a step that is not the new head")
        else:
            outcome["failed"] += 1
            if after != before:
                problems.append(f"{op}: step raised {type(raised).__name__} but a head moved")
            aid = getattr(raised, "details", {}).get("attempt_id")
            if aid:
                outcome["attempt_recorded"] += 1
                if aid not in {a.id for a in st.attempts(S)}:
                    problems.append(f"{op}: attempt {aid[:12]} is not in the attempt log")
            elif aid == "":
                outcome["attempt_not_recorded"] += 1
                assert "attempt_not_recorded" in raised.details
            else:
                outcome["raised_before_the_job_started"] += 1
        problems += store_problems(st, op, reflog_gap_ok=post_rename and raised is None)
        try:
            nxt = one_step(st, seed=3)
            if st.refs.head(S, "main") != nxt.step_ids[0]:
                problems.append(f"{op}: the next step did not move main")
        except Exception as exc:
            problems.append(f"{op}: the next step failed: {type(exc).__name__}: {exc}")
        problems += store_problems(st, op + " (after the next step)")
        shutil.rmtree(root)
    return n_ops, ks, outcome, problems


@pytest.mark.parametrize("fault", list(FAULTS))
def test_io_error_at_every_write_of_a_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """The k-th write/fsync/link/replace of a step fails, for every k in turn.

    Correct outcome: the step raises ArtifactWriteError and no head moves, or, when the
    fault comes after the branch ref was renamed into place (the commit point), the step
    is committed whole and ``run_step`` returns it. Either way the store stays whole:
    fsck clean, no lock or temp file left, no stray file under objects/, reflogs a
    chain, and the next step commits. (The three calls right after the rename are the
    next test's.)
    """
    n_ops, ks, outcome, problems = sweep(tmp_path, monkeypatch, fault, post_rename=False)
    FIG[f"io_{fault}"] = (
        f"ops_per_step:{n_ops},injected:{len(ks)},"
        + ",".join(f"{k}:{v}" for k, v in sorted(outcome.items()))
        + f",problems:{len(problems)}"
    )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_io_error_after_the_ref_moved_commits_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """The rename is the commit point: a fault after it must not report a failed step.

    The step is committed whole and returned; a reflog line lost to the disk is written
    by the next update of the ref, so the reflog is a chain again after the next step.
    """
    _, ks, outcome, problems = sweep(tmp_path, monkeypatch, fault, post_rename=True)
    FIG[f"io_after_rename_{fault}"] = (
        f"injected:{len(ks)},"
        + ",".join(f"{k}:{v}" for k, v in sorted(outcome.items()))
        + f",problems:{len(problems)}"
    )
    assert not problems, "\n".join(problems)


def test_a_short_write_to_a_log_is_an_error_or_the_whole_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filling disk makes ``write`` return short before it fails: never a silent tear."""
    st = Store.init(tmp_path / "store")
    first = b'{"old":null,"new":"w","time_ms":0,"message":"the first line"}'
    st.storage.append_log("refs/x/heads/main", first)
    faulty = fh.FaultyOs().install(monkeypatch)
    # half the line, then ENOSPC for every write (the fsync of what was written works)
    faulty.arm(1, errno.ENOSPC, sticky=True, sticky_ops=("write",))
    line = b'{"old":"w","new":"x","time_ms":1,"message":"a reflog line"}'
    try:
        st.storage.append_log("refs/x/heads/main", line)
    except ArtifactWriteError:
        pass
    else:
        assert st.storage.read_log("refs/x/heads/main") == [line], "append said ok, line torn"
    finally:
        shorts = faulty.short_writes
        faulty.arm(None)
    assert shorts == 1
    assert st.storage.read_log("refs/x/heads/main")[0] == first


def test_the_original_failure_reaches_the_caller_when_the_attempt_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = Store.init(tmp_path / "store", tile_size=64)
    st.create_session(S, rng_image(48, 64))
    head = st.refs.head(S, "main")
    faulty = fh.FaultyOs().install(monkeypatch)

    class FullDiskBackend(PermanentErrorBackend):
        def generate(self, request, cancel=None):
            faulty.arm(1, errno.ENOSPC, sticky=True)  # the disk fills during the call
            return super().generate(request, cancel)

    try:
        with pytest.raises(StepFailure) as info:
            run_step(st, S, backend_impl=FullDiskBackend(), extension_px=PX, overlap_px=OVERLAP)
    finally:
        faulty.arm(None)
    assert info.value.kind == "PermanentBackendError"
    assert info.value.details["attempt_id"] == ""
    assert "attempt_not_recorded" in info.value.details
    assert st.refs.head(S, "main") == head
    assert not store_problems(st, "after")


# --- 3. gc while writers commit ------------------------------------------------------------------


def gc_unless_writing(store: Store):
    """Run ``gc(grace_s=0)`` now if no writer holds the store lock (None if one does).

    A concurrent ``exq gc`` would wait for the lock; in one process a blocking wait on
    it under our own shared lock would deadlock, so look first without waiting.
    """
    import fcntl

    fd = os.open(store.root / "store.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return gc(store, grace_s=0)


def test_gc_right_before_a_failed_steps_attempt_is_recorded_keeps_its_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed call's request objects are named only by its attempt: gc must not get
    between storing them and recording the attempt (one writer lock must cover both)."""
    st = Store.init(tmp_path / "store", tile_size=64)
    st.create_session(S, rng_image(48, 64))
    real = Store.record_attempt
    swept: list[int] = []

    def gc_first(self: Store, attempt: Attempt) -> str:
        rep = gc_unless_writing(self)  # what a concurrent `exq gc --grace 0s` may do here
        swept.append(-1 if rep is None else len(rep.removed))
        return real(self, attempt)

    monkeypatch.setattr(Store, "record_attempt", gc_first)
    writing = st.writing

    @contextlib.contextmanager
    def writing_then_gc():
        try:
            with writing():
                yield
        finally:  # a waiting `exq gc` gets the lock the moment it is free
            rep = gc_unless_writing(st)
            swept.append(-1 if rep is None else len(rep.removed))

    monkeypatch.setattr(st, "writing", writing_then_gc)
    with pytest.raises(StepFailure) as info:
        run_step(st, S, backend_impl=PermanentErrorBackend(), extension_px=PX, overlap_px=OVERLAP)
    att = st.objects.get_manifest(info.value.details["attempt_id"], Attempt)
    rep = fsck(st)
    assert rep.ok and not rep.missing, f"gc swept {swept} objects: missing {rep.missing}"
    assert att.recipe is not None and att.request is not None
    assert st.objects.has(att.request.frame_id) and st.objects.has(att.recipe.prompt_id)


def gc_campaign(tmp_path: Path, commits_each: int, seconds: float) -> dict[str, Any]:
    st = Store.init(tmp_path / "store", tile_size=64)
    st.create_session("gc", rng_image(48, 64, seed=5))
    barrier = tmp_path / "go"
    reports = [tmp_path / f"writer-{i}.txt" for i in range(2)]
    writers = [
        subprocess.Popen(
            fh.driver_cmd(st.root, "gc", "main", commits_each)
            + ["--backend", "pattern", "--fail-every", "4", "--seed", str(1000 * i)]
            + ["--report", str(rep), "--barrier", str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, rep in enumerate(reports)
    ]
    stop = tmp_path / "stop-gc"
    collector = subprocess.Popen(
        fh.python_cmd(str(fh.HERE), "--gc-loop", str(st.root), str(seconds), str(stop)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checks = 0
    junk: list[str] = []
    started = time.monotonic()
    try:
        fh.read_until(collector, "ready")
        fh.start_together(tmp_path, barrier, writers)
        while any(w.poll() is None for w in writers) and time.monotonic() - started < seconds:
            time.sleep(0.25)
            with st.storage.writer_lock(exclusive=True):  # a quiet moment: nothing half-done
                fsck_ok(st, f"periodic check {checks}")
                fh.check_heads_whole(st, "gc")
            with st.writing():  # garbage for gc: named by nothing
                junk.append(st.objects.put_text(f"junk {checks}"))
            checks += 1
        results = [
            w.communicate(timeout=max(5.0, seconds - (time.monotonic() - started))) for w in writers
        ]
    finally:
        stop.touch()
        for w in writers:
            if w.poll() is None:
                fh.kill9(w)
    gc_out, gc_err = collector.communicate(timeout=60)
    assert collector.returncode == 0, gc_err
    gc_totals = json.loads(gc_out.splitlines()[-1])
    for w, (out, err) in zip(writers, results, strict=True):
        assert w.returncode == 0, f"writer failed ({w.returncode}): {out}\n{err}"
    totals = Counter()
    for out, _ in results:
        totals.update(json.loads(out.splitlines()[-1]))

    # nothing reachable was collected: fsck, and every step of the history composes
    fsck_ok(st, "end")
    head = st.refs.head("gc", "main")
    hist = fh.history(st, head)
    for sid in hist:
        st.canvas_pixels(st.step(sid))
    lines = [ln for rep in reports for ln in fh.report_lines(rep)]
    committed = [ln[1] for ln in lines if ln[0] == "commit"]
    assert set(committed) <= set(hist), "a committed step is missing from the history"
    assert len(hist) == 1 + len(committed)
    attempts = {a.id for a in st.attempts("gc")}
    for ln in lines:
        if ln[0] == "moved":  # the loser's step stays whole, named by its attempt
            _, step_id, attempt_id = ln
            assert attempt_id in attempts
            assert st.objects.get_manifest(attempt_id, Attempt).step_id == step_id
            st.canvas_pixels(st.step(step_id))
        elif ln[0] == "failed":  # failed in the call: its request is kept, whole
            assert ln[2] in attempts
            att = st.objects.get_manifest(ln[2], Attempt)
            assert att.recipe is not None and att.request is not None, att.details
            st.objects.get_image(att.request.frame_id, verify=True)
    assert not fh.reflog_chain_problems(st, "gc/heads/main")
    gc(st, grace_s=0)
    assert not any(st.objects.has(j) for j in junk), "garbage outlived gc"
    return {
        "writers": 2,
        "commits": len(committed),
        "branch_moved": totals["moved"],
        "waited_for_branch": totals["waits"],
        "failed_calls": totals["failed"],
        "gc_runs": gc_totals["runs"],
        "gc_removed": gc_totals["removed"],
        "junk_written": len(junk),
        "locked_checks": checks,
        "seconds": round(time.monotonic() - started, 1),
    }


def test_gc_while_writers_commit_quick(tmp_path: Path) -> None:
    figs = gc_campaign(tmp_path, commits_each=30, seconds=60)
    FIG["gc_quick"] = figs
    assert figs["gc_runs"] >= 3 and figs["locked_checks"] >= 1


@pytest.mark.slow
def test_gc_while_writers_commit(tmp_path: Path) -> None:
    figs = gc_campaign(tmp_path, commits_each=150, seconds=240)
    FIG["gc"] = figs
    assert figs["gc_runs"] >= 10 and figs["gc_removed"] >= 1
    # the two writers of main queue behind each other (the branch lock): none pays for a
    # step that then loses the race
    assert figs["branch_moved"] == 0 and figs["waited_for_branch"] >= 1
    assert figs["failed_calls"] >= 1


def test_fsck_while_a_writer_commits_reports_no_damage(tmp_path: Path) -> None:
    """`exq fsck` holds the writer lock shared, as writers do, so they go on: steps
    committed while it rehashes are not damage."""
    st = Store.init(tmp_path / "store", tile_size=64)
    st.create_session("live", rng_image(48, 64, seed=6))
    for i in range(30):  # enough objects that a rehash takes a while
        run_step(st, "live", backend_impl=PatternBackend(), extension_px=PX, overlap_px=4, seed=i)
    writer = subprocess.Popen(
        fh.driver_cmd(st.root, "live", "main", 400, "--backend", "pattern"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reports = []
    try:
        fh.read_until(writer, "ready")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and writer.poll() is None and len(reports) < 10:
            reports.append(fsck(st))
    finally:
        fh.kill9(writer)
    fsck_ok(st, "quiet")  # the killed writer may leave a lock, never damage
    unlock_dead(st)
    bad = [(r.bad_refs, r.missing, r.damaged) for r in reports if not r.ok]
    FIG["fsck_live"] = f"runs:{len(reports)},false_alarms:{len(bad)}"
    assert not bad, f"{len(bad)} of {len(reports)} fsck runs reported damage: {bad[0]}"


def test_fsck_while_gc_sweeps_reports_no_damage(tmp_path: Path) -> None:
    """`exq gc --grace 0` in a loop in another process sweeps junk while fsck runs here:
    fsck holds the writer lock shared (gc takes it exclusively), so it never sees an
    object gc removed after fsck listed it (before, that read as a damaged object)."""
    st = Store.init(tmp_path / "store", tile_size=64)
    st.create_session("swept", rng_image(768, 768, seed=8))  # many tiles per fan
    for i in range(10):
        run_step(st, "swept", backend_impl=PatternBackend(), extension_px=PX, overlap_px=4, seed=i)
    stop = tmp_path / "stop"
    sweeper = subprocess.Popen(
        fh.python_cmd(str(fh.HERE), "--gc-loop", str(st.root), "60", str(stop)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reports, junk, done = [], [0], threading.Event()

    def litter() -> None:  # junk keeps coming, so gc has something to sweep at every run
        while not done.is_set():
            st.objects.put_text(f"junk {junk[0]}")
            junk[0] += 1

    litterer = threading.Thread(target=litter, daemon=True)
    try:
        fh.read_until(sweeper, "ready")
        litterer.start()
        for _ in range(30):
            reports.append(fsck(st))
    finally:
        done.set()
        if litterer.is_alive():
            litterer.join(10)
        stop.touch()
        out, err = sweeper.communicate(timeout=60)
    totals = json.loads(out.strip().splitlines()[-1])
    bad = [(r.damaged[:2], r.missing[:2], r.bad_refs[:2]) for r in reports if not r.ok]
    FIG["fsck_during_gc"] = f"runs:{len(reports)},gc_removed:{totals['removed']},false:{len(bad)}"
    assert totals["removed"] > 0, f"gc removed nothing: the race was not tried ({err[-300:]})"
    assert not bad, f"{len(bad)} of {len(reports)} fsck runs reported damage: {bad[0]}"


# --- 4. stale locks of killed writers ---------------------------------------------------------


def exq(store: Store, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        fh.exq_cmd("--store", str(store.root), *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=fh.ROOT,
    )


def stall_writer(store: Store, session: str, branch: str) -> subprocess.Popen:
    """A writer (tests/writer_proc.py) stopped holding ``branch``'s ref lock."""
    proc = subprocess.Popen(
        fh.python_cmd(str(Path(wp.__file__)), str(store.root), session, branch, "1")
        + ["--stall", "lock"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    fh.read_until(proc, "stalled")
    return proc


def test_a_killed_writers_lock_through_the_cli(tmp_path: Path) -> None:
    """`exq step` names the dead writer's pid and the lock's age; `exq fsck` lists it;
    `exq unlock` clears only the dead pid's lock (a live writer's is kept), and then the
    next `exq step` commits. (tests/test_refs.py covers the same with hand-made locks.)"""
    st = Store.init(tmp_path / "store", tile_size=64)
    _, root = st.create_session("locks", rng_image(48, 64, seed=7))
    st.refs.update("locks", "side", None, root, "branch")
    live = stall_writer(st, "locks", "main")
    dead = stall_writer(st, "locks", "side")
    try:
        fh.kill9(dead)
        side_lock = st.root / "refs" / "locks" / "heads" / "side.lock"
        old = time.time() - 95
        os.utime(side_lock, (old, old))

        res = exq(st, "step", "locks", "--branch", "side", "--backend", "patchmatch")
        said = res.stdout + res.stderr
        assert res.returncode == 1, said
        assert f"side.lock is held by pid {dead.pid} (not running: a stale lock)" in said
        assert re.search(r"for (9[5-9]|1\d\d)s", said), said
        assert "exq unlock" in said and "Traceback" not in said
        assert st.refs.head("locks", "side") == root

        res = exq(st, "fsck")
        assert res.returncode == 0, res.stdout
        assert f"refs/locks/heads/side.lock: pid {dead.pid}, age" in res.stdout
        assert f"refs/locks/heads/main.lock: pid {live.pid}, age" in res.stdout

        res = exq(st, "unlock", "--dry-run")
        assert "would be removed" in res.stdout and side_lock.exists()
        res = exq(st, "unlock")
        assert res.returncode == 0, res.stdout + res.stderr
        assert (
            f"main.lock  pid {live.pid}" in res.stdout
            and "kept: its process is alive" in res.stdout
        )
        assert f"side.lock  pid {dead.pid}" in res.stdout and not side_lock.exists()
        assert (st.root / "refs" / "locks" / "heads" / "main.lock").exists()

        # a live holder is waited for, then reported as alive (never broken)
        from exquisite_store.store.files import LockFile

        with (
            pytest.raises(LockHeld) as held,
            LockFile(
                st.root / "refs" / "locks" / "heads" / "main", tmp_dir=st.root / "tmp", wait_s=0.2
            ),
        ):
            pass
        assert held.value.pid == live.pid and f"pid {live.pid} (alive)" in held.value.message

        res = exq(st, "step", "locks", "--branch", "side", "--backend", "patchmatch", "--px", "16")
        assert res.returncode == 0, res.stdout + res.stderr
        assert st.step(st.refs.head("locks", "side")).parent == root
    finally:
        fh.kill9(live)
    res = exq(st, "unlock")
    assert f"main.lock  pid {live.pid}" in res.stdout and "removed" in res.stdout
    assert exq(st, "fsck").returncode == 0
    assert not fh.ref_locks(st.root)


def test_a_step_blocked_by_a_stale_lock_is_kept_as_an_attempt(tmp_path: Path) -> None:
    from exquisite_store.backends.base import BackendResult

    class PaidBackend(PatternBackend):
        def generate(self, request, cancel=None) -> BackendResult:
            res = super().generate(request, cancel)
            res.cost_micro_usd = 40_000
            return res

    st = Store.init(tmp_path / "store", tile_size=64)
    st.create_session(S, rng_image(48, 64))
    lock = st.root / "refs" / S / "heads" / "main.lock"
    lock.write_text("pid 999999\n")
    with pytest.raises((LockHeld, StepFailure)) as info:
        run_step(st, S, backend_impl=PaidBackend(), extension_px=PX, overlap_px=OVERLAP)
    assert "pid 999999 (not running: a stale lock)" in info.value.message
    from exquisite_store.pipeline.cost import session_spent

    assert st.attempts(S), "no attempt names the step that could not commit"
    assert session_spent(st, S) == 40_000


def test_a_job_killed_after_its_commit_is_not_recorded_as_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exquisite_store.core import job_states, mark_abandoned

    st = Store.init(tmp_path / "store", tile_size=64)
    st.create_session("web", rng_image(48, 64))
    job = "0123456789ab"
    # queued by a server that is gone now
    st.append_event("web", "queued", job=job, pid=999_999, parent=None, branch=None, params={})
    real = Store.append_event

    def killed_before_success(self: Store, session: str, type_: str, **data: Any) -> int:
        if type_ == "succeeded":  # the server died here: the ref had moved
            raise ArtifactWriteError("killed")
        return real(self, session, type_, **data)

    monkeypatch.setattr(Store, "append_event", killed_before_success)
    out = run_step(
        st, "web", job=job, backend_impl=PatternBackend(), extension_px=PX, overlap_px=OVERLAP
    )
    monkeypatch.undo()
    assert st.refs.head("web", "main") == out.step_ids[0]
    assert job_states(st, "web")[job]["state"] == "running"

    mark_abandoned(Store.open(st.root))  # what the restarted viewer does first
    state = job_states(st, "web")[job]
    abandoned = [a for a in st.attempts("web") if "abandoned" in a.message]
    assert not abandoned, f"a committed job recorded as abandoned: {state}"
    assert state["state"] == "succeeded" and state["result"]["step_ids"] == out.step_ids
