"""The S3 backend of the version store: any S3-compatible server through boto3.

The client's configuration (endpoint, region, credentials, retries) is base/s3.py's, shared with s3:// prepare
sources. Missing credentials or an unreachable bucket fail here, at start-up, with the reason. Objects above
the multipart threshold go up and down in parallel parts.

Conditional writes move refs: If-None-Match: * to create, If-Match: <etag> to replace; a 412 (or a 409 from
a server that saw two conditional writes race) is a RefConflict.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import urlparse

from thyme_core.base.errors import ThymeError
from thyme_core.base.s3 import MAX_ATTEMPTS, Endpoint, connect
from thyme_core.versions.keys import ObjectMissing, RefConflict, conflict_message

MULTIPART_THRESHOLD = 64 << 20


class S3Store:
    def __init__(self, uri: str, multipart_threshold: int = MULTIPART_THRESHOLD, max_attempts: int = MAX_ATTEMPTS,
                 endpoint: Endpoint | None = None):
        from boto3.s3.transfer import TransferConfig

        parsed = urlparse(uri)
        if not parsed.netloc:
            raise ThymeError(f"store {uri!r}: expected s3://bucket/prefix")
        self.uri = uri
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/") + "/" if parsed.path.strip("/") else ""
        self.session, self.client = connect(f"store {uri}", endpoint, max_attempts)
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=max(
            8 << 20, multipart_threshold // 4), max_concurrency=8)
        self.multipart_threshold = multipart_threshold
        self._check_bucket()

    def _check_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise ThymeError(f"store {self.uri}: bucket {self.bucket!r} is not usable ({code}) at "
                             f"{self.client.meta.endpoint_url}") from None
        except BotoCoreError as exc:
            raise ThymeError(f"store {self.uri}: cannot reach {self.client.meta.endpoint_url}: {exc}") from None

    def _key(self, key: str) -> str:
        return self.prefix + key

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if _status(exc) == 404:
                return False
            raise

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        if Path(path).stat().st_size < self.multipart_threshold:
            # One PUT carrying our sha256: the server rejects the body if it is not what we hashed.
            checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=Path(path).read_bytes(),
                                   ChecksumSHA256=checksum)
        else:
            self.client.upload_file(str(path), self.bucket, self._key(key), Config=self.transfer,
                                    ExtraArgs={"ChecksumAlgorithm": "SHA256"})

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if _status(exc) == 404 or _code(exc) == "NoSuchKey":
                raise ObjectMissing(f"{self.uri}: {key} is missing") from None
            raise

    def download(self, key: str, dest: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(dest), Config=self.transfer)
        except ClientError as exc:
            if _status(exc) == 404 or _code(exc) in ("NoSuchKey", "404"):
                raise ObjectMissing(f"{self.uri}: {key} is missing") from None
            raise

    def list_keys(self, prefix: str) -> list[str]:
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys += [o["Key"][len(self.prefix):] for o in page.get("Contents", [])]
        return sorted(keys)

    def read_ref(self, key: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _status(exc) == 404 or _code(exc) == "NoSuchKey":
                return None
            raise
        return obj["Body"].read(), obj["ETag"]

    def write_ref(self, key: str, data: bytes, etag: str | None) -> str:
        from botocore.exceptions import ClientError

        cond = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **cond)["ETag"]
        except ClientError as exc:
            if _status(exc) in (409, 412) or _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise RefConflict(conflict_message(key, etag)) from None
            raise

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def setup_duckdb(self, con) -> None:
        """Load the httpfs extension bundled by the duckdb-extension-httpfs wheel (no download) and give DuckDB
        the credentials and endpoint boto3 resolved, so both read the same store."""
        import duckdb_extension_httpfs

        import duckdb

        ext = Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
        if not ext.is_file():
            raise ThymeError(f"no httpfs extension for duckdb {duckdb.__version__} at {ext}: install "
                             f"duckdb-extension-httpfs=={duckdb.__version__}")
        con.execute(f"LOAD {_quote(str(ext))}")
        creds = self.session.get_credentials().get_frozen_credentials()
        endpoint = urlparse(self.client.meta.endpoint_url)
        opts = {"KEY_ID": creds.access_key, "SECRET": creds.secret_key,
                "REGION": self.client.meta.region_name or "us-east-1"}
        if creds.token:
            opts["SESSION_TOKEN"] = creds.token
        if not endpoint.netloc.endswith("amazonaws.com"):
            opts.update(ENDPOINT=endpoint.netloc, URL_STYLE="path", USE_SSL=endpoint.scheme == "https")
        # CREATE SECRET takes no bound parameters: values are quoted here instead.
        body = ", ".join(f"{k} {_quote(v) if isinstance(v, str) else str(v).lower()}" for k, v in opts.items())
        con.execute(f"CREATE OR REPLACE TEMPORARY SECRET thyme_store (TYPE s3, {body})")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _status(exc) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _code(exc) -> str:
    return exc.response.get("Error", {}).get("Code", "")
