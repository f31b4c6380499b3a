"""A remote object as a read-only seekable file whose every read is one ranged request.

Shared by the sources a worker reads in place (s3_source.RangeFile: a ranged GET conditional on the planned
ETag; hub_range.RangeFile: a ranged GET of a Hub file's resolve URL at one commit): pyarrow asks for whole
column chunks, so a shard costs its footer and its own row groups. A subclass fetches; this class keeps the
position, counts what was fetched (`requests`, `bytes_read`) and refuses an answer of another length.
"""

from __future__ import annotations

import io

from thyme_core.base.errors import ThymeError


class RangedReader(io.RawIOBase):
    def __init__(self, size: int):
        super().__init__()
        self._size, self.pos, self.requests, self.bytes_read = size, 0, 0, 0

    def _fetch(self, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of the object, in one request."""
        raise NotImplementedError

    def _short(self, start: int, stop: int, got: int) -> str:
        """The error when bytes [start, stop) came back as `got` bytes."""
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def size(self) -> int:
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self.pos = base + offset
        return self.pos

    def read(self, size: int = -1) -> bytes:
        stop = self._size if size is None or size < 0 else min(self._size, self.pos + size)
        if stop <= self.pos:
            return b""
        data = self._get(self.pos, stop)
        self.pos = stop
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _get(self, start: int, stop: int) -> bytes:
        body = self._fetch(start, stop)
        self.requests += 1
        self.bytes_read += len(body)
        if len(body) != stop - start:
            raise ThymeError(self._short(start, stop, len(body)))
        return body
