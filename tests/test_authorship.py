"""Who did it: every step, attempt, plan and ref move records its author."""

from __future__ import annotations

import time

from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.authorship import as_author
from exquisite_store.cli import cli
from exquisite_store.core import plans
from exquisite_store.errors import StepFailure
from exquisite_store.fixtures import read_fixture
from exquisite_store.store import Store

from .fakes.backends import PermanentErrorBackend
from .helpers import TickClock, fixture_array


def exq(root, *args, author: str | None = None):
    env = {"EXQ_AUTHOR": author} if author is not None else {"EXQ_AUTHOR": ""}
    return CliRunner().invoke(cli, ["--store", str(root), *args], env=env)


def test_the_cli_records_exq_author_on_steps_and_ref_moves(tmp_path) -> None:
    root = tmp_path / "store"
    fixture = tmp_path / "photo.png"
    fixture.write_bytes(read_fixture("photo.png"))
    assert exq(root, "new", "s", str(fixture), author="alice").exit_code == 0
    res = exq(root, "step", "s", "--px", "32", "--overlap", "8", "--seed", "1", author="alice")
    assert res.exit_code == 0, res.output
    store = Store.open(root)
    head = store.refs.head("s", "main")
    assert store.step(head).author == "alice"
    assert store.step(store.session("s").root).author == "alice"
    assert {e.author for e in store.refs.reflog("s/heads/main")} == {"alice"}
    log = exq(root, "log", "s").output
    assert log.count("by alice") == 2
    assert "(by alice)" in exq(root, "history", "s").output


def test_config_user_name_and_exq_author_over_it(tmp_path) -> None:
    store = Store.init(tmp_path / "store", clock=TickClock())
    store.create_session("s", fixture_array("photo.png"))  # nobody said who: unknown
    root = store.root
    assert exq(root, "config", "user.name", "bob").exit_code == 0
    assert exq(root, "config", "user.name").output.strip() == "bob"
    assert exq(root, "branch", "s", "side", "--from", "main").exit_code == 0
    assert Store.open(root).refs.reflog("s/heads/side")[-1].author == "bob"
    assert exq(root, "branch", "s", "other", "--from", "main", author="carol").exit_code == 0
    assert Store.open(root).refs.reflog("s/heads/other")[-1].author == "carol"
    log = exq(root, "log", "s").output
    assert "by unknown" in log  # the root, made before anyone was named
    bad = exq(root, "config", "user.name", "../x")
    assert bad.exit_code == 1 and bad.output.startswith("error: user name '../x' may hold only")
    assert exq(root, "config", "colour", "red").exit_code == 2


def test_a_job_runs_as_whoever_submitted_it(tmp_path) -> None:
    store = Store.init(tmp_path / "store", clock=TickClock())
    store.create_session("s", fixture_array("photo.png"))
    jobs = core.Jobs(store, 1)
    req = core.step_request(
        store, "s", {"extension_px": 16, "overlap_px": 4, "backend": "patchmatch"}
    )
    with as_author("dana"):
        job = jobs.submit(req)
    deadline = time.monotonic() + 120
    while core.job_states(store, "s")[job]["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert store.step(store.refs.head("s", "main")).author == "dana"
    jobs.pool.shutdown()


def test_attempts_and_plans_record_their_author(tmp_path) -> None:
    store = Store.init(tmp_path / "store", clock=TickClock())
    store.create_session("s", fixture_array("photo.png"))
    with as_author("erin"):
        req = core.step_request(store, "s", {"extension_px": 16, "overlap_px": 4})
        try:
            core.grow(store, req, backend=PermanentErrorBackend())
        except StepFailure as exc:
            aid = exc.details["attempt_id"]
        pid, plan = plans.create_plan(store, "s", steps=1, params={"extension_px": 16})
    assert store.objects.get_manifest(aid).author == "erin"
    assert plan.author == "erin"


def test_find_by_author(tmp_path) -> None:
    from exquisite_store.core import search

    store = Store.init(tmp_path / "store", clock=TickClock())
    store.create_session("s", fixture_array("photo.png"))  # by nobody: unknown
    made = {}
    for who in ("ann", "bo", "ann"):
        with as_author(who):
            req = core.step_request(store, "s", {"extension_px": 16, "overlap_px": 4})
            made.setdefault(who, []).extend(core.grow(store, req).step_ids)

    def ids(who: str) -> list[str]:
        return [f.id for f in search.find(store, "s", search.parse_query(author=who))]

    assert ids("ann") == made["ann"] and ids("bo") == made["bo"]
    assert ids("unknown") == [store.session("s").root]
    res = CliRunner().invoke(cli, ["--store", str(store.root), "find", "s", "--author", "bo"])
    assert res.exit_code == 0 and made["bo"][0][:12] in res.output
    bad = CliRunner().invoke(cli, ["--store", str(store.root), "find", "s", "--author", "../x"])
    assert bad.exit_code == 1 and bad.output.startswith("error: user name '../x'")
