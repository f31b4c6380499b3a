"""Sources on S3 (`s3://bucket/prefix`, or one object), read where each shard runs, by range: no mirror, no
shared disk, and one code path for a local run and a cluster run.

Planning, where the run starts: LIST the prefix for .parquet / .jsonl objects (names starting with '.' are
skipped, as for a folder). A Parquet object is planned from its footer alone (pyarrow reads the last 64 KiB
through one ranged GET, more only when the metadata is larger) and cut at row-group boundaries like a local
file. A JSONL object has no index, so it is streamed once (never stored) to find its line boundaries.
A shard's task, on a Ray worker or in this machine's warm pool, opens its object as a seekable file whose
reads are ranged GETs (`RangeFile`): pyarrow reads the footer, then only the column chunks of the shard's row
groups; a JSONL shard reads only its byte range.

Identity: a content hash would mean reading every byte where the run is planned, the cost range reads avoid.
A shard key is made from the object's ETag and size instead (S3 gives an object a new ETag whenever it is
written again) with its name under the prefix in the salt, as an hf:// shard's key holds the commit: a rerun
over unchanged objects finds its finished shards, a rewritten object gets new shards. Every ranged read is
conditional on the ETag the plan saw (If-Match), so an object rewritten between plan and read fails its shards
with a clear error instead of mixing two contents. So a local run and a cluster run of one s3:// source
publish the same version; a copy of the same files prepared from disk is keyed by content hash, so it gets
other shard keys and another version hash (as an hf:// source does).

Images a record names by a relative path are read from S3 too, relative to the data object's folder
(`relative_fetcher`); a missing one is Reject.MISSING_IMAGE_FILE, as on disk.

Where S3 is (base/s3.Endpoint: URL and region of the planning process's environment) travels in every
ShardSpec, so a worker that shares no environment reads the same server; credentials are the reading
process's own (base/s3.connect).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import posixpath
import threading
from dataclasses import dataclass
from urllib.parse import urlparse

from thyme_core.base.errors import ThymeError
from thyme_core.base.reasons import Reject, Rejected
from thyme_core.base.s3 import Endpoint, connect
from thyme_core.prepare.ranged import RangedReader

PREFIX = "s3://"
DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
JSONL_BUFFER = 1 << 20  # bytes per ranged GET when a JSONL shard is read line by line


def is_remote(source) -> bool:
    return str(source).startswith(PREFIX)


@dataclass(frozen=True)
class S3Object:
    uri: str  # s3://bucket/key
    name: str  # its name under the source prefix (the catalog's source_file)
    etag: str  # without quotes
    size: int
    endpoint: Endpoint

    @property
    def digest(self) -> str:
        """The object's identity in shard keys (its ETag and size: see the module docstring)."""
        return hashlib.sha256(f"s3-object\0{self.etag}\0{self.size}".encode()).hexdigest()


def split_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ThymeError(f"{uri}: expected s3://bucket/prefix")
    return parsed.netloc, parsed.path.lstrip("/")


_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _cached_client(endpoint: Endpoint, pid: int):
    return connect(f"S3 source at {endpoint.url or 'AWS'}", endpoint)[1]


def client(endpoint: Endpoint):
    """One boto3 client per endpoint and process (clients are thread-safe, making one costs ~0.1 s; a forked
    child makes its own: a client's open connections must not be shared across processes)."""
    with _lock:
        return _cached_client(endpoint, os.getpid())


def list_objects(uri: str, endpoint: Endpoint | None = None) -> list[S3Object]:
    """The data objects a source URI names, sorted: the object itself when the URI ends in a data suffix,
    else every data object under the prefix (as a folder)."""
    endpoint = endpoint or Endpoint.from_env()
    s3 = client(endpoint)
    bucket, key = split_uri(uri)
    try:
        if key.lower().endswith(DATA_SUFFIXES):
            head = s3.head_object(Bucket=bucket, Key=key)
            return [S3Object(uri, posixpath.basename(key), head["ETag"].strip('"'), head["ContentLength"], endpoint)]
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        found = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix):]
                if name.lower().endswith(DATA_SUFFIXES) and "/." not in f"/{name}":
                    found.append(S3Object(f"{PREFIX}{bucket}/{obj['Key']}", name, obj["ETag"].strip('"'),
                                          obj["Size"], endpoint))
    except Exception as exc:  # noqa: BLE001 - every boto error becomes one clear message, others go on
        raise _error(exc, uri, s3, planning=True) from None
    if not found:
        raise ThymeError(f"{uri}: no .parquet or .jsonl objects under this prefix (at {s3.meta.endpoint_url})")
    return sorted(found, key=lambda o: o.name)


