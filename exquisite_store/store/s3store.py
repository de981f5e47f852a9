"""Opening and creating a store at ``s3://bucket/prefix`` (probe first, then ``store.toml``).

The endpoint comes from ``endpoint`` (``exq --s3-endpoint``) or ``AWS_ENDPOINT_URL``;
region and credentials from the usual AWS variables and files (boto3 reads them). One
storage is kept per address and endpoint in a process, so the viewer (which opens the
store on every request) probes the server once, not per page.
"""

from __future__ import annotations

import threading
import tomllib

import msgspec

from exquisite_store.errors import AlreadyExists, StoreError
from exquisite_store.store.s3client import Conflict, S3Bucket, parse_s3_url
from exquisite_store.store.s3probe import probe
from exquisite_store.store.s3storage import S3Storage

_OPEN: dict[tuple[str, str], S3Storage] = {}
_LOCK = threading.Lock()


def is_s3(location: object) -> bool:
    """Whether a store location is an ``s3://`` address."""
    return isinstance(location, str) and location.startswith("s3://")


def connect(url: str, endpoint: str | None = None) -> S3Storage:
    """The storage of ``url``, probed once per process; ProbeFailed names a failing check."""
    bucket_name, prefix = parse_s3_url(url)
    key = (url.rstrip("/"), endpoint or "")
    with _LOCK:
        if key in _OPEN:
            return _OPEN[key]
        bucket = S3Bucket(bucket_name, prefix, endpoint=endpoint)
        result = probe(bucket)
        storage = S3Storage(bucket, conditional_delete=result.conditional_delete)
        storage.probe = result
        _OPEN[key] = storage
        return storage


def read_config(storage: S3Storage) -> dict:
    """The store's ``store.toml``; StoreError if there is none or it is damaged."""
    got = storage.bucket.get("store.toml")
    if got is None:
        raise StoreError(f"no store at {storage.url} (create one with `exq init`)")
    try:
        return tomllib.loads(got[0].decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{storage.url}/store.toml is damaged: {exc}") from exc


def write_config(storage: S3Storage, text: str) -> None:
    """Create ``store.toml`` (and record the probe's result); AlreadyExists if there."""
    try:
        storage.bucket.put("store.toml", text.encode(), create=True)
    except Conflict:
        raise AlreadyExists(f"a store already exists at {storage.url}", path=storage.url) from None
    record_probe(storage)


def record_probe(storage: S3Storage) -> None:
    """Write the probe's result to ``probe.json`` (replaced on each recording)."""
    storage.bucket.put("probe.json", msgspec.json.encode(storage.probe))
