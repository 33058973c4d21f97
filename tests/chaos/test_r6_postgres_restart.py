"""R6: PostgreSQL restarts under load - on a private throwaway cluster, never the shared server.

The test creates its own cluster (``initdb`` as the ``postgres`` user, since
initdb refuses root) on a free port with its socket in a temporary
directory, runs Baton commands against it from four client threads in a
subprocess (``tests/chaos/r6_load.py``: its own Django and DATABASE_URL, the
owner/app role split as in production), restarts the cluster twice with
``pg_ctl restart -m fast`` meanwhile, then checks: every instance's open
HumanTask rows are exactly its READY user tasks, audit rows equal the
completions (those the clients saw succeed, plus any whose reply was lost
with the connection), the hash chains verify, and clients only ever saw
clean errors (Django's OperationalError/InterfaceError or a Baton error).
Time-boxed to about a minute; needs no Celery worker.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOAD_SECONDS = 20.0
THREADS = 4
RESTART_AT = (5.0, 12.0)  # seconds into the load

pytestmark = pytest.mark.chaos


def _pg_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for path in reversed(candidates):
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found and (Path(found).resolve().parent / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateCluster:
    """A throwaway PostgreSQL cluster in a temporary directory; stopped and removed at the end."""

    def __init__(self, pg_bin: Path) -> None:
        self.bin = pg_bin
        self.root = Path(tempfile.mkdtemp(prefix="baton-r6-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0  # initdb refuses root: run the cluster as postgres
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        cmd = (["runuser", "-u", "postgres", "--"] if self.as_postgres else []) + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)

    def pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), *args, timeout=timeout)

    def init_and_start(self) -> None:
        done = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                         "-E", "UTF8", "--locale=C", "--no-sync", timeout=120)
        assert done.returncode == 0, done.stderr
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=40 -c shared_buffers=16MB")
        started = self.pg_ctl("-o", options, "-l", str(self.root / "server.log"), "-w", "-t", "30", "start")
        assert started.returncode == 0, started.stderr + self.log_tail()

    def restart(self) -> float:
        """Fast restart (in-flight sessions are terminated); return how long it took."""
        began = time.monotonic()
        # -l again: without it the new postmaster would log to (and hold open) pg_ctl's stdout pipe
        done = self.pg_ctl("-m", "fast", "-l", str(self.root / "server.log"), "-w", "-t", "30", "restart", timeout=60)
        assert done.returncode == 0, done.stderr + self.log_tail()
        return time.monotonic() - began

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def destroy(self) -> None:
        pid = self.postmaster_pid()
        if pid is not None:
            self.pg_ctl("-m", "immediate", "-w", "-t", "20", "stop", timeout=30)
            try:  # by its PID, should pg_ctl not have managed
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        path = self.root / "server.log"
        return "\n" + path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def url(self, user: str, database: str = "baton") -> str:
        return f"postgres://{user}@127.0.0.1:{self.port}/{database}"


@pytest.fixture
def private_cluster() -> Iterator[PrivateCluster]:
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot run initdb as postgres")
    cluster = PrivateCluster(pg_bin)
    try:
        cluster.init_and_start()
        yield cluster
    finally:
        cluster.destroy()


def _phase(phase: str, env: dict[str, str], timeout: float, procs: list[subprocess.Popen]) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "tests.chaos.r6_load", phase], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    procs.append(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"r6_load {phase} did not finish within {timeout:g} s:\n{err[-3000:]}") from None
    assert proc.returncode == 0, f"r6_load {phase} failed ({proc.returncode}):\n{err[-5000:]}"
    return json.loads(out.strip().splitlines()[-1])


def test_r6_postgres_restart_under_load_leaves_nothing_half_applied(private_cluster: PrivateCluster, tmp_path: Path):
    import psycopg

    cluster = private_cluster
    with psycopg.connect(cluster.url("postgres", "postgres"), autocommit=True) as admin:
        admin.execute("CREATE ROLE baton_owner LOGIN CREATEDB")
        admin.execute("CREATE ROLE baton_app LOGIN")
        admin.execute("CREATE DATABASE baton OWNER baton_owner")

    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_", "PYTEST_"))}
    base.update({"DJANGO_SETTINGS_MODULE": "config.settings", "BATON_VAR_DIR": str(tmp_path / "var"),
                 "R6_APP_ROLE": "baton_app", "R6_READY_FILE": str(tmp_path / "ready"),
                 "R6_RESULTS_FILE": str(tmp_path / "results.json"), "R6_SECONDS": str(LOAD_SECONDS),
                 "R6_THREADS": str(THREADS), "BATON_LOCK_TIMEOUT_MS": "3000", "LOG_LEVEL": "ERROR"})
    procs: list[subprocess.Popen] = []
    try:
        _phase("setup", {**base, "DATABASE_URL": cluster.url("baton_owner")}, timeout=120, procs=procs)
        app_env = {**base, "DATABASE_URL": cluster.url("baton_app")}

        load: dict = {}

        def run_load() -> None:
            try:
                load.update(_phase("load", app_env, LOAD_SECONDS + 90, procs))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread below
                load["error"] = repr(exc)

        loader = threading.Thread(target=run_load, daemon=True)
        loader.start()
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert loader.is_alive() and time.monotonic() < deadline, f"the load never started: {load}"
            time.sleep(0.05)
        began = time.monotonic()
        restarts = []
        for at in RESTART_AT:
            time.sleep(max(0.0, began + at - time.monotonic()))
            start = time.time()
            restarts.append((start, start + cluster.restart()))
        loader.join(timeout=LOAD_SECONDS + 100)
        assert not loader.is_alive(), "the load did not finish"
        assert load.get("commands"), load

        report = _phase("check", app_env, timeout=120, procs=procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["stuck_threads"] == 0
    commands = results["results"]
    errors = [r for r in commands if not r["ok"]]
    unclean = [r for r in errors if not r["clean"]]
    summary = {
        "commands": len(commands), "errors": dict(Counter(r["error"] for r in errors)),
        "restarts_s": [round(b - a, 2) for a, b in restarts], **{k: v for k, v in report.items() if k != "problems"},
    }
    print("R6", json.dumps(summary))

    assert not unclean, f"clients saw unclean errors: {unclean[:5]}"
    assert errors, "no command was in flight during the restarts: the test proved nothing"
    assert not report["problems"], report["problems"][:10]
    assert report["audit_breaks"] == []
    # audit rows equal completions: those the clients saw succeed, plus any committed whose reply was lost
    assert report["audit_task_complete"] == report["completes_ok"] + report["completes_ambiguous"]
    assert report["audit_instance_start"] == report["instances"] == report["starts_ok"] + report["starts_ambiguous"]
    assert report["completes_ambiguous"] + report["starts_ambiguous"] <= THREADS * len(RESTART_AT)
    # Baton recovers by itself after each restart: commands succeed again without any restart of the app
    last_back = restarts[-1][1]
    assert any(r["ok"] and r["t"] > last_back for r in commands), "no command succeeded after the last restart"
