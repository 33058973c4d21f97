"""Service-layer commands on real diagrams: start, complete, cancel, suspend, resume, incidents."""
from __future__ import annotations

import hashlib
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.errors import Conflict, NotFound, ValidationError
from processes import services
from processes.models import (
    Activity,
    AuditEvent,
    HumanTask,
    HumanTaskStatus,
    Incident,
    InstanceStatus,
    Job,
    ProcessInstance,
)

from .conftest import ENGINE, SAMPLES

pytestmark = pytest.mark.django_db


def open_task(instance: ProcessInstance, element_id: str | None = None) -> HumanTask:
    tasks = instance.human_tasks.filter(status=HumanTaskStatus.OPEN)
    if element_id:
        tasks = tasks.filter(element_id=element_id)
    return tasks.get()


def test_single_user_task_runs_to_completion_with_audit_and_activity(deploy, alice):
    deploy(ENGINE / "single_user_task.bpmn")
    instance = services.instance_start(process_key="single_user_task", actor=alice, data={"request": "laptop"})
    assert instance.status == InstanceStatus.WAITING
    task = open_task(instance, "approve")

    services.task_complete(human_task_id=task.pk, actor=alice, data={"note": "ok"}, decision="approve")

    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    assert instance.ended_at is not None
    assert instance.data["request"] == "laptop" and instance.data["note"] == "ok"
    assert instance.data["decisions"]["approve"]["outcome"] == "approve"
    commands = list(AuditEvent.objects.filter(instance=instance).order_by("seq").values_list("command", flat=True))
    assert commands == ["instance_start", "task_complete", "instance_complete"]
    assert instance.audit_seq == 3
    completed = AuditEvent.objects.get(instance=instance, command="task_complete").payload
    assert completed["data"]["note"] == "ok" and completed["decision"] == "approve"
    assert completed["seen"] == {"data": {"request": "laptop"}}  # what the task showed, before the answer


def test_large_task_data_is_kept_in_the_audit_as_its_hash(deploy, alice):
    deploy(ENGINE / "single_user_task.bpmn")
    big = "x" * (services.SEEN_MAX_BYTES + 1)
    instance = services.instance_start(process_key="single_user_task", actor=alice, data={"request": big})
    services.task_complete(human_task_id=open_task(instance, "approve").pk, actor=alice)
    seen = AuditEvent.objects.get(instance=instance, command="task_complete").payload["seen"]
    text = json.dumps({"request": big}, sort_keys=True, separators=(",", ":"))
    assert seen == {"sha256": hashlib.sha256(text.encode()).hexdigest(), "bytes": len(text)}
    activities = list(Activity.objects.filter(instance=instance).order_by("id").values_list("element_id", "state"))
    assert ("approve", "done") in activities
    assert all(state == "done" for _, state in activities)
    assert [a for a, _ in activities].index("approve") > 0  # the start event came first


def test_completing_twice_is_a_conflict_and_changes_nothing(deploy, alice):
    deploy(ENGINE / "single_user_task.bpmn")
    instance = services.instance_start(process_key="single_user_task", actor=alice)
    task = open_task(instance)
    services.task_complete(human_task_id=task.pk, actor=alice)
    instance.refresh_from_db()
    before = (bytes(instance.state), instance.version, instance.audit_seq)

    with pytest.raises(Conflict):
        services.task_complete(human_task_id=task.pk, actor=alice)

    instance.refresh_from_db()
    assert (bytes(instance.state), instance.version, instance.audit_seq) == before


def test_unknown_task_is_not_found(deploy, alice):
    with pytest.raises(NotFound):
        services.task_complete(human_task_id=987654, actor=alice)


def test_start_refuses_unknown_process_and_non_object_data(deploy, alice):
    with pytest.raises(NotFound, match="no process definition 'nope'"):
        services.instance_start(process_key="nope", actor=alice)
    deploy(ENGINE / "single_user_task.bpmn")
    with pytest.raises(ValidationError):
        services.instance_start(process_key="single_user_task", actor=alice, data=["not", "a", "dict"])


def test_plain_task_passes_straight_through(deploy, alice):
    deploy(ENGINE / "plain_task.bpmn")
    instance = services.instance_start(process_key="plain_task", actor=alice)
    assert open_task(instance).element_id == "after"


def test_failing_script_opens_incident_with_original_error_and_retry_resolves(deploy, alice):
    deploy(ENGINE / "failing_script.bpmn")
    instance = services.instance_start(process_key="failing_script", actor=alice, data={"divisor": 0})
    assert instance.status == InstanceStatus.INCIDENT
    incident = Incident.objects.get(instance=instance)
    assert incident.element_id == "divide"
    assert incident.error_type == "ZeroDivisionError"
    assert "division by zero" in incident.message
    assert Activity.objects.get(instance=instance, element_id="divide").state == "failed"

    services.incident_retry(incident_id=incident.pk, actor=alice, data={"divisor": 2})

    instance.refresh_from_db()
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert instance.status == InstanceStatus.WAITING
    assert instance.data["result"] == 5
    assert Activity.objects.get(instance=instance, element_id="divide").state == "done"
    assert open_task(instance).element_id == "after"


def test_service_task_waits_as_a_job_with_evaluated_parameters(deploy, alice):
    deploy(ENGINE / "service_task.bpmn")
    instance = services.instance_start(process_key="service_task", actor=alice, data={"name": "Ada"})
    job = Job.objects.get(instance=instance)
    assert job.connector == "baton.echo"
    assert job.params == {"message": "hello Ada"}
    assert job.status == "queued"
    assert job.idempotency_key.startswith(f"{instance.pk}:")
    assert instance.status == InstanceStatus.WAITING
    assert not instance.human_tasks.exists()


