"""Where ``exq export`` may write and what ``--prune`` may remove: never a file it did not write.

Each case is what a user (or someone who hands them a folder) could do: export into a
folder of their own files, into the store, into another session's export; hand over an
export whose manifest lists ``../`` paths or whose folder is a symlink out of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store.cli import cli
from exquisite_store.errors import UserError
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from viewer.export import export_session
from viewer.export_files import MANIFEST

from .viewer_helpers import make_session


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export-safety") / "store"
    make_session(root)
    make_session(root, "other", steps=1)
    return root


def listing(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes, and every folder."""
    return {
        p.relative_to(root).as_posix() + ("/" if p.is_dir() else ""): (
            b"" if p.is_dir() else p.read_bytes()
        )
        for p in sorted(root.rglob("*"))
    }


def exq_export(store_root: Path, *args: str):
    res = CliRunner().invoke(cli, ["--store", str(store_root), "export", *args])
    lines = [ln for ln in res.output.splitlines() if not ln.startswith("rendering pages")]
    return res, lines


def user_folder(path: Path) -> dict[str, bytes]:
    (path / "photos").mkdir(parents=True)
    (path / "notes.txt").write_text("precious")
    (path / "index.html").write_text("<p>my own home page</p>")
    (path / "photos" / "a.png").write_bytes(b"\x89PNG not really")
    return listing(path)


def test_a_folder_of_user_files_is_refused_and_kept(store_root, tmp_path) -> None:
    mine = tmp_path / "mine"
    before = user_folder(mine)
    for extra in ((), ("--prune",)):
        res, lines = exq_export(store_root, "garden", str(mine), *extra)
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert lines[-1].startswith("error: ") and "is not empty and holds no export" in lines[-1]
        assert "--force" in lines[-1]
    assert listing(mine) == before, "nothing written, nothing removed"


def test_force_writes_beside_user_files_and_prune_never_removes_them(store_root, tmp_path) -> None:
    mine = tmp_path / "mine"
    before = user_folder(mine)
    res, _ = exq_export(store_root, "garden", str(mine), "--force", "--prune")
    assert res.exit_code == 0, res.output
    after = listing(mine)
    # the user's index.html is the export's now (they forced it); every other file stays
    assert {k: v for k, v in after.items() if k in before and k != "index.html"} == {
        k: v for k, v in before.items() if k != "index.html"
    }
    again, _ = exq_export(store_root, "garden", str(mine), "--prune", "--branch", "main")
    assert again.exit_code == 0, again.output
    for name in ("notes.txt", "photos/a.png"):
        assert (mine / name).read_bytes() == before[name]
    assert "removed" in again.output


@pytest.mark.parametrize("where", ["the store", "a folder inside it", "its refs"])
@pytest.mark.parametrize("flags", [(), ("--prune",), ("--prune", "--force")])
def test_the_store_is_never_an_export_target(store_root, tmp_path, where, flags) -> None:
    target = {"the store": store_root, "a folder inside it": store_root / "site"}.get(
        where, store_root / "refs"
    )
    before = listing(store_root)
    res, lines = exq_export(store_root, "garden", str(target), *flags)
    assert res.exit_code == 1 and lines[-1].startswith("error: refusing to export into the store")
    assert listing(store_root) == before, "the store is untouched"
    assert fsck(Store.open(store_root)).ok


def test_a_symlink_to_the_store_is_the_store(store_root, tmp_path) -> None:
    link = tmp_path / "innocent"
    link.symlink_to(store_root)
    before = listing(store_root)
    with pytest.raises(UserError, match="refusing to export into the store"):
        export_session(store_root, "garden", link, prune=True, force=True)
    assert listing(store_root) == before


def test_a_folder_holding_another_store_is_refused(store_root, tmp_path) -> None:
    other = tmp_path / "other-store"
    Store.init(other)
    before = listing(other)
    res, lines = exq_export(store_root, "garden", str(other), "--force", "--prune")
    assert res.exit_code == 1 and "holds a store" in lines[-1]
    assert listing(other) == before


