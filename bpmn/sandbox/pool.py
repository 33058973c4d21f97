"""Keep a warm pool of sandbox worker processes and run scripts in them.

Why processes: a script task may loop or allocate without bound, and only
the kernel can stop that reliably (RLIMIT_AS, RLIMIT_CPU) or a parent can
(SIGKILL at the wall-clock limit). Why a warm pool: starting an interpreter
costs tens of milliseconds; a request to a warm worker costs one pipe
round-trip plus JSON (about 0.1 ms, see the tests' printed timings). Why not
``multiprocessing``: its connections unpickle what the child sends (a
compromised child could then run code in the web process) and its "spawn"
start re-imports the caller's ``__main__``.

Invariants:
- Workers are started with ``subprocess`` (fork+exec of a fresh interpreter,
  like multiprocessing's "spawn"), never by forking the caller, which may be a
  threaded web server; they get their own session so terminal signals do not
  reach them.
- One request per worker at a time: callers take an idle worker from a list
  under a condition variable, so the pool is safe from any number of threads.
- A worker that timed out, died, reported a memory problem or served
  ``max_calls`` requests is replaced; workers exit on EOF of their stdin, so
  they never outlive the parent, and ``shutdown_pool`` (atexit) reaps them.
- Only JSON crosses the boundary (see ``codec``).
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from . import codec, policy
from .config import setting
from .errors import SandboxError, SandboxLimitExceeded, SandboxViolation, ScriptFailed

STARTUP_SECONDS = 20.0
_PACKAGE = __name__.rpartition(".")[0]  # "bpmn.sandbox"
_BOOT = (
    "import importlib, json, sys, types\n"
    "for name, path in json.loads(sys.argv[1]):\n"
    "    module = types.ModuleType(name); module.__path__ = path; sys.modules[name] = module\n"
    "importlib.import_module(sys.argv[2] + '.worker').main(sys.argv[3:])\n"
)


def _parent_stubs() -> str:
    """Describe the parent packages to stub in the child, so their __init__ never runs there."""
    parts = _PACKAGE.split(".")[:-1]
    names = [".".join(parts[: i + 1]) for i in range(len(parts))]
    return json.dumps([[name, list(sys.modules[name].__path__)] for name in names])


def _child_env() -> dict[str, str]:
    """Return the few variables a worker needs: no secrets from the web process's environment."""
    keep = ("PATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "TZ")
    return {name: os.environ[name] for name in keep if name in os.environ}


class _Worker:
    """One child process and the two pipe ends used to talk to it."""

    def __init__(self, memory_bytes: int) -> None:
        cmd = [sys.executable, "-I", "-S", "-c", _BOOT, _parent_stubs(), _PACKAGE, str(memory_bytes)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                     close_fds=True, start_new_session=True, cwd="/", env=_child_env())
        self.to_child = self.proc.stdin.fileno()  # type: ignore[union-attr]
        self.reader = codec.FrameReader(self.proc.stdout.fileno())  # type: ignore[union-attr]
        self.calls = 0
        self.ready = False

    def wait_ready(self) -> None:
        """Read the child's hello frame once (its start-up overlaps the caller's work)."""
        if not self.ready:
            self.reader.read(time.monotonic() + STARTUP_SECONDS, 4096)
            self.ready = True

    def retire(self) -> None:
        """Close the child's stdin; it exits on EOF (reaped later by the pool)."""
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass

    def kill(self) -> int | None:
        """SIGKILL the child and reap it; return its exit status."""
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        return code

    def forget_after_fork(self) -> None:
        """In a forked child of the web process: drop our copies of the pipes, touch nothing else."""
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass


def _death_error(status: int | None, cpu_seconds: float) -> SandboxError:
    """Explain why a worker died in the middle of a script."""
    if status == -signal.SIGXCPU:
        return SandboxLimitExceeded(f"script exceeded the {cpu_seconds:g} s CPU time limit")
    if status in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGBUS, -signal.SIGABRT):
        return SandboxLimitExceeded("script exceeded the memory limit (the sandbox worker was "
                                    f"killed by signal {-status})")
    return SandboxError(f"the sandbox worker exited unexpectedly (status {status})")


