"""A read-only store (a read-only mount) can be read, checked, reproduced and exported.

We run as root, so ``chmod`` would not stop a write: each command runs in its own
mount namespace (``unshare -rm``) where the store is bind-mounted read-only over
itself, so every write to it fails with EROFS exactly as on a read-only disk. The
commands a reader needs work, the viewer serves thumbnails and canvases from a cache
outside the store, and afterwards every file and folder of the store has the same
bytes and times; a command that must write says so in one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from exquisite_store.store import Store
from exquisite_store.store.overlay import overlay
from exquisite_store.store.process import this_process
from viewer.derived_images import fallback_dirs, thumb_data

from . import fault_helpers as fh
from .fakes.backends import PatternBackend
from .viewer_helpers import make_session

S = "garden"
MOUNT_RO = 'mount --bind -o ro "$0" "$0" && exec "$@"'


def read_only(store: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``argv`` with ``store`` mounted read-only (in a mount namespace of its own)."""
    cmd = ["unshare", "-rm", "sh", "-c", MOUNT_RO, str(store), *argv]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=180, cwd=fh.ROOT, env=os.environ | env
    )


@pytest.fixture(scope="module")
def can_mount(tmp_path_factory) -> None:
    probe = tmp_path_factory.mktemp("probe")
    res = read_only(probe, ["touch", str(probe / "x")], {})
    if "Read-only file system" not in res.stderr:
        pytest.skip(f"no read-only bind mount here (unshare -rm): {res.stderr.strip()[:200]}")


