"""Remotes between a store on disk and one on SeaweedFS: same ids, few requests."""

from __future__ import annotations

import pytest

from exquisite_store import core
from exquisite_store.core import remotes as rem
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck

from .fakes.backends import PatternBackend
from .helpers import TickClock, rng_image


def grow(store: Store, seed: int) -> str:
    req = core.step_request(store, "s", {"extension_px": 16, "overlap_px": 4, "seed": seed})
    return core.grow(store, req, backend=PatternBackend()).step_ids[0]


def objects(store: Store) -> set[str]:
    return {oid for oid, _ext in store.storage.list_objects()}


@pytest.fixture
def pair(seaweedfs, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweedfs.endpoint)
    local = Store.init(tmp_path / "local", clock=TickClock())
    core.create_session(local, core.new_session("s", core.StartImage(rng_image(40, 64), "x.png")))
    url = seaweedfs.url()
    Store.init(url, endpoint=seaweedfs.endpoint)
    rem.add_remote(local, "origin", url)
    return local, url


def test_push_clone_pull_between_disk_and_s3(pair, tmp_path) -> None:
    local, url = pair
    for i in range(3):
        grow(local, i)
    report = rem.push(local, "origin")
    assert not report.refused
    remote = Store.open(url)
    assert remote.refs.branches("s") == local.refs.branches("s")
    assert objects(remote) <= objects(local)
    assert fsck(remote).ok and fsck(local).ok

    # a clone on disk of the S3 store: the same ids, and it works on its own
    clone, _ = rem.clone(url, tmp_path / "clone")
    assert clone.refs.branches("s") == local.refs.branches("s")
    assert objects(clone) == objects(remote)
    head = grow(clone, 9)
    assert rem.push(clone, "origin").moves[0].status == "fast-forward"
    rem.pull(local, "origin")
    assert local.refs.head("s", "main") == head
    assert fsck(Store.open(url)).ok and fsck(local).ok and fsck(clone).ok


def test_a_push_with_nothing_new_asks_the_object_store_little(pair) -> None:
    local, url = pair
    grow(local, 1)
    rem.push(local, "origin")
    remote = Store.open(url)
    bucket = remote.storage.bucket
    before = bucket.requests
    report = rem.SyncReport()
    rem._send(local, remote, "s", None, report, None)
    asked = bucket.requests - before
    assert {m.status for m in report.moves} == {"up to date"}
    assert report.transfer.copied == 0
    assert asked <= 6, asked  # the session pointer, the branch list, its one branch, a lease
    print(f"FIGURE remotes-s3 nothing-new requests={asked}")


def test_a_diverged_push_to_s3_is_refused(pair, tmp_path) -> None:
    local, url = pair
    grow(local, 1)
    rem.push(local, "origin")
    other, _ = rem.clone(url, tmp_path / "other")
    theirs = grow(other, 2)
    rem.push(other, "origin")
    ours = grow(local, 3)
    [refused] = rem.push(local, "origin").refused
    assert ours[:12] in refused.reason and theirs[:12] in refused.reason
    assert Store.open(url).refs.head("s", "main") == theirs
