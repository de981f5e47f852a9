"""Bundles between stores and grafts between copies of a session."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.cli import cli
from exquisite_store.core import bundles
from exquisite_store.errors import IntegrityError, StepFailure, StoreError, UserError
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck

from .fakes.backends import WrongSizeBackend
from .test_remotes import all_objects, grow, make_store


def _session_with_history(store: Store) -> None:
    for i in range(3):
        grow(store, seed=i)
    core.create_branch(store, "s", "alt", store.refs.head("s", "main"))
    grow(store, branch="alt", seed=9)
    req = core.step_request(store, "s", {"extension_px": 16, "overlap_px": 4, "seed": 5})
    with pytest.raises(StepFailure):
        core.grow(store, req, backend=WrongSizeBackend())
    # a step kept only by main's reflog (set head back one step)
    head = store.refs.head("s", "main")
    core.set_head(store, "s", store.step(head).parent)
    grow(store, seed=7)


def test_round_trip_same_ids_fsck_clean_nothing_duplicated(tmp_path) -> None:
    src = make_store(tmp_path / "a")
    _session_with_history(src)
    path = tmp_path / "s.bundle"
    made = bundles.create_bundle(src, "s", path)
    assert set(made.branches) == {"main", "alt"} and made.attempts == 1
    # a plain tar: header first, then objects
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert names[0] == "bundle.json" and len(names) == len(set(names))

    dst = make_store(tmp_path / "b", session=None)
    report = bundles.import_bundle(dst, path)
    assert not report.refused
    assert dst.refs.branches("s") == src.refs.branches("s")
    assert dst.refs.session_pointer("s") == src.refs.session_pointer("s")
    assert dst.refs.current_branch("s") == "main"
    assert [a.id for a in dst.attempts("s")] == [a.id for a in src.attempts("s")]
    assert all_objects(dst) <= all_objects(src)
    assert report.transfer.copied == len(all_objects(dst)) == made.transfer.copied
    # the step only main's reflog held came along, and the reflog with it
    old_values = {e.new for e in src.refs.reflog("s/heads/main")}
    assert old_values <= {e.new for e in dst.refs.reflog("s/heads/main")}
    assert all(dst.objects.has(v) for v in old_values if v)
    assert fsck(dst).ok

    again = bundles.import_bundle(dst, path)
    assert again.transfer.copied == 0 and again.transfer.present == report.transfer.copied
    assert {m.status for m in again.moves} == {"up to date"}
    assert [a.id for a in dst.attempts("s")] == [a.id for a in src.attempts("s")]


def test_one_branch_bundle_and_import_as_another_name(tmp_path) -> None:
    src = make_store(tmp_path / "a")
    _session_with_history(src)
    path = tmp_path / "alt.bundle"
    made = bundles.create_bundle(src, "s", path, branches=("alt",))
    assert made.branches == {"alt": src.refs.head("s", "alt")}
    report = bundles.import_bundle(src, path, as_name="copy")
    assert report.transfer.copied == 0  # everything was here already
    assert src.refs.branches("copy") == {"alt": src.refs.head("s", "alt")}
    assert src.session("copy").name == "copy"
    assert src.session("copy").root == src.session("s").root
    # the copy is a session like any other: it grows, and grafts back
    new = grow(src, "copy", branch="alt", seed=42)
    move = bundles.graft(src, "s", "copy:alt")
    assert move.status == "fast-forward" and src.refs.head("s", "alt") == new
    assert fsck(src).ok


def test_tampered_bundle_is_refused_with_the_id_and_moves_nothing(tmp_path) -> None:
    src = make_store(tmp_path / "a")
    grow(src, seed=1)
    path = tmp_path / "s.bundle"
    bundles.create_bundle(src, "s", path)
    # flip bytes of one text object (the prompt), keeping its name and size
    out = io.BytesIO()
    victim = None
    with tarfile.open(path) as tin, tarfile.open(fileobj=out, mode="w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            if victim is None and m.name.endswith(".json") and m.name != "bundle.json":
                victim = m.name.split("/")[1].split(".")[0]
                data = data.replace(b'"schema_version":1', b'"schema_version":2')
            tout.addfile(m, io.BytesIO(data))
    bad = tmp_path / "bad.bundle"
    bad.write_bytes(out.getvalue())
    dst = make_store(tmp_path / "b", session=None)
    with pytest.raises(IntegrityError) as err:
        bundles.import_bundle(dst, bad)
    assert victim in err.value.message and err.value.expected == victim
    assert dst.refs.sessions() == [] and dst.refs.branches("s") == {}
    assert fsck(dst).ok
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "b"), "bundle", "import", str(bad)])
    assert result.exit_code == 1 and victim in result.output
    assert result.output.startswith("error: refusing the bundle")


def test_import_that_would_move_a_diverged_branch_is_refused(tmp_path) -> None:
    src = make_store(tmp_path / "a")
    grow(src, seed=1)
    path = tmp_path / "s.bundle"
    bundles.create_bundle(src, "s", path)
    dst = make_store(tmp_path / "b", session=None)
    bundles.import_bundle(dst, path)
    mine = grow(dst, seed=2)  # the receiving side moves on
    theirs = grow(src, seed=3)  # and so does the sender
    bundles.create_bundle(src, "s", path)
    report = bundles.import_bundle(dst, path)
    (refused,) = report.refused
    assert refused.branch == "main"
    assert mine[:12] in refused.reason and theirs[:12] in refused.reason
    assert dst.refs.head("s", "main") == mine  # not moved
    assert dst.objects.has(theirs)  # but its objects are kept, and fsck is clean
    assert fsck(dst).ok
    result = CliRunner().invoke(
        cli, ["--store", str(tmp_path / "b"), "bundle", "import", str(path)]
    )
    assert result.exit_code == 1 and "diverged" in result.output
    # fast-forward still works: the sender gets the receiver's work and grows on it
    bundles.create_bundle(dst, "s", tmp_path / "back.bundle")
    back = bundles.import_bundle(src, tmp_path / "back.bundle")
    assert back.refused[0].branch == "main"  # diverged the other way too


def test_a_session_of_the_same_name_with_another_root_is_refused(tmp_path) -> None:
    src = make_store(tmp_path / "a")
    path = tmp_path / "s.bundle"
    bundles.create_bundle(src, "s", path)
    other = Store.init(tmp_path / "b")
    from .helpers import rng_image

    core.create_session(other, core.new_session("s", core.StartImage(rng_image(40, 64, 7), "x")))
    with pytest.raises(StoreError, match="--as NEW"):
        bundles.import_bundle(other, path)
    assert bundles.import_bundle(other, path, as_name="s2").refused == []


def test_not_a_bundle_and_bad_members_are_one_line_errors(tmp_path) -> None:
    dst = make_store(tmp_path / "b", session=None)
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello")
    with pytest.raises(StoreError, match="not a bundle"):
        bundles.import_bundle(dst, junk)
    with pytest.raises(UserError, match="cannot read"):
        bundles.import_bundle(dst, tmp_path / "missing")
    evil = tmp_path / "evil.bundle"
    src = make_store(tmp_path / "a")
    bundles.create_bundle(src, "s", evil)
    out = io.BytesIO()
    with tarfile.open(evil) as tin, tarfile.open(fileobj=out, mode="w") as tout:
        first = tin.getmembers()[0]
        tout.addfile(first, io.BytesIO(tin.extractfile(first).read()))
        info = tarfile.TarInfo("../../etc/passwd")
        info.size = 3
        tout.addfile(info, io.BytesIO(b"x\n\n"))
    evil.write_bytes(out.getvalue())
    with pytest.raises(StoreError, match="not a bundle member"):
        bundles.import_bundle(dst, evil)
    assert not (tmp_path / "etc").exists() and dst.refs.sessions() == []


def test_graft_refuses_unrelated_sessions_and_diverged_branches(tmp_path) -> None:
    store = make_store(tmp_path / "a")
    from .helpers import rng_image

    core.create_session(store, core.new_session("t", core.StartImage(rng_image(40, 64, 3), "t")))
    with pytest.raises(UserError, match="shares no history"):
        bundles.graft(store, "s", "t:main")
    path = tmp_path / "s.bundle"
    bundles.create_bundle(store, "s", path)
    bundles.import_bundle(store, path, as_name="copy")
    grow(store, "copy", seed=1)
    grow(store, "s", seed=2)
    move = bundles.graft(store, "s", "copy:main")
    assert move.status == "refused" and "diverged" in move.reason
    move = bundles.graft(store, "s", "copy:main", as_branch="theirs")
    assert move.status == "created"
    assert store.refs.head("s", "theirs") == store.refs.head("copy", "main")
    core.set_head(store, "s", "theirs")  # a grafted step belongs to the session
    assert fsck(store).ok


def test_bundle_file_appears_whole_or_not_at_all(tmp_path, monkeypatch) -> None:
    src = make_store(tmp_path / "a")
    grow(src, seed=1)
    path = tmp_path / "s.bundle"
    from exquisite_store.store import transfer

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundles, "copy_closure", boom)
    with pytest.raises(UserError, match="cannot write .*No space left on device"):
        bundles.create_bundle(src, "s", path)
    assert not path.exists() and list(Path(tmp_path).glob(".s.bundle*")) == []
    assert transfer.copy_closure is not boom
