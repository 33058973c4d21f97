"""Move task data between the web process and a worker as framed, tagged JSON.

JSON, never pickle: the worker runs untrusted code, so nothing it sends back
may be able to run code in the parent when decoded. Values beyond JSON are
tagged objects ``{"$": tag, "v": ...}``: tuple, set, frozenset, datetime,
date, time, timedelta, Decimal, and dicts whose keys are not all strings (or
that contain a "$" key). Anything else is refused with the variable's name.

Frames are a 4-byte big-endian length followed by UTF-8 JSON; readers enforce
a size cap and a deadline, so a stuck or chatty worker cannot hang or flood
the parent.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import select
import struct
import time
from decimal import Decimal
from typing import Any

_HEADER = struct.Struct(">I")


class Unencodable(TypeError):
    """Raise for a value that cannot cross the process boundary."""


class FrameTimeout(Exception):
    """Raise when a frame did not arrive before the deadline."""


class FrameTooLarge(Exception):
    """Raise when a peer announces a frame above the cap."""


def _encode(value: Any) -> Any:
    """Return a JSON-ready form of ``value`` (tagged beyond JSON); raise Unencodable."""
    kind = type(value)
    if value is None or kind is bool or kind is float or kind is str:
        return value
    if kind is int:
        if value.bit_length() > 14_000:  # json cannot write ints beyond 4300 digits
            raise Unencodable("int with more than 4000 digits")
        return value
    if kind is list:
        return [_encode(item) for item in value]
    if kind is dict:
        if "$" not in value and all(type(key) is str for key in value):
            return {key: _encode(item) for key, item in value.items()}
        return {"$": "dict", "v": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if kind is tuple:
        return {"$": "tuple", "v": [_encode(item) for item in value]}
    if kind is set or kind is frozenset:
        return {"$": kind.__name__, "v": [_encode(item) for item in value]}
    if kind is _dt.datetime or kind is _dt.date or kind is _dt.time:
        return {"$": kind.__name__, "v": value.isoformat()}
    if kind is _dt.timedelta:
        return {"$": "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if kind is Decimal:
        return {"$": "Decimal", "v": str(value)}
    for base in (bool, int, float, str, list, dict, tuple):  # subclasses (e.g. lxml strings)
        if isinstance(value, base):
            return _encode(base(value))
    for base in (_dt.datetime, _dt.date):
        if isinstance(value, base):
            return {"$": base.__name__, "v": value.isoformat()}
    raise Unencodable(kind.__name__)


_DECODERS: dict[str, Any] = {
    "dict": lambda v: {_hashable(k): item for k, item in v},
    "tuple": tuple,
    "set": lambda v: {_hashable(item) for item in v},
    "frozenset": lambda v: frozenset(_hashable(item) for item in v),
    "datetime": _dt.datetime.fromisoformat,
    "date": _dt.date.fromisoformat,
    "time": _dt.time.fromisoformat,
    "timedelta": lambda v: _dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "Decimal": Decimal,
}


def _hashable(value: Any) -> Any:
    """Turn a decoded list back into a tuple when it must be a key or set member."""
    return tuple(value) if isinstance(value, list) else value


def _decode_object(obj: dict) -> Any:
    """Restore a tagged value (``object_hook`` for json.loads)."""
    tag = obj.get("$")
    if tag is None:
        return obj
    return _DECODERS[tag](obj["v"])


def encode_vars(variables: dict) -> dict:
    """Encode a dict of variables; raise Unencodable naming the first bad variable."""
    out = {}
    for name, value in variables.items():
        try:
            out[name] = _encode(value)
        except Unencodable as exc:
            raise Unencodable(f"variable '{name}' holds a value of type '{exc}', "
                              "which cannot be stored in task data") from None
        except RecursionError:
            raise Unencodable(f"variable '{name}' is nested too deeply to be stored") from None
    return out


def dumps(message: dict) -> bytes:
    """Serialise one message (already encoded with ``encode_vars`` where needed)."""
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")  # json.loads(bytes) reads them back


def loads(payload: bytes) -> dict:
    """Parse one message, restoring tagged values."""
    return json.loads(payload, object_hook=_decode_object)


def write_frame(fd: int, payload: bytes) -> None:
    """Write one frame to a blocking pipe."""
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        written = os.write(fd, data)
        data = data[written:]


class FrameReader:
    """Read frames from one pipe, buffering so a small frame costs one poll and one read."""

    def __init__(self, fd: int) -> None:
        """Watch ``fd`` for input."""
        self.fd = fd
        self.buffer = bytearray()
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    def _fill(self, deadline: float | None) -> None:
        """Append what the pipe holds now, waiting until ``deadline`` at most."""
        if deadline is not None:
            timeout_ms = (deadline - time.monotonic()) * 1000
            if timeout_ms <= 0 or not self.poller.poll(max(int(timeout_ms), 1)):
                raise FrameTimeout()
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            raise EOFError("peer closed the pipe")
        self.buffer += chunk

    def read(self, deadline: float | None = None, max_bytes: int | None = None) -> bytes:
        """Return the next frame's payload; raise FrameTimeout, FrameTooLarge or EOFError."""
        while len(self.buffer) < _HEADER.size:
            self._fill(deadline)
        (size,) = _HEADER.unpack_from(self.buffer)
        if max_bytes is not None and size > max_bytes:
            raise FrameTooLarge(size)
        end = _HEADER.size + size
        while len(self.buffer) < end:
            self._fill(deadline)
        payload = bytes(self.buffer[_HEADER.size:end])
        del self.buffer[:end]
        return payload
