"""Full disks and I/O errors at the edges: every write of ``exq new`` and of ``exq export``.

The machinery of tests/test_faults.py (``fault_helpers.FaultyOs``): the k-th write,
fsync, link or replace fails, for every k in turn. ``exq new`` must leave no session or
a whole one, and a rerun must succeed; ``exq export`` must fail with one clear line and
leave no torn file and no temp file, and the next export must finish the job and count
nothing torn as "unchanged". The sweeps over every k of an export are ``slow``; a sample
of them runs in the fast suite.
"""

from __future__ import annotations

import errno
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.cli import cli
from exquisite_store.errors import AlreadyExists, ArtifactWriteError, NotFound, UserError
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from viewer import export_files
from viewer.export import export_session

from . import fault_helpers as fh
from .helpers import TickClock, rng_image
from .viewer_helpers import make_session

FAULTS = {  # errno, sticky (every later call fails too), which later calls
    "ENOSPC-disk-stays-full": (errno.ENOSPC, True, fh.OPS),
    "ENOSPC-writes-fail-fsyncs-work": (errno.ENOSPC, True, ("write",)),
    "EIO-once": (errno.EIO, False, fh.OPS),
}
CLOCK0 = 1_700_000_000_000


def quiet_store_problems(st: Store, when: str) -> list[str]:
    """fsck damage, ref locks, temp files or stray object files left behind."""
    out = []
    rep = fsck(st)
    if not rep.ok:
        out.append(f"{when}: fsck damaged={rep.damaged} missing={rep.missing} bad={rep.bad_refs}")
    for what, found in (
        ("locks", fh.ref_locks(st.root)),
        ("tmp files", fh.leftover_tmp(st.root)),
        ("stray objects", fh.stray_object_files(st.root)),
    ):
        if found:
            out.append(f"{when}: {what} left: {found}")
    return out


# --- exq new -------------------------------------------------------------------------------


def new_garden(st: Store):
    start = core.new_session("garden", core.StartImage(rng_image(48, 64, seed=4), "g.png"))
    return core.create_session(st, start)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_exq_new_on_a_full_disk_leaves_no_half_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """Every write of a session's creation fails in turn: no session or a whole one.

    A failure leaves no session (``exq new`` again succeeds, not "already exists");
    a success is whole (session, main and HEAD). The store stays fsck-clean and quiet.
    """
    err, sticky, sticky_ops = FAULTS[fault]
    template = tmp_path / "template"
    Store.init(template, tile_size=64)
    faulty = fh.FaultyOs().install(monkeypatch)
    probe = tmp_path / "probe"
    shutil.copytree(template, probe)
    faulty.arm(None)
    new_garden(Store.open(probe, clock=TickClock(CLOCK0)))
    n_ops, ops = faulty.n, list(faulty.log)
    assert n_ops > 10
    problems: list[str] = []
    outcome: Counter = Counter()
    for k in range(1, n_ops + 1):
        root = tmp_path / f"k{k}"
        shutil.copytree(template, root)
        st = Store.open(root, clock=TickClock(CLOCK0))
        op = f"k={k} {ops[k - 1][0]} {ops[k - 1][1].replace(str(probe), '')}"
        faulty.arm(k, err, sticky, sticky_ops)
        try:
            new_garden(st)
            failed = None
        except ArtifactWriteError as exc:
            failed = exc
        except Exception as exc:  # anything else reaching the user is a finding
            failed = exc
            problems.append(f"{op}: raised {type(exc).__name__}: {exc}")
        finally:
            faulty.arm(None)
        if failed is None:
            outcome["whole"] += 1
            with pytest.raises(AlreadyExists):
                new_garden(st)
        else:
            outcome["no session"] += 1
            if "garden" in st.refs.sessions():
                problems.append(f"{op}: failed, but the session exists")
            try:
                st.session("garden")
                problems.append(f"{op}: failed, but the session can be opened")
            except NotFound:
                pass
            problems += quiet_store_problems(st, op)
            try:
                new_garden(st)  # the rerun
            except Exception as exc:
                problems.append(f"{op}: the rerun failed: {type(exc).__name__}: {exc}")
                continue
        sess = st.session("garden")
        head = st.refs.head("garden", "main")
        if head != sess.root or st.refs.current_branch("garden") != "main":
            problems.append(f"{op}: the session is not whole")
        log = st.refs.reflog("garden/heads/main")
        # a reflog line lost to the disk after the ref moved is not a failure (the ref's
        # next update writes it, as for steps); any other reflog ends at the root
        lost_line = "/logs/refs/garden" in op and failed is None
        if (log[-1].new if log else None) != sess.root and not lost_line:
            problems.append(f"{op}: main's reflog does not end at the root")
        problems += quiet_store_problems(st, op + " (after)")
        shutil.rmtree(root)
    assert outcome["no session"] > 0 and outcome["whole"] > 0, outcome
    assert not problems, "\n".join(problems)


def test_exq_new_on_a_full_disk_is_one_line_and_a_rerun_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    src = tmp_path / "start.png"
    from exquisite_store import imageio

    imageio.write_png(str(src), rng_image(40, 40, seed=1))
    faulty = fh.FaultyOs().install(monkeypatch)
    for k in (1, 5, 12):  # the store's store.toml, an object, a ref
        faulty.arm(k, errno.ENOSPC, sticky=True)
        res = CliRunner().invoke(cli, ["--store", str(store), "new", "garden", str(src)])
        faulty.arm(None)
        lines = res.output.splitlines()
        assert res.exit_code == 1, (res.output, res.exception)
        assert lines[-1].startswith("error: ") and "No space left on device" in lines[-1]
        assert sum(ln.startswith("error") for ln in lines) == 1 and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["--store", str(store), "new", "garden", str(src)])
    assert res.exit_code == 0 and "root step" in res.output, res.output
    assert Store.open(store).refs.sessions() == ["garden"]