def test_cancel_suspend_resume_transitions(deploy, alice):
    deploy(ENGINE / "single_user_task.bpmn")
    instance = services.instance_start(process_key="single_user_task", actor=alice)
    task = open_task(instance)

    services.instance_suspend(instance_id=instance.pk, actor=alice, reason="audit")
    with pytest.raises(Conflict):
        services.task_complete(human_task_id=task.pk, actor=alice)
    with pytest.raises(Conflict):
        services.instance_suspend(instance_id=instance.pk, actor=alice)
    services.instance_resume(instance_id=instance.pk, actor=alice)
    services.instance_cancel(instance_id=instance.pk, actor=alice, reason="no longer needed")

    instance.refresh_from_db()
    task.refresh_from_db()
    assert instance.status == InstanceStatus.CANCELLED
    assert task.status == HumanTaskStatus.CANCELLED
    with pytest.raises(Conflict):
        services.instance_resume(instance_id=instance.pk, actor=alice)
    commands = list(instance.audit_events.order_by("seq").values_list("command", flat=True))
    assert commands == ["instance_start", "instance_suspend", "instance_resume", "instance_cancel"]


def test_expense_approval_small_amount_needs_only_the_manager(deploy, alice, bob):
    deploy(SAMPLES / "expense_approval" / "expense_approval.bpmn")
    data = {"employee": "alice", "amount": 120, "category": "travel", "description": "train"}
    instance = services.instance_start(process_key="expense_approval", actor=alice, data=data)
    services.task_complete(human_task_id=open_task(instance, "manager_approval").pk, actor=bob,
                           data={"decision": "approve", "reason": "fine"}, decision="approve")
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    assert instance.data["status"] == "approved"


def test_expense_approval_large_amount_goes_to_finance_then_can_be_rejected(deploy, alice, bob):
    deploy(SAMPLES / "expense_approval" / "expense_approval.bpmn")
    data = {"employee": "alice", "amount": 5000, "category": "it", "description": "server"}
    instance = services.instance_start(process_key="expense_approval", actor=alice, data=data)
    manager = open_task(instance, "manager_approval")
    assert manager.lane == "Managers" and manager.candidate_groups == ["Managers"]
    assert manager.form_schema is not None
    services.task_complete(human_task_id=manager.pk, actor=bob, data={"decision": "approve"}, decision="approve")
    finance = open_task(instance, "finance_approval")
    # bob, not alice: the requester may not approve her own request (approvals.rules)
    services.task_complete(human_task_id=finance.pk, actor=bob, data={"decision": "reject"}, decision="reject",
                           reason="over budget")
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    assert instance.data["status"] == "rejected"
    assert instance.data["decisions"]["manager_approval"]["outcome"] == "approve"
    assert instance.data["decisions"]["finance_approval"]["reason"] == "over budget"


def test_rejection_loop_goes_back_to_the_requester_twice(deploy, alice, bob):
    deploy(SAMPLES / "rejection_loop" / "rejection_loop.bpmn")
    instance = services.instance_start(process_key="rejection_loop", actor=alice, data={"item": "chair", "price": 90})
    for round_ in range(2):
        services.task_complete(human_task_id=open_task(instance, "submit_request").pk, actor=alice,
                               data={"item": "chair", "price": 90 + round_, "justification": "back pain"})
        services.task_complete(human_task_id=open_task(instance, "review_request").pk, actor=bob,
                               data={}, decision="request_changes")
    services.task_complete(human_task_id=open_task(instance, "submit_request").pk, actor=alice,
                           data={"item": "chair", "price": 80, "justification": "cheaper"})
    services.task_complete(human_task_id=open_task(instance, "review_request").pk, actor=bob, decision="approve")
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    assert instance.data["price"] == 80
    assert instance.human_tasks.filter(element_id="submit_request", status="completed").count() == 3
    assert Activity.objects.filter(instance=instance, element_id="review_request", state="done").count() == 3


def test_parallel_approvals_keep_both_decisions_after_the_join(deploy, alice, bob):
    deploy(SAMPLES / "parallel_approvals" / "parallel_approvals.bpmn")
    instance = services.instance_start(process_key="parallel_approvals", actor=alice,
                                       data={"contract": "NDA", "value": 10})
    # bob, not alice: the requester may not approve her own request (approvals.rules)
    services.task_complete(human_task_id=open_task(instance, "legal_review").pk, actor=bob, decision="reject")
    services.task_complete(human_task_id=open_task(instance, "finance_review").pk, actor=bob, decision="approve")
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    assert instance.data["decisions"]["legal_review"]["outcome"] == "reject"
    assert instance.data["decisions"]["finance_review"]["outcome"] == "approve"
    assert instance.data["outcome"] == "rejected"


def test_complete_task_statement_count_is_bounded(deploy, alice, bob):
    """Deterministic cost guard: completing an expense approval step stays within 10 statements."""
    deploy(SAMPLES / "expense_approval" / "expense_approval.bpmn")
    data = {"employee": "alice", "amount": 5000, "category": "it", "description": "server"}
    instance = services.instance_start(process_key="expense_approval", actor=alice, data=data)
    task = open_task(instance, "manager_approval")
    with CaptureQueriesContext(connection) as queries:
        services.task_complete(human_task_id=task.pk, actor=bob, decision="approve")
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) <= 10, "\n".join(statements)