def _raise_for(response: dict) -> None:
    """Turn a worker's error response into the matching sandbox exception."""
    kind = response.get("kind")
    if kind == "violation":
        raise SandboxViolation(list(response.get("problems", [])))
    if kind == "limit":
        raise SandboxLimitExceeded(str(response.get("message", "script exceeded a limit")))
    if kind == "failed":
        raise ScriptFailed(str(response.get("type", "Exception")), str(response.get("message", "")),
                           str(response.get("tb", "")), int(response.get("line", 0) or 0))
    raise SandboxError(str(response.get("message", "the sandbox worker failed")))


class SandboxPool:
    """A fixed number of warm workers shared by all threads of this process."""

    def __init__(self, size: int = 2, max_calls: int = 1000, memory_bytes: int = 512 * 1024 * 1024) -> None:
        self.size = max(1, int(size))
        self.max_calls = max(1, int(max_calls))
        self.memory_bytes = int(memory_bytes)
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._retired: list[_Worker] = []
        self._missing = 0  # slots whose replacement could not be started
        self._started = False
        self._closed = False

    def start(self) -> None:
        """Start all workers now (idempotent); otherwise the first script does it."""
        with self._cond:
            if self._started or self._closed:
                return
            self._started = True
            for _ in range(self.size):
                worker = self._spawn_or_none()  # the condition's lock is re-entrant
                if worker is not None:
                    self._idle.append(worker)
            self._cond.notify_all()

    def _acquire(self) -> _Worker:
        """Take an idle worker, waiting for one; re-create a slot whose spawn failed earlier."""
        with self._cond:
            while not self._idle:
                if self._closed:
                    raise SandboxError("the sandbox pool is shut down")
                if self._missing:
                    self._missing -= 1
                    break
                self._cond.wait()
            else:
                worker = self._idle.pop()
                self._busy.add(worker)
                return worker
        worker = self._spawn_or_none()
        if worker is None:
            raise SandboxError("could not start a sandbox worker process")
        with self._cond:
            self._busy.add(worker)
        return worker

    def _spawn_or_none(self) -> _Worker | None:
        """Start a worker; on failure (fork limits, file descriptors) count the slot as missing."""
        try:
            return _Worker(self.memory_bytes)
        except OSError:
            with self._cond:
                self._missing += 1
                self._cond.notify()
            return None

    def _release(self, worker: _Worker, replace: bool) -> None:
        """Return a worker to the idle list, or retire/replace it."""
        fresh: _Worker | None = worker
        alive = False
        if replace or worker.calls >= self.max_calls:
            alive = worker.proc.poll() is None
            if alive:
                worker.retire()
            fresh = None if self._closed else self._spawn_or_none()
        with self._cond:
            self._busy.discard(worker)
            self._retired = [w for w in self._retired if w.proc.poll() is None]
            if alive:
                self._retired.append(worker)
            if fresh is not None:
                if self._closed:
                    fresh.kill()
                else:
                    self._idle.append(fresh)
            self._cond.notify()

    def run(self, request: dict[str, Any], wall_seconds: float, cpu_seconds: float) -> dict:
        """Send one script request to an idle worker and return its variables.

        Raises SandboxLimitExceeded when the worker passes the wall-clock limit
        (it is killed and replaced) or dies, and the worker's own error otherwise.
        """
        if not self._started:
            self.start()
        payload = codec.dumps(request)
        for attempt in (1, 2):
            worker = self._acquire()
            replace = True
            try:
                try:
                    worker.wait_ready()
                    codec.write_frame(worker.to_child, payload)
                except (OSError, EOFError, codec.FrameTimeout, codec.FrameTooLarge):
                    worker.kill()  # died before running anything: try a fresh worker once
                    if attempt == 2:
                        raise SandboxError("the sandbox worker could not be started") from None
                    continue
                response = self._receive(worker, wall_seconds, cpu_seconds)
                worker.calls += 1
                replace = bool(response.get("recycle"))
            finally:
                self._release(worker, replace)
            if not response.get("ok"):
                _raise_for(response)
            return response["vars"]
        raise AssertionError("unreachable")

    def _receive(self, worker: _Worker, wall_seconds: float, cpu_seconds: float) -> dict:
        """Wait for the response until the wall-clock deadline; kill the worker on any failure."""
        deadline = time.monotonic() + wall_seconds
        try:
            frame = worker.reader.read(deadline, policy.MAX_RESULT_BYTES + 4096)
        except codec.FrameTimeout:
            worker.kill()
            raise SandboxLimitExceeded(f"script exceeded the {wall_seconds:g} s time limit") from None
        except codec.FrameTooLarge:
            worker.kill()
            raise SandboxLimitExceeded("the script's variables are too large to return") from None
        except (EOFError, OSError):
            raise _death_error(worker.kill(), cpu_seconds) from None
        try:
            response = codec.loads(frame)
            if not isinstance(response, dict):
                raise TypeError("not an object")
        except Exception:  # noqa: BLE001 - never trust a worker's bytes
            worker.kill()
            raise SandboxError("the sandbox worker sent an invalid response") from None
        return response

    def close(self, timeout: float = 2.0) -> None:
        """Stop every worker: EOF to idle ones, SIGKILL to busy or slow ones."""
        with self._cond:
            self._closed = True
            idle, busy, retired = self._idle, list(self._busy), self._retired
            self._idle, self._retired = [], []
            self._cond.notify_all()
        for worker in idle:
            worker.retire()
        deadline = time.monotonic() + timeout
        for worker in idle + retired:
            try:
                worker.proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                pass
            worker.kill()
        for worker in busy:
            worker.kill()

    def worker_pids(self) -> list[int]:
        """Return the pids of the live workers (for tests and monitoring)."""
        with self._cond:
            return [w.proc.pid for w in (*self._idle, *self._busy) if w.proc.poll() is None]

    def _forget_after_fork(self) -> None:
        """Drop this pool's pipe ends in a forked child."""
        for worker in (*self._idle, *self._busy, *self._retired):
            worker.forget_after_fork()


