"""Messages, signals, errors and escalations on real diagrams (tests/fixtures/bpmn/messages/).

Every command reloads the instance from the database, so each step below also
proves that waits, correlation values and caught events survive save and load.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.errors import Conflict, NotFound, ValidationError
from processes import jobs, messages, services
from processes.models import (
    Activity,
    AuditEvent,
    HumanTask,
    HumanTaskStatus,
    InstanceStatus,
    Job,
    JobStatus,
    MessageSubscription,
    ProcessInstance,
)

from .conftest import FIXTURES, SAMPLES

pytestmark = pytest.mark.django_db
MESSAGES = FIXTURES / "messages"


def open_task(instance: ProcessInstance, element_id: str) -> HumanTask:
    return instance.human_tasks.get(status=HumanTaskStatus.OPEN, element_id=element_id)


def subscriptions(instance: ProcessInstance) -> list[tuple[str, str, str]]:
    return sorted(instance.subscriptions.values_list("element_id", "message_name", "correlation_key"))


def commands(instance: ProcessInstance) -> list[str]:
    return list(AuditEvent.objects.filter(instance=instance).order_by("seq").values_list("command", flat=True))


def reload(instance: ProcessInstance) -> ProcessInstance:
    instance.refresh_from_db()
    return instance


def start_payment_waits(*order_ids: str) -> list[ProcessInstance]:
    return [services.instance_start(process_key="payment_wait", data={"order_id": o}) for o in order_ids]


# --- correlation --------------------------------------------------------------------------------------------

def test_correlation_key_delivers_only_to_the_matching_instance(deploy, alice):
    deploy(MESSAGES / "payment_wait.bpmn")
    first, second, third = start_payment_waits("A-1", "A-2", "A-3")
    assert subscriptions(second) == [("wait_payment", "payment_received", "A-2")]

    # SpiffWorkflow alone would hand this message to all three: none has correlation values yet.
    from SpiffWorkflow.bpmn.util import BpmnEvent
    from processes.services import _load

    for instance in (first, second, third):
        workflow = _load(reload(instance))
        (waiting,) = workflow.event_manager.tasks.values()
        assert workflow.correlations == {}
        event = BpmnEvent(waiting.task_spec.event_definition, payload={"order_id": "A-2"},
                          correlations={"order": {"order_id": "A-2"}})
        assert waiting.task_spec.catches(waiting, event)

    payload = {"order_id": "A-2", "amount": 120}
    result = messages.message_correlate(name="payment_received", correlation_key="A-2", payload=payload, actor=alice)

    assert result == messages.CorrelationResult(advanced=[second.pk], started=[])
    assert reload(second).status == InstanceStatus.COMPLETED
    assert second.data["payment"] == payload
    assert subscriptions(second) == []
    assert commands(second) == ["instance_start", "message_received", "instance_complete"]
    received = AuditEvent.objects.get(instance=second, command="message_received")
    assert received.element_id == "wait_payment" and received.actor == alice
    assert received.payload == {"name": "payment_received", "correlation_key": "A-2", "payload": payload}
    for other, key in ((first, "A-1"), (third, "A-3")):
        assert reload(other).status == InstanceStatus.WAITING
        assert subscriptions(other) == [("wait_payment", "payment_received", key)]
    assert ("wait_payment", "done") in set(Activity.objects.filter(instance=second).values_list("element_id", "state"))


def test_business_key_correlates_a_message_without_correlation_properties(deploy):
    deploy(MESSAGES / "document_signing.bpmn")
    doc1 = services.instance_start(process_key="document_signing", business_key="DOC-1")
    doc2 = services.instance_start(process_key="document_signing", business_key="DOC-2")
    assert subscriptions(doc1) == [("wait_signature", "document_signed", "DOC-1")]  # a receive task

    result = messages.message_correlate(name="document_signed", business_key="DOC-2", payload={"by": "carol"})
    assert result.advanced == [doc2.pk]
    assert reload(doc2).status == InstanceStatus.COMPLETED and doc2.data["signature"] == {"by": "carol"}
    assert reload(doc1).status == InstanceStatus.WAITING

    # The business key is the subscription's correlation key, so a keyed message reaches it too.
    assert messages.message_correlate(name="document_signed", correlation_key="DOC-1").advanced == [doc1.pk]
    assert reload(doc1).status == InstanceStatus.COMPLETED
    assert MessageSubscription.objects.count() == 0


def test_several_matching_instances_are_an_ambiguous_conflict_and_change_nothing(deploy):
    deploy(MESSAGES / "payment_wait.bpmn")
    deploy(MESSAGES / "document_signing.bpmn")
    twins = start_payment_waits("A-1", "A-1")
    docs = [services.instance_start(process_key="document_signing", business_key=k) for k in ("D-1", "D-2")]
    before = {i.pk: reload(i).version for i in (*twins, *docs)}

    with pytest.raises(Conflict) as keyed:
        messages.message_correlate(name="payment_received", correlation_key="A-1", payload={"order_id": "A-1"})
    assert keyed.value.code == "ambiguous_correlation"
    assert keyed.value.details == {"instances": sorted(i.pk for i in twins)}
    with pytest.raises(Conflict, match="matches 2 waiting instances") as unkeyed:
        messages.message_correlate(name="document_signed")
    assert unkeyed.value.code == "ambiguous_correlation"

    assert {i.pk: reload(i).version for i in (*twins, *docs)} == before
    assert MessageSubscription.objects.count() == 4


def test_process_variable_correlation_keys_the_wait_and_the_library_agrees(deploy):
    deploy(MESSAGES / "invoice_wait.bpmn")
    inv7, inv8 = (services.instance_start(process_key="invoice_wait", data={"invoice": {"number": n}})
                  for n in ("INV-7", "INV-8"))
    assert subscriptions(inv7) == [("wait_paid", "invoice_paid", "INV-7")]

    # Here the library has correlation values too (from the expression); Baton's delivery satisfies its check.
    from processes.services import _load

    assert _load(reload(inv8)).correlations == {"invoice": {"invoice_number": "INV-8"}}
    result = messages.message_correlate(name="invoice_paid", correlation_key="INV-8",
                                        payload={"invoice_number": "INV-8", "amount": 40})
    assert result.advanced == [inv8.pk]
    assert reload(inv8).status == InstanceStatus.COMPLETED
    assert inv8.data["paid"] == {"invoice_number": "INV-8", "amount": 40}
    assert reload(inv7).status == InstanceStatus.WAITING


def test_unknown_message_or_key_is_not_found(deploy):
    deploy(MESSAGES / "payment_wait.bpmn")
    start_payment_waits("A-1")
    with pytest.raises(NotFound, match="no instance is waiting for message 'no_such_message'"):
        messages.message_correlate(name="no_such_message")
    with pytest.raises(NotFound, match="with key 'Z-9'"):
        messages.message_correlate(name="payment_received", correlation_key="Z-9", payload={"order_id": "Z-9"})


def test_payload_without_its_correlation_property_is_refused(deploy):
    deploy(MESSAGES / "payment_wait.bpmn")
    (instance,) = start_payment_waits("A-1")
    version = instance.version
    with pytest.raises(ValidationError, match="correlation properties \\(order_id\\)"):
        messages.message_correlate(name="payment_received", correlation_key="A-1", payload={"amount": 5})
    with pytest.raises(ValidationError, match="JSON object"):
        messages.message_correlate(name="payment_received", correlation_key="A-1", payload=["A-1"])
    assert reload(instance).version == version and instance.status == InstanceStatus.WAITING


# --- message start event ------------------------------------------------------------------------------------

@pytest.mark.sqlite_smoke
def test_message_start_event_starts_an_instance_with_the_payload(deploy, alice):
    deploy(SAMPLES / "message_started" / "message_started.bpmn")
    order = {"order_id": "SO-1001", "customer": "ACME", "lines": [{"sku": "A-1", "qty": 2}]}

    result = messages.message_correlate(name="order_received", correlation_key="SO-1001", payload=order)

    (instance_id,) = result.started
    assert result.advanced == []
    instance = ProcessInstance.objects.get(pk=instance_id)
    assert instance.status == InstanceStatus.WAITING
    assert instance.business_key == "SO-1001"  # an uncorrelated start message is keyed by the business key
    assert instance.data["order"] == order
    assert subscriptions(instance) == []  # the start event's wait was met inside the starting command
    review = open_task(instance, "review_order")
    services.task_complete(human_task_id=review.pk, actor=alice, data={"checked": True})
    assert reload(instance).status == InstanceStatus.COMPLETED
    assert instance.data["accepted"] is True and instance.data["order"] == order
    assert commands(instance) == ["instance_start", "message_received", "task_complete", "instance_complete"]

    # Every message starts its own instance; no key at all is fine for a start event.
    again = messages.message_correlate(name="order_received", payload={"order": "second"})
    assert len(again.started) == 1 and again.started != result.started


# --- thrown messages and signals between instances ----------------------------------------------------------

def test_a_send_task_in_one_instance_advances_another_through_a_job(deploy):
    deploy(MESSAGES / "payment_wait.bpmn")
    deploy(MESSAGES / "payment_sender.bpmn")
    other, receiver = start_payment_waits("A-1", "A-2")

    sender = services.instance_start(process_key="payment_sender", data={"order_id": "A-2", "amount": 99})

    assert sender.status == InstanceStatus.COMPLETED  # completing does not cancel the message job
    job = Job.objects.get(kind="message")
    assert job.status == JobStatus.QUEUED and job.instance is None and job.element_id == "send_payment"
    assert job.params == {"name": "payment_received", "payload": {"order_id": "A-2", "amount": 99},
                          "correlation_key": "A-2", "source_instance": sender.pk}
    assert "message_sent" in commands(sender)
    assert reload(receiver).status == InstanceStatus.WAITING  # nothing is delivered before the job runs

    assert jobs.job_execute(job_id=job.pk) == "done"

    assert reload(receiver).status == InstanceStatus.COMPLETED
    assert receiver.data["payment"] == {"order_id": "A-2", "amount": 99}
    assert reload(other).status == InstanceStatus.WAITING
    job.refresh_from_db()
    assert job.status == JobStatus.DONE and job.result == {"advanced": [receiver.pk], "started": []}
    assert jobs.job_execute(job_id=job.pk) == "skipped"  # delivered once


def test_a_message_nobody_waits_for_yet_is_retried_until_someone_does(deploy):
    deploy(MESSAGES / "payment_wait.bpmn")
    deploy(MESSAGES / "payment_sender.bpmn")
    services.instance_start(process_key="payment_sender", data={"order_id": "A-9", "amount": 1})
    job = Job.objects.get(kind="message")

    assert jobs.job_execute(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.attempt == 1 and job.last_error.startswith("not_found:")
    assert job.run_at > timezone.now()  # backoff

    (late,) = start_payment_waits("A-9")
    Job.objects.filter(pk=job.pk).update(run_at=timezone.now())
    assert jobs.job_execute(job_id=job.pk) == "done"
    assert reload(late).status == InstanceStatus.COMPLETED


def test_an_expired_lease_on_a_message_job_requeues_it(deploy):
    deploy(MESSAGES / "payment_sender.bpmn")
    services.instance_start(process_key="payment_sender", data={"order_id": "A-1", "amount": 1})
    job = jobs.job_claim(job_id=Job.objects.get(kind="message").pk)
    later = timezone.now() + timedelta(hours=1)

    assert jobs.jobs_recover_expired(now=later) == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.last_error.startswith("LeaseExpired")


def test_signal_broadcast_reaches_every_waiting_instance_and_starts_signal_processes(deploy, alice):
    deploy(MESSAGES / "shutdown_wait.bpmn")
    deploy(MESSAGES / "shutdown_report.bpmn")
    waiting = [services.instance_start(process_key="shutdown_wait") for _ in range(2)]
    assert subscriptions(waiting[0]) == [("wait_shutdown", "signal:shutdown", "")]

    result = messages.signal_broadcast(name="shutdown", payload={"reason": "maintenance"}, actor=alice)

    assert result.advanced == sorted(i.pk for i in waiting)
    for instance in waiting:
        assert reload(instance).status == InstanceStatus.COMPLETED
        assert instance.data["shutdown"] == {"reason": "maintenance"}
        assert "signal_received" in commands(instance)
    (report_id,) = result.started
    report = ProcessInstance.objects.get(pk=report_id)
    assert report.data["shutdown"] == {"reason": "maintenance"}
    assert open_task(report, "write_report")
    assert messages.signal_broadcast(name="nobody_listens") == messages.CorrelationResult()


def test_a_thrown_signal_is_broadcast_by_a_job(deploy):
    deploy(MESSAGES / "shutdown_wait.bpmn")
    deploy(MESSAGES / "shutdown_report.bpmn")
    deploy(MESSAGES / "shutdown_trigger.bpmn")
    waiting = [services.instance_start(process_key="shutdown_wait") for _ in range(2)]

    trigger = services.instance_start(process_key="shutdown_trigger", data={"reason": "power"})

    assert trigger.status == InstanceStatus.COMPLETED
    job = Job.objects.get(kind="signal")
    assert job.params["name"] == "shutdown" and job.params["payload"] == {"reason": "power"}
    assert jobs.job_execute(job_id=job.pk) == "done"
    assert all(reload(i).status == InstanceStatus.COMPLETED for i in waiting)
    assert waiting[0].data["shutdown"] == {"reason": "power"}
    assert ProcessInstance.objects.filter(definition__process_key="shutdown_report").count() == 1


# --- boundary events, event-based gateways, errors and escalations ------------------------------------------

def test_boundary_message_interrupts_the_user_task(deploy, alice):
    deploy(MESSAGES / "review_with_cancel.bpmn")
    instance = services.instance_start(process_key="review_with_cancel", business_key="R-1")
    review = open_task(instance, "review")
    assert subscriptions(instance) == [("cancel_received", "request_withdrawn", "R-1")]

    messages.message_correlate(name="request_withdrawn", business_key="R-1", payload={"reason": "duplicate"})

    review.refresh_from_db()
    assert review.status == HumanTaskStatus.CANCELLED
    assert reload(instance).status == InstanceStatus.COMPLETED
    assert instance.data["withdrawal"] == {"reason": "duplicate"}
    states = dict(Activity.objects.filter(instance=instance).values_list("element_id", "state"))
    assert states["review"] == "cancelled" and states["withdrawn"] == "done"
    with pytest.raises(Conflict):
        services.task_complete(human_task_id=review.pk, actor=alice)


def test_completing_the_task_removes_its_boundary_subscription(deploy, alice):
    deploy(MESSAGES / "review_with_cancel.bpmn")
    instance = services.instance_start(process_key="review_with_cancel", business_key="R-2")
    services.task_complete(human_task_id=open_task(instance, "review").pk, actor=alice)
    assert reload(instance).status == InstanceStatus.COMPLETED
    assert subscriptions(instance) == []
    with pytest.raises(NotFound):
        messages.message_correlate(name="request_withdrawn", business_key="R-2")


def test_event_based_gateway_subscribes_each_branch_and_the_first_message_wins(deploy):
    deploy(MESSAGES / "decision_wait.bpmn")
    instance = services.instance_start(process_key="decision_wait", business_key="C-7")
    assert subscriptions(instance) == [
        ("approved", "decision_approved", "C-7"), ("rejected", "decision_rejected", "C-7")]

    messages.message_correlate(name="decision_rejected", correlation_key="C-7", payload={"why": "budget"})

    assert reload(instance).status == InstanceStatus.COMPLETED
    assert instance.data["rejection"] == {"why": "budget"} and "approval" not in instance.data
    assert subscriptions(instance) == []
    done = set(Activity.objects.filter(instance=instance, state="done").values_list("element_id", flat=True))
    assert {"rejected", "end_rejected"} <= done and "end_approved" not in done


def test_error_end_event_in_a_subprocess_is_caught_by_its_boundary_event(deploy, alice):
    deploy(MESSAGES / "error_boundary.bpmn")
    instance = services.instance_start(process_key="error_boundary")
    attempt = open_task(instance, "attempt")

    services.task_complete(human_task_id=attempt.pk, actor=alice, data={"result": "failed"})

    assert reload(instance).status == InstanceStatus.WAITING
    fix = open_task(instance, "fix")
    states = dict(Activity.objects.filter(instance=instance).values_list("element_id", "state"))
    assert states["sub_failed"] == "done" and states["attempt"] == "done"
    services.task_complete(human_task_id=fix.pk, actor=alice)
    assert reload(instance).status == InstanceStatus.COMPLETED
    done = set(Activity.objects.filter(instance=instance, state="done").values_list("element_id", flat=True))
    assert "end_fixed" in done and "end" not in done
    assert not instance.incidents.exists()


def test_escalation_is_caught_by_a_non_interrupting_boundary_event(deploy, alice):
    deploy(MESSAGES / "error_boundary.bpmn")
    instance = services.instance_start(process_key="error_boundary")

    services.task_complete(human_task_id=open_task(instance, "attempt").pk, actor=alice, data={"result": "escalate"})

    assert reload(instance).status == InstanceStatus.WAITING  # the sub-process went on; "help" is open
    services.task_complete(human_task_id=open_task(instance, "help").pk, actor=alice)
    assert reload(instance).status == InstanceStatus.COMPLETED
    done = set(Activity.objects.filter(instance=instance, state="done").values_list("element_id", flat=True))
    assert {"sub_escalate", "help", "end_helped", "end"} <= done
    assert "fix" not in done


# --- cost ---------------------------------------------------------------------------------------------------

def test_a_command_without_message_waits_issues_no_subscription_statement(deploy, alice, bob):
    deploy(SAMPLES / "expense_approval" / "expense_approval.bpmn")
    data = {"employee": "alice", "amount": 50, "category": "it", "description": "mouse"}
    instance = services.instance_start(process_key="expense_approval", actor=alice, data=data)
    task = instance.human_tasks.filter(status=HumanTaskStatus.OPEN).first()
    with CaptureQueriesContext(connection) as queries:
        services.task_complete(human_task_id=task.pk, actor=bob, decision="approve")
    assert not [q for q in queries.captured_queries if "subscription" in q["sql"].lower()]


def test_delivering_a_message_costs_a_bounded_number_of_statements(deploy):
    """Deterministic cost guard: find, lock, re-check, advance and persist one delivery in at most 10 statements."""
    deploy(MESSAGES / "payment_wait.bpmn")
    start_payment_waits("A-1", "A-2")
    with CaptureQueriesContext(connection) as queries:
        messages.message_correlate(name="payment_received", correlation_key="A-2", payload={"order_id": "A-2"})
    statements = [q["sql"] for q in queries.captured_queries
                  if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) <= 10, "\n".join(statements)
