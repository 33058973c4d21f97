"""Candidates, assignee, due date and priority computed when a task opens (approvals.candidates)."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from django.utils import timezone

from approvals.candidates import SettingError, due_at_from
from approvals.people import profile_of
from approvals.selectors import tasks_for
from approvals.services import task_decide
from core.errors import DiagramRejected, NotFound
from processes import services
from processes.audit import audit_verify
from processes.models import AuditEvent, InstanceStatus
from tests.processes.conftest import upload

from .conftest import open_task, upload_sample

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "data"
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)


def _directory(users, **managers):
    for name, manager in managers.items():
        profile = profile_of(users[name])
        profile.manager = users[manager]
        profile.save()


def _leave(tmp_path=None, **replace):
    """Upload the leave request diagram (optionally with property values replaced)."""
    path = DATA / "leave_request.bpmn"
    if replace:
        folder = tmp_path / "leave"
        folder.mkdir()
        xml = path.read_text()
        for old, new in replace.items():
            assert old in xml
            xml = xml.replace(old, new)
        path = folder / "leave_request.bpmn"
        path.write_text(xml)
    return upload(path)[0]


def _notes(instance):
    return [e.payload for e in AuditEvent.objects.filter(instance=instance, command="task_open_note").order_by("seq")]


def test_the_requesters_directory_manager_approves_end_to_end(users):
    _leave()
    _directory(users, alice="mike")
    profile = profile_of(users["alice"])
    profile.attributes = {"hr_partner": "lena"}
    profile.save()
    instance = services.instance_start(process_key="leave_request", actor=users["alice"],
                                       data={"days": 7, "start_date": "2026-12-01"})
    approval = open_task(instance, "manager_approval")
    assert approval.assignee == users["mike"]
    assert approval.priority == 3  # =3 if days > 5 else 1
    assert abs((approval.due_at - (approval.created_at + dt.timedelta(days=2))).total_seconds()) < 5
    assert approval in tasks_for(user=users["mike"], scope="mine")
    assert approval not in tasks_for(user=users["max"], scope="all")  # another manager: it is mike's
    with pytest.raises(NotFound):  # the requester does not even see her manager's task
        task_decide(human_task_id=approval.pk, actor=users["alice"], data={})
    task_decide(human_task_id=approval.pk, actor=users["mike"], data={}, decision="approve")

    hr = open_task(instance, "hr_check")
    assert hr.candidate_users == ["lena"] and hr.candidate_groups == []  # computed people replace the lane
    assert hr.due_at == timezone.make_aware(dt.datetime(2026, 12, 1))  # =start_date, an ISO date
    assert list(tasks_for(user=users["sue"], scope="all")) == []  # sue is in Managers: not her task
    task_decide(human_task_id=hr.pk, actor=users["lena"], data={})
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    assert _notes(instance) == []


def test_no_manager_in_the_directory_falls_back_to_the_lane_with_a_note(users):
    _leave()
    instance = services.instance_start(process_key="leave_request", actor=users["alice"],
                                       data={"days": 1, "start_date": "not a date"})
    approval = open_task(instance, "manager_approval")
    assert approval.assignee is None and approval.candidate_groups == ["Managers"] and approval.priority == 1
    assert approval in tasks_for(user=users["max"], scope="groups")
    [note] = _notes(instance)
    assert note["setting"] == "assignee" and note["source"] == "=manager_of(requester)"
    assert "got 0" in note["error"] and "candidates" in note["fallback"]
    task_decide(human_task_id=approval.pk, actor=users["max"], data={}, decision="approve")
    hr = open_task(instance, "hr_check")
    assert hr.candidate_users == ["nobody-known"]  # the expression's own default
    assert hr.due_at is None
    due_note = _notes(instance)[-1]
    assert due_note["setting"] == "due_date" and "not a date" in due_note["error"]
    assert due_note["fallback"] == "no due date"
    assert audit_verify(chain=f"instance:{instance.pk}") == []


def test_a_failing_candidate_expression_keeps_the_lane_and_says_why(users, tmp_path):
    _leave(tmp_path, **{"=[user_attr(requester, 'hr_partner') or 'nobody-known']": "=[hr_partner_of_requester]"})
    _directory(users, alice="mike")
    instance = services.instance_start(process_key="leave_request", actor=users["alice"], data={"days": 2})
    task_decide(human_task_id=open_task(instance, "manager_approval").pk, actor=users["mike"], data={})
    hr = open_task(instance, "hr_check")
    assert hr.candidate_groups == ["Managers"] and hr.candidate_users == []
    note = [n for n in _notes(instance) if n["setting"] == "candidate_users"][0]
    assert "hr_partner_of_requester" in note["error"] and "Managers" in note["fallback"]


def test_expressions_are_checked_at_upload_and_sandboxed(users, tmp_path):
    with pytest.raises(DiagramRejected) as refused:
        _leave(tmp_path, **{"=manager_of(requester)": "=__import__('os').getcwd()"})
    assert "[manager_approval]: property 'baton:assignee'" in str(refused.value)
    assert "not allowed" in str(refused.value)
    # a definition stored before the check (or edited in the database) still cannot escape at run time
    definition = _leave()
    definition.elements["manager_approval"]["properties"]["baton:assignee"] = "=__import__('os').getcwd()"
    definition.save(update_fields=["elements"])
    instance = services.instance_start(process_key="leave_request", actor=users["alice"], data={"days": 2})
    assert open_task(instance, "manager_approval").assignee is None
    [note] = [n for n in _notes(instance) if n["setting"] == "assignee"]
    assert "'__import__' is not allowed" in note["error"]


def test_static_assignee_and_unknown_user(users, tmp_path):
    _leave(tmp_path, **{"=manager_of(requester)": "lena"})
    instance = services.instance_start(process_key="leave_request", actor=users["alice"], data={"days": 2})
    assert open_task(instance, "manager_approval").assignee == users["lena"]
    users["lena"].is_active = False
    users["lena"].save()
    other = services.instance_start(process_key="leave_request", actor=users["alice"], data={"days": 2})
    assert open_task(other, "manager_approval").assignee is None
    assert "no active user 'lena'" in _notes(other)[0]["error"]


def test_due_date_and_priority_expressions(users, tmp_path):
    _leave(tmp_path, **{'value="P2D"': 'value="=timedelta(hours=hours)"',
                        "=3 if days &gt; 5 else 1": "=days * 10"})
    instance = services.instance_start(process_key="leave_request", actor=users["alice"],
                                       data={"days": 4, "hours": 5})
    approval = open_task(instance, "manager_approval")
    assert approval.priority == 40
    assert abs((approval.due_at - approval.created_at - dt.timedelta(hours=5)).total_seconds()) < 5
    bad = services.instance_start(process_key="leave_request", actor=users["alice"], data={"days": "x", "hours": None})
    approval = open_task(bad, "manager_approval")
    assert approval.priority == 0 and approval.due_at is None
    assert {n["setting"] for n in _notes(bad)} >= {"due_date", "priority"}


def test_due_at_from_accepts_durations_datetimes_and_dates():
    assert due_at_from("P2D", NOW) == NOW + dt.timedelta(days=2)
    assert due_at_from("PT4H", NOW) == NOW + dt.timedelta(hours=4)
    assert due_at_from("P1W", NOW) == NOW + dt.timedelta(weeks=1)
    assert due_at_from("P1DT30M", NOW) == NOW + dt.timedelta(days=1, minutes=30)
    assert due_at_from("2026-04-01T12:00:00+00:00", NOW) == dt.datetime(2026, 4, 1, 12, tzinfo=dt.timezone.utc)
    assert due_at_from(dt.timedelta(hours=1), NOW) == NOW + dt.timedelta(hours=1)
    assert timezone.is_aware(due_at_from(dt.date(2026, 4, 1), NOW))
    for bad in ("P", "PT", "2 days", "", 5, None):
        with pytest.raises(SettingError):
            due_at_from(bad, NOW)


def test_camunda_due_date_and_lane_owners_from_task_data(users, tmp_path):
    folder = tmp_path / "expense_approval"
    from .conftest import sample

    shutil.copytree(sample("expense_approval").parent, folder)
    path = folder / "expense_approval.bpmn"
    xml = path.read_text().replace(
        '<bpmn:userTask id="manager_approval" name="Manager approval">',
        '<bpmn:userTask id="manager_approval" name="Manager approval" '
        'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" camunda:dueDate="PT4H">')
    path.write_text(xml)
    upload(path)
    instance = services.instance_start(process_key="expense_approval", actor=users["alice"], data={
        "employee": "alice", "amount": 50, "category": "it", "description": "mouse",
        "lane_owners": {"Managers": ["eve"], "Finance": ["fiona"]}})
    task = open_task(instance, "manager_approval")
    assert task.candidate_users == ["eve"] and task.candidate_groups == ["Managers"]
    assert abs((task.due_at - task.created_at - dt.timedelta(hours=4)).total_seconds()) < 5
    assert task in tasks_for(user=users["eve"], scope="groups")


def test_plain_samples_get_no_notes_and_no_due_date(users):
    upload_sample("expense_approval")
    instance = services.instance_start(process_key="expense_approval", actor=users["alice"], data={
        "employee": "alice", "amount": 50, "category": "it", "description": "mouse"})
    task = open_task(instance, "manager_approval")
    assert task.due_at is None and task.assignee is None and task.candidate_groups == ["Managers"]
    assert _notes(instance) == []
