"""Hub files read by range where each shard runs: how a cluster worker reads an hf:// source, no disk shared.

The local prepare downloads each file of an hf:// source into the HF cache (hub.py). A Ray worker must not
depend on the driver's cache, and should not download a whole file to read one shard, so here, as for S3
(s3_source.py):

1. planning, on the driver: the commit sha the revision resolved to (hub.resolve), then each data file's size
   and content sha256 from the Hub's file metadata (an LFS file's oid is the sha256 of its content; a small
   non-LFS file is read once to hash it). A Parquet file is planned from its footer alone (one ranged GET, a
   second when the metadata is larger) and cut at row-group boundaries; a JSONL file is streamed once for its
   line boundaries. The shard keys are those of a local run of the same URI (same content sha256, same salt
   with the commit sha), so a cluster run publishes the version a local run pushes.
2. reading, on the worker: `open_binary(HubFile)` is a seekable file whose every read is one ranged GET of the
   file's resolve URL *at the commit sha* (`/datasets/OWNER/NAME/resolve/<sha>/<path>`): a branch moved or a
   file rewritten since planning is another commit, never mixed in. The endpoint (HF_ENDPOINT of the planning
   process) travels in the HubFile, as an S3 endpoint does; the token is the reading process's own HF_TOKEN
   (credentials never travel in a task). A worker with HF_HUB_OFFLINE=1 reads its own HF cache at that sha
   (what `huggingface-cli download` left there) and says so when the file is not there.
   Images named relative to the data file are fetched one by one from the same commit (hub.relative_fetcher).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from thyme_core.base.errors import ThymeError
from thyme_core.prepare import hub
from thyme_core.prepare.digests import file_sha256
from thyme_core.prepare.ranged import RangedReader

HASH_CHUNK = 8 << 20  # bytes per GET when a non-LFS file is read whole to hash it
JSONL_BUFFER = 1 << 20  # bytes per ranged GET when a JSONL shard is read line by line


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    sha: str  # the commit the run was planned at: every worker reads this one
    name: str  # the file's path in the repo
    size: int
    digest: str  # the sha256 of its content (the identity in shard keys, as a local file's hash)
    endpoint: str = ""  # the Hub's URL as the planning process saw it ("" = huggingface.co)

    @property
    def uri(self) -> str:
        return f"{hub.PREFIX}{self.repo_id}@{self.sha}/{self.name}"

    def url(self) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo_id, self.name, repo_type="dataset", revision=self.sha,
                          endpoint=self.endpoint or None)


def describe(snapshot: hub.HubSnapshot) -> list[HubFile]:
    """The data files of a resolved snapshot with their sizes and content hashes (online: the Hub's file
    metadata at the commit; offline: the driver's HF cache)."""
    endpoint = hub.endpoint()
    if hub.offline():
        out = []
        for name in snapshot.files:
            local = hub.fetch(snapshot.repo_id, snapshot.sha, name)
            out.append(HubFile(snapshot.repo_id, snapshot.sha, name, local.stat().st_size, file_sha256(local),
                               endpoint))
        return out
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = HfApi(endpoint=endpoint or None, token=hub.token()).dataset_info(
            snapshot.repo_id, revision=snapshot.sha, files_metadata=True)
    except (HfHubHTTPError, OSError) as exc:
        raise ThymeError(f"{snapshot.repo_id}@{snapshot.sha}: cannot read its file metadata ({exc})") from None
    meta = {s.rfilename: s for s in info.siblings or []}
    out = []
    for name in snapshot.files:
        sibling = meta.get(name)
        if sibling is None or sibling.size is None:
            raise ThymeError(f"{snapshot.repo_id}@{snapshot.sha}: the Hub gives no size for {name}")
        f = HubFile(snapshot.repo_id, snapshot.sha, name, sibling.size, sibling.lfs.sha256 if sibling.lfs else "",
                    endpoint)
        out.append(f if f.digest else _with_digest(f))
    return out


def _with_digest(f: HubFile) -> HubFile:
    """A non-LFS file (small: the Hub keeps large files in LFS) read once to hash its content."""
    h, raw = hashlib.sha256(), RangeFile(f)
    for chunk in iter(lambda: raw.read(HASH_CHUNK), b""):
        h.update(chunk)
    return HubFile(f.repo_id, f.sha, f.name, f.size, h.hexdigest(), f.endpoint)


class RangeFile(RangedReader):
    """One Hub file at one commit as a read-only seekable file: every read is one ranged GET of its resolve
    URL (redirects followed, to the Hub's storage). Counts what it fetched (`requests`, `bytes_read`)."""

    def __init__(self, f: HubFile):
        super().__init__(f.size)
        self.file = f
        self._url = f.url()

    def _fetch(self, start: int, stop: int) -> bytes:
        from huggingface_hub.utils import build_hf_headers, get_session

        headers = build_hf_headers(token=hub.token(), headers={"Range": f"bytes={start}-{stop - 1}"})
        try:
            response = get_session().get(self._url, headers=headers, follow_redirects=True)
        except OSError as exc:  # a lost connection: Ray or Prefect may retry the shard
            raise OSError(f"{self.file.uri}: {exc}") from exc
        _check(response, self.file)
        body = response.content
        if response.status_code == 200:  # a server that ignores Range sends the whole file
            body = body[start:stop] if len(body) == self.file.size else b""
        return body

    def _short(self, start: int, stop: int, got: int) -> str:
        return (f"{self.file.uri}: bytes {start}-{stop - 1} came back as {got} bytes (the file has "
                f"{self.file.size} bytes at this commit)")


def _check(response, f: HubFile) -> None:
    """A request's failure as a ThymeError saying what to do (not retried); a server error is left to retries."""
    status = response.status_code
    if status in (200, 206):
        return
    where = f"{f.uri} at {f.endpoint or 'huggingface.co'}"
    if status in (401, 403):
        raise ThymeError(f"{where}: access denied ({status}): set HF_TOKEN on the workers (a private or gated repo)")
    if status == 404:
        raise ThymeError(f"{where}: no such file at this commit (it was listed when the run was planned)")
    if status == 416:
        raise ThymeError(f"{where}: the file is shorter than the {f.size} bytes planned")
    raise OSError(f"{where}: HTTP {status}")


def open_binary(f: HubFile, buffered: bool = False):
    """The file as a worker reads it: by range (raw for pyarrow, buffered for lines), or with HF_HUB_OFFLINE=1
    from the worker's own HF cache at the same commit."""
    if hub.offline():
        try:
            local = hub.fetch(f.repo_id, f.sha, f.name)
        except FileNotFoundError:
            raise ThymeError(f"{f.uri}: not in this worker's HF cache and HF_HUB_OFFLINE is set (download "
                             f"that commit there, or let the worker reach the Hub)") from None
        return open(local, "rb")
    raw = RangeFile(f)
    return io.BufferedReader(raw, buffer_size=JSONL_BUFFER) if buffered else raw
