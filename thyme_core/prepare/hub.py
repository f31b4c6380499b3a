"""The Hugging Face Hub as a prepare source: `hf://datasets/OWNER/NAME[@REVISION][/PATH_IN_REPO]`.

Where the released Thyme data lives. Read through `huggingface_hub`, one file at a time:

1. `resolve`: the revision (a branch, tag or commit; default `main`) becomes the commit sha it points at now,
   with the repo's list of Parquet/JSONL files under PATH_IN_REPO. One sha per run: a branch that moves
   while a run works never mixes two versions, and the sha is part of every shard key (`salt`), so a later
   commit's shards are new shards beside the old ones, never a silent overwrite;
2. `fetch`: each data file is downloaded when its shards are planned (`hf_hub_download` at that sha into the
   standard HF cache), so shard work starts after the first file, not after the whole repo;
3. images that a data file names by a relative path are fetched from the same repo and commit on demand
   (`relative_fetcher`, used by images/values.py).

Environment, read at call time: HF_TOKEN (private or gated repos), HF_ENDPOINT (a mirror or a private hub),
HF_HUB_CACHE / HF_HOME (the cache), HF_HUB_OFFLINE=1: the sha comes from the cache's refs/<revision> (or a
snapshot named by the sha itself), the file list from that snapshot, and the files through the same
`hf_hub_download` call with local_files_only, i.e. what `huggingface-cli download` left.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from thyme_core.base.errors import ThymeError

PREFIX = "hf://datasets/"
DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
_URI = re.compile(r"^hf://datasets/(?P<owner>[\w.\-]+)/(?P<name>[\w.\-]+)(?:@(?P<rev>[^/]+))?(?:/(?P<path>.*))?$")
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    revision: str = "main"
    path: str = ""  # a folder or a file inside the repo ("" = the whole repo)


@dataclass(frozen=True)
class HubSnapshot:
    repo_id: str
    revision: str  # as asked
    sha: str  # the commit it resolved to
    files: tuple[str, ...]  # data files (repo paths) under the asked path, sorted

    def base(self, filename: str) -> str:
        """hf://datasets/OWNER/NAME@SHA/FOLDER of a file: where its relative image paths are resolved."""
        folder = posixpath.dirname(filename)
        return f"{PREFIX}{self.repo_id}@{self.sha}" + (f"/{folder}" if folder else "")


def is_hub(source) -> bool:
    return str(source).startswith("hf://")


def parse(uri: str) -> HubRef:
    """The parts of an hf:// URI; a ThymeError saying the accepted form otherwise.

    >>> parse("hf://datasets/Kwai-Keye/Thyme-RL@v1.0/data/train")
    HubRef(repo_id='Kwai-Keye/Thyme-RL', revision='v1.0', path='data/train')
    >>> parse("hf://datasets/org/name")
    HubRef(repo_id='org/name', revision='main', path='')
    """
    m = _URI.match(uri)
    if not m:
        raise ThymeError(f"{uri}: not a Hub dataset URI (expected hf://datasets/OWNER/NAME[@REVISION][/PATH])")
    return HubRef(f"{m['owner']}/{m['name']}", m["rev"] or "main", (m["path"] or "").strip("/"))


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def endpoint() -> str:
    """HF_ENDPOINT ("" = huggingface.co): a cluster run plans with it and hands it to every worker."""
    return (os.environ.get("HF_ENDPOINT") or "").rstrip("/")


def token() -> str | None:
    """HF_TOKEN of this process (never sent to another: a worker uses its own)."""
    return os.environ.get("HF_TOKEN") or None


def _cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None  # huggingface_hub's default (~/.cache/huggingface/hub)


def _hub_kwargs(where: str | None = None) -> dict:
    return {"endpoint": where or endpoint() or None, "token": token()}


def _repo_cache(repo_id: str) -> Path:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(_cache_dir() or constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="dataset")


