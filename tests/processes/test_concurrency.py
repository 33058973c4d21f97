"""C1, C3 and C4 of RELIABILITY.md: concurrent commands on one instance.

These tests commit (threads need to see each other's rows), so they use
transactional databases; every thread closes its own connection.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from core.errors import Busy, Conflict
from processes import services
from processes.models import Activity, AuditEvent, HumanTask, HumanTaskStatus, InstanceStatus

from .conftest import ENGINE, SAMPLES, upload

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite_smoke]

C1_ROUNDS = int(os.environ.get("BATON_C1_ROUNDS", "50"))
C3_ROUNDS = int(os.environ.get("BATON_C3_ROUNDS", "100"))


def _in_thread(fn, barrier: threading.Barrier):
    def run():
        try:
            barrier.wait(timeout=30)
            return ("ok", fn())
        except (Conflict, Busy) as exc:
            return (exc.code, exc)
        except Exception as exc:  # noqa: BLE001 - reported as a test failure below
            return ("error", repr(exc))
        finally:
            connections.close_all()

    return run


def test_c1_twenty_threads_complete_the_same_task_exactly_once(alice):
    upload(ENGINE / "single_user_task.bpmn")
    for _ in range(C1_ROUNDS):
        instance = services.instance_start(process_key="single_user_task", actor=alice)
        task = instance.human_tasks.get()
        barrier = threading.Barrier(20)
        work = _in_thread(lambda: services.task_complete(human_task_id=task.pk, actor=alice), barrier)
        with ThreadPoolExecutor(max_workers=20) as pool:
            results = [f.result() for f in [pool.submit(work) for _ in range(20)]]
        outcomes = [r[0] for r in results]
        assert outcomes.count("ok") == 1, results
        conflicts = [r[1] for r in results if r[0] != "ok"]
        assert len(conflicts) == 19 and all(isinstance(c, Conflict) and c.status == 409 for c in conflicts), results
        assert AuditEvent.objects.filter(instance=instance, command="task_complete").count() == 1
        instance.refresh_from_db()
        assert instance.status == InstanceStatus.COMPLETED


def test_c3_parallel_branches_approve_and_reject_at_once(alice, bob):
    upload(SAMPLES / "parallel_approvals" / "parallel_approvals.bpmn")
    for _ in range(C3_ROUNDS):
        instance = services.instance_start(process_key="parallel_approvals", actor=alice,
                                           data={"contract": "NDA", "value": 1})
        legal = instance.human_tasks.get(element_id="legal_review")
        finance = instance.human_tasks.get(element_id="finance_review")
        barrier = threading.Barrier(2)
        # bob on both branches: the requester (alice) may not approve (approvals.rules)
        jobs = [
            _in_thread(lambda: services.task_complete(human_task_id=legal.pk, actor=bob, decision="approve"), barrier),
            _in_thread(lambda: services.task_complete(human_task_id=finance.pk, actor=bob, decision="reject"), barrier),
        ]
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = [f.result() for f in [pool.submit(j) for j in jobs]]
        assert [r[0] for r in results] == ["ok", "ok"], results
        instance.refresh_from_db()
        assert instance.status == InstanceStatus.COMPLETED
        assert instance.data["decisions"]["legal_review"]["outcome"] == "approve"
        assert instance.data["decisions"]["finance_review"]["outcome"] == "reject"
        assert instance.data["outcome"] == "rejected"
        assert Activity.objects.filter(instance=instance, element_id="summarize", state="done").count() == 1
        assert not HumanTask.objects.filter(instance=instance, status=HumanTaskStatus.OPEN).exists()


def _hold_instance_lock(instance_id: int):
    """Open a second connection that holds the instance row (PostgreSQL) or the write lock (SQLite)."""
    if connection.vendor == "postgresql":
        import psycopg

        params = connection.get_connection_params()
        other = psycopg.connect(**{k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")})
        other.execute("BEGIN")
        other.execute("SELECT id FROM processes_processinstance WHERE id = %s FOR UPDATE", [instance_id])
        return other
    import sqlite3

    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_c4_a_held_lock_answers_busy_within_the_lock_timeout(alice, settings):
    import time

    upload(ENGINE / "single_user_task.bpmn")
    instance = services.instance_start(process_key="single_user_task", actor=alice)
    task = instance.human_tasks.get()
    other = _hold_instance_lock(instance.pk)
    try:
        started = time.monotonic()
        with pytest.raises(Busy):
            services.task_complete(human_task_id=task.pk, actor=alice)
        elapsed = time.monotonic() - started
    finally:
        other.rollback() if connection.vendor == "postgresql" else other.execute("ROLLBACK")
        other.close()
    assert elapsed < settings.BATON_LOCK_TIMEOUT_MS / 1000 + 1
    services.task_complete(human_task_id=task.pk, actor=alice)
    task.refresh_from_db()
    assert task.status == HumanTaskStatus.COMPLETED