def test_another_sessions_export_is_replaced_only_when_forced(store_root, tmp_path) -> None:
    site = tmp_path / "site"
    export_session(store_root, "garden", site)
    with pytest.raises(UserError, match="holds the export of session 'garden', not 'other'"):
        export_session(store_root, "other", site, prune=True)
    rep = export_session(store_root, "other", site, prune=True, force=True)
    assert rep.removed > 0  # garden's pages were the exporter's own: they go
    assert json.loads((site / MANIFEST).read_text())["session"] == "other"
    assert set(json.loads((site / MANIFEST).read_text())["files"]) == rep.paths


def test_a_damaged_manifest_is_refused_unless_forced_and_then_prunes_nothing(
    store_root, tmp_path
) -> None:
    site = tmp_path / "site"
    export_session(store_root, "garden", site)
    (site / "keep.txt").write_text("mine")
    (site / MANIFEST).write_text("{not json")
    with pytest.raises(UserError, match="is damaged: pass --force"):
        export_session(store_root, "garden", site, prune=True)
    rep = export_session(store_root, "garden", site, prune=True, force=True)
    assert rep.removed == 0 and (site / "keep.txt").read_text() == "mine"


def test_a_hostile_manifest_cannot_make_prune_remove_anything_outside(store_root, tmp_path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("do not delete")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.html").write_text("do not delete either")
    site = tmp_path / "site"
    export_session(store_root, "garden", site)
    (site / "step").rename(site / "step-moved")
    (site / "step").symlink_to(elsewhere)  # a folder of the export that leads out of it
    man = json.loads((site / MANIFEST).read_text())
    man["files"].update(
        {
            "../victim.txt": {"size": victim.stat().st_size, "id": "x"},
            str(victim): {"size": victim.stat().st_size, "id": "x"},
            "step/x.html": {"size": (elsewhere / "x.html").stat().st_size, "id": "x"},
        }
    )
    (site / MANIFEST).write_text(json.dumps(man))
    with pytest.raises(UserError, match="leads outside the export"):
        export_session(store_root, "garden", site, prune=True)
    assert victim.read_text() == "do not delete"
    assert (elsewhere / "x.html").read_text() == "do not delete either"
    assert [p.name for p in elsewhere.iterdir()] == ["x.html"], "nothing written through it"
    # a folder the export no longer writes to, listed in the manifest, leading out of it
    (site / "step").unlink()
    (site / "step-moved").rename(site / "step")
    (site / "old").symlink_to(elsewhere)
    man["files"]["old/x.html"] = man["files"].pop("step/x.html")
    (site / MANIFEST).write_text(json.dumps(man))
    rep = export_session(store_root, "garden", site, prune=True)
    assert rep.removed == 0
    assert victim.read_text() == "do not delete"
    assert (elsewhere / "x.html").read_text() == "do not delete either"


def test_a_first_export_that_failed_is_still_an_export(store_root, tmp_path) -> None:
    """The manifest is written first: a rerun after a failure is not "not an export"."""
    site = tmp_path / "site"
    export_session(store_root, "garden", site)
    man = json.loads((site / MANIFEST).read_text())
    man["files"] = {}  # as left by a first export that failed before its end
    (site / MANIFEST).write_text(json.dumps(man))
    rep = export_session(store_root, "garden", site, prune=True)
    assert rep.written == 0 and rep.unchanged == len(rep.paths), "whole files are kept"
    assert set(json.loads((site / MANIFEST).read_text())["files"]) == rep.paths


def test_an_export_made_before_manifests_is_adopted_with_force(store_root, tmp_path) -> None:
    """An older exporter wrote no manifest: --force adopts it, rewriting only what differs."""
    site = tmp_path / "site"
    first = export_session(store_root, "garden", site)
    (site / MANIFEST).unlink()
    with pytest.raises(UserError, match="holds no export"):
        export_session(store_root, "garden", site)
    adopted = export_session(store_root, "garden", site, force=True)
    assert adopted.written == 0 and adopted.unchanged == first.written
    assert set(json.loads((site / MANIFEST).read_text())["files"]) == adopted.paths
