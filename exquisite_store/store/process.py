"""Who holds a lock or runs a job: host, pid and the process's start time (restic's way).

A pid alone is not an identity: pids are reused, and a pid means nothing on another
machine. A stamp records the host name, the boot id, the pid and the start time of
the process (clock ticks since boot, from ``/proc/<pid>/stat``); a process is known
dead only when the stamp names this machine and this boot, and no process with that
pid and that start time exists. A stamp from another host is never taken for dead.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from functools import cache


@cache
def host_name() -> str:
    """This machine's name."""
    return socket.gethostname() or "unknown-host"


@cache
def boot_id() -> str:
    """An id of this boot of this machine ("" where the system has none)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line: starttime
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessStamp:
    """A process, named well enough to tell whether it still runs."""

    host: str
    pid: int
    boot: str = ""
    started: int | None = None

    def text(self) -> str:
        """The stamp as lock-file text: ``pid``, ``host``, ``boot``, ``started`` lines."""
        started = "" if self.started is None else str(self.started)
        return f"pid {self.pid}\nhost {self.host}\nboot {self.boot}\nstarted {started}\n"

    def to_dict(self) -> dict[str, object]:
        """The stamp as JSON-ready fields (for log lines and events)."""
        return {"host": self.host, "pid": self.pid, "boot": self.boot, "started": self.started}

    @classmethod
    def parse(cls, text: str) -> ProcessStamp | None:
        """A stamp from lock-file text; ``pid N`` alone (older locks) is this host's."""
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            values[key] = value.strip()
        try:
            pid = int(values["pid"])
        except (KeyError, ValueError):
            return None
        started = None
        with contextlib.suppress(ValueError):
            started = int(values.get("started", ""))
        return cls(values.get("host") or host_name(), pid, values.get("boot", ""), started)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ProcessStamp | None:
        """A stamp from ``to_dict`` fields (or an older record with only ``pid``)."""
        pid = data.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool):
            return None
        started = data.get("started")
        return cls(
            str(data.get("host") or host_name()),
            pid,
            str(data.get("boot") or ""),
            started if isinstance(started, int) else None,
        )

    def on_this_machine(self) -> bool:
        """Whether the stamp names this host (and this boot, when it says which)."""
        return self.host == host_name() and (not self.boot or self.boot == boot_id())

    def alive(self) -> bool:
        """False only when the process is known to be gone; another host's is alive."""
        if self.host != host_name():
            return True  # cannot look: never taken for dead
        if self.boot and self.boot != boot_id():
            return False  # this machine rebooted since: every process of then is gone
        if self.pid <= 0:
            return False
        now = start_ticks(self.pid)
        if now is None:
            return _pid_exists(self.pid)  # no /proc: fall back to the pid alone
        return self.started is None or now == self.started


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def this_process() -> ProcessStamp:
    """The stamp of the running process."""
    pid = os.getpid()
    return ProcessStamp(host_name(), pid, boot_id(), start_ticks(pid))
