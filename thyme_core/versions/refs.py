"""Named refs: NAME/TAG -> manifest, with the ref's whole history inside the ref itself.

A ref document holds the manifest it points at and the list of every version it has pointed at (oldest
first, each with time, publisher and totals). Keeping the history inside the ref means one conditional write
moves the ref and records the history together: there is no separate log that a crash could leave out of step.

Version specs: NAME (tag `latest`), NAME@TAG, NAME@HASH (a manifest sha256, or a prefix of at least 8 hex digits
of one that NAME's history holds). A tag wins over a hash prefix of the same spelling.
"""

from __future__ import annotations

import getpass
import json
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone

from thyme_core.base.errors import ThymeError
from thyme_core.base.names import NAME, check_name
from thyme_core.versions.keys import Store, manifest_key, ref_key

REF_FORMAT = "thyme-ref/1"
DEFAULT_TAG = "latest"
_HEX = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass
class Ref:
    name: str
    tag: str
    history: list[dict] = field(default_factory=list)  # oldest first; each has "manifest", "pushed_at", ...

    @property
    def manifest(self) -> str | None:
        return self.history[-1]["manifest"] if self.history else None

    def to_bytes(self) -> bytes:
        doc = {"format": REF_FORMAT, "name": self.name, "tag": self.tag, "manifest": self.manifest,
               "history": self.history}
        return json.dumps(doc, sort_keys=True, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Ref":
        doc = json.loads(data)
        if doc.get("format") != REF_FORMAT:
            raise ThymeError(f"ref format {doc.get('format')!r} is not {REF_FORMAT!r}")
        return cls(doc["name"], doc["tag"], doc["history"])


def history_entry(manifest_sha: str, summary: dict) -> dict:
    return {"manifest": manifest_sha, "pushed_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "by": f"{getpass.getuser()}@{socket.gethostname()}", **summary}


def read(store: Store, name: str, tag: str) -> tuple[Ref | None, str | None]:
    """The ref and its etag (None, None when it does not exist yet)."""
    got = store.read_ref(ref_key(check_name("name", name), check_name("tag", tag)))
    if got is None:
        return None, None
    return Ref.from_bytes(got[0]), got[1]


def tags(store: Store, name: str) -> list[str]:
    prefix = f"refs/{check_name('name', name)}/"
    return [k[len(prefix):-len(".json")] for k in store.list_keys(prefix) if k.endswith(".json")]


def versions(store: Store, name: str) -> list[dict]:
    """Every version NAME's tags have pointed at, newest first, each entry with its "tag" and "current"."""
    out = []
    for tag in tags(store, name):
        ref, _ = read(store, name, tag)
        for i, entry in enumerate(ref.history):
            out.append(({**entry, "tag": tag, "current": i == len(ref.history) - 1}, i))
    return [e for e, _ in sorted(out, key=lambda e: (e[0]["pushed_at"], e[1]), reverse=True)]


def parse_spec(spec: str) -> tuple[str, str | None]:
    name, _, rest = spec.partition("@")
    check_name("name", name)
    return name, (rest or None)


def resolve(store: Store, spec: str) -> tuple[str, str]:
    """NAME[@TAG|@HASH] -> (name, manifest sha256)."""
    name, which = parse_spec(spec)
    ref, _ = read(store, name, which or DEFAULT_TAG) if which is None or NAME.fullmatch(which) else (None, None)
    if ref is not None:
        return name, ref.manifest
    if which is None or not _HEX.match(which):
        known = ", ".join(tags(store, name)) or "none"
        raise ThymeError(f"{store.uri}: no version {spec!r} (tags of {name}: {known})")
    if len(which) == 64 and store.exists(manifest_key(which)):
        return name, which
    matches = {e["manifest"] for e in versions(store, name) if e["manifest"].startswith(which)}
    if len(matches) != 1:
        problem = "is ambiguous" if matches else "matches no version"
        raise ThymeError(f"{store.uri}: {which!r} {problem} of {name}")
    return name, matches.pop()
