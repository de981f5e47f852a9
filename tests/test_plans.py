"""exq grow: a durable plan, run step by step, resumed after kills, never paying twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.cli import cli
from exquisite_store.core import plans as pl
from exquisite_store.errors import Busy, ConfigError, NotFound, UserError
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck

from .fakes.backends import PatternBackend
from .helpers import TickClock, rng_image

HERE = Path(__file__).resolve().parent
SMALL = {"extension_px": 16, "overlap_px": 4}


@pytest.fixture
def st(tmp_path) -> Store:
    store = Store.init(tmp_path / "store", clock=TickClock())
    start = core.StartImage(rng_image(40, 64, seed=1), "start.png")
    core.create_session(store, core.new_session("s", start))
    return store


def chain(store: Store, st: pl.PlanState) -> list[str]:
    out = []
    for sid, _step in store.history(store.refs.head("s", st.plan.branch)):
        if sid == st.plan.start:
            return out
        out.append(sid)
    raise AssertionError("the branch left the plan")


def test_a_plan_grows_its_steps_and_picks_the_lowest_seam(st) -> None:
    pid, _ = pl.create_plan(st, "s", steps=3, candidates=2, directions=("right", "down"),
                            params=SMALL, seed=5)  # fmt: skip
    backend = PatternBackend()
    done = pl.run(st, "s", pid, backend=backend)
    assert done.state == "finished" and done.done == 3 and done.reason == "3 steps done"
    assert backend.calls == 3  # one call per step, two candidates each
    steps = [st.step(s) for s in reversed(chain(st, done))]
    assert [s.recipe.direction for s in steps] == ["right", "down", "right"]
    assert (done.width, done.height) == (64 + 32, 40 + 16)
    for choice in done.choices:
        assert st.step(choice["step"]).result.scores.seam_permille == min(choice["seams"])
        assert len(choice["seams"]) == 2
    assert core.staged(st, "s") == []  # every step decided
    assert fsck(st).ok
    res = CliRunner().invoke(cli, ["--store", str(st.root), "plans", "s"])
    assert (
        res.exit_code == 0 and f"{pid}  main  3/3 steps" in res.output and "finished" in res.output
    )


def test_a_plan_stops_at_its_size(st) -> None:
    pid, _ = pl.create_plan(st, "s", until=(100, 40), params=SMALL)
    done = pl.run(st, "s", pid, backend=PatternBackend())
    assert done.state == "finished" and (done.width, done.height) == (112, 40)
    assert done.done == 3 and "112x40" in done.reason


def test_pause_and_stop_are_obeyed_between_steps(st) -> None:
    pid, _ = pl.create_plan(st, "s", steps=5, params=SMALL)

    class PausingBackend(PatternBackend):
        def generate(self, request, cancel=None):
            if self.calls == 1:  # during the second step, someone asks for a pause
                pl.control(st, "s", pid, "pause")
            return super().generate(request, cancel)

    paused = pl.run(st, "s", pid, backend=PausingBackend())
    assert paused.state == "paused" and paused.done == 2
    assert pl.run(st, "s", pid, backend=PatternBackend()).state == "paused"
    pl.control(st, "s", pid, "resume")
    pl.control(st, "s", pid, "stop")
    stopped = pl.run(st, "s", pid, backend=PatternBackend())
    assert stopped.state == "stopped" and stopped.done == 2
    with pytest.raises(UserError, match="ended"):
        pl.control(st, "s", pid, "resume")


def test_a_seam_limit_no_candidate_meets_fails_the_plan_and_keeps_them(st) -> None:
    pid, _ = pl.create_plan(st, "s", steps=2, candidates=2, max_seam_permille=0, params=SMALL)
    done = pl.run(st, "s", pid, backend=PatternBackend())
    assert done.state == "failed" and "failed 3 times" in done.reason
    assert done.done == 0
    assert sum(len(g.candidates) for g in core.staged(st, "s")) == 6  # 3 tries x 2, all kept


def test_a_plan_is_run_by_one_process_at_a_time(st) -> None:
    pid, _ = pl.create_plan(st, "s", steps=1, params=SMALL)
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time; sys.path.insert(0, sys.argv[3])\n"
            "from exquisite_store.store import Store\n"
            "st = Store.open(sys.argv[1])\n"
            "with st.storage.branch_lock(sys.argv[2], wait=False) as free:\n"
            "    print('held' if free else 'no', flush=True); time.sleep(30)\n"
        ), str(st.root), pl.plan_ref("s", pid), str(HERE.parent)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match="running in another process"):
            pl.run(st, "s", pid, backend=PatternBackend())
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert pl.run(st, "s", pid, backend=PatternBackend()).state == "finished"


def test_bad_plans_are_clear_errors(st) -> None:
    with pytest.raises(ConfigError, match="--steps N"):
        pl.create_plan(st, "s")
    with pytest.raises(ConfigError, match="sets direction itself"):
        pl.create_plan(st, "s", steps=2, params={"direction": "left"})
    with pytest.raises(ConfigError, match="add up or down"):
        pl.create_plan(st, "s", until=(64, 400))
    with pytest.raises(ConfigError, match="extension_px"):
        pl.create_plan(st, "s", steps=1, params={"extension_px": "lots"})
    with pytest.raises(NotFound, match="no plan"):
        pl.state(st, "s", "0123456789abcdef")
    runner = CliRunner()
    base = ["--store", str(st.root)]
    res = runner.invoke(cli, [*base, "grow", "s", "--until", "wide"])
    assert res.exit_code == 1 and res.output.startswith("error: --until takes WIDTHxHEIGHT")
    res = runner.invoke(cli, [*base, "grow", "s", "--steps", "2", "--direction", "up"])
    assert res.exit_code == 1 and "sets direction itself" in res.output
    res = runner.invoke(cli, [*base, "grow", "s", "--resume", "../../etc"])
    assert res.exit_code == 1 and "no plan" in res.output
    assert pl.plans(st, "s") == []


def test_the_cli_runs_a_plan(st) -> None:
    res = CliRunner().invoke(
        cli, ["--store", str(st.root), "grow", "s", "--steps", "2", "--px", "16",
              "--overlap", "4", "--spiral", "--candidates", "2"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "  step 1: " in res.output and "  step 2: " in res.output
    assert "2/2 steps" in res.output and "finished" in res.output
    [state] = pl.plans(st, "s")
    assert [st.step(s).recipe.direction for s in reversed(chain(st, state))] == ["right", "down"]


@pytest.mark.slow
def test_a_plan_killed_at_random_moments_finishes_exactly_once(st, tmp_path) -> None:
    pid, _ = pl.create_plan(st, "s", steps=12, candidates=2, params=SMALL, seed=3)
    log = tmp_path / "answers.log"
    rng = random.Random(12)
    kills = 0
    for _ in range(60):
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "plan_proc.py"), str(st.root), "s", pid, str(log)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout.readline().strip() == "ready"
        try:
            # kill at random moments; after 20 kills (a slow machine) let it finish
            proc.wait(timeout=rng.uniform(0.05, 0.6) if kills < 20 else 600)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            proc.stdout.close()
            continue
        out = proc.stdout.read()
        proc.stdout.close()
        assert proc.returncode == 0, out
        break
    state = pl.state(Store.open(st.root), "s", pid)
    assert state.state == "finished" and state.done == 12, (state, kills)
    assert len(chain(st, state)) == 12
    # A call whose answer the store had recorded is never made again. Only a kill in
    # the few milliseconds between the model's answer and its record can cost a call
    # twice; each such repeat must follow an answer that was never recorded.
    answered, again = [], []
    for line in log.read_text().splitlines():
        what, rid = line.split()
        if what == "answered":
            (again if rid in answered else []).append(rid)
            answered.append(rid)
    assert not [rid for rid in again if rid in recorded_before(log, rid)], "paid twice"
    assert len(again) <= kills
    assert len(set(answered)) == 12  # one request per step: 2 candidates from one call
    assert kills >= 3
    st_again = Store.open(st.root)
    from exquisite_store.store.locks import unlock

    unlock(st_again)  # locks of killed writers, as `exq unlock` clears them
    assert fsck(st_again).ok
    print(f"FIGURE plan-kills kills={kills} answers={len(answered)} repeated={len(again)}")


def recorded_before(log: Path, rid: str) -> set[str]:
    """``{rid}`` if the store recorded an answer to ``rid`` before it was answered again."""
    seen_answer = seen_record = False
    for line in log.read_text().splitlines():
        what, r = line.split()
        if r != rid:
            continue
        if what == "recorded":
            seen_record = True
        elif seen_answer and seen_record:
            return {rid}
        else:
            seen_answer = True
    return set()
