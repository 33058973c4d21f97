"""Serve script runs inside a sandbox worker process (the child side of the pool).

Started by ``pool`` as ``python -I -S -c <boot>``: no site-packages, no
Django, no SpiffWorkflow, and the parent packages of ``bpmn.sandbox`` stubbed
so their ``__init__`` modules never run. The child applies its rlimits once
(address space, core size, open files, processes), moves the protocol pipes
off fds 0/1, says "ready", then serves one request at a time until its stdin
closes (parent exit or recycling). The CPU rlimit is moved forward before each
run because it counts the process's whole lifetime.

Each response is one JSON frame: ``{"ok": true, "vars": {...}}`` or
``{"ok": false, "kind": "violation"|"limit"|"failed"|"error", ...}``;
``"recycle": true`` asks the parent to replace this process (after a memory
error or an internal failure its state is not trusted any more).
"""
from __future__ import annotations

import os
import resource
import sys

from . import codec, policy, runtime
from .errors import SandboxLimitExceeded, SandboxViolation, ScriptFailed


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    """Set one rlimit, ignoring platforms or hard limits that refuse it."""
    try:
        resource.setrlimit(which, (soft, soft if hard is None else hard))
    except (ValueError, OSError):
        pass  # the platform or the current hard limit does not allow it; others still apply


def apply_limits(memory_bytes: int) -> None:
    """Cap this process's memory, core dumps, files and children for its whole life."""
    if memory_bytes > 0:
        _limit(resource.RLIMIT_AS, memory_bytes)
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_NOFILE, 64)
    if hasattr(resource, "RLIMIT_NPROC"):
        _limit(resource.RLIMIT_NPROC, 0)


def set_cpu_limit(cpu_seconds: float) -> None:
    """Let the next run use about ``cpu_seconds`` more CPU before SIGXCPU ends the process.

    The in-script budget stops the run cleanly at ``cpu_seconds``; the rlimit
    one second later is the backstop for time spent inside one C call.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + cpu_seconds) + 2
    _limit(resource.RLIMIT_CPU, soft, resource.RLIM_INFINITY)


def handle(payload: bytes) -> bytes:
    """Run one request and return the encoded response frame payload."""
    try:
        request = codec.loads(payload)
        cpu = float(request["cpu"])
        set_cpu_limit(cpu)
        variables = runtime.run_script(request["src"], request["ctx"], request["extra"], cpu)
        body = codec.dumps({"ok": True, "vars": codec.encode_vars(variables)})
        if len(body) > policy.MAX_RESULT_BYTES:
            return codec.dumps({"ok": False, "kind": "limit", "recycle": True,
                                "message": f"the script's variables exceed {policy.MAX_RESULT_BYTES} bytes"})
        return body
    except SandboxViolation as exc:
        return codec.dumps({"ok": False, "kind": "violation", "problems": exc.problems})
    except SandboxLimitExceeded as exc:
        return codec.dumps({"ok": False, "kind": "limit", "message": exc.message,
                            "recycle": "memory" in exc.message})
    except ScriptFailed as exc:
        return codec.dumps({"ok": False, "kind": "failed", "type": exc.error_type,
                            "message": exc.message, "tb": exc.traceback_text, "line": exc.line})
    except codec.Unencodable as exc:
        return codec.dumps({"ok": False, "kind": "failed", "type": "TypeError", "message": str(exc),
                            "tb": f"TypeError: {exc}", "line": 0})
    except MemoryError:
        return codec.dumps({"ok": False, "kind": "limit", "recycle": True,
                            "message": "script exceeded the memory limit"})
    except BaseException as exc:  # noqa: BLE001 - report, then let the parent replace us
        return codec.dumps({"ok": False, "kind": "error", "recycle": True,
                            "message": f"sandbox worker error: {type(exc).__name__}: {exc}"})


def main(argv: list[str]) -> None:
    """Serve requests on the pipes the pool gave us until the parent closes them."""
    memory_bytes = int(argv[0]) if argv else 0
    in_fd, out_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    import _strptime  # noqa: F401 - imported lazily by strptime(); load it before the limits
    apply_limits(memory_bytes)
    codec.write_frame(out_fd, codec.dumps({"ready": True, "pid": os.getpid()}))
    reader = codec.FrameReader(in_fd)
    while True:
        try:
            payload = reader.read()
        except EOFError:
            return
        try:
            response = handle(payload)
        except MemoryError:
            response = codec.dumps({"ok": False, "kind": "limit", "recycle": True,
                                    "message": "script exceeded the memory limit"})
        codec.write_frame(out_fd, response)


if __name__ == "__main__":
    main(sys.argv[1:])
