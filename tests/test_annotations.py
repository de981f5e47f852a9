"""Stars, tags and notes (CAS + log, concurrent writers), search, du and keep-starred."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.cli import cli
from exquisite_store.core import annotations as notes
from exquisite_store.core import cleanup, search, usage
from exquisite_store.errors import InvalidName, UserError
from exquisite_store.manifests import StepNote
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from exquisite_store.store.gc import gc

from .test_remotes import grow, make_store

WRITERS = 4
PER_WRITER = 15


def _writer(root: str, steps: list[str], i: int, start) -> None:
    store = Store.open(Path(root))
    start.wait()
    for k, sid in enumerate(steps):
        notes.annotate(store, "s", sid, add_tags=(f"w{i}",), star=True if i == 0 else None)
        if k % 5 == i:
            notes.annotate(store, "s", sid, note=f"writer {i} was here")


def test_four_concurrent_writers_lose_nothing(tmp_path) -> None:
    store = make_store(tmp_path / "a")
    steps = [grow(store, seed=i) for i in range(PER_WRITER)]
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_writer, args=(str(tmp_path / "a"), steps, i, start))
        for i in range(WRITERS)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    got = notes.session_notes(store, "s")
    for k, sid in enumerate(steps):
        assert set(got[sid].tags) == {f"w{i}" for i in range(WRITERS)}, k
        assert got[sid].starred
        assert got[sid].note == (f"writer {k % 5} was here" if k % 5 < WRITERS else "")
    log = store.refs.reflog("s/notes")
    notes_written = sum(1 for k in range(PER_WRITER) for i in range(WRITERS) if k % 5 == i)
    assert len(log) == WRITERS * PER_WRITER + notes_written  # every change, once
    for before, after in zip(log, log[1:], strict=False):  # one unbroken chain of CAS moves
        assert after.old == before.new
    assert notes.annotation_log(store, "s")[0].new == store.refs.notes_pointer("s")
    assert fsck(store).ok


def test_annotate_star_tags_note_and_their_errors(tmp_path) -> None:
    store = make_store(tmp_path / "a")
    sid = grow(store, seed=1)
    notes.annotate(store, "s", sid, star=True, add_tags=("sky", "keep"))
    notes.annotate(store, "s", sid, remove_tags=("keep",), note="  soft seam  ")
    assert notes.note_of(store, "s", sid) == StepNote(starred=True, tags=("sky",), note="soft seam")
    notes.annotate(store, "s", sid, star=False, remove_tags=("sky",), note="")
    assert notes.session_notes(store, "s") == {}  # an empty note is no note
    with pytest.raises(InvalidName):
        notes.annotate(store, "s", sid, add_tags=("two words",))
    with pytest.raises(UserError, match="at most"):
        notes.annotate(store, "s", sid, note="x" * (notes.MAX_NOTE + 1))
    with pytest.raises(UserError, match="nothing to change"):
        notes.annotate(store, "s", sid)
    before = store.refs.notes_pointer("s")
    store2 = make_store(tmp_path / "b")
    with pytest.raises(UserError):  # a step of another store is no step here
        notes.annotate(store2, "s", sid, star=True)
    assert store.refs.notes_pointer("s") == before
    # a note that looks like an id is text, not a reference: fsck stays clean
    notes.annotate(store, "s", sid, note="ab" * 32, add_tags=("c" * 32,))
    assert fsck(store).ok


def test_annotations_keep_no_step_from_gc_and_gc_keeps_the_annotations(tmp_path) -> None:
    store = make_store(tmp_path / "a")
    sid = grow(store, seed=1)
    notes.annotate(store, "s", sid, star=True)
    rep = gc(store, grace_s=0)
    assert rep.removed == [] and store.objects.has(store.refs.notes_pointer("s"))


def test_cli_star_tag_note_notes(tmp_path) -> None:
    store = make_store(tmp_path / "a")
    sid = grow(store, seed=1)
    run = CliRunner()
    base = ["--store", str(tmp_path / "a")]
    assert run.invoke(cli, [*base, "star", "s:main"]).exit_code == 0
    assert run.invoke(cli, [*base, "tag", sid[:10], "sky", "blue"]).exit_code == 0
    assert run.invoke(cli, [*base, "note", sid[:10], "good one"]).exit_code == 0
    out = run.invoke(cli, [*base, "note", sid[:10]]).output
    assert out.strip() == "good one"
    out = run.invoke(cli, [*base, "notes", "s"]).output
    assert f"* {sid[:12]}  s  #sky #blue  'good one'" in out
    log = run.invoke(cli, [*base, "notes", "s", "--log"]).output.splitlines()
    assert [line.split("  ", 1)[1] for line in log] == [
        f"note {sid[:12]}",
        f"tag sky,blue {sid[:12]}",
        f"star {sid[:12]}",
    ]
    bad = run.invoke(cli, [*base, "tag", sid[:10], "a/b"])
    assert bad.exit_code == 1 and bad.output.startswith("error: tag 'a/b'")
    assert store.refs.notes_pointer("s")


def test_find_by_every_condition(tmp_path) -> None:
    store = make_store(tmp_path / "a")
    ids = []
    for i, prompt in enumerate(["a red Barn", "blue sky", "red sky at night"]):
        req = core.step_request(
            store, "s", {"extension_px": 16, "overlap_px": 4, "seed": i}, prompt=prompt
        )
        from .fakes.backends import PatternBackend

        ids.append(core.grow(store, req, backend=PatternBackend()).step_ids[0])
    notes.annotate(store, "s", ids[1], star=True, add_tags=("fav",))
    notes.annotate(store, "s", ids[2], add_tags=("fav",))

    def found(**kw) -> list[str]:
        return [f.id for f in search.find(store, "s", search.parse_query(**kw))]

    root = store.session("s").root
    assert found() == [root, *ids]
    assert found(prompt="RED") == [ids[0], ids[2]]
    assert found(prompt="red", tag="fav") == [ids[2]]
    assert found(starred=True) == [ids[1]]
    assert found(backend="patchmatch") == []  # made by the test's pattern backend
    seams = {sid: store.step(sid).result.scores.seam_permille for sid in ids}
    low = min(seams.values())
    assert set(found(seam_above=str(low / 1000))) == {s for s, v in seams.items() if v > low}
    assert found(cost_above="0") == []
    for bad in ({"seam_above": "lots"}, {"cost_above": "$x"}, {"backend": "dalle"}):
        with pytest.raises(UserError):
            search.parse_query(**bad)
    out = CliRunner().invoke(
        cli, ["--store", str(tmp_path / "a"), "find", "s", "--prompt", "sky", "--starred"]
    )
    assert out.exit_code == 0 and ids[1][:12] in out.output and "1 steps match" in out.output
    where = ["--store", str(tmp_path / "a")]
    bad = CliRunner().invoke(cli, [*where, "find", "s", "--seam-above", "x"])
    assert bad.exit_code == 1 and bad.output.startswith("error: seam-above")


def _sizes(store: Store, ids: set[str]) -> int:
    return sum(len(store.storage.get_object(o)[1]) for o in ids)


def reachable(store, roots: list[str]) -> tuple[set[str], list]:
    """Every id reachable from ``roots``, read the slow way (one manifest at a time)."""
    from exquisite_store import manifests
    from exquisite_store.store.reach import references, walk

    listed = dict(store.storage.list_objects())

    def links(oid: str) -> list[str]:
        return references(manifests.decode(store.storage.get_object(oid)[1]))

    return walk(roots, listed, links, lambda oid: None)


def test_du_unique_and_shared_add_up(tmp_path) -> None:
    store = make_store(tmp_path / "a")
    grow(store, seed=1)
    fork = store.refs.head("s", "main")
    core.create_branch(store, "s", "alt", fork)
    alt = grow(store, branch="alt", seed=2)
    main = grow(store, seed=3)
    (row,) = usage.disk_usage(store, "s")
    main_ids, _ = reachable(store, [main])
    alt_ids, _ = reachable(store, [alt])
    pointer_ids, _ = reachable(store, [store.refs.session_pointer("s")])
    assert row.branches["main"].bytes == _sizes(store, main_ids)
    only_main = main_ids - alt_ids - pointer_ids
    assert row.branches["main"].unique_bytes == _sizes(store, only_main)
    assert row.branches["alt"].unique_bytes == _sizes(store, alt_ids - main_ids - pointer_ids)
    assert row.branches["main"].shared_bytes == _sizes(store, main_ids & (alt_ids | pointer_ids))
    every = {o for o, _ in store.storage.list_objects()}
    assert row.usage.bytes == _sizes(store, every) and row.usage.unique_bytes == row.usage.bytes
    # a second session that shares nothing; and a copy that shares everything
    from exquisite_store.core import bundles

    bundles.create_bundle(store, "s", tmp_path / "b.bundle")
    bundles.import_bundle(store, tmp_path / "b.bundle", as_name="copy")
    rows = {r.session: r for r in usage.disk_usage(store)}
    assert rows["s"].usage.unique_bytes < rows["s"].usage.bytes
    assert rows["copy"].branches["main"].bytes == row.branches["main"].bytes
    assert rows["copy"].branches["main"].unique_bytes == 0  # s:main holds the same
    out = CliRunner().invoke(cli, ["--store", str(tmp_path / "a"), "du", "s"])
    assert out.exit_code == 0 and "unique" in out.output and "  alt " in out.output


def test_keep_starred_drops_unstarred_branches_and_gc_keeps_their_steps(tmp_path) -> None:
    store = make_store(tmp_path / "a")
    base = grow(store, seed=1)
    for name, seed in (("a", 2), ("b", 3), ("c", 4)):
        core.create_branch(store, "s", name, base)
        grow(store, branch=name, seed=seed)
    a_head = store.refs.head("s", "a")
    notes.annotate(store, "s", a_head, star=True)
    notes.annotate(store, "s", base, star=True)  # shared: keeps no branch by itself
    verdicts = {v.branch: v.keep for v in cleanup.starred_verdicts(store, "s")}
    assert verdicts == {"main": True, "a": True, "b": False, "c": False}
    dry = cleanup.keep_starred(store, "s", dry_run=True)
    assert {m.branch for m in dry} == {"b", "c"} and set(store.refs.branches("s")) >= {"b", "c"}
    b_head = store.refs.head("s", "b")
    cleanup.keep_starred(store, "s")
    assert set(store.refs.branches("s")) == {"main", "a"}
    assert gc(store, grace_s=0).removed == []  # the reflog still holds b and c
    assert store.objects.has(b_head)
    core.undo(store, "s", "heads/b")
    assert store.refs.head("s", "b") == b_head


def test_gc_dry_run_lists_sizes_and_kinds(tmp_path) -> None:
    store = make_store(tmp_path / "a")
    grow(store, seed=1)
    orphan = store.objects.put_text("nobody points at me")
    rep, doomed = cleanup.gc_preview(store, grace_s=0)
    assert [d.id for d in doomed] == [orphan] == rep.removed
    assert doomed[0].bytes == len("nobody points at me") and doomed[0].what == "text"
    where = ["--store", str(tmp_path / "a")]
    out = CliRunner().invoke(cli, [*where, "gc", "--dry-run", "--grace", "0"])
    assert f"would remove {orphan}" in out.output and "19 bytes  text" in out.output
    assert store.objects.has(orphan)


def test_find_remembers_step_facts_and_survives_a_bad_index(tmp_path, monkeypatch) -> None:
    store = make_store(tmp_path / "a")
    ids = [grow(store, seed=i) for i in range(3)]
    q = search.parse_query()
    first = [f.id for f in search.find(store, "s", q)]
    index = tmp_path / "a" / "cache" / "search" / "s.msgpack"
    assert index.is_file() and first == [store.session("s").root, *ids]
    # a second search reads no step manifest: every fact comes from the index
    fresh = Store.open(tmp_path / "a")
    monkeypatch.setattr(fresh, "step", lambda sid: pytest.fail(f"read step {sid}"))
    assert [f.id for f in search.find(fresh, "s", q)] == first
    monkeypatch.undo()
    new = grow(store, seed=9)  # a new step: read once, added
    assert [f.id for f in search.find(Store.open(tmp_path / "a"), "s", q)] == [*first, new]
    index.write_bytes(b"garbage")  # unreadable: searched as if there were none, rebuilt
    assert [f.id for f in search.find(Store.open(tmp_path / "a"), "s", q)] == [*first, new]
    index.unlink()
    index.parent.rmdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    index.parent.symlink_to(outside)  # a link planted in cache/: never written through
    assert [f.id for f in search.find(Store.open(tmp_path / "a"), "s", q)] == [*first, new]
    assert list(outside.iterdir()) == []
