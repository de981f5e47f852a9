"""Jobs and money: a bounded queue, cancel, one job per branch head, budgets reserved.

Each test is one item of the hardening issue, asserting what the user gets now.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from exquisite_store import core
from exquisite_store.backends.openai_backend import OpenAIBackend
from exquisite_store.errors import Busy, Cancelled, StepFailure
from exquisite_store.manifests import Attempt, BackendResponse
from exquisite_store.pipeline.cost import session_spent
from exquisite_store.pipeline.reservations import held_micro_usd
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store
from viewer import create_app

from .fakes.backends import HookBackend, PatternBackend
from .fakes.openai_server import Behaviour
from .helpers import rng_image
from .viewer_helpers import BufferedClient, csrf_of, make_session, wait_job

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def st(tmp_path) -> Store:
    store = Store.init(tmp_path / "store")
    store.create_session("s", rng_image(48, 64, seed=1))
    return store


def request(store: Store, **params) -> core.StepRequest:
    return core.step_request(store, "s", {"extension_px": 16, "overlap_px": 4, **params})


# --- a bounded queue ------------------------------------------------------------------------


class Gate:
    """Stands in for ``grow``: each job waits at the gate until it is opened."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.started: list[str] = []

    def __call__(self, store, req, *, job=None, cancel=None, **_kw):
        self.started.append(job)
        self.open.wait(30)


def test_the_queue_is_bounded(st, monkeypatch) -> None:
    gate = Gate()
    monkeypatch.setattr("exquisite_store.core.jobs.grow", gate)
    jobs = core.Jobs(st, workers=1, max_waiting=2)
    accepted = [jobs.submit(request(st)) for _ in range(3)]  # 1 running + 2 waiting
    with pytest.raises(Busy, match="3 steps are running or waiting"):
        jobs.submit(request(st))
    queued = [e for e in st.events("s") if e.type == "queued"]
    assert [e.data["job"] for e in queued] == accepted  # the refused one was never queued
    gate.open.set()
    deadline = time.monotonic() + 30
    while jobs.cancels and time.monotonic() < deadline:  # the three finish
        time.sleep(0.01)
    assert gate.started == accepted
    jobs.submit(request(st))  # room again
    jobs.pool.shutdown(wait=True)


def test_the_viewer_answers_429_with_retry_after(tmp_path, monkeypatch) -> None:
    world = make_session(tmp_path / "store")
    gate = Gate()
    monkeypatch.setattr("exquisite_store.core.jobs.grow", gate)
    app = create_app(
        {"EXQ_STORE": str(world["store"].root), "TESTING": True, "JOB_WORKERS": 1, "JOB_QUEUE": 0}
    )
    app.test_client_class = BufferedClient
    client = app.test_client()
    headers = {"X-CSRF-Token": csrf_of(client), "X-Requested-With": "fetch"}
    first = client.post("/s/garden/extend", json={"extension_px": 8}, headers=headers)
    second = client.post("/s/garden/extend", json={"extension_px": 8}, headers=headers)
    assert first.status_code == 202
    assert second.status_code == 429 and second.headers["Retry-After"] == "5"
    assert "try again" in second.get_json()["error"]
    gate.open.set()


# --- cancel -------------------------------------------------------------------------------------


def test_cancel_a_waiting_job_it_never_starts(st, monkeypatch) -> None:
    gate = Gate()
    monkeypatch.setattr("exquisite_store.core.jobs.grow", gate)
    jobs = core.Jobs(st, workers=1)
    first, second = jobs.submit(request(st)), jobs.submit(request(st))
    assert jobs.cancel(second) and not jobs.cancel("nosuchjob")
    gate.open.set()
    jobs.pool.shutdown(wait=True)
    assert gate.started == [first]
    state = core.job_states(st, "s")[second]
    assert state["state"] == "failed" and state["result"]["kind"] == "Cancelled"


