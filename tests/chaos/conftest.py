"""Chaos tests: a real Celery worker subprocess on the real Redis, killed on purpose.

One worker per test session (``--pool=prefork --concurrency=1``, so R1 has a
pool child to kill), started lazily by the first test that asks for it. It
runs ``celery -A tests.chaos.worker_app worker`` - Baton's own Celery app, with
every Redis key prefixed per session (see ``worker_app``) - and connects to the
very test database this process uses (``test_<name>``, with pytest-django's
xdist/tox suffixes; a file under ``BATON_VAR_DIR`` on SQLite), with short
leases and sweep intervals. The test process publishes to the same broker
(the ``chaos`` fixture points ``config.celery.app`` at it and turns the
embedded worker off) and plays beat itself: ``wait_for(..., sweep_every=...)``
calls ``processes.sweeper.sweep()`` between polls.

Every process started here is stopped by its process group id at teardown;
every wait is bounded.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

LEASE_SECONDS = 5.0
SWEEP_SECONDS = 1.0
SLOW_SECONDS = 2.0
DEAD_BROKER_URL = "redis://127.0.0.1:1/0"


def test_broker_url() -> str:
    """The Redis database the chaos tests use: ``CELERY_TEST_BROKER_URL``'s, or 15."""
    url = os.environ.get("CELERY_TEST_BROKER_URL") or "redis://127.0.0.1:6379/15"
    return url


test_broker_url.__test__ = False  # not a test, whatever its name


def database_url(settings_dict: dict[str, Any]) -> str:
    """The DATABASE_URL that reaches the database Django's ``settings_dict`` points at (the test DB)."""
    engine, name = settings_dict["ENGINE"], str(settings_dict["NAME"])
    if engine.endswith("sqlite3"):
        if name.startswith(":memory:") or "mode=memory" in name:
            pytest.skip("the chaos worker needs a file database, not an in-memory one")
        return "sqlite:///" + str(Path(name).resolve())
    if not engine.endswith("postgresql"):
        pytest.skip(f"no DATABASE_URL scheme for {engine}")
    user, password = settings_dict.get("USER") or "", settings_dict.get("PASSWORD") or ""
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    host, port = settings_dict.get("HOST") or "", str(settings_dict.get("PORT") or "")
    return f"postgres://{auth}@{host}{':' + port if port else ''}/{quote(name, safe='')}"


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (read from /proc; no psutil)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


@dataclass
class ChaosWorker:
    """One ``celery worker`` subprocess in its own process group."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    starts: int = 0

    def start(self, timeout: float = 60) -> None:
        assert self.proc is None or self.proc.poll() is not None, "a worker is already running"
        mark = self.log_offset()
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tests.chaos.worker_app", "worker",
                 "--pool=prefork", "--concurrency=1", "--loglevel=INFO",
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-n", f"chaos-{os.getpid()}-{self.starts}@%h"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            if " ready." in self.log_since(mark) and self.children():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"celery worker not ready within {timeout:g} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def children(self) -> list[int]:
        return _children(self.pid) if self.proc is not None and self.proc.poll() is None else []

    def kill_child(self) -> int:
        """SIGKILL the prefork pool's child process (the one running tasks); return its pid."""
        children = self.children()
        assert len(children) == 1, f"expected one pool child of worker {self.pid}, found {children}"
        os.kill(children[0], signal.SIGKILL)
        return children[0]

    def kill(self, timeout: float = 10) -> None:
        """SIGKILL the whole worker (main process and pool child) by its process group."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10) -> None:
        """Warm shutdown (SIGTERM to the group), then SIGKILL whatever is left; bounded."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:  # the group may outlive its leader (a pool child): always finish it off
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass

    def log_offset(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log_since(0)
        return text[-chars:]


@pytest.fixture(scope="session")
def chaos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chaos")


@pytest.fixture(scope="session")
def broker_prefix() -> str:
    return f"baton-chaos-{uuid.uuid4().hex[:12]}:"


def _delete_prefixed_keys(url: str, prefix: str) -> None:
    """Remove this session's queues and unacked messages from the shared Redis database."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        keys = list(client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
    except redis.RedisError:
        pass


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: None, django_db_blocker: Any, chaos_dir: Path,
                  broker_prefix: str) -> Iterator[ChaosWorker]:
    """The session's Celery worker, on the test database and the test broker."""
    import redis
    from django.db import connections

    try:
        redis.Redis.from_url(test_broker_url(), socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        message = f"the chaos tests need Redis at {test_broker_url()} ({exc}); start it (see .ci/run)"
        if os.environ.get("BATON_REQUIRE_SERVICES") == "1":  # CI: a missing service is a failure
            pytest.fail(message)
        pytest.skip(message)  # a bare machine: `make test` still runs everything else
    with django_db_blocker.unblock():
        db_url = database_url(connections["default"].settings_dict)
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_OWNER_URL", "PYTEST_XDIST_WORKER")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": test_broker_url(),
        "BATON_TEST_BROKER_PREFIX": broker_prefix,
        "BATON_CONNECTOR_MODULES": "tests.chaos_connectors",
        "BATON_CHAOS_DIR": str(chaos_dir),
        "BATON_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        "BATON_SWEEP_SECONDS": str(SWEEP_SECONDS),
        "BATON_JOB_TIMEOUT_SECONDS": str(LEASE_SECONDS - 1),  # a connector never outlives its lease
        "BATON_JOB_BACKOFF_SECONDS": "0.2",
        "BATON_JOB_BACKOFF_MAX_SECONDS": "1",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    })
    worker = ChaosWorker(env=env, log_path=chaos_dir / "worker.log")
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        _delete_prefixed_keys(test_broker_url(), broker_prefix)


