"""R6's client: Baton commands against a private PostgreSQL cluster that the test restarts.

Run by ``test_r6_postgres_restart.py`` as a subprocess (its own Django, its
own DATABASE_URL), never against the suite's database::

    python -m tests.chaos.r6_load setup   # as the owner: migrate, grant the app role
    python -m tests.chaos.r6_load load    # as the app role: deploy, then commands from threads
    python -m tests.chaos.r6_load check   # as the app role: consistency report

Every phase prints one JSON document on its last stdout line. ``load`` treats
each command like a web request (fresh connection, closed afterwards) and
records every outcome; ``check`` compares what clients saw with what the
database holds.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import InterfaceError, OperationalError, close_old_connections, connection  # noqa: E402

from core.errors import BatonError  # noqa: E402

DIAGRAM = Path(__file__).resolve().parent / "fixtures" / "r6_two_steps.bpmn"
CLEAN = (OperationalError, InterfaceError, BatonError)


def _setup() -> dict[str, Any]:
    from django.core.management import call_command

    from core.management.commands.db_grant_app_role import grant_app_role

    call_command("migrate", verbosity=0, interactive=False)
    grant_app_role(connection, os.environ["R6_APP_ROLE"])
    return {"ok": True}


def _request(results: list[dict], kind: str, ref: Any, func) -> Any:
    """Run one command as a web request would: own connection, every outcome recorded."""
    close_old_connections()
    started = time.time()
    try:
        value = func()
    except Exception as exc:  # noqa: BLE001 - classified, not swallowed: the test fails on unclean ones
        results.append({"kind": kind, "ref": ref, "ok": False, "t": started,
                        "error": f"{type(exc).__module__}.{type(exc).__qualname__}",
                        "clean": isinstance(exc, CLEAN), "message": str(exc)[:300]})
        return None
    finally:
        try:
            connection.close()  # CONN_MAX_AGE=0: a request never keeps its connection
        except Exception:  # noqa: BLE001 - a connection the restart broke may fail to close; it is dropped
            pass
    results.append({"kind": kind, "ref": ref, "ok": True, "t": started})
    return value


def _load(seconds: float, threads: int) -> dict[str, Any]:
    from bpmn.services import definition_upload
    from processes import services
    from processes.models import HumanTask, HumanTaskStatus

    definition_upload(files=[(DIAGRAM.name, DIAGRAM.read_bytes())], uploaded_by=None)
    close_old_connections()
    connection.close()
    Path(os.environ["R6_READY_FILE"]).write_text("ready")
    deadline = time.monotonic() + seconds
    per_thread: list[list[dict]] = [[] for _ in range(threads)]

    def client(index: int) -> None:
        results, n = per_thread[index], 0
        try:
            while time.monotonic() < deadline:
                n += 1
                key = f"r6-{index}-{n}"
                instance = _request(results, "start", key, lambda key=key: services.instance_start(
                    process_key="r6_two_steps", actor=None, business_key=key, data={"n": n}))
                if instance is None:
                    time.sleep(0.05)
                    continue
                for _ in range(2):  # first, then second
                    task_id = _request(results, "read", instance.pk, lambda pk=instance.pk: HumanTask.objects.filter(
                        instance_id=pk, status=HumanTaskStatus.OPEN).values_list("pk", flat=True).first())
                    if task_id is None:
                        break
                    done = _request(results, "complete", task_id, lambda t=task_id, n=n: services.task_complete(
                        human_task_id=t, actor=None, data={"step_of": n}))
                    if done is None:
                        break
        finally:
            connection.close()

    pool = [threading.Thread(target=client, args=(i,), name=f"r6-client-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=seconds + 60)
    return {"results": [r for rs in per_thread for r in rs], "stuck_threads": sum(t.is_alive() for t in pool)}


def _check(results_path: str) -> dict[str, Any]:
    """Compare the database with what clients saw; list every inconsistency found."""
    from processes import services
    from processes.audit import audit_verify_report
    from processes.engine import runtime
    from processes.models import AuditEvent, HumanTask, HumanTaskStatus, InstanceStatus, ProcessInstance

    results = json.loads(Path(results_path).read_text())["results"]
    problems: list[str] = []
    instances = list(ProcessInstance.objects.all())
    completes_by_instance: dict[int, int] = {}
    for instance in instances:
        workflow = services._load(instance)
        ready = {t.id for t in runtime.human_tasks_ready(workflow)}
        open_rows = set(HumanTask.objects.filter(instance=instance, status=HumanTaskStatus.OPEN).values_list("task_id", flat=True))
        if ready != open_rows:
            problems.append(f"instance {instance.pk}: READY user tasks {sorted(map(str, ready))} != open rows {sorted(map(str, open_rows))}")
        if runtime.is_completed(workflow) != (instance.status == InstanceStatus.COMPLETED):
            problems.append(f"instance {instance.pk}: status {instance.status} but workflow completed={runtime.is_completed(workflow)}")
        events = list(AuditEvent.objects.filter(instance=instance).order_by("seq").values_list("command", "task_id"))
        if len(events) != instance.audit_seq:
            problems.append(f"instance {instance.pk}: {len(events)} audit events, head says {instance.audit_seq}")
        if [c for c, _ in events].count("instance_start") != 1:
            problems.append(f"instance {instance.pk}: instance_start events {[c for c, _ in events]}")
        completed_rows = set(HumanTask.objects.filter(instance=instance, status=HumanTaskStatus.COMPLETED).values_list("task_id", flat=True))
        completed_events = {t for c, t in events if c == "task_complete"}
        if completed_rows != completed_events or sum(c == "task_complete" for c, _ in events) != len(completed_events):
            problems.append(f"instance {instance.pk}: completed rows {len(completed_rows)} vs task_complete events {completed_events}")
        completes_by_instance[instance.pk] = len(completed_events)

    keys = set(ProcessInstance.objects.values_list("business_key", flat=True))
    started_ok = {r["ref"] for r in results if r["kind"] == "start" and r["ok"]}
    started_failed = {r["ref"] for r in results if r["kind"] == "start" and not r["ok"]}
    if started_ok - keys:
        problems.append(f"starts the client saw succeed are missing: {sorted(started_ok - keys)[:5]}")
    if keys - started_ok - started_failed:
        problems.append(f"instances nobody started: {sorted(keys - started_ok - started_failed)[:5]}")
    completed_ok = {r["ref"] for r in results if r["kind"] == "complete" and r["ok"]}
    completed_failed = {r["ref"] for r in results if r["kind"] == "complete" and not r["ok"]} - completed_ok
    completed_rows = set(HumanTask.objects.filter(status=HumanTaskStatus.COMPLETED).values_list("pk", flat=True))
    if completed_ok - completed_rows:
        problems.append(f"completions the client saw succeed are not recorded: {sorted(completed_ok - completed_rows)[:5]}")
    report = audit_verify_report()
    return {
        "problems": problems,
        "instances": len(instances),
        "audit_task_complete": AuditEvent.objects.filter(command="task_complete").count(),
        "audit_instance_start": AuditEvent.objects.filter(command="instance_start").count(),
        "starts_ok": len(started_ok),
        "completes_ok": len(completed_ok),
        # committed although the client saw an error (the reply was lost with the connection)
        "starts_ambiguous": len(started_failed & keys),
        "completes_ambiguous": len(completed_failed & completed_rows),
        "audit_breaks": [str(b) for b in report.breaks],
        "audit_chains": report.chains,
        "audit_events": report.events,
    }


def main(argv: list[str]) -> None:
    phase = argv[1]
    if phase == "setup":
        out = _setup()
    elif phase == "load":
        out = _load(float(os.environ.get("R6_SECONDS", "20")), int(os.environ.get("R6_THREADS", "4")))
        Path(os.environ["R6_RESULTS_FILE"]).write_text(json.dumps(out))
        out = {"written": os.environ["R6_RESULTS_FILE"], "commands": len(out["results"])}
    elif phase == "check":
        out = _check(os.environ["R6_RESULTS_FILE"])
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv)