class RangeFile(RangedReader):
    """One S3 object as a read-only seekable file: every read is one ranged GET, conditional on the ETag the
    plan saw. Counts what it fetched (`requests`, `bytes_read`)."""

    def __init__(self, obj: S3Object):
        super().__init__(obj.size)
        self.obj = obj
        self._s3 = client(obj.endpoint)
        self._bucket, self._key = split_uri(obj.uri)

    def _fetch(self, start: int, stop: int) -> bytes:
        try:
            return self._s3.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={start}-{stop - 1}",
                                       IfMatch=f'"{self.obj.etag}"')["Body"].read()
        except Exception as exc:  # noqa: BLE001 - see list_objects
            raise _error(exc, self.obj.uri, self._s3, self.obj.etag) from None

    def _short(self, start: int, stop: int, got: int) -> str:
        return (f"{self.obj.uri}: bytes {start}-{stop - 1} came back as {got} bytes (the object is shorter than "
                f"the {self.obj.size} bytes planned)")


def open_binary(obj: S3Object, buffered: bool = False):
    """The object as a file: raw (every read one GET: for pyarrow, which asks for whole column chunks) or
    buffered (for reading lines)."""
    raw = RangeFile(obj)
    return io.BufferedReader(raw, buffer_size=JSONL_BUFFER) if buffered else raw


def relative_fetcher(obj: S3Object):
    """For image values of a record in `obj`: a path relative to the object's folder (or a full s3:// URI)
    -> the image's bytes from S3; a missing object is Reject.MISSING_IMAGE_FILE, a forbidden one
    Reject.UNREADABLE_IMAGE_FILE."""
    bucket, key = split_uri(obj.uri)
    folder = posixpath.dirname(key)
    s3 = client(obj.endpoint)

    def get(rel: str) -> bytes:
        if is_remote(rel):
            where_bucket, where = split_uri(rel)
        else:
            where_bucket, where = bucket, posixpath.normpath(posixpath.join(folder, rel.replace("\\", "/")))
            if where.startswith("../") or where == "..":
                raise Rejected(Reject.MISSING_IMAGE_FILE, f"{rel}: outside the bucket of {obj.uri}")
        uri = f"{PREFIX}{where_bucket}/{where}"
        try:
            return s3.get_object(Bucket=where_bucket, Key=where)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - see list_objects
            status = _status(exc)
            if status == 404:
                raise Rejected(Reject.MISSING_IMAGE_FILE, f"{rel}: no such object (looked at {uri})") from None
            if status == 403:
                raise Rejected(Reject.UNREADABLE_IMAGE_FILE, f"{rel}: access denied to {uri}") from None
            raise _error(exc, uri, s3) from None

    return get


def _status(exc) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code", "")
    if code in ("NoSuchKey", "NoSuchBucket", "404"):
        return 404
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _error(exc: Exception, uri: str, s3, etag: str | None = None, planning: bool = False) -> Exception:
    """An error of the request (gone, changed, forbidden) as a ThymeError that says what to do (not retried);
    anything else unchanged (a flaky server or network: Prefect or Ray may retry the shard)."""
    from botocore.exceptions import BotoCoreError, ClientError

    where = s3.meta.endpoint_url
    if isinstance(exc, ClientError):
        status, code = _status(exc), exc.response.get("Error", {}).get("Code", "?")
        if status == 412:
            return ThymeError(f"{uri}: the object changed since this run was planned (ETag {etag} then): run "
                              f"again to plan its new content")
        if status == 404:
            what = "no such bucket" if code == "NoSuchBucket" else "no such object"
            planned = " (it was there when the run was planned)" if etag else ""
            return ThymeError(f"{uri}: {what} at {where}{planned}")
        if status == 403:
            return ThymeError(f"{uri}: access denied at {where} ({code}): check the credentials of this machine")
        if status == 416:
            return ThymeError(f"{uri}: the object is shorter than planned ({code})")
    if isinstance(exc, BotoCoreError) and planning:  # where the run starts: a wrong endpoint, say so
        return ThymeError(f"{uri}: cannot reach {where}: {exc}")
    return exc  # a server error or a lost connection (after botocore's retries): the shard may be retried
