"""Connectors for the chaos tests (listed in ``BATON_CONNECTOR_MODULES`` by the test worker).

They record what happened in files under ``$BATON_CHAOS_DIR``, so the test
process and the Celery worker processes (which the tests kill) share one
record without any table:

* ``calls.log`` - one line per call, ``<connector> <idempotency key>``
  (appended with ``O_APPEND``: one short write, whole lines even across processes);
* ``effects.log`` - one line per *side effect*: the first call for a key
  creates ``effect-<key>`` with ``O_EXCL`` and only that call appends; a re-run
  after a crash finds the marker and does nothing again, as an idempotent
  downstream service keyed by the idempotency key would.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from processes.connectors import connector


def chaos_dir() -> Path:
    path = os.environ.get("BATON_CHAOS_DIR")
    if not path:
        raise RuntimeError("BATON_CHAOS_DIR is not set: the chaos connectors need a directory to record into")
    return Path(path)


def _append(name: str, line: str) -> None:
    fd = os.open(chaos_dir() / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _marker(key: str) -> Path:
    return chaos_dir() / ("effect-" + re.sub(r"[^A-Za-z0-9_.-]", "_", key))


def _record_call(name: str, key: str) -> None:
    _append("calls.log", f"{name} {key}")


def _effect_once(key: str) -> bool:
    """Perform the side effect for ``key`` unless it already happened; return True the first time."""
    try:
        fd = os.open(_marker(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    _append("effects.log", key)
    return True


@connector("chaos.side_effect")
def side_effect(params: dict[str, Any], *, idempotency_key: str) -> Any:
    """Record one side effect per idempotency key (tests count them)."""
    _record_call("chaos.side_effect", idempotency_key)
    first = _effect_once(idempotency_key)
    return {"key": idempotency_key, "first": first}


@connector("chaos.slow")
def slow(params: dict[str, Any], *, idempotency_key: str) -> Any:
    """Do the side effect once per key, then sleep ``seconds`` so a test can kill the worker meanwhile."""
    _record_call("chaos.slow", idempotency_key)
    first = _effect_once(idempotency_key)
    time.sleep(float(params.get("seconds") or 1))
    return {"key": idempotency_key, "first": first}


@connector("chaos.fail")
def fail(params: dict[str, Any], *, idempotency_key: str) -> Any:
    """Raise ``ValueError(message)`` on every call."""
    _record_call("chaos.fail", idempotency_key)
    raise ValueError(str(params.get("message") or "chaos.fail"))
