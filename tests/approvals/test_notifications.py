"""Notifications: new tasks, decisions, escalations and reminders, in the app and by e-mail through the job table."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.test import Client, override_settings
from rest_framework.test import APIClient

from approvals import services as approvals
from approvals.models import Notification, Profile
from approvals.notifications import reminders_send
from processes import jobs, services
from processes.models import HumanTask, Job, JobStatus
from processes.sweeper import sweep
from tests.approvals.conftest import open_task, upload_sample
from tests.processes.conftest import FIXTURES, upload

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
EXPENSE = {"employee": "alice", "amount": 5000, "category": "it", "description": "server"}


class RefusingBackend(BaseEmailBackend):
    """A mail server that is down: every send raises (configured with override_settings)."""

    def send_messages(self, email_messages):
        raise ConnectionRefusedError("mail server unreachable")


@pytest.fixture
def people(users):
    for name in ("alice", "mike", "max", "sue", "fiona"):
        users[name].email = f"{name}@example.com"
        users[name].save(update_fields=["email"])
    return users


def start(alice, amount=5000, key="EXP-1"):
    upload_sample("expense_approval")
    return services.instance_start(process_key="expense_approval", actor=alice, business_key=key,
                                   data={**EXPENSE, "amount": amount})


def email_jobs(**filters):
    return Job.objects.filter(kind="email", **filters).order_by("id")


def run_email_jobs() -> list[str]:
    """Run every queued e-mail job through the real job service."""
    return [jobs.job_execute(job_id=job.pk) for job in email_jobs(status=JobStatus.QUEUED)]


def notified(kind: str) -> set[str]:
    return set(Notification.objects.filter(kind=kind).values_list("user__username", flat=True))


def test_new_task_notifies_managers_in_app_and_by_email(people):
    people["eve"].groups.add(*people["mike"].groups.filter(name="Managers"))  # a member without an address
    instance = start(people["alice"])
    task = open_task(instance, "manager_approval")
    assert notified("task_new") == {"mike", "max", "sue", "eve"}  # active members of the candidate group
    notice = Notification.objects.get(user=people["mike"])
    assert notice.task == task and notice.instance == instance and notice.url == f"/tasks/{task.pk}/"
    assert "Manager approval" in notice.title and notice.read_at is None
    queued = email_jobs()
    assert sorted(j.params["to"][0] for j in queued) == ["max@example.com", "mike@example.com", "sue@example.com"]
    assert all(j.instance_id is None and j.connector == "email.send" for j in queued)  # eve: in-app only

    assert run_email_jobs() == ["done"] * 3
    assert sorted(m.to[0] for m in mail.outbox) == ["max@example.com", "mike@example.com", "sue@example.com"]
    message = next(m for m in mail.outbox if m.to == ["mike@example.com"])
    assert "Manager approval" in message.subject and f"/tasks/{task.pk}/" in message.body
    assert message.extra_headers["X-Baton-Idempotency-Key"].startswith("notify:")


def test_preferences_switch_channels_off(people):
    Profile.objects.create(user=people["mike"], notify={"task_new": {"app": False, "email": True}})
    Profile.objects.create(user=people["max"], notify={"task_new": {"app": True, "email": False}})
    Profile.objects.create(user=people["sue"], notify={"decision": {"app": False, "email": False}})  # other kind
    start(people["alice"])
    assert notified("task_new") == {"max", "sue"}
    assert sorted(j.params["to"][0] for j in email_jobs()) == ["mike@example.com", "sue@example.com"]


def test_decision_notifies_the_requester_with_outcome_and_reason(people):
    instance = start(people["alice"], amount=300)
    task = open_task(instance, "manager_approval")
    Notification.objects.all().delete()
    Job.objects.filter(kind="email").delete()
    approvals.task_decide(human_task_id=task.pk, actor=people["mike"], decision="reject",
                          data={"decision": "reject", "reason": "no receipt"}, reason="no receipt")
    notice = Notification.objects.get(kind="decision")
    assert notice.user == people["alice"] and notice.instance == instance
    assert "reject" in notice.title and "no receipt" in notice.body and "mike" in notice.body
    assert notice.url == f"/instances/{instance.pk}/"
    assert [j.params["to"] for j in email_jobs()] == [["alice@example.com"]]
    assert Notification.objects.count() == 1  # the decider is not notified of their own decision


def test_approval_over_the_limit_notifies_finance_of_its_new_task_and_the_requester(people):
    instance = start(people["alice"])
    Notification.objects.all().delete()
    approvals.task_decide(human_task_id=open_task(instance, "manager_approval").pk, actor=people["mike"],
                          decision="approve", data={"decision": "approve"})
    finance = open_task(instance, "finance_approval")
    assert set(Notification.objects.filter(kind="task_new", task=finance).values_list("user__username", flat=True)) \
        == {"fiona", "max", "sue"}
    assert notified("decision") == {"alice"}


def test_escalation_after_two_days_notifies_finance(people):
    with time_machine.travel(T0, tick=False) as clock:
        instance = start(people["alice"], amount=300)
        Notification.objects.all().delete()
        Job.objects.filter(kind="email").delete()
        clock.move_to(T0 + timedelta(days=1, hours=23))
        sweep(nudge_due=False)
        assert not Notification.objects.exists()
        clock.move_to(T0 + timedelta(days=2, minutes=1))
        assert sweep(nudge_due=False).timers_fired == 1
    escalations = Notification.objects.filter(kind="escalation")
    assert {n.user.username for n in escalations} == {"fiona", "max", "sue"}  # the Finance lane's group
    assert all(n.instance == instance and "Manager approval" in n.title for n in escalations)
    assert notified("task_new") == set()  # the manager's task is still the same one
    assert sorted(j.params["to"][0] for j in email_jobs()) == ["fiona@example.com", "max@example.com",
                                                             "sue@example.com"]
    assert all(j.params["kind"] == "escalation" for j in email_jobs())


def test_task_opened_by_an_interrupting_boundary_timer_is_an_escalation(people):
    upload(FIXTURES / "timers" / "sla_escalation.bpmn")
    with time_machine.travel(T0, tick=False) as clock:
        instance = services.instance_start(process_key="sla_escalation", actor=people["alice"])
        assert notified("task_new") == {"mike"}  # the Approvers lane
        clock.move_to(T0 + timedelta(hours=48, minutes=1))
        assert sweep(nudge_due=False).timers_fired == 1
    escalated = open_task(instance, "escalate")
    notices = Notification.objects.filter(kind="escalation")
    assert {n.user.username for n in notices} == {"mike", "max", "sue"}  # Managers: one notice each
    assert all(n.task == escalated and n.title.startswith("Escalated: Escalated approval") for n in notices)
    assert Notification.objects.filter(kind="task_new").count() == 1


def test_reminder_is_sent_once_per_task_and_person(people, settings):
    settings.BATON_REMINDER_BEFORE = "P1D"
    instance = start(people["alice"])
    task = open_task(instance, "manager_approval")
    Notification.objects.all().delete()
    Job.objects.filter(kind="email").delete()
    HumanTask.objects.filter(pk=task.pk).update(due_at=T0 + timedelta(days=3))
    with time_machine.travel(T0, tick=False) as clock:
        sweep(nudge_due=False)
        assert not Notification.objects.filter(kind="reminder").exists()  # due in 3 days: not yet
        clock.move_to(T0 + timedelta(days=2, hours=1))
        sweep(nudge_due=False)
        assert notified("reminder") == {"mike", "max", "sue"}
        clock.move_to(T0 + timedelta(days=4))  # overdue now: still no second reminder
        sweep(nudge_due=False)
        sweep(nudge_due=False)
    assert Notification.objects.filter(kind="reminder").count() == 3
    assert sorted(j.idempotency_key for j in email_jobs()) == sorted(
        f"remind:{task.pk}:{people[n].pk}" for n in ("mike", "max", "sue"))


def test_reminder_by_email_only_is_also_sent_once(people):
    Profile.objects.create(user=people["mike"], notify={"reminder": {"app": False}})
    instance = start(people["alice"])
    HumanTask.objects.filter(pk=open_task(instance, "manager_approval").pk).update(due_at=T0)
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        sweep(nudge_due=False)
        sweep(nudge_due=False)
    assert "mike" not in notified("reminder")
    assert email_jobs(params__to=["mike@example.com"], idempotency_key__startswith="remind:").count() == 1


def test_reminded_overdue_tasks_do_not_crowd_newer_ones_out_of_the_batch(people):
    first = open_task(start(people["alice"], key="EXP-1"), "manager_approval")
    second = open_task(start(people["alice"], key="EXP-2"), "manager_approval")
    HumanTask.objects.filter(pk=first.pk).update(due_at=T0 - timedelta(days=30))
    HumanTask.objects.filter(pk=second.pk).update(due_at=T0)
    assert reminders_send(T0 + timedelta(hours=1), limit=1) == 3  # the oldest task, to its three managers
    assert reminders_send(T0 + timedelta(hours=1), limit=1) == 3  # then the next one, not the oldest again
    assert reminders_send(T0 + timedelta(hours=1), limit=1) == 0
    reminded = Notification.objects.filter(kind="reminder")
    assert sorted({n.task_id for n in reminded}) == sorted([first.pk, second.pk]) and reminded.count() == 6


def test_delegated_and_reassigned_tasks_notify_their_new_holder(people):
    task = open_task(start(people["alice"]), "manager_approval")
    Notification.objects.all().delete()
    Job.objects.filter(kind="email").delete()
    approvals.task_claim(human_task_id=task.pk, actor=people["mike"])
    approvals.task_delegate(human_task_id=task.pk, actor=people["mike"], to_user=people["max"], reason="On leave")
    notice = Notification.objects.get(user=people["max"])
    assert notice.title == "Manager approval was delegated to you (Expense approval EXP-1)"
    assert notice.body.endswith("mike delegated Manager approval of Expense approval EXP-1 to you: On leave")
    assert notice.url == f"/tasks/{task.pk}/" and notice.kind == "task_new"
    approvals.task_reassign(human_task_id=task.pk, actor=people["oscar"], to_user=people["sue"], reason="Balance")
    assert Notification.objects.get(user=people["sue"]).title.startswith("Manager approval was reassigned to you")
    assert [j.params["to"] for j in email_jobs()] == [["max@example.com"], ["sue@example.com"]]
    assert not Notification.objects.filter(user__in=[people["mike"], people["oscar"]]).exists()


def test_email_job_is_retried_after_a_backend_failure(people):
    start(people["alice"])
    job = email_jobs().first()
    with override_settings(EMAIL_BACKEND="tests.approvals.test_notifications.RefusingBackend"):
        assert jobs.job_execute(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.attempt == 1 and "mail server unreachable" in job.last_error
    assert mail.outbox == []
    Job.objects.filter(pk=job.pk).update(run_at=job.created_at)  # the backoff has passed
    assert jobs.job_execute(job_id=job.pk) == "done"
    job.refresh_from_db()
    assert job.status == JobStatus.DONE and job.attempt == 2 and job.result["sent"] == 1
    assert [m.to for m in mail.outbox] == [job.params["to"]]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_unread_count_in_the_header_and_mark_read_on_the_pages(people):
    instance = start(people["alice"], key="EXP-7")
    approvals.task_decide(human_task_id=open_task(instance, "manager_approval").pk, actor=people["mike"],
                          decision="approve", data={"decision": "approve"})
    sue = client_for(people["sue"])  # Managers and Finance: two new-task notices
    inbox = sue.get("/").content.decode()
    assert 'href="/notifications/"' in inbox and "Notifications <span class=\"badge\">(2)</span>" in inbox
    page = sue.get("/notifications/").content.decode()
    first, second = Notification.objects.filter(user=people["sue"]).order_by("id")
    assert first.title in page and second.title in page and f'href="/tasks/{second.task_id}/"' in page
    assert sue.get(f"/notifications/{first.pk}/read/").status_code == 405  # state changes only by POST
    assert sue.post(f"/notifications/{first.pk}/read/").status_code == 302
    first.refresh_from_db()
    assert first.read_at is not None
    assert "Notifications <span class=\"badge\">(1)</span>" in sue.get("/notifications/").content.decode()
    assert f"notification-{first.pk}" not in sue.get("/notifications/?unread=1").content.decode()

    alices = Notification.objects.get(user=people["alice"])  # the decision notice
    assert sue.post(f"/notifications/{alices.pk}/read/").status_code == 404  # not hers: as if it did not exist
    alices.refresh_from_db()
    assert alices.read_at is None
    assert sue.post("/notifications/read-all/").status_code == 302
    assert not Notification.objects.filter(user=people["sue"], read_at__isnull=True).exists()
    assert 'class="badge"' not in sue.get("/").content.decode()
    assert Notification.objects.get(pk=alices.pk).read_at is None  # read-all touched only her own


def test_mark_read_needs_the_csrf_token(people):
    start(people["alice"])
    notice = Notification.objects.filter(user=people["mike"]).first()
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["mike"])
    assert client.post(f"/notifications/{notice.pk}/read/").status_code == 403
    assert client.post("/notifications/read-all/").status_code == 403
    notice.refresh_from_db()
    assert notice.read_at is None


def test_settings_page_saves_the_kind_by_channel_grid(people):
    mike = client_for(people["mike"])
    page = mike.get("/notifications/settings/").content.decode()
    assert page.count('type="checkbox"') == 10 and page.count(" checked") == 10  # 5 kinds x 2 channels, all on
    assert '<label for="pref-task_newemail" class="sr-only">New task: By e-mail</label>' in page
    response = mike.post("/notifications/settings/", {"on": ["task_new:app", "decision:email", "reminder:app",
                                                             "reminder:email", "escalation:app"]})
    assert response.status_code == 302
    notify = Profile.objects.get(user=people["mike"]).notify
    assert notify["task_new"] == {"app": True, "email": False} and notify["decision"] == {"app": False, "email": True}
    assert notify["escalation"] == {"app": True, "email": False} and notify["standin"] == {"app": False, "email": False}
    assert mike.get("/notifications/settings/").content.decode().count(" checked") == 5
    start(people["alice"])  # the saved grid applies to the next notice
    assert Notification.objects.filter(user=people["mike"]).exists()
    assert not email_jobs(params__to=["mike@example.com"]).exists()


def test_api_lists_and_marks_only_ones_own_notifications(people):
    instance = start(people["alice"])
    approvals.task_decide(human_task_id=open_task(instance, "manager_approval").pk, actor=people["mike"],
                          decision="approve", data={"decision": "approve"})
    api = APIClient()
    api.force_authenticate(people["sue"])
    listed = api.get("/api/v1/notifications/").json()["results"]
    assert {n["kind"] for n in listed} == {"task_new"} and len(listed) == 2 and all(n["unread"] for n in listed)
    assert {n["id"] for n in listed} == set(people["sue"].notifications.values_list("pk", flat=True))
    marked = api.post(f"/api/v1/notifications/{listed[0]['id']}/read/")
    assert marked.status_code == 200 and marked.json()["unread"] is False and marked.json()["read_at"]
    assert [n["id"] for n in api.get("/api/v1/notifications/?unread=true").json()["results"]] == [listed[1]["id"]]

    alices = Notification.objects.get(user=people["alice"])
    missing = api.post("/api/v1/notifications/999999/read/")
    other = api.post(f"/api/v1/notifications/{alices.pk}/read/")  # A2: no existence oracle
    assert other.status_code == missing.status_code == 404
    assert other.json()["code"] == missing.json()["code"] == "not_found"
    admin = APIClient()
    admin.force_authenticate(people["admin"])
    assert admin.post(f"/api/v1/notifications/{alices.pk}/read/").status_code == 404  # not even an admin
    assert admin.get("/api/v1/notifications/").json()["results"] == []
    assert api.post("/api/v1/notifications/read-all/").json() == {"marked": 1}
    assert Notification.objects.get(pk=alices.pk).read_at is None
    assert APIClient().get("/api/v1/notifications/").status_code == 401


def test_a_failing_sweep_listener_never_stops_the_sweep_or_the_reminders(people):
    from processes import hooks

    def broken(now):
        raise RuntimeError("this listener is broken")

    instance = start(people["alice"])
    HumanTask.objects.filter(pk=open_task(instance, "manager_approval").pk).update(due_at=T0)
    hooks.on_sweep(broken)
    hooks._SWEEP.insert(0, hooks._SWEEP.pop())  # run it before the reminders
    try:
        with time_machine.travel(T0, tick=False):
            report = sweep(nudge_due=False)
    finally:
        hooks._SWEEP.remove(broken)
    assert report.listeners_run == len(hooks._SWEEP)  # every listener but the broken one ran
    assert notified("reminder") == {"mike", "max", "sue"}
    reminders = email_jobs(idempotency_key__startswith="remind:")
    assert reminders.count() == 3 and set(report.due_job_ids) >= set(reminders.values_list("pk", flat=True))
