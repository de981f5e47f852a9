"""Links planted in a store are never followed: not by a read, a listing, the viewer or
the export; fsck reports each one and gc refuses to run while one exists.

Each test plants a link (or a FIFO) the way someone handing over a store could, and
checks what a user gets: one clear error naming the path, the linked file's bytes
nowhere (pages, exported files, output), nothing written outside the store.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store.cli import cli
from exquisite_store.errors import LayoutError
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from exquisite_store.store.gc import gc
from exquisite_store.store.nofollow import walk_files
from viewer import create_app

from .viewer_helpers import BufferedClient, make_session

SECRET = "the contents of a file of this machine: never to be shown"
S = "garden"


@pytest.fixture
def world(tmp_path: Path) -> dict:
    w = make_session(tmp_path / "store", S)
    w["root"] = tmp_path / "store"
    w["secret"] = tmp_path / "outside" / "secret.txt"
    w["secret"].parent.mkdir()
    w["secret"].write_text(SECRET)
    w["prompt"] = w["store"].step(w["steps"][1]).recipe.prompt_id
    return w


def replace_by_link(path: Path, target: Path) -> None:
    path.chmod(0o644)
    path.unlink()
    path.symlink_to(target)


def object_file(root: Path, oid: str, ext: str) -> Path:
    return root / "objects" / oid[:2] / f"{oid}.{ext}"


def exq(root: Path, *args: str):
    res = CliRunner().invoke(cli, ["--store", str(root), *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res


def client(root: Path):
    app = create_app({"EXQ_STORE": str(root), "TESTING": True})
    app.test_client_class = BufferedClient
    return app.test_client()


def test_a_linked_prompt_reaches_no_page_no_export_no_output(world, tmp_path: Path) -> None:
    root, pid = world["root"], world["prompt"]
    replace_by_link(object_file(root, pid, "txt"), world["secret"])
    rel = f"objects/{pid[:2]}/{pid}.txt"

    c = client(root)
    pages = {url: c.get(url) for url in (f"/-/objects/{pid}", f"/step/{world['steps'][1]}")}
    for url, resp in pages.items():
        assert resp.status_code == 410, (url, resp.status_code)
        assert f"{rel} is a symbolic link" in resp.get_data(as_text=True), url
        assert SECRET not in resp.get_data(as_text=True), url

    site = tmp_path / "site"
    res = exq(root, "export", S, str(site))
    assert res.exit_code == 1 and res.output.splitlines()[-1].startswith("error: cannot export")
    assert f"{rel} is a symbolic link" in res.output and "Traceback" not in res.output
    leaked = [p for p in site.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == [] and not any(p.is_symlink() for p in site.rglob("*"))

    for args in (("show", pid), ("log", S), ("canvas", f"{S}:main", "-o", str(tmp_path / "c.png"))):
        res = exq(root, *args)
        assert SECRET not in res.output, args
    assert "is a symbolic link" in exq(root, "show", pid).output


def test_a_linked_cache_file_is_never_served_or_exported(world, tmp_path: Path) -> None:
    root, step = world["root"], world["steps"][1]
    c = client(root)
    assert c.get(f"/-/thumb/{step}.png").status_code == 200  # made and cached
    cid = world["store"].step(step).result.canvas_id
    replace_by_link(root / "cache" / "thumb" / f"{cid}.png", world["secret"])
    resp = client(root).get(f"/-/thumb/{step}.png")
    assert resp.status_code == 410 and SECRET not in resp.get_data(as_text=True)
    assert f"cache/thumb/{cid}.png is a symbolic link" in resp.get_data(as_text=True)
    site = tmp_path / "site"
    res = exq(root, "export", S, str(site))
    assert res.exit_code == 1 and "is a symbolic link" in res.output
    assert not [p for p in site.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert "unsafe path cache/thumb/" in exq(root, "fsck").output


@pytest.mark.parametrize("depth", ["objects", "objects/fan", "objects/fan/file"])
def test_a_link_at_any_depth_of_an_objects_path_is_refused(world, tmp_path: Path, depth) -> None:
    """A linked ``objects/``, fan-out folder or object file: reads refuse, listings skip."""
    root, st, oid = world["root"], world["store"], world["prompt"]
    moved = tmp_path / "moved"
    link = {
        "objects": root / "objects",
        "objects/fan": root / "objects" / oid[:2],
        "objects/fan/file": object_file(root, oid, "txt"),
    }[depth]
    if link.is_dir():  # the same content, moved out and linked back in
        shutil.copytree(link, moved, symlinks=True)
        shutil.rmtree(link)
    else:
        shutil.copy(link, moved)
        link.chmod(0o644)
        link.unlink()
    link.symlink_to(moved)
    named = link.relative_to(root).as_posix()

    st = Store.open(root)
    for read in (st.storage.get_object, st.storage.has_object, st.storage.open_object):
        with pytest.raises(LayoutError, match=f"^{named} is a symbolic link"):
            read(oid)
    assert oid not in {o for o, _ in st.storage.list_objects()}
    rep = fsck(st)
    assert not rep.ok and rep.unsafe == [f"{named}: a symbolic link, never followed"]
    with pytest.raises(LayoutError, match="gc refuses to run"):
        gc(st, grace_s=0, dry_run=True)


def test_links_in_refs_and_logs_are_refused_and_skipped(world, tmp_path: Path) -> None:
    root = world["root"]
    main = root / "refs" / S / "heads" / "main"
    shutil.copy(main, tmp_path / "main")
    main.unlink()
    main.symlink_to(tmp_path / "main")
    events = root / "logs" / "sessions" / S / "events"
    shutil.copy(events, tmp_path / "events")
    events.unlink()
    events.symlink_to(tmp_path / "events")
    before = (tmp_path / "events").read_bytes()

    st = Store.open(root)
    assert f"{S}/heads/main" not in st.storage.list_refs()
    assert f"sessions/{S}/events" not in st.storage.list_logs()
    with pytest.raises(LayoutError, match=f"refs/{S}/heads/main is a symbolic link"):
        st.refs.head(S, "main")
    with pytest.raises(LayoutError, match=f"logs/sessions/{S}/events is a symbolic link"):
        st.events(S)
    with pytest.raises(LayoutError, match="is a symbolic link"):
        st.append_event(S, "progress", phase="x")  # never appended through the link
    assert (tmp_path / "events").read_bytes() == before
    assert sorted(fsck(st).unsafe) == [
        f"logs/sessions/{S}/events: a symbolic link, never followed",
        f"refs/{S}/heads/main: a symbolic link, never followed",
    ]


def test_a_new_object_is_never_written_through_a_linked_folder(world, tmp_path: Path) -> None:
    root, st = world["root"], world["store"]
    text = "a brand new prompt"
    from exquisite_store.ids import hash_object

    oid = hash_object("text", text.encode())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fan = root / "objects" / oid[:2]
    if fan.exists():
        shutil.rmtree(fan)
    fan.symlink_to(elsewhere)
    with pytest.raises(LayoutError, match=f"objects/{oid[:2]} is a symbolic link"):
        st.objects.put_text(text)
    assert list(elsewhere.iterdir()) == []


def test_listings_never_descend_into_a_linked_folder(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "a").mkdir(parents=True)
    (real / "a" / "f").write_text("x")
    (real / "g").write_text("y")
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "h").write_text("z")
    (real / "linked-dir").symlink_to(outside)
    (real / "linked-file").symlink_to(outside / "deep" / "h")
    assert list(walk_files(tmp_path, "real")) == ["a/f", "g"]
    (tmp_path / "alias").symlink_to(real)
    assert list(walk_files(tmp_path, "alias")) == []
    assert list(walk_files(tmp_path, "real/linked-dir")) == []


def test_a_fifo_where_an_object_belongs_is_refused_at_once(world) -> None:
    """Opening a FIFO would block a reader forever: it is named, not waited on."""
    root, oid = world["root"], world["prompt"]
    path = object_file(root, oid, "txt")
    path.chmod(0o644)
    path.unlink()
    os.mkfifo(path)
    st = Store.open(root)
    done: list[BaseException] = []

    def read() -> None:
        try:
            st.storage.get_object(oid)
        except BaseException as exc:
            done.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=20)
    if reader.is_alive():  # unblock the reader before failing
        with open(path, "wb"):
            pass
        pytest.fail("reading a FIFO in the store blocked")
    assert isinstance(done[0], LayoutError) and "is not a regular file" in str(done[0])
    assert fsck(st).unsafe == [f"objects/{oid[:2]}/{oid}.txt: not a regular file, never followed"]
