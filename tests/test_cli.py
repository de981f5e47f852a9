"""The exq CLI: every store command, abbreviated ids, and hostile input."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from exquisite_store import imageio
from exquisite_store.cli import cli
from exquisite_store.store import Store
from exquisite_store.store.canvas import iter_tiles

from .helpers import FIXTURES


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def st(tmp_path: Path) -> Path:
    return tmp_path / "st"


def run(runner: CliRunner, st: Path, *args: str, code: int = 0):
    res = runner.invoke(cli, ["--store", str(st), *args])
    assert res.exit_code == code, (res.output, res.exception)
    assert "Traceback" not in res.output
    return res


def _files(path: Path) -> list[str]:
    return (
        sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
        if path.exists()
        else []
    )


def test_init_prints_the_path_and_is_idempotent(runner, st) -> None:
    res = run(runner, st, "init")
    assert str(st) in res.output
    assert (st / "store.toml").exists()
    assert "already exists" in run(runner, st, "init").output


def test_store_from_environment(runner, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EXQ_STORE", str(tmp_path / "env-store"))
    res = runner.invoke(cli, ["new", "s", str(FIXTURES / "flat.png")])
    assert res.exit_code == 0, res.output
    assert f"created store at {tmp_path / 'env-store'}" in res.output


def test_new_log_branches_branch_show_canvas(runner, st, tmp_path) -> None:
    out = run(runner, st, "new", "garden", str(FIXTURES / "odd.png"), "--title", "A garden").output
    assert "created store at" in out
    root = Store.open(st).refs.head("garden", "main")
    log = run(runner, st, "log", "garden").output
    assert f"step {root}  (main, HEAD)" in log and "imported odd.png" in log and "333x211" in log
    run(runner, st, "branch", "garden", "alt", "--from", root[:8])
    br = run(runner, st, "branches", "garden").output
    assert "* main" in br and "  alt" in br
    assert root in run(runner, st, "log", "garden", "--branch", "alt").output
    shown = run(runner, st, "show", root[:10]).output
    assert '"kind": "step"' in shown and '"session": "garden"' in shown
    dest = tmp_path / "out.png"
    run(runner, st, "canvas", root[:12], "-o", str(dest))
    assert np.array_equal(
        imageio.read_image_file(str(dest)), imageio.read_image_file(str(FIXTURES / "odd.png"))
    )
    run(runner, st, "canvas", "garden:alt", "-o", str(dest))
    assert "0 damaged" in run(runner, st, "fsck").output


def test_show_text_and_image(runner, st) -> None:
    run(runner, st, "new", "s", str(FIXTURES / "alpha.png"))
    store = Store.open(st)
    canvas = store.canvas(store.step(store.refs.head("s", "main")))
    ((_col, _row, tile),) = iter_tiles(store.objects, canvas)
    assert "200x150 RGBA" in run(runner, st, "show", tile).output
    node = run(runner, st, "show", canvas.root[:12]).output  # a canvas tree's node
    assert '"kind": "canvas_node"' in node and tile in node


def test_duplicate_session_and_branch(runner, st) -> None:
    run(runner, st, "new", "s", str(FIXTURES / "flat.png"))
    assert (
        "already exists" in run(runner, st, "new", "s", str(FIXTURES / "flat.png"), code=1).output
    )
    root = Store.open(st).refs.head("s", "main")
    assert "already exists" in run(runner, st, "branch", "s", "main", "--from", root, code=1).output


def test_ambiguous_and_unknown_prefixes(runner, st) -> None:
    run(runner, st, "new", "s", str(FIXTURES / "flat.png"))
    assert "no object" in run(runner, st, "show", "0123456789abcdef", code=1).output


def test_fsck_exit_code_on_damage_and_gc(runner, st) -> None:
    run(runner, st, "new", "s", str(FIXTURES / "flat.png"))
    store = Store.open(st)
    orphan = store.objects.put_text("orphan")
    out = run(runner, st, "gc", "--dry-run", "--grace", "0s").output
    assert f"would remove {orphan}" in out
    assert store.objects.has(orphan)
    assert "removed 0 objects" in run(runner, st, "gc").output  # inside the 14-day grace
    run(runner, st, "gc", "--grace", "0s")
    assert not store.objects.has(orphan)
    assert "0 damaged" in run(runner, st, "fsck").output
    canvas_id = store.step(store.refs.head("s", "main")).result.canvas_id
    path = st / "objects" / canvas_id[:2] / f"{canvas_id}.json"
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"RGB"', b'"RGBA"'))
    out = run(runner, st, "fsck", code=1).output
    assert f"damaged object {canvas_id}" in out


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(w: int, h: int) -> bytes:
    """A valid PNG header claiming w x h pixels with a tiny body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("text.png", b"this is not an image", "not an image"),
        ("truncated.png", None, "cannot be decoded"),
        ("bomb.png", _bomb_png(40000, 40000), "over the limit"),
        ("empty.png", b"", "not an image"),
    ],
)
def test_new_rejects_bad_images_and_writes_nothing(runner, st, tmp_path, name, content, message):
    run(runner, st, "init")
    before = _files(st)
    if content is None:
        content = _png_bytes(np.full((64, 64, 3), 7, np.uint8))[:-40]
    bad = tmp_path / name
    bad.write_bytes(content)
    out = run(runner, st, "new", "s", str(bad), code=1).output
    assert out.startswith("error: ") and message in out
    assert _files(st) == before


