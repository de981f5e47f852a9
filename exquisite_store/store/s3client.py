"""One bucket and prefix of an S3-compatible server: the few requests the store makes.

boto3 (botocore) does the HTTP, signing, retries and credentials (the usual AWS
variables and files); this module names each request the store needs, maps the
conditional-write answers (412, 409, and 404 on ``If-Match``) to ``Conflict``, and
counts the HTTP requests sent (benchmarks and tests read ``requests``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlparse

from exquisite_store.errors import ArtifactWriteError, StoreError

#: the answers that mean "someone else wrote first: re-read" to a conditional request
CONFLICT_STATUS = (404, 409, 412)


class Conflict(Exception):
    """A conditional write lost: the key exists (create) or changed (``If-Match``)."""


@dataclass(frozen=True)
class Listed:
    """One key of a listing, with the server's time of its last write."""

    key: str
    modified: datetime
    etag: str
    size: int


def parse_s3_url(url: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix`` (the prefix without slashes at ends)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreError(f"not an s3:// store address: {url!r:.120}")
    return parsed.netloc, parsed.path.strip("/")


def _status(exc: Exception) -> int:
    return int(getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class S3Bucket:
    """Keys below ``prefix/`` in ``bucket``; every method is one request unless it says not."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
        self.requests = 0
        self._count = threading.Lock()
        session = boto3.session.Session()
        self.client = session.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=session.region_name or "us-east-1",
            config=Config(
                max_pool_connections=32,
                retries={"max_attempts": 4, "mode": "standard"},
                s3={"addressing_style": "path"},
                # no CRC of every body: ids already name the content, and it costs time
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        self.client.meta.events.register("before-send.s3", self._counted)
        from botocore.exceptions import BotoCoreError, ClientError

        self._client_error = ClientError
        self._errors = (ClientError, BotoCoreError)

    def _counted(self, **_kwargs: object) -> None:
        with self._count:
            self.requests += 1

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``."""
        return f"s3://{self.bucket}/{self.prefix.rstrip('/')}"

    def _fail(self, what: str, key: str, exc: Exception) -> ArtifactWriteError:
        reason = getattr(exc, "response", {}).get("Error", {}).get("Message") or str(exc)
        return ArtifactWriteError(f"cannot {what} {self.url}/{key}: {reason}", key=key)

    # --- reads ---------------------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The bytes and ETag of a key, or None if it does not exist."""
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            return r["Body"].read(), r["ETag"]
        except self._client_error as exc:
            if _status(exc) == 404:
                return None
            raise self._fail("read", key, exc) from exc
        except self._errors as exc:
            raise self._fail("read", key, exc) from exc

    def head(self, key: str) -> tuple[str, float] | None:
        """The ETag of a key and its age in seconds by the server's clock, or None."""
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._client_error as exc:
            if _status(exc) == 404:
                return None
            raise self._fail("read", key, exc) from exc
        except self._errors as exc:
            raise self._fail("read", key, exc) from exc
        now = _server_time(r) or r["LastModified"]
        return r["ETag"], max(0.0, (now - r["LastModified"]).total_seconds())

    def list(self, prefix: str, start_after: str = "") -> Iterator[Listed]:
        """Every key starting with ``prefix`` (after ``start_after``), in key order."""
        kwargs = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            kwargs["StartAfter"] = self.prefix + start_after
        cut = len(self.prefix)
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                for item in page.get("Contents", ()):
                    yield Listed(
                        item["Key"][cut:], item["LastModified"], item["ETag"], item["Size"]
                    )
        except self._errors as exc:
            raise self._fail("list", prefix, exc) from exc

    def list_with_time(self, prefix: str) -> tuple[list[Listed], datetime | None]:
        """One page of keys under ``prefix`` and the server's time of the answer."""
        try:
            r = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + prefix)
        except self._errors as exc:
            raise self._fail("list", prefix, exc) from exc
        cut = len(self.prefix)
        items = [
            Listed(i["Key"][cut:], i["LastModified"], i["ETag"], i["Size"])
            for i in r.get("Contents", ())
        ]
        return items, _server_time(r)

    # --- writes --------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, create: bool = False, if_match: str = "") -> str:
        """Write a key; ``create``: only if absent, ``if_match``: only if its ETag is that.

        Returns the new ETag; Conflict if the condition failed.
        """
        kwargs: dict[str, object] = {"Bucket": self.bucket, "Key": self.prefix + key, "Body": data}
        if create:
            kwargs["IfNoneMatch"] = "*"
        elif if_match:
            kwargs["IfMatch"] = if_match
        try:
            return self.client.put_object(**kwargs)["ETag"]
        except self._client_error as exc:
            if (create or if_match) and _status(exc) in CONFLICT_STATUS:
                raise Conflict(key) from None
            raise self._fail("write", key, exc) from exc
        except self._errors as exc:
            raise self._fail("write", key, exc) from exc

    def touch(self, key: str) -> bool:
        """Freshen a key's LastModified by copying it onto itself; False if it is gone."""
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                CopySource={"Bucket": self.bucket, "Key": self.prefix + key},
                MetadataDirective="REPLACE",
                Metadata={"exq-touched": "1"},
            )
            return True
        except self._client_error as exc:
            if _status(exc) == 404:
                return False
            raise self._fail("freshen", key, exc) from exc
        except self._errors as exc:
            raise self._fail("freshen", key, exc) from exc

    def delete(self, key: str, *, if_match: str = "") -> None:
        """Remove a key (absent is fine); with ``if_match``, Conflict if its ETag differs."""
        kwargs = {"Bucket": self.bucket, "Key": self.prefix + key}
        if if_match:
            kwargs["IfMatch"] = if_match
        try:
            self.client.delete_object(**kwargs)
        except self._client_error as exc:
            if if_match and _status(exc) in (409, 412):
                raise Conflict(key) from None
            if _status(exc) == 404:
                return
            raise self._fail("remove", key, exc) from exc
        except self._errors as exc:
            raise self._fail("remove", key, exc) from exc


def _server_time(response: dict) -> datetime | None:
    """The server's clock from a response's ``Date`` header (never this machine's)."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None
