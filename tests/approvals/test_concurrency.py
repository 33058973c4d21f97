"""Approvals commands race on one instance: the instance lock makes exactly one of them win."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from approvals.services import task_claim, task_decide
from core.errors import BatonError
from processes import services
from processes.models import AuditEvent

from .conftest import open_task, upload_sample, upload_variant

pytestmark = pytest.mark.django_db(transaction=True)
ROUNDS = 5


def _race(*calls):
    barrier = threading.Barrier(len(calls))

    def wrap(fn):
        def run():
            try:
                barrier.wait(timeout=30)
                return ("ok", fn())
            except BatonError as exc:
                return (exc.code, exc)
            finally:
                connections.close_all()
        return run

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return sorted(f.result()[0] for f in [pool.submit(wrap(c)) for c in calls])


def test_two_managers_claim_at_once_one_wins(users):
    upload_sample("expense_approval")
    for i in range(ROUNDS):
        instance = services.instance_start(process_key="expense_approval", actor=users["alice"],
                                           data={"employee": "a", "amount": 5, "category": "it", "description": str(i)})
        task = open_task(instance, "manager_approval")
        outcome = _race(lambda: task_claim(human_task_id=task.pk, actor=users["mike"]),
                        lambda: task_claim(human_task_id=task.pk, actor=users["max"]))
        assert outcome in (["ok", "task_claimed"], ["busy_retry_later", "ok"]), outcome
        assert AuditEvent.objects.filter(instance=instance, command="task_claim").count() == 1


def test_one_person_deciding_both_parallel_branches_at_once_is_refused_once(users, tmp_path):
    upload_variant("parallel_approvals", tmp_path, process_properties={"baton:distinctApprovers": "true"})
    sue = users["sue"]
    for _ in range(ROUNDS):
        instance = services.instance_start(process_key="parallel_approvals", actor=users["alice"],
                                           data={"contract": "NDA", "value": 1})
        legal, finance = open_task(instance, "legal_review"), open_task(instance, "finance_review")
        outcome = _race(lambda: task_decide(human_task_id=legal.pk, actor=sue, data={"decision": "approve"}),
                        lambda: task_decide(human_task_id=finance.pk, actor=sue, data={"decision": "approve"}))
        assert outcome in (["ok", "separation_of_duties"], ["busy_retry_later", "ok"]), outcome
        assert AuditEvent.objects.filter(instance=instance, command="task_complete").count() == 1