# --- exq export ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A store with a session and the bytes of every file of its clean export."""
    base = tmp_path_factory.mktemp("export-faults")
    make_session(base / "store")
    clean = base / "clean"
    export_session(base / "store", "garden", clean)  # also fills the store's cache/
    files = {
        p.relative_to(clean).as_posix(): p.read_bytes()
        for p in clean.rglob("*")
        if p.is_file() and p.name != export_files.MANIFEST
    }
    return base / "store", files


def export_problems(out: Path, clean: dict[str, bytes], when: str) -> list[str]:
    """Temp files, or files that are not byte for byte what a clean export writes."""
    problems = []
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if p.is_dir():
            if p.name == export_files.TMP_DIR and any(p.iterdir()):
                problems.append(f"{when}: temp files left: {[c.name for c in p.iterdir()]}")
            continue
        if rel.startswith(export_files.TMP_DIR + "/"):
            continue
        if p.name == export_files.MANIFEST:
            try:
                json.loads(p.read_bytes())
            except ValueError:
                problems.append(f"{when}: the manifest is torn")
        elif p.name.endswith(".part"):
            problems.append(f"{when}: {rel} left")
        elif rel not in clean:
            problems.append(f"{when}: {rel} is not a file of the export")
        elif p.read_bytes() != clean[rel]:
            problems.append(f"{when}: {rel} is torn ({p.stat().st_size} of {len(clean[rel])} B)")
    return problems


def export_sweep(tmp_path, monkeypatch, exported, fault: str, every: int = 1) -> list[str]:
    """Fail the k-th write of an export (each ``every``-th k), then export again."""
    store, clean = exported
    err, sticky, sticky_ops = FAULTS[fault]
    faulty = fh.FaultyOs().install(monkeypatch, export_files)
    faulty.arm(None)
    export_session(store, "garden", tmp_path / "probe")
    n_ops = faulty.n
    assert n_ops > len(clean), "every file of the export is written through the counted os"
    problems: list[str] = []
    ks = sorted(set(range(1, n_ops + 1, every)) | {1, 2, n_ops - 1, n_ops})
    for k in ks:
        out = tmp_path / f"k{k}"
        faulty.arm(k, err, sticky, sticky_ops)
        try:
            export_session(store, "garden", out, prune=True)
            raised = None
        except UserError as exc:
            raised = exc
        except Exception as exc:
            raised = exc
            problems.append(f"k={k}: raised {type(exc).__name__}: {exc}")
        finally:
            faulty.arm(None)
        if raised is None:  # every counted call is one of the export's own writes
            problems.append(f"k={k}: the export did not report the failed write")
        else:
            text = raised.message if isinstance(raised, UserError) else str(raised)
            if "\n" in text or os_error_text(err) not in text:
                problems.append(f"k={k}: not one clear line: {text!r}")
        problems += export_problems(out, clean, f"k={k}")
        again = export_session(store, "garden", out, prune=True)
        problems += export_problems(out, clean, f"k={k} (again)")
        have = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
        if have != set(clean) | {export_files.MANIFEST}:
            problems.append(f"k={k}: the export again is not whole: {sorted(set(clean) - have)}")
        third = export_session(store, "garden", out)
        if third.written or third.unchanged != again.written + again.unchanged:
            problems.append(f"k={k}: a third export wrote {third.written}")
        shutil.rmtree(out)
    return problems


def os_error_text(err: int) -> str:
    import os

    return os.strerror(err)


def test_a_full_disk_during_an_export_sampled(tmp_path, monkeypatch, exported) -> None:
    """A sample of the sweep below (every 9th write), for the fast suite."""
    problems = export_sweep(tmp_path, monkeypatch, exported, "ENOSPC-disk-stays-full", every=9)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_full_disk_at_every_write_of_an_export(tmp_path, monkeypatch, exported, fault) -> None:
    """The k-th write of an export fails, for every k: one clear error, no torn file, no
    temp file; the next export completes it, and the one after writes nothing."""
    problems = export_sweep(tmp_path, monkeypatch, exported, fault)
    assert not problems, "\n".join(problems)


def test_a_full_disk_during_export_is_one_line_on_the_cli(tmp_path, monkeypatch, exported) -> None:
    store, _ = exported
    faulty = fh.FaultyOs().install(monkeypatch, export_files)
    faulty.arm(20, errno.ENOSPC, sticky=True)
    try:
        res = CliRunner().invoke(
            cli, ["--store", str(store), "export", "garden", str(tmp_path / "site")]
        )
    finally:
        faulty.arm(None)
    lines = [ln for ln in res.output.splitlines() if not ln.startswith("rendering pages")]
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert lines[-1].startswith("error: cannot write ") and lines[-1].endswith(
        "into the export: No space left on device"
    ), lines[-1]


def test_torn_files_of_an_earlier_export_are_not_unchanged(tmp_path, exported) -> None:
    """What a crash or an older exporter left torn is written again, not counted unchanged."""
    store, clean = exported
    out = tmp_path / "site"
    export_session(store, "garden", out)
    canvas = next(r for r in clean if r.startswith("canvas/"))
    obj = next(r for r in clean if r.startswith("objects/"))
    page = next(r for r in clean if r.startswith("step/"))
    for rel in (canvas, obj, page):
        path = out / rel
        data = path.read_bytes()
        path.unlink()  # a new file: objects are hard links into the store
        path.write_bytes(data[: len(data) // 2])
    again = export_session(store, "garden", out)
    assert again.written == 3, again
    assert not export_problems(out, clean, "again")