def state(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under ``root``: mode, mtime (ns) and bytes (a link: its target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        data = os.readlink(p).encode() if p.is_symlink() else b"" if p.is_dir() else p.read_bytes()
        out[p.relative_to(root).as_posix()] = (st.st_mode, st.st_mtime_ns, data)
    return out


@pytest.fixture
def world(tmp_path: Path, can_mount, monkeypatch: pytest.MonkeyPatch) -> dict:
    w = make_session(tmp_path / "store", S)
    w["root"] = tmp_path / "store"
    w["env"] = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "EXQ_STORE": str(w["root"])}
    monkeypatch.setenv("XDG_CACHE_HOME", w["env"]["XDG_CACHE_HOME"])  # where to look
    w["before"] = state(w["root"])
    return w


def exq_ro(w: dict, *args: str) -> subprocess.CompletedProcess:
    return read_only(w["root"], fh.exq_cmd("--store", str(w["root"]), *args), w["env"])


def test_the_reading_commands_work_on_a_read_only_store(world, tmp_path: Path) -> None:
    site = tmp_path / "site"
    runs = {
        "log": exq_ro(world, "log", S),
        "step --dry-run": exq_ro(world, "step", S, "--dry-run", "--px", "16"),
        "gc --dry-run": exq_ro(world, "gc", "--dry-run", "--grace", "0"),
        "fsck": exq_ro(world, "fsck"),
        "reproduce --replay": exq_ro(world, "reproduce", f"{S}:main", "--replay"),
        "export": exq_ro(world, "export", S, str(site)),
    }
    for name, res in runs.items():
        said = res.stdout + res.stderr
        assert res.returncode == 0 and "Traceback" not in said, (name, said[-1500:])
    assert world["steps"][-1][:12] in runs["log"].stdout
    assert "would remove 0 objects" in runs["gc --dry-run"].stdout
    assert runs["reproduce --replay"].stdout.startswith("match")
    thumbs = {p.stem: p.read_bytes() for p in (site / "thumb").iterdir()}
    assert thumbs and (site / "index.html").is_file()
    # the export makes the thumbnails it lacks itself (it caches none in the store it
    # reads): each is the viewer's thumbnail of that step
    store = Store.open(world["root"])
    for sid, data in thumbs.items():
        step = store.step(sid)
        parent = store.step(step.parent).result.canvas_id if step.parent else None
        assert data == thumb_data(store, step.result.canvas_id, parent), sid
    assert state(world["root"]) == world["before"], "the read-only store changed"


def test_a_write_to_a_read_only_store_is_one_clear_error(world) -> None:
    """The mount really is read-only: commands that must write fail, in one line."""
    for args in (("branch", S, "x", "--from", f"{S}:main"), ("budget", S, "5")):
        res = exq_ro(world, *args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-800:]
        assert lines[-1].startswith("error:") and "Read-only file system" in lines[-1], lines
    assert state(world["root"]) == world["before"]


VIEWER = """
import json, sys
from viewer import create_app
from tests.viewer_helpers import BufferedClient
steps, pair = sys.argv[1].split(","), sys.argv[2]
app = create_app({"EXQ_STORE": sys.argv[3], "TESTING": True})
app.test_client_class = BufferedClient
c = app.test_client()
urls = ["/", "/s/garden", "/s/garden.json", "/-/diff/" + pair + ".png"]
urls += [f"/-/{k}/{s}.png" for s in steps for k in ("thumb", "canvas")]
urls += [f"/step/{s}" for s in steps]
print(json.dumps({u: [c.get(u).status_code, len(c.get(u).data)] for u in urls}))
"""


def test_the_viewer_serves_thumbnails_and_canvases_of_a_read_only_store(world) -> None:
    """Even when a job a stopped viewer left would be recorded as abandoned at start."""
    gone = dataclasses.replace(this_process(), started=-1).to_dict()
    world["store"].append_event(S, "queued", job="left", process=gone, parent=None, branch="x")
    world["before"] = state(world["root"])
    steps = [*world["steps"], *world["side"]]
    pair = f"{steps[0]}/{steps[1]}"
    argv = [sys.executable, "-c", textwrap.dedent(VIEWER), ",".join(steps), pair]
    res = read_only(world["root"], [*argv, str(world["root"])], world["env"])
    assert res.returncode == 0, res.stderr[-2000:]
    answers = json.loads(res.stdout.strip().splitlines()[-1])
    assert {u: a for u, a in answers.items() if a[0] != 200 or a[1] == 0} == {}
    cache = fallback_dirs(world["root"])[0]
    assert {p.name for p in cache.iterdir()} == {"thumb", "canvas", "diff"}
    assert len(list((cache / "canvas").iterdir())) == len(steps)
    assert state(world["root"]) == world["before"]


class OtherPattern(PatternBackend):
    """Another model: another pattern for the same request."""

    @staticmethod
    def salt(seed: int, candidate: int) -> int:
        return (seed + 101) & 255


def test_reproduce_writes_nothing_even_when_it_does_not_match(tmp_path: Path) -> None:
    """The re-run's objects stay in memory: no new file, no freshened mtime, no lock."""
    w = make_session(tmp_path / "store", S)
    st, root = w["store"], tmp_path / "store"
    before = state(root)
    from exquisite_store.pipeline.reproduce import reproduce

    same = reproduce(st, w["steps"][1], backend=PatternBackend())
    other = reproduce(st, w["steps"][1], backend=OtherPattern())
    assert same.matches and not other.matches
    assert not st.objects.has(other.got), "the mismatching canvas was stored"
    assert state(root) == before


def test_an_overlay_reads_through_and_keeps_its_writes(tmp_path: Path) -> None:
    w = make_session(tmp_path / "store", S)
    st = w["store"]
    view = overlay(st)
    oid = view.objects.put_text("only in the overlay")
    assert view.objects.get_text(oid) == "only in the overlay" and not st.objects.has(oid)
    assert view.step(w["steps"][0]) == st.step(w["steps"][0])
    assert view.refs.branches(S) == st.refs.branches(S)
    with pytest.raises(Exception, match="an overlay store writes nothing"):
        view.refs.update(S, "main", w["steps"][-1], w["steps"][0], "no")
    assert Store.open(tmp_path / "store").refs.head(S, "main") == w["steps"][-1]
