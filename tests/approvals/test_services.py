"""Claim, release, delegate and decide: conflicts, rights, audit events and form validation."""
from __future__ import annotations

import pytest

from approvals.models import Delegation
from approvals.services import task_claim, task_decide, task_delegate, task_release
from core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from processes import services
from processes.models import AuditEvent, HumanTaskStatus, InstanceStatus

from .conftest import open_task, upload_sample

pytestmark = pytest.mark.django_db


@pytest.fixture
def expense(users):
    upload_sample("expense_approval")
    return services.instance_start(process_key="expense_approval", actor=users["alice"], business_key="EXP-9",
                                   data={"employee": "alice", "amount": 5000, "category": "it",
                                         "description": "laptop"})


def commands(instance):
    return list(AuditEvent.objects.filter(instance=instance).order_by("seq").values_list("command", flat=True))


def test_claim_then_someone_else_gets_a_conflict(users, expense):
    task = open_task(expense, "manager_approval")
    claimed = task_claim(human_task_id=task.pk, actor=users["mike"])
    assert claimed.assignee == users["mike"]
    assert task_claim(human_task_id=task.pk, actor=users["mike"]).assignee == users["mike"]  # idempotent
    with pytest.raises(Conflict) as taken:
        task_claim(human_task_id=task.pk, actor=users["max"])
    assert taken.value.code == "task_claimed"
    with pytest.raises(Conflict):
        task_decide(human_task_id=task.pk, actor=users["max"], data={"decision": "approve"})
    with pytest.raises(NotFound):  # not a candidate and not visible
        task_claim(human_task_id=task.pk, actor=users["fiona"])
    assert commands(expense) == ["instance_start", "task_claim"]


def test_release_only_by_assignee_or_operator(users, expense):
    task = open_task(expense, "manager_approval")
    with pytest.raises(Conflict):
        task_release(human_task_id=task.pk, actor=users["mike"])
    task_claim(human_task_id=task.pk, actor=users["mike"])
    with pytest.raises(PermissionDenied):
        task_release(human_task_id=task.pk, actor=users["max"])
    assert task_release(human_task_id=task.pk, actor=users["mike"]).assignee is None
    task_claim(human_task_id=task.pk, actor=users["max"])
    assert task_release(human_task_id=task.pk, actor=users["oscar"]).assignee is None
    assert commands(expense)[1:] == ["task_claim", "task_release", "task_claim", "task_release"]
    release = AuditEvent.objects.filter(instance=expense, command="task_release").last()
    assert release.actor == users["oscar"] and release.payload == {"previous_assignee": "max"}


def test_delegate_hands_the_task_over_and_is_recorded(users, expense):
    task = open_task(expense, "manager_approval")
    task_claim(human_task_id=task.pk, actor=users["mike"])
    with pytest.raises(PermissionDenied):
        task_delegate(human_task_id=task.pk, actor=users["max"], to_user=users["eve"])
    task_delegate(human_task_id=task.pk, actor=users["mike"], to_user=users["eve"], reason="on leave")
    task.refresh_from_db()
    assert task.assignee == users["eve"]
    row = Delegation.objects.get(task=task)
    assert (row.from_user, row.to_user, row.by_user, row.reason) == (users["mike"], users["eve"], users["mike"],
                                                                     "on leave")
    event = AuditEvent.objects.get(instance=expense, command="task_delegate")
    assert event.payload == {"from": "mike", "to": "eve", "reason": "on leave"}
    # eve, not a Manager, now sees and decides it; mike no longer can
    with pytest.raises(Conflict):
        task_decide(human_task_id=task.pk, actor=users["mike"], data={"decision": "approve"})
    task_decide(human_task_id=task.pk, actor=users["eve"], data={"decision": "approve"})
    task.refresh_from_db()
    assert task.status == HumanTaskStatus.COMPLETED and task.completed_by == users["eve"]
    with pytest.raises(Conflict):
        task_delegate(human_task_id=task.pk, actor=users["oscar"], to_user=users["mike"])


def test_form_errors_are_field_level_and_change_nothing(users, expense):
    task = open_task(expense, "manager_approval")
    with pytest.raises(ValidationError) as bad:
        task_decide(human_task_id=task.pk, actor=users["mike"], data={"decision": "maybe", "reason": 3})
    fields = {d["field"]: d["message"] for d in bad.value.details}
    assert set(fields) == {"/decision", "/reason"}
    assert "'approve'" in fields["/decision"]
    with pytest.raises(ValidationError) as missing:
        task_decide(human_task_id=task.pk, actor=users["mike"], data={"decision": "reject"})
    assert missing.value.details == [{"field": "/reason", "message": "This field is required."}]
    with pytest.raises(ValidationError) as empty:
        task_decide(human_task_id=task.pk, actor=users["mike"], data={})
    assert empty.value.details == [{"field": "/decision", "message": "This field is required."}]
    task.refresh_from_db()
    assert task.status == HumanTaskStatus.OPEN and task.assignee is None
    assert commands(expense) == ["instance_start"]


