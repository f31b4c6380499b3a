"""TensorBoard event files of a run's scalars, written without TensorFlow, tensorboardX or protobuf.

`tensorboard --logdir <home>/runs` is what transformers and DeepSpeed users open by habit, so SFT and RL runs
write their step metrics there too (metrics.jsonl stays the source the viewer reads). The format is small:
a file of records, each `uint64 length | uint32 masked crc32c(length) | Event bytes | uint32 masked crc32c(data)`,
where Event is a protobuf with wall_time (field 1, double), step (2, int64) and either file_version (3) or a
Summary (5) of Values {tag (1), simple_value (2, float)}. We encode those few fields by hand.

One file per run folder, `events.out.tfevents.0.thyme`, opened in append mode: a resumed run adds its records
to the same file (TensorBoard keeps the last value of a repeated step). Only rank 0 writes.
"""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

FILE_NAME = "events.out.tfevents.0.thyme"


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord framing uses it.

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 as protobuf encodes it (two's complement for negatives)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, body: bytes) -> bytes:
    return b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step) + body


def scalar_event(step: int, scalars: dict[str, float], wall_time: float | None = None) -> bytes:
    """An Event holding a Summary with one simple_value per (tag, value)."""
    values = b"".join(_field_bytes(1, _field_bytes(1, tag.encode()) + b"\x15" + struct.pack("<f", value))
                      for tag, value in scalars.items())
    return _event(time.time() if wall_time is None else wall_time, step, _field_bytes(5, values))


def record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", _masked(crc32c(header))) + data + struct.pack("<I", _masked(crc32c(data)))


def append_scalars(run_dir: Path, step: int, metrics: dict, prefix: str) -> Path:
    """Append one step's numeric metrics (finite ints and floats; booleans and text skipped) as `prefix/name`."""
    path = Path(run_dir) / FILE_NAME
    scalars = {f"{prefix}/{k}": float(v) for k, v in metrics.items()
               if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    new = not path.exists()
    with open(path, "ab") as f:
        if new:
            f.write(record(_event(time.time(), 0, _field_bytes(3, b"brain.Event:2"))))
        if scalars:
            f.write(record(scalar_event(int(step), scalars)))
    return path