def test_missing_file(runner, st) -> None:
    out = run(runner, st, "new", "s", "/nonexistent/x.png", code=1).output
    assert "cannot read" in out


@pytest.mark.parametrize("bad", ["a/b", "..", "../../etc", "x" * 80, "nul\0byte", ".git"])
def test_hostile_session_names(runner, st, bad) -> None:
    run(runner, st, "init")
    before = _files(st)
    res = runner.invoke(cli, ["--store", str(st), "new", bad, str(FIXTURES / "flat.png")])
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    assert _files(st) == before


@pytest.mark.parametrize("bad", ["../../x", "zzzzzzzzzz", "abc", "a" * 70])
def test_hostile_ids(runner, st, bad) -> None:
    run(runner, st, "new", "s", str(FIXTURES / "flat.png"))
    for cmd in (["show", bad], ["canvas", bad, "-o", "/dev/null"]):
        out = run(runner, st, *cmd, code=1).output
        assert out.startswith("error: ")


def test_no_store_is_a_clear_error(runner, st) -> None:
    out = run(runner, st, "log", "s", code=1).output
    assert "no store at" in out and "exq init" in out


def test_unknown_session_and_branch(runner, st) -> None:
    run(runner, st, "new", "s", str(FIXTURES / "flat.png"))
    assert "no branch" in run(runner, st, "log", "s", "--branch", "zzz", code=1).output
    assert "error:" in run(runner, st, "log", "other", code=1).output


def test_demo_runs_offline(runner, st) -> None:
    out = run(runner, st, "demo", "--fixture", "odd.png").output
    store = Store.open(st)
    assert set(store.refs.branches("demo-1")) == {"main", "alt", "alt~2", "alt~3"}
    assert len(list(store.history(store.refs.head("demo-1", "main")))) == 5
    for name in ("main", "alt", "alt~2", "alt~3"):
        assert (st / "cache" / "demo-1" / f"{name}.png").exists()
        assert f"/demo-1/{name}.png" in out


def test_copied_store_still_opens(runner, st, tmp_path) -> None:
    run(runner, st, "new", "s", str(FIXTURES / "flat.png"))
    moved = tmp_path / "moved"
    shutil.copytree(st, moved)
    assert "0 damaged" in run(runner, moved, "fsck").output


def test_branch_delete_keeps_the_steps(runner, st) -> None:
    from exquisite_store.store.gc import gc

    run(runner, st, "new", "s", str(FIXTURES / "flat.png"))
    store = Store.open(st)
    root = store.refs.head("s", "main")
    run(runner, st, "branch", "s", "side", "--from", root)
    out = run(runner, st, "branch", "s", "side", "--delete").output
    assert "deleted branch side" in out
    assert set(Store.open(st).refs.branches("s")) == {"main"}
    assert "HEAD's branch" in run(runner, st, "branch", "s", "main", "--delete", code=1).output
    assert "no branch" in run(runner, st, "branch", "s", "side", "--delete", code=1).output
    assert "--from" in run(runner, st, "branch", "s", "x", code=1).output
    rep = gc(Store.open(st), grace_s=0)
    assert rep.removed == [] and Store.open(st).objects.has(root)
    assert "0 damaged" in run(runner, st, "fsck").output