def test_decide_auto_claims_merges_the_decision_and_audits_the_data(users, expense):
    task = open_task(expense, "manager_approval")
    done = task_decide(human_task_id=task.pk, actor=users["mike"], decision="approve", data={"reason": "fine"})
    assert done.status == HumanTaskStatus.COMPLETED and done.assignee == users["mike"]
    assert done.decision == "approve" and done.submitted["decision"] == "approve"
    event = AuditEvent.objects.get(instance=expense, command="task_complete")
    assert event.payload["data"]["reason"] == "fine" and event.payload["decision"] == "approve"
    expense.refresh_from_db()
    assert expense.data["decisions"]["manager_approval"]["outcome"] == "approve"
    finance = open_task(expense, "finance_approval")
    task_decide(human_task_id=finance.pk, actor=users["fiona"], data={"decision": "reject", "reason": "budget"})
    expense.refresh_from_db()
    assert expense.status == InstanceStatus.COMPLETED
    assert expense.data["decisions"]["finance_approval"]["outcome"] == "reject"


def test_completed_task_cannot_be_claimed_or_decided_again(users, expense):
    task = open_task(expense, "manager_approval")
    task_decide(human_task_id=task.pk, actor=users["mike"], data={"decision": "approve"})
    for call in (lambda: task_claim(human_task_id=task.pk, actor=users["mike"]),
                 lambda: task_decide(human_task_id=task.pk, actor=users["mike"], data={"decision": "approve"})):
        with pytest.raises(Conflict) as again:
            call()
        assert again.value.code == "task_not_open"


def test_reassign_by_the_assignees_manager_or_an_operator(users, expense):
    from approvals.people import profile_of
    from approvals.services import task_reassign

    mike, sue, max_ = users["mike"], users["sue"], users["max"]
    profile = profile_of(mike)
    profile.manager = users["fiona"]  # fiona manages mike in the directory but is no Manager candidate
    profile.save()
    task = open_task(expense, "manager_approval")
    with pytest.raises(NotFound):  # unassigned: fiona does not see it
        task_reassign(human_task_id=task.pk, actor=users["fiona"], to_user=max_, reason="balance")
    from approvals.selectors import instances_for, tasks_for

    assert not instances_for(user=users["fiona"]).exists()
    task_claim(human_task_id=task.pk, actor=mike)
    assert instances_for(user=users["fiona"]).get() == expense  # her report holds a task in it...
    assert list(tasks_for(user=users["fiona"])) == []  # ...but her inbox stays hers
    with pytest.raises(PermissionDenied) as denied:  # a fellow candidate may not take over mike's claim
        task_reassign(human_task_id=task.pk, actor=sue, to_user=sue, reason="mine now")
    assert denied.value.code == "not_permitted"
    with pytest.raises(ValidationError) as no_reason:
        task_reassign(human_task_id=task.pk, actor=users["fiona"], to_user=max_, reason="  ")
    assert no_reason.value.details[0]["field"] == "reason"
    with pytest.raises(ValidationError):
        users["eve"].is_active = False
        users["eve"].save()
        task_reassign(human_task_id=task.pk, actor=users["fiona"], to_user=users["eve"], reason="x")
    with pytest.raises(Conflict):
        task_reassign(human_task_id=task.pk, actor=users["fiona"], to_user=mike, reason="x")
    task = task_reassign(human_task_id=task.pk, actor=users["fiona"], to_user=max_, reason="mike is overloaded")
    assert task.assignee == max_
    delegation = Delegation.objects.get(task=task)
    assert (delegation.kind, delegation.from_user, delegation.to_user, delegation.by_user) == (
        "reassign", mike, max_, users["fiona"])
    event = AuditEvent.objects.filter(instance=expense, command="task_reassign").get()
    assert event.actor == users["fiona"]
    assert event.payload == {"from": "mike", "to": "max", "reason": "mike is overloaded"}
    with pytest.raises(NotFound):  # max is not her report: she no longer sees the task
        task_reassign(human_task_id=task.pk, actor=users["fiona"], to_user=mike, reason="back")
    assert not instances_for(user=users["fiona"]).exists()
    task_reassign(human_task_id=task.pk, actor=users["oscar"], to_user=mike, reason="back to mike")
    task.refresh_from_db()
    assert task.assignee == mike and commands(expense)[-1] == "task_reassign"
