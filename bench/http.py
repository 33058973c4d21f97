"""HTTP scenario: expense approval started and completed through the REST API against gunicorn.

``python -m bench --http [--clients N] [--duration S | --count N] [--workers W] [--database-url URL]``

Sets up a throw-away database (a SQLite file in a temporary ``BATON_VAR_DIR``;
with ``--database-url postgres://…`` a scratch database created beside the one
named and dropped at the end), migrates, creates a requester (Requesters), a
manager (Managers), a finance user (Finance) and a designer with API tokens,
starts ``gunicorn config.wsgi -w W`` on a free loopback port, uploads the
expense approval sample over HTTP, times the same scenario through the service
layer (``bench.scenarios``, same database), then runs N client threads that
each loop: start (amount 5000) as the requester -> manager lists
``tasks/?scope=groups``, claims, approves -> finance lists, claims, approves ->
the requester GETs the instance and checks it is completed. gunicorn is always
stopped (by PID) and the scratch database removed, even on error.
"""
from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "processes" / "samples" / "expense_approval"
API = "/api/v1"
REQUEST_TYPES = ["start", "list tasks", "claim", "decide", "get instance"]
USERS = {"requester": "Requesters", "manager": "Managers", "finance": "Finance", "designer": "designers"}


class Failure(Exception):
    """An unexpected answer: counted as an error."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Client:
    """One loopback HTTP client (gunicorn's sync workers close the connection after each answer)."""

    def __init__(self, port: int, stats: "Stats") -> None:
        self.port = port
        self.stats = stats

    def call(self, kind: str, method: str, path: str, token: str, body: bytes | None = None,
             content_type: str = "application/json", expect: tuple[int, ...] = (200,)) -> dict:
        headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        for attempt in range(20):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            started = time.perf_counter()
            try:
                conn.request(method, API + path, body=body, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            finally:
                conn.close()
            elapsed = time.perf_counter() - started
            payload = json.loads(raw) if raw else {}
            if response.status == 409 and payload.get("code") == "busy_retry_later":
                self.stats.add_retry(kind)
                time.sleep(0.01 * (attempt + 1))
                continue
            self.stats.add(kind, elapsed)
            if response.status not in expect:
                raise Failure(f"{method} {path}: {response.status} {raw[:300]!r}")
            return payload
        raise Failure(f"{method} {path}: still busy after 20 tries")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.retries: dict[str, int] = defaultdict(int)
        self.instance_seconds: list[float] = []
        self.errors: list[str] = []
        self.recording = False

    def add(self, kind: str, seconds: float) -> None:
        if self.recording:
            with self.lock:
                self.latency[kind].append(seconds)

    def add_retry(self, kind: str) -> None:
        if self.recording:
            with self.lock:
                self.retries[kind] += 1


def _decide(client: Client, who: str, token: str, instance_id: int, element_id: str) -> None:
    listed = client.call("list tasks", "GET", "/tasks/?scope=groups", token)
    task = next((t for t in listed["results"]
                 if t["instance_id"] == instance_id and t["element_id"] == element_id), None)
    if task is None:
        raise Failure(f"{who}: {element_id} of instance {instance_id} not in tasks/?scope=groups")
    client.call("claim", "POST", f"/tasks/{task['id']}/claim/", token)
    body = {"decision": "approve", "reason": "bench", "data": {"decision": "approve", "reason": "bench"}}
    client.call("decide", "POST", f"/tasks/{task['id']}/decide/", token, json.dumps(body).encode())


def one_instance(client: Client, tokens: dict[str, str], business_key: str) -> None:
    body = {"process_key": "expense_approval", "business_key": business_key,
            "data": {"employee": "requester", "amount": 5000, "category": "it", "description": "bench"}}
    started = client.call("start", "POST", "/instances/", tokens["requester"], json.dumps(body).encode(),
                          expect=(201,))
    instance_id = started["id"]
    _decide(client, "manager", tokens["manager"], instance_id, "manager_approval")
    _decide(client, "finance", tokens["finance"], instance_id, "finance_approval")
    final = client.call("get instance", "GET", f"/instances/{instance_id}/", tokens["requester"])
    if final["status"] != "completed" or final.get("data", {}).get("status") != "approved":
        raise Failure(f"instance {instance_id}: {final['status']} {final.get('data', {}).get('status')}")


def _load(port: int, tokens: dict[str, str], clients: int, duration: float, count: int,
          stats: Stats) -> float:
    """Run the clients; return the measured wall time in seconds."""
    issued = iter(range(10**9))
    issue_lock = threading.Lock()
    deadline = [0.0]

    def worker(n: int) -> None:
        client = Client(port, stats)
        while True:
            with issue_lock:
                i = next(issued)
            if count and i >= count:
                return
            if not count and time.perf_counter() >= deadline[0]:
                return
            started = time.perf_counter()
            try:
                one_instance(client, tokens, f"BENCH-{n}-{i}")
            except Exception as exc:  # noqa: BLE001 - every failure is an error to report
                with stats.lock:
                    stats.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with stats.lock:
                stats.instance_seconds.append(time.perf_counter() - started)

    # warm-up: one instance per client (imports, caches, connections), not recorded
    warm = Client(port, stats)
    for n in range(clients):
        one_instance(warm, tokens, f"WARM-{n}")
    stats.recording = True
    started = time.perf_counter()
    deadline[0] = started + duration
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def _scratch_postgres(url: str) -> tuple[str, Callable[[], None]]:
    """Create a scratch database beside the one in ``url``; return its URL and a drop function."""
    import psycopg

    parts = urlsplit(url)
    name = f"baton_bench_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    scratch = urlunsplit(parts._replace(path=f"/{name}"))

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return scratch, drop


def _wait_ready(port: int, proc: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", API + "/definitions/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn not answering on {port}:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _upload(port: int, token: str) -> None:
    boundary = "baton-bench-boundary"
    chunks = []
    for path in sorted([*SAMPLE.glob("*.bpmn"), *SAMPLE.glob("*.json")]):
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
                      f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    Client(port, Stats()).call("upload", "POST", "/definitions/", token, body,
                               content_type=f"multipart/form-data; boundary={boundary}", expect=(200, 201))


def _service_layer(repeat: int) -> float:
    """Median seconds per expense-approval instance through Baton's services (same database).

    The scenario of ``bench.scenarios`` (same start data and answers), but started by the requester and
    completed by the manager and the finance user: the approvals rules refuse a self-approval.
    """
    from django.contrib.auth import get_user_model

    from bench.runner import _time
    from bench.scenarios import SCENARIOS
    from processes import services
    from processes.models import HumanTaskStatus, InstanceStatus

    scenario = next(s for s in SCENARIOS if s.name.startswith("expense approval"))
    users = get_user_model().objects.in_bulk(["requester", "manager", "finance"], field_name="username")
    actor = {"manager_approval": users["manager"], "finance_approval": users["finance"]}

    def run() -> None:
        instance = services.instance_start(process_key=scenario.process_key, actor=users["requester"],
                                           data=scenario.start_data)
        while True:
            task = instance.human_tasks.filter(status=HumanTaskStatus.OPEN).order_by("id").first()
            if task is None:
                break
            answer = next(a for a in scenario.answers if a[0] == task.element_id)
            services.task_complete(human_task_id=task.pk, actor=actor[task.element_id], data=answer[1],
                                   decision=answer[2])
        instance.refresh_from_db()
        assert instance.status == InstanceStatus.COMPLETED, f"service layer: instance is {instance.status}"

    return _time(run, repeat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench --http", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--count", type=int, default=0, help="run this many instances instead of a duration")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--service-repeat", type=int, default=50, help="service-layer instances timed (default 50)")
    parser.add_argument("--database-url", default="",
                        help="postgres://… : create a scratch database beside this one (default: temp SQLite)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (gunicorn log, SQLite file)")
    opts = parser.parse_args(argv)

    var_dir = Path(tempfile.mkdtemp(prefix="baton-bench-http-"))
    drop_database = None
    proc: subprocess.Popen | None = None
    try:
        env = {**os.environ, "BATON_VAR_DIR": str(var_dir), "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1",
               "DJANGO_SETTINGS_MODULE": "config.settings"}
        env.pop("DATABASE_URL", None)
        if opts.database_url:
            scratch, drop_database = _scratch_postgres(opts.database_url)
            env["DATABASE_URL"] = scratch
        os.environ.clear()
        os.environ.update(env)

        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.core.management import call_command
        from django.db import connection, connections
        from rest_framework.authtoken.models import Token

        call_command("migrate", verbosity=0, interactive=False)
        vendor = connection.vendor
        tokens: dict[str, str] = {}
        for username, group in USERS.items():
            user = get_user_model().objects.create_user(username, password="bench-pw-123")
            user.groups.add(Group.objects.get_or_create(name=group)[0])
            tokens[username] = Token.objects.create(user=user).key
        connections.close_all()

        port = _free_port()
        log = var_dir / "gunicorn.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "-w", str(opts.workers),
                 "-b", f"127.0.0.1:{port}"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _wait_ready(port, proc, log)
        _upload(port, tokens["designer"])

        logging.disable(logging.INFO)  # the service layer logs each command at INFO
        service = _service_layer(opts.service_repeat)  # gunicorn idle meanwhile
        connections.close_all()

        stats = Stats()
        wall = _load(port, tokens, opts.clients, opts.duration, opts.count, stats)
    finally:
        if proc is not None:
            _stop(proc)
        if drop_database is not None:
            try:
                from django.db import connections

                connections.close_all()
            except Exception:  # noqa: BLE001 - Django may not be set up yet
                pass
            drop_database()
        if opts.keep:
            print(f"kept {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)

    total = sum(len(v) for v in stats.latency.values())
    instances = len(stats.instance_seconds)
    print(f"Baton over HTTP (gunicorn -w {opts.workers}, {opts.clients} client threads on loopback, "
          f"{wall:.1f} s) vs service layer, database: {vendor}")
    header = f"{'request':<22} {'count':>7} {'per s':>8} {'p50':>9} {'p95':>9} {'busy retries':>13}"
    print(header)
    print("-" * len(header))
    for kind in REQUEST_TYPES:
        values = stats.latency.get(kind, [])
        print(f"{kind:<22} {len(values):>7} {len(values) / wall:>8.1f} {_percentile(values, .5) * 1000:>7.1f}ms "
              f"{_percentile(values, .95) * 1000:>7.1f}ms {stats.retries.get(kind, 0):>13}")
    all_values = [v for values in stats.latency.values() for v in values]
    print(f"{'all requests':<22} {total:>7} {total / wall:>8.1f} {_percentile(all_values, .5) * 1000:>7.1f}ms "
          f"{_percentile(all_values, .95) * 1000:>7.1f}ms {sum(stats.retries.values()):>13}")
    print("-" * len(header))
    header = f"{'expense approval (manager + finance)':<40} {'instances':>9} {'per s':>8} {'per instance p50':>17}"
    print(header)
    print(f"{'  HTTP, ' + str(opts.clients) + ' clients (8 requests each)':<40} {instances:>9} "
          f"{instances / wall:>8.1f} {_percentile(stats.instance_seconds, .5) * 1000:>15.1f}ms")
    print(f"{'  service layer, 1 thread (median)':<40} {opts.service_repeat:>9} {1 / service:>8.1f} "
          f"{service * 1000:>15.1f}ms")
    print(f"errors: {len(stats.errors)}")
    for error in stats.errors[:10]:
        print(f"  {error}")
    return 1 if stats.errors else 0