def resolve(uri: str) -> HubSnapshot:
    """The commit a revision points at and the data files under the path (online: the Hub API; offline: the
    local cache). A ThymeError naming the repo when it, the revision or any data file cannot be found."""
    ref = parse(uri)
    sha, names = _resolve_offline(ref) if offline() else _resolve_online(ref)
    prefix = ref.path.rstrip("/")
    files = sorted(n for n in names if n.lower().endswith(DATA_SUFFIXES)
                   and (not prefix or n == prefix or n.startswith(prefix + "/")))
    if not files:
        raise ThymeError(f"{uri}: no .parquet or .jsonl files at commit {sha}"
                         f"{f' under {prefix!r}' if prefix else ''}")
    return HubSnapshot(ref.repo_id, ref.revision, sha, tuple(files))


def _resolve_online(ref: HubRef) -> tuple[str, list[str]]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    kw = _hub_kwargs()
    try:
        info = HfApi(endpoint=kw["endpoint"], token=kw["token"]).dataset_info(ref.repo_id, revision=ref.revision)
    except RevisionNotFoundError:
        raise ThymeError(f"{ref.repo_id}: no revision {ref.revision!r} on the Hub") from None
    except RepositoryNotFoundError:
        raise ThymeError(f"{ref.repo_id}: no such dataset repo on the Hub (or it is private: set HF_TOKEN)") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ThymeError(f"{ref.repo_id}: the Hub cannot be reached ({exc}); with a local copy, set "
                         f"HF_HUB_OFFLINE=1") from None
    if ref.revision != info.sha:  # as hf_hub_download does for a branch: an offline run finds the same commit
        refs = _repo_cache(ref.repo_id) / "refs" / ref.revision
        refs.parent.mkdir(parents=True, exist_ok=True)
        refs.write_text(info.sha)
    return info.sha, [s.rfilename for s in info.siblings or []]


def _resolve_offline(ref: HubRef) -> tuple[str, list[str]]:
    repo = _repo_cache(ref.repo_id)
    ref_file = repo / "refs" / ref.revision
    if ref_file.is_file():
        sha = ref_file.read_text().strip()
    elif _SHA.match(ref.revision):
        sha = ref.revision
    else:
        raise ThymeError(f"{ref.repo_id}@{ref.revision}: not in the local HF cache ({repo}) and HF_HUB_OFFLINE is "
                         f"set (download it first, e.g. `huggingface-cli download --repo-type dataset "
                         f"{ref.repo_id}`)")
    snapshot = repo / "snapshots" / sha
    if not snapshot.is_dir():
        raise ThymeError(f"{ref.repo_id}: commit {sha} has no snapshot in the local HF cache ({repo})")
    names = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
    return sha, names


def fetch(repo_id: str, sha: str, filename: str, where: str | None = None) -> Path:
    """A local path of one repo file at a commit: downloaded into the HF cache (online, from `where`, default
    HF_ENDPOINT), or found there (HF_HUB_OFFLINE=1); both through hf_hub_download."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, repo_type="dataset", revision=sha, cache_dir=_cache_dir(),
                                    local_files_only=offline(), **_hub_kwargs(where)))
    except (EntryNotFoundError, LocalEntryNotFoundError) as exc:
        raise FileNotFoundError(f"{repo_id}@{sha}: {filename}: {exc}") from None
    except HfHubHTTPError as exc:
        raise ThymeError(f"{repo_id}@{sha}: cannot download {filename} ({exc})") from None


def relative_fetcher(base: str, where: str | None = None):
    """For images named relative to a hub data file: rel path -> local file, or None when the repo has none.
    `where`: the Hub's URL (a cluster worker gets the planning process's; default HF_ENDPOINT)."""
    m = re.match(r"^hf://datasets/([^/@]+/[^/@]+)@([0-9a-f]{40})(?:/(.*))?$", base)
    if not m:
        raise ThymeError(f"bad hub base {base!r}")
    repo_id, sha, folder = m.group(1), m.group(2), m.group(3) or ""

    def get(rel: str) -> Path | None:
        name = posixpath.normpath(posixpath.join(folder, rel.replace("\\", "/")))
        if name.startswith(".."):
            return None  # outside the repo
        try:
            return fetch(repo_id, sha, name, where)
        except (FileNotFoundError, ThymeError):
            return None

    return get
