"""The expense approval sample escalates on its boundary timer (issue 3's done criterion)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from django.core import mail

from processes import jobs, services
from processes.models import AuditEvent, HumanTaskStatus, Job, JobStatus
from processes.sweeper import sweep

from .conftest import SAMPLES, upload

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def test_unanswered_manager_approval_escalates_by_email_after_two_days(alice, bob):
    with time_machine.travel(T0, tick=False) as clock:
        upload(SAMPLES / "expense_approval" / "expense_approval.bpmn")
        instance = services.instance_start(
            process_key="expense_approval", actor=alice,
            data={"employee": "alice", "amount": 300, "category": "travel", "description": "train"},
        )
        instance.refresh_from_db()
        assert instance.next_timer_at == T0 + timedelta(days=2)

        clock.move_to(T0 + timedelta(days=1, hours=23))
        assert sweep(nudge_due=False).timers_fired == 0

        clock.move_to(T0 + timedelta(days=2, minutes=1))
        report = sweep(nudge_due=False)
        assert report.timers_fired == 1
        job = Job.objects.get(instance=instance, connector="email.send")
        assert job.params["to"] == "finance@example.com"
        assert "alice" in job.params["subject"] and "300" in job.params["body"]
        assert jobs.job_execute(job_id=job.pk) == "done"
        job.refresh_from_db()
        assert job.status == JobStatus.DONE and job.result["sent"] == 1
        assert [m.to for m in mail.outbox] == [["finance@example.com"]]  # the test settings' locmem backend
        assert mail.outbox[0].subject == job.params["subject"]

        manager = instance.human_tasks.get(element_id="manager_approval")
        assert manager.status == HumanTaskStatus.OPEN  # non-interrupting: the manager can still decide
        assert AuditEvent.objects.filter(instance=instance, command="timer_fired").count() == 1
        services.task_complete(human_task_id=manager.pk, actor=bob, data={"decision": "approve"}, decision="approve")
        instance.refresh_from_db()
        assert instance.status == "completed" and instance.data["status"] == "approved"
