"""The host's end of a session's socket: one request out, one reply back, all before one deadline.

The interpreter answers with a 4-byte length and a JSON object. The code it runs shares that interpreter,
so the reply may be forged: a length prefix followed by one byte a second, a huge length, JSON nested
thousands deep, the wrong shape. Every receive waits only for what is left of the run's deadline (so a
slow drip is a timeout, not a hang), the length is bounded, and parsing failures of any kind are a broken
reply, never an exception in the host.
"""

from __future__ import annotations

import json
import socket
import struct
import time


class Broken(Exception):
    """The interpreter closed its socket, or sent something that is not a reply."""


class Late(Exception):
    """The deadline passed before the whole reply arrived."""


def send(sock: socket.socket, obj: dict, deadline: float) -> None:
    """Send one request; OSError when the interpreter is gone (dead before the run)."""
    data = json.dumps(obj).encode()
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    sock.sendall(struct.pack(">I", len(data)) + data)


def receive(sock: socket.socket, deadline: float, max_bytes: int) -> object:
    """One reply, parsed; Late after the deadline, Broken for anything else that is not a reply."""
    size = struct.unpack(">I", _exact(sock, 4, deadline))[0]
    if size > max_bytes:
        raise Broken(f"reply of {size} bytes is over the {max_bytes} limit")
    data = _exact(sock, size, deadline)
    try:
        return json.loads(data)
    except (ValueError, RecursionError, MemoryError) as exc:
        raise Broken(f"unparsable reply ({type(exc).__name__})") from None


def _exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Late()
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except TimeoutError:
            raise Late() from None
        except OSError as exc:
            raise Broken(str(exc)) from None
        if not chunk:
            raise Broken("the interpreter closed its socket")
        buf += chunk
    return bytes(buf)
