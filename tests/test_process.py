"""Process stamps: a pid alone is not an identity (reuse, other hosts, reboots)."""

from __future__ import annotations

import dataclasses
import os

from exquisite_store.store.process import ProcessStamp, host_name, start_ticks, this_process


def dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_this_process_is_alive_and_round_trips() -> None:
    me = this_process()
    assert me.alive() and me.on_this_machine()
    assert me.started == start_ticks(os.getpid()) is not None
    assert ProcessStamp.parse(me.text()) == me
    assert ProcessStamp.from_dict(me.to_dict()) == me


def test_a_dead_process_is_dead() -> None:
    assert not dataclasses.replace(this_process(), pid=dead_pid(), started=None).alive()


def test_a_reused_pid_is_not_the_old_process() -> None:
    """Same pid, another start time: the process that took the lock is gone."""
    me = this_process()
    assert not dataclasses.replace(me, started=me.started + 1).alive()


def test_another_host_is_never_taken_for_dead() -> None:
    other = ProcessStamp("elsewhere-" + host_name(), dead_pid())
    assert other.alive() and not other.on_this_machine()


def test_another_boot_of_this_host_is_over() -> None:
    assert not dataclasses.replace(this_process(), boot="an-earlier-boot").alive()


def test_older_records_with_only_a_pid() -> None:
    stamp = ProcessStamp.parse(f"pid {os.getpid()}\n")
    assert stamp is not None and stamp.host == host_name() and stamp.alive()
    assert ProcessStamp.parse("garbage") is None
    assert ProcessStamp.from_dict({"pid": "12"}) is None
    assert ProcessStamp.from_dict({"pid": os.getpid()}).alive()