_pool: SandboxPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> SandboxPool:
    """Return this process's pool, creating it from settings on first use."""
    global _pool
    pool = _pool
    if pool is not None and pool.pid == os.getpid():
        return pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = SandboxPool(size=int(setting("BATON_SCRIPT_POOL_SIZE")),
                                max_calls=int(setting("BATON_SCRIPT_WORKER_MAX_CALLS")),
                                memory_bytes=int(setting("BATON_SCRIPT_MEMORY_BYTES")))
        return _pool


def configure_pool(size: int | None = None, max_calls: int | None = None,
                   memory_bytes: int | None = None) -> SandboxPool:
    """Replace the pool with one of the given shape (settings fill the rest); stop the old one."""
    global _pool
    new = SandboxPool(
        size=int(setting("BATON_SCRIPT_POOL_SIZE") if size is None else size),
        max_calls=int(setting("BATON_SCRIPT_WORKER_MAX_CALLS") if max_calls is None else max_calls),
        memory_bytes=int(setting("BATON_SCRIPT_MEMORY_BYTES") if memory_bytes is None else memory_bytes))
    with _pool_lock:
        old, _pool = _pool, new
    if old is not None and old.pid == os.getpid():
        old.close()
    return new


def shutdown_pool() -> None:
    """Stop this process's workers (registered with atexit; safe to call twice)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()


def _after_fork_in_child() -> None:
    """A forked web worker must not use or kill its parent's sandbox workers."""
    global _pool, _pool_lock
    _pool_lock = threading.Lock()
    if _pool is not None:
        _pool._forget_after_fork()
    _pool = None


atexit.register(shutdown_pool)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
