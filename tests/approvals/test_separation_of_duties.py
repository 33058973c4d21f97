"""A3: separation of duties is an engine rule; denials are explained and audited; overrides need both a
permission and a reason and are audited with the reason."""
from __future__ import annotations

import pytest

from approvals.services import task_decide, task_delegate
from core.errors import PermissionDenied
from processes import services
from processes.models import AuditEvent, HumanTaskStatus, InstanceStatus

from .conftest import fresh, grant_override, open_task, upload_sample, upload_variant

pytestmark = pytest.mark.django_db
EXPENSE = {"employee": "x", "amount": 5000, "category": "it", "description": "laptop"}


def _start(key, user, data):
    return services.instance_start(process_key=key, actor=user, data=data)


def test_a3_requester_may_not_approve_own_request(users):
    upload_sample("expense_approval")
    mike = users["mike"]
    instance = _start("expense_approval", mike, EXPENSE)  # a manager files his own expense
    task = open_task(instance, "manager_approval")
    with pytest.raises(PermissionDenied) as denied:
        task_decide(human_task_id=task.pk, actor=mike, data={"decision": "approve"})
    assert denied.value.code == "separation_of_duties" and denied.value.status == 403
    assert "requester may not approve" in denied.value.message
    assert denied.value.details["rules"] == ["requesterMayNotApprove"]
    task.refresh_from_db()
    assert task.status == HumanTaskStatus.OPEN and task.assignee is None  # the auto-claim rolled back too
    event = AuditEvent.objects.get(instance=instance, command="sod_denied")
    assert event.actor == mike and event.payload["rules"] == ["requesterMayNotApprove"]
    assert "requester may not approve" in event.payload["message"]
    # the engine refuses it too, whatever path is used
    with pytest.raises(PermissionDenied):
        services.task_complete(human_task_id=task.pk, actor=mike, data={"decision": "approve"}, decision="approve")
    # another manager may
    task_decide(human_task_id=task.pk, actor=users["max"], data={"decision": "reject", "reason": "no"})


def test_a3_delegating_to_the_requester_does_not_get_around_the_rule(users):
    upload_sample("expense_approval")
    instance = _start("expense_approval", users["alice"], EXPENSE)
    task = open_task(instance, "manager_approval")
    task_delegate(human_task_id=task.pk, actor=users["oscar"], to_user=users["alice"])
    with pytest.raises(PermissionDenied) as denied:
        task_decide(human_task_id=task.pk, actor=users["alice"], data={"decision": "approve"})
    assert denied.value.code == "separation_of_duties"


def test_requester_lane_tasks_stay_with_the_requester(users):
    """rejection_loop's 'Submit request' is in the Requesters lane: its requester completes it."""
    upload_sample("rejection_loop")
    from django.contrib.auth.models import Group

    alice, mike = users["alice"], users["mike"]
    alice.groups.add(Group.objects.get(name="Approvers"))  # she may approve others' requests, not her own
    alice = fresh(alice)
    instance = _start("rejection_loop", alice, {"item": "desk", "price": 100})
    submit = open_task(instance, "submit_request")
    task_decide(human_task_id=submit.pk, actor=alice, data={"item": "desk", "price": 100, "justification": "back"})
    review = open_task(instance, "review_request")
    with pytest.raises(PermissionDenied):
        task_decide(human_task_id=review.pk, actor=alice, data={"decision": "approve"})
    task_decide(human_task_id=review.pk, actor=mike, data={"decision": "approve"})
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED


def test_a3_same_person_may_not_approve_chained_steps(users, tmp_path):
    upload_variant("expense_approval", tmp_path, process_properties={"baton:distinctApprovers": "true"})
    sue = users["sue"]  # in Managers and Finance
    instance = _start("expense_approval", users["alice"], EXPENSE)
    task_decide(human_task_id=open_task(instance, "manager_approval").pk, actor=sue, data={"decision": "approve"})
    finance = open_task(instance, "finance_approval")
    with pytest.raises(PermissionDenied) as denied:
        task_decide(human_task_id=finance.pk, actor=sue, data={"decision": "approve"})
    assert denied.value.code == "separation_of_duties"
    assert denied.value.details["rules"] == ["distinctApprovers"]
    assert "Manager approval" in denied.value.message
    assert AuditEvent.objects.filter(instance=instance, command="sod_denied").count() == 1
    task_decide(human_task_id=finance.pk, actor=users["fiona"], data={"decision": "approve"})
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED


def test_without_the_property_chained_steps_may_share_an_approver(users):
    upload_sample("expense_approval")
    sue = users["sue"]
    instance = _start("expense_approval", users["alice"], EXPENSE)
    task_decide(human_task_id=open_task(instance, "manager_approval").pk, actor=sue, data={"decision": "approve"})
    task_decide(human_task_id=open_task(instance, "finance_approval").pk, actor=sue, data={"decision": "approve"})
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED


def test_a3_override_needs_permission_and_reason_and_is_audited(users):
    upload_sample("expense_approval")
    mike = users["mike"]
    instance = _start("expense_approval", mike, EXPENSE)
    task = open_task(instance, "manager_approval")

    with pytest.raises(PermissionDenied) as no_permission:
        task_decide(human_task_id=task.pk, actor=mike, data={"decision": "approve"}, override_reason="urgent")
    assert no_permission.value.code == "override_not_permitted"

    grant_override(mike)
    mike = fresh(mike)
    with pytest.raises(PermissionDenied) as no_reason:
        task_decide(human_task_id=task.pk, actor=mike, data={"decision": "approve"}, override_reason="   ")
    assert no_reason.value.code == "separation_of_duties"

    done = task_decide(human_task_id=task.pk, actor=mike, data={"decision": "approve"},
                       override_reason="CFO asked me to approve while the other managers are away")
    assert done.status == HumanTaskStatus.COMPLETED
    events = list(AuditEvent.objects.filter(instance=instance).order_by("seq").values_list("command", "payload"))
    names = [name for name, _ in events]
    assert names.count("sod_denied") == 1  # the reasonless attempt; the unpermitted one never reached the rules
    override = dict(events)["sod_override"]
    assert override["rules"] == ["requesterMayNotApprove"]
    assert override["reason"] == "CFO asked me to approve while the other managers are away"
    assert names.index("sod_override") == names.index("task_complete") - 1
    from processes.audit import audit_verify
    assert audit_verify(chain=f"instance:{instance.pk}") == []


def test_parallel_approvals_through_task_decide(users, tmp_path):
    upload_variant("parallel_approvals", tmp_path, process_properties={"baton:distinctApprovers": "true"})
    instance = _start("parallel_approvals", users["alice"], {"contract": "NDA", "value": 12000})
    legal, finance = open_task(instance, "legal_review"), open_task(instance, "finance_review")
    task_decide(human_task_id=legal.pk, actor=users["sue"], data={"decision": "approve"})
    with pytest.raises(PermissionDenied):  # sue is in Finance too, but already decided the parallel branch
        task_decide(human_task_id=finance.pk, actor=users["sue"], data={"decision": "reject", "reason": "price"})
    task_decide(human_task_id=finance.pk, actor=users["fiona"], data={"decision": "reject", "reason": "price"})
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    assert instance.data["decisions"]["legal_review"]["outcome"] == "approve"
    assert instance.data["decisions"]["finance_review"]["outcome"] == "reject"
    assert instance.data["outcome"] == "rejected"


def _loop_once(users, tmp_path, properties):
    from django.contrib.auth.models import Group

    upload_variant("rejection_loop", tmp_path, process_properties=properties)
    users["max"].groups.add(Group.objects.get_or_create(name="Approvers")[0])
    instance = _start("rejection_loop", users["alice"], {"item": "desk", "price": 100})
    submit = {"item": "desk", "price": 100, "justification": "back pain"}
    task_decide(human_task_id=open_task(instance, "submit_request").pk, actor=users["alice"], data=submit)
    task_decide(human_task_id=open_task(instance, "review_request").pk, actor=users["mike"],
                data={"decision": "request_changes", "reason": "cheaper model?"})
    # the requester re-submits: her task is no approval step, so approveOnce never counts it
    task_decide(human_task_id=open_task(instance, "submit_request").pk, actor=users["alice"], data=submit)
    return instance, open_task(instance, "review_request")


def test_approve_once_refuses_the_same_step_again_in_a_loop(users, tmp_path):
    instance, review = _loop_once(users, tmp_path, {"baton:approveOnce": "true"})
    with pytest.raises(PermissionDenied) as denied:
        task_decide(human_task_id=review.pk, actor=users["mike"], data={"decision": "approve"})
    assert denied.value.details["rules"] == ["approveOnce"]
    assert "already approved 'Review request'" in denied.value.message
    assert AuditEvent.objects.get(instance=instance, command="sod_denied").payload["rules"] == ["approveOnce"]
    grant_override(users["mike"])
    task_decide(human_task_id=review.pk, actor=fresh(users["mike"]), data={"decision": "approve"},
                override_reason="only approver in the office")
    override = AuditEvent.objects.get(instance=instance, command="sod_override")
    assert override.payload["rules"] == ["approveOnce"]
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED


def test_approve_once_lets_another_approver_decide_the_loop(users, tmp_path):
    instance, review = _loop_once(users, tmp_path, {"baton:approveOnce": "true"})
    task_decide(human_task_id=review.pk, actor=fresh(users["max"]), data={"decision": "approve"})
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED


def test_distinct_approvers_alone_allows_the_same_step_again(users, tmp_path):
    instance, review = _loop_once(users, tmp_path, {"baton:distinctApprovers": "true"})
    task_decide(human_task_id=review.pk, actor=users["mike"], data={"decision": "approve"})
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED


def test_approve_once_holds_for_the_person_a_stand_in_represents(users, tmp_path):
    from approvals.people import standin_set

    instance, review = _loop_once(users, tmp_path, {"baton:approveOnce": "true"})
    standin_set(actor=users["mike"], user=users["mike"], stand_in=users["eve"])
    with pytest.raises(PermissionDenied) as denied:  # eve would approve a second time for mike
        task_decide(human_task_id=review.pk, actor=users["eve"], data={"decision": "approve"})
    assert denied.value.details["rules"] == ["approveOnce"]
    assert "mike (whom you stand in for)" in denied.value.message