def point_celery_at(url: str | None, prefix: str | None) -> None:
    """Make this process publish to ``url`` (keys prefixed with ``prefix``); drop pooled connections."""
    from kombu import pools as kombu_pools

    from config.celery import app

    options = dict(app.conf.broker_transport_options or {})
    options.pop("global_keyprefix", None)
    if prefix:
        options["global_keyprefix"] = prefix
    app.conf.broker_transport_options = options
    app.conf.broker_url = url or None
    # Connection pools are shared per broker URL (kombu's global groups): close and forget them all,
    # or the next publish gets a pool for the old URL, or a closed one ("Acquire on closed pool").
    app._pool = None
    kombu_pools.reset()
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@dataclass
class Chaos:
    """What a chaos test works with: the worker, the shared record, polling with sweeps."""

    worker: ChaosWorker
    dir: Path
    prefix: str
    settings: Any
    sweeps: int = 0
    sweep_errors: list[str] = field(default_factory=list)

    def deploy(self, filename: str) -> Any:
        from bpmn.services import definition_upload

        path = FIXTURES / filename
        return definition_upload(files=[(path.name, path.read_bytes())], uploaded_by=None)[0]

    def use_broker(self, url: str) -> None:
        self.settings.CELERY_BROKER_URL = url  # pytest-django's wrapper restores it after the test
        point_celery_at(url, self.prefix if url != DEAD_BROKER_URL else None)

    def _lines(self, name: str) -> list[str]:
        path = self.dir / name
        return path.read_text().splitlines() if path.exists() else []

    def calls(self, key: str) -> int:
        """How many times any chaos connector was called with idempotency key ``key``."""
        return sum(1 for line in self._lines("calls.log") if line.split(" ", 1)[1] == key)

    def effects(self) -> Counter:
        """Side effects performed, per idempotency key."""
        return Counter(self._lines("effects.log"))

    def sweep(self) -> None:
        from core.errors import BatonError
        from processes.sweeper import sweep

        self.sweeps += 1
        try:
            sweep()
        except BatonError as exc:  # busy: the next sweep retries, as beat's would
            self.sweep_errors.append(repr(exc))

    def wait_for(self, predicate: Callable[[], Any], *, timeout: float, what: str,
                 sweep_every: float | None = None, poll: float = 0.1) -> float:
        """Poll ``predicate`` until true (sweeping every ``sweep_every`` s); return the seconds it took."""
        from django.db import close_old_connections

        started = time.monotonic()
        next_sweep = started + (sweep_every or 0)
        while True:
            if predicate():
                return time.monotonic() - started
            now = time.monotonic()
            if now - started > timeout:
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {what}\n--- worker log (tail) ---\n{self.worker.log_tail()}"
                )
            if self.worker.proc is not None and self.worker.proc.poll() is not None:
                raise AssertionError(f"the celery worker died while waiting for {what}:\n{self.worker.log_tail()}")
            if sweep_every is not None and now >= next_sweep:
                self.sweep()
                next_sweep = now + sweep_every
            close_old_connections()
            time.sleep(poll)


@pytest.fixture
def chaos(celery_worker: ChaosWorker, chaos_dir: Path, broker_prefix: str, settings: Any,
          transactional_db: None) -> Iterator[Chaos]:
    """Point this process at the test broker (not the embedded worker) for one test."""
    import tests.chaos_connectors  # noqa: F401 - register the chaos connectors here too

    from config.celery import app

    saved = (app.conf.broker_url, dict(app.conf.broker_transport_options or {}))
    settings.BATON_EMBEDDED_WORKER = False
    settings.BATON_SWEEP_SECONDS = SWEEP_SECONDS
    helper = Chaos(worker=celery_worker, dir=chaos_dir, prefix=broker_prefix, settings=settings)
    helper.use_broker(test_broker_url())
    if celery_worker.proc is None or celery_worker.proc.poll() is not None:
        celery_worker.start()  # a previous test left it dead (e.g. failed mid-R2)
    try:
        yield helper
    finally:
        app.conf.broker_transport_options = saved[1]
        point_celery_at(saved[0], saved[1].get("global_keyprefix"))