def test_cancel_a_running_fill(st) -> None:
    """A patchmatch fill is killed; the step is a Cancelled attempt; no head moves."""
    before = st.refs.branches("s")
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    req = core.step_request(
        st, "s", {"extension_px": 600, "overlap_px": 8, "backend": "patchmatch"}
    )
    with pytest.raises(Cancelled):
        core.grow(st, req, cancel=cancel)
    assert st.refs.branches("s") == before
    (line,) = st.attempts("s")
    assert line.kind == "Cancelled"


def test_a_cancelled_paid_call_keeps_its_answer(st, fake_openai, monkeypatch) -> None:
    """The call is let finish (it is paid for); its answer is kept in the attempt and
    counted; nothing is committed."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-cancel")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    fake_openai.script(Behaviour("hang", seconds=0.6))  # answers, slowly
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    backend = OpenAIBackend(max_retries=0)
    before = st.refs.branches("s")
    with pytest.raises(Cancelled, match="what it returned is kept"):
        run_step(
            st,
            "s",
            backend="openai",
            model="gpt-image-2",
            extension_px=32,
            overlap_px=8,
            seed=1,
            quality="low",
            backend_impl=backend,
            cancel=cancel,
        )
    backend.close()
    assert st.refs.branches("s") == before
    (line,) = st.attempts("s")
    att = st.objects.get_manifest(line.id, Attempt)
    assert att.failure_kind == "Cancelled" and att.response.cost_micro_usd > 0
    record = st.objects.get_manifest(att.response.response_id, BackendResponse)
    assert record.output_ids and all(st.objects.has(o) for o in record.output_ids)
    assert session_spent(st, "s") == att.response.cost_micro_usd


def test_the_cancel_route(tmp_path, monkeypatch) -> None:
    world = make_session(tmp_path / "store")
    gate = Gate()
    monkeypatch.setattr("exquisite_store.core.jobs.grow", gate)
    app = create_app({"EXQ_STORE": str(world["store"].root), "TESTING": True, "JOB_WORKERS": 1})
    app.test_client_class = BufferedClient
    client = app.test_client()
    headers = {"X-CSRF-Token": csrf_of(client), "X-Requested-With": "fetch"}
    client.post("/s/garden/extend", json={"extension_px": 8}, headers=headers)
    job = client.post("/s/garden/extend", json={"extension_px": 8}, headers=headers).get_json()
    resp = client.post(f"/-/jobs/garden/{job['job']}/cancel", headers=headers)
    assert resp.status_code == 202 and resp.get_json() == {"job": job["job"], "cancelled": True}
    missing = client.post("/-/jobs/garden/0123456789ab/cancel", headers=headers)
    assert missing.status_code == 404 and "no waiting or running job" in missing.get_json()["error"]
    no_token = client.post(f"/-/jobs/garden/{job['job']}/cancel")
    assert no_token.status_code == 400
    gate.open.set()
    state = wait_job(client, "garden", job["job"])
    assert state["result"]["kind"] == "Cancelled"


# --- one job per branch head ------------------------------------------------------------


def test_two_jobs_on_one_head_take_turns(st) -> None:
    """The second waits for the first and grows its step: nobody pays for a call whose
    step then loses the race to BranchMoved."""
    entered = threading.Event()

    def slow(_request) -> None:
        entered.set()
        time.sleep(0.3)

    first_backend, second_backend = HookBackend(slow), PatternBackend()
    results: dict[str, object] = {}
    phases: list[str] = []

    def run(name, backend, observer=None) -> None:
        try:
            results[name] = core.grow(st, request(st), backend=backend, observer=observer)
        except StepFailure as exc:  # pragma: no cover - the failure is the finding
            results[name] = exc

    t1 = threading.Thread(target=run, args=("first", first_backend))
    t1.start()
    entered.wait(10)
    observe = lambda t, d: phases.append(d.get("phase", t))  # noqa: E731
    t2 = threading.Thread(target=run, args=("second", second_backend, observe))
    t2.start()
    t1.join(30)
    t2.join(30)
    first, second = results["first"], results["second"]
    assert not isinstance(first, Exception) and not isinstance(second, Exception), results
    assert st.step(second.step_ids[0]).parent == first.step_ids[0]
    assert "wait" in phases and first_backend.calls == second_backend.calls == 1
    assert not st.attempts("s")


def test_two_processes_on_one_head_take_turns(st) -> None:
    """`exq step` twice at once on one branch: both commit, one after the other."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "exquisite_store.cli",
        "--store",
        str(st.root),
        "step",
        "s",
        "--backend",
        "patchmatch",
        "--px",
        "300",
        "--overlap",
        "8",
    ]
    procs = [
        subprocess.Popen(
            [*cmd, "--seed", str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    head = st.refs.head("s", "main")
    chain = [sid for sid, _ in st.history(head)]
    assert len(chain) == 3 and not st.attempts("s")


# --- budgets: reserved, never passed --------------------------------------------------------------


def test_parallel_paid_steps_never_pass_the_budget(tmp_path, fake_openai) -> None:
    """Six `exq step` processes at once on a budget that covers two: the estimates are
    reserved under the budget lock, so at most two are paid for and the spend stays
    within the budget (before: all six committed, $0.163 on a $0.05 budget)."""
    root = tmp_path / "store"
    st = Store.init(root)
    st.create_session("s", rng_image(96, 128, seed=3))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OPENAI_API_KEY": "sk-test-race",
        "OPENAI_BASE_URL": fake_openai.base_url,
    }
    step = [
        sys.executable,
        "-m",
        "exquisite_store.cli",
        "--store",
        str(root),
        "step",
        "s",
        "--backend",
        "openai",
        "--model",
        "gpt-image-2",
        "--quality",
        "low",
        "--px",
        "32",
        "--overlap",
        "8",
    ]
    estimate = core.estimate(
        st,
        core.step_request(
            st,
            "s",
            {
                "backend": "openai",
                "model": "gpt-image-2",
                "quality": "low",
                "extension_px": 32,
                "overlap_px": 8,
            },
        ),
    )["estimate_micro_usd"]
    budget = 2 * estimate + estimate // 2  # two steps fit, a third does not
    core.set_budget(st, "s", f"{budget / 1e6:.6f}")
    budget = st.session("s").budget_micro_usd
    fake_openai.script(*[Behaviour("hang", seconds=0.4)] * 6)  # slow answers: real overlap
    procs = [
        subprocess.Popen(
            [*step, "--branch", f"b{i}", "--from", "main"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    committed = [o for (o, _e), p in zip(outs, procs, strict=True) if p.returncode == 0]
    refused = [o for (o, _e), p in zip(outs, procs, strict=True) if p.returncode != 0]
    spent = session_spent(st, "s")
    assert spent <= budget, f"spent {spent} on a budget of {budget}"
    assert len(fake_openai.calls) == len(committed) <= 2
    assert len(committed) >= 1
    assert all("BudgetExceeded" in line for line in refused), refused
    assert held_micro_usd(st, "s") == 0  # every reservation released


def test_a_reservation_of_a_dead_process_is_not_held(st) -> None:
    import msgspec

    from exquisite_store.store.store import LogLine

    core.set_budget(st, "s", "1")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    line = LogLine(type="reserve", id="dead", data={"micro_usd": 900_000, "process": {"pid": pid}})
    st.storage.append_log("sessions/s/reservations", msgspec.json.encode(line))
    assert held_micro_usd(st, "s") == 0


def test_a_fill_past_its_deadline_is_stopped(st) -> None:
    from exquisite_store.backends.patchmatch import PatchMatchBackend
    from exquisite_store.errors import TransientBackendError

    req = core.step_request(st, "s", {"extension_px": 600, "overlap_px": 8})
    with pytest.raises(TransientBackendError, match="took longer than 0.2s; stopped"):
        core.grow(st, req, backend=PatchMatchBackend(deadline_s=0.2))
    (line,) = st.attempts("s")
    assert line.kind == "TransientBackendError"
