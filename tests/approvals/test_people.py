"""People directory, stand-ins (out of office) and deactivated users (approvals.people)."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from approvals.models import Delegation, Notification, Profile, StandIn
from approvals.people import (
    PEOPLE_CHAIN,
    manager_of,
    profile_of,
    represented_by,
    standin_end,
    standin_set,
    standins_of,
    user_attr,
)
from approvals.selectors import instances_for, task_get_for, tasks_for
from approvals.services import task_claim, task_decide, task_delegate, task_release
from core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from processes import services
from processes.audit import audit_verify
from processes.models import AuditEvent, HumanTaskStatus

from .conftest import fresh, open_task, upload_sample

pytestmark = pytest.mark.django_db
EXPENSE = {"employee": "x", "amount": 5000, "category": "it", "description": "laptop"}
T0 = dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def expense(users):
    upload_sample("expense_approval")
    return services.instance_start(process_key="expense_approval", actor=users["alice"], data=EXPENSE)


def _events(instance, command):
    return [e.payload for e in AuditEvent.objects.filter(instance=instance, command=command).order_by("seq")]


def test_directory_profiles_are_made_lazily_and_answer_lookups(users):
    alice, mike = users["alice"], users["mike"]
    assert not Profile.objects.filter(user=alice).exists()
    profile = profile_of(alice)
    assert profile.pk and profile_of(alice) is profile
    assert manager_of(alice) is None
    profile.manager, profile.department, profile.attributes = mike, "Sales", {"cost_center": "CC-7"}
    profile.save()
    assert manager_of(alice) == mike and manager_of("alice") == mike and manager_of("nobody") is None
    assert user_attr("alice", "manager") == "mike" and user_attr("alice", "department") == "Sales"
    assert user_attr("alice", "cost_center") == "CC-7" and user_attr("alice", "missing") is None
    assert user_attr("eve", "department") is None  # no profile yet


def test_standin_rights_and_validation_and_audit(users):
    alice, mike, eve, oscar = users["alice"], users["mike"], users["eve"], users["oscar"]
    with pytest.raises(PermissionDenied):
        standin_set(actor=eve, user=mike, stand_in=eve)  # nobody sets themself up as someone's stand-in
    with pytest.raises(ValidationError) as same:
        standin_set(actor=mike, user=mike, stand_in=mike)
    assert same.value.details[0]["field"] == "stand_in"
    users["lena"].is_active = False
    users["lena"].save()
    with pytest.raises(ValidationError):
        standin_set(actor=mike, user=mike, stand_in=users["lena"])
    with pytest.raises(ValidationError) as order:
        standin_set(actor=mike, user=mike, stand_in=eve, starts_at=T0, ends_at=T0 - dt.timedelta(hours=1))
    assert order.value.details[0]["field"] == "ends_at"
    own = standin_set(actor=mike, user=mike, stand_in=eve, reason="holiday")
    by_operator = standin_set(actor=oscar, user=alice, stand_in=mike, starts_at=timezone.now() + dt.timedelta(days=3))
    events = list(AuditEvent.objects.filter(chain=PEOPLE_CHAIN).order_by("seq"))
    assert [(e.command, e.actor_id) for e in events] == [("standin_set", mike.pk), ("standin_set", oscar.pk)]
    assert events[0].payload["stand_in"] == "eve" and events[0].payload["reason"] == "holiday"
    assert events[0].instance_id is None
    assert set(standins_of(mike)) == {own, by_operator}  # away myself, and standing in (later) for alice
    assert represented_by(eve) == [mike] and represented_by(mike) == []  # alice's starts in 3 days
    with pytest.raises(NotFound):
        standin_end(actor=users["fiona"], standin_id=own.pk)  # not hers
    ended = standin_end(actor=eve, standin_id=own.pk)  # the stand-in may end it too
    assert ended.ends_at is not None and represented_by(eve) == []
    with pytest.raises(Conflict):
        standin_end(actor=mike, standin_id=own.pk)
    assert AuditEvent.objects.filter(chain=PEOPLE_CHAIN, command="standin_end").count() == 1
    assert audit_verify(chain=PEOPLE_CHAIN) == []


def test_the_people_of_a_stand_in_hear_of_it_but_not_whoever_set_it(users):
    mike, eve, oscar, alice = users["mike"], users["eve"], users["oscar"], users["alice"]
    own = standin_set(actor=mike, user=mike, stand_in=eve, reason="holiday")
    notice = Notification.objects.get(kind="standin")
    assert notice.user == eve and notice.title == "eve stands in for mike" and notice.url == "/me/away/"
    assert "mike set it: holiday" in notice.body
    standin_set(actor=oscar, user=alice, stand_in=mike)  # set by an operator: both people are told
    assert set(Notification.objects.filter(kind="standin").values_list("user__username", flat=True)) == {
        "eve", "alice", "mike"}
    standin_end(actor=eve, standin_id=own.pk)
    ended = Notification.objects.filter(kind="standin", title="eve no longer stands in for mike").get()
    assert ended.user == mike and ended.body == "eve ended the stand-in."


def test_stand_in_sees_claims_and_completes_with_acting_for(users, expense):
    mike, eve = users["mike"], users["eve"]
    task = open_task(expense, "manager_approval")
    assert list(tasks_for(user=eve, scope="all")) == [] and not instances_for(user=eve).exists()
    standin_set(actor=mike, user=mike, stand_in=eve, ends_at=timezone.now() + dt.timedelta(days=1))
    eve = fresh(eve)
    assert list(tasks_for(user=eve, scope="groups")) == [task]  # mike is in Managers
    assert instances_for(user=eve).get() == expense
    task_claim(human_task_id=task.pk, actor=eve)
    assert _events(expense, "task_claim")[-1] == {"assignee": "eve", "acting_for": "mike"}
    task_release(human_task_id=task.pk, actor=eve)
    assert _events(expense, "task_release")[-1] == {"previous_assignee": "eve"}  # her own claim, as herself
    task_claim(human_task_id=task.pk, actor=mike)  # mike back for an hour: he takes it...
    assert list(tasks_for(user=eve, scope="mine")) == [task]  # ...and it is in his stand-in's inbox too
    task_release(human_task_id=task.pk, actor=eve)  # she may give his claim back for him
    assert _events(expense, "task_release")[-1] == {"previous_assignee": "mike", "acting_for": "mike"}
    task_claim(human_task_id=task.pk, actor=mike)
    done = task_decide(human_task_id=task.pk, actor=eve, data={"decision": "approve"})
    assert done.status == HumanTaskStatus.COMPLETED and done.completed_by == eve
    complete = _events(expense, "task_complete")[-1]
    assert complete["acting_for"] == "mike" and complete["decision"] == "approve"
    assert audit_verify(chain=f"instance:{expense.pk}") == []


def test_stand_in_stops_seeing_after_ends_at(users, expense):
    mike, eve = users["mike"], users["eve"]
    task = open_task(expense, "manager_approval")
    with time_machine.travel(T0, tick=False) as clock:
        standin_set(actor=mike, user=mike, stand_in=eve, starts_at=T0 + dt.timedelta(days=1),
                    ends_at=T0 + dt.timedelta(days=3))
        assert list(tasks_for(user=eve)) == []  # not started yet
        clock.move_to(T0 + dt.timedelta(days=2))
        assert task_get_for(user=eve, human_task_id=task.pk) == task
        task_delegate(human_task_id=task.pk, actor=eve, to_user=users["max"], reason="max knows this")
        assert _events(expense, "task_delegate")[-1]["acting_for"] == "mike"
        task_release(human_task_id=task.pk, actor=users["max"])
        clock.move_to(T0 + dt.timedelta(days=3, seconds=1))
        assert list(tasks_for(user=eve)) == [] and not instances_for(user=eve).exists()
        with pytest.raises(NotFound):
            task_get_for(user=eve, human_task_id=task.pk)
        with pytest.raises(NotFound):
            task_claim(human_task_id=task.pk, actor=eve)


def test_stand_in_is_held_to_separation_of_duties_for_both_people(users):
    upload_sample("expense_approval")
    mike, eve, alice = users["mike"], users["eve"], users["alice"]
    mine = services.instance_start(process_key="expense_approval", actor=mike, data=EXPENSE)  # mike's own claim
    standin_set(actor=mike, user=mike, stand_in=eve)
    with pytest.raises(PermissionDenied) as denied:
        task_decide(human_task_id=open_task(mine, "manager_approval").pk, actor=eve, data={"decision": "approve"})
    assert denied.value.details["rules"] == ["requesterMayNotApprove"]
    assert "mike, whom you stand in for," in denied.value.message
    denial = _events(mine, "sod_denied")[-1]
    assert denial["rules"] == ["requesterMayNotApprove"]
    # and a stand-in may not approve a request they started themself
    standin_set(actor=users["max"], user=users["max"], stand_in=alice)
    hers = services.instance_start(process_key="expense_approval", actor=alice, data=EXPENSE)
    with pytest.raises(PermissionDenied) as own:
        task_decide(human_task_id=open_task(hers, "manager_approval").pk, actor=fresh(alice),
                    data={"decision": "approve"})
    assert own.value.details["rules"] == ["requesterMayNotApprove"] and own.value.message.startswith("You started")


def test_non_stand_ins_see_nothing_new(users, expense):
    """A2: other people's stand-ins widen nobody else's lists; a future one widens nothing yet."""
    eve, fiona = users["eve"], users["fiona"]
    standin_set(actor=users["mike"], user=users["mike"], stand_in=users["lena"])
    standin_set(actor=users["max"], user=users["max"], stand_in=eve, starts_at=timezone.now() + dt.timedelta(days=1))
    task = open_task(expense, "manager_approval")
    for user in (eve, fiona, users["dana"]):
        assert list(tasks_for(user=user)) == []
        assert not instances_for(user=user).exists()
        with pytest.raises(NotFound):
            task_get_for(user=user, human_task_id=task.pk)
    assert list(tasks_for(user=users["lena"])) == [task]


def test_stand_in_for_a_deactivated_user_sees_nothing(users, expense):
    standin_set(actor=users["mike"], user=users["mike"], stand_in=users["eve"])
    users["mike"].is_active = False
    users["mike"].save()
    assert list(tasks_for(user=users["eve"])) == [] and represented_by(users["eve"]) == []


def test_deactivating_a_user_returns_their_tasks_to_the_group(users, expense):
    mike, max_ = users["mike"], users["max"]
    task = open_task(expense, "manager_approval")
    task_claim(human_task_id=task.pk, actor=mike)
    assert list(tasks_for(user=max_, scope="groups")) == []
    mike.first_name = "Mike"
    mike.save()  # another change: nothing happens
    task.refresh_from_db()
    assert task.assignee == mike
    mike.is_active = False
    mike.save()
    task.refresh_from_db()
    assert task.assignee is None and task.status == HumanTaskStatus.OPEN
    assert list(tasks_for(user=max_, scope="groups")) == [task]
    delegation = Delegation.objects.get(task=task)
    assert (delegation.kind, delegation.from_user, delegation.to_user, delegation.reason) == (
        "deactivated", mike, None, "user deactivated")
    event = AuditEvent.objects.filter(instance=expense, command="task_release").get()
    assert event.payload == {"previous_assignee": "mike", "reason": "user deactivated"} and event.actor is None
    assert audit_verify(chain=f"instance:{expense.pk}") == []
    mike.save()  # saving an inactive user again releases nothing more
    assert Delegation.objects.filter(task=task).count() == 1


def test_standins_are_kept_per_person(users):
    standin_set(actor=users["mike"], user=users["mike"], stand_in=users["eve"])
    assert StandIn.objects.count() == 1 and list(standins_of(users["alice"])) == []


def test_demo_directory_seeds_managers_once(users):
    from processes.demo import demo_directory

    demo_directory()
    assert manager_of("alice") == users["mike"] and manager_of("mike") == users["fiona"]
    assert user_attr("lena", "department") == "Legal"
    profile = profile_of(users["alice"])
    profile.manager = users["sue"]
    profile.save()
    demo_directory()  # idempotent: an edited profile is left alone
    assert manager_of("alice") == users["sue"]


def test_stand_in_and_reassign_api(users, expense):
    from rest_framework.test import APIClient

    def client(user):
        c = APIClient()
        c.force_authenticate(user)
        return c

    mike, eve = users["mike"], users["eve"]
    created = client(mike).post("/api/v1/stand-ins/", {"stand_in": "eve", "reason": "holiday"}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["user"] == "mike" and body["stand_in"] == "eve" and body["ends_at"] is None
    assert [s["id"] for s in client(eve).get("/api/v1/stand-ins/").json()["results"]] == [body["id"]]
    assert client(users["alice"]).get("/api/v1/stand-ins/").json()["results"] == []
    denied = client(eve).post("/api/v1/stand-ins/", {"stand_in": "eve", "user": "alice"}, format="json")
    assert denied.status_code == 403
    unknown = client(mike).post("/api/v1/stand-ins/", {"stand_in": "ghost"}, format="json")
    assert unknown.status_code == 404
    bad = client(mike).post("/api/v1/stand-ins/", {"stand_in": "mike"}, format="json")
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "stand_in"
    task = open_task(expense, "manager_approval")
    assert [t["id"] for t in client(eve).get("/api/v1/tasks/").json()["results"]] == [task.pk]  # mike's inbox
    assert client(users["fiona"]).post(f"/api/v1/stand-ins/{body['id']}/end/").status_code == 404
    ended = client(eve).post(f"/api/v1/stand-ins/{body['id']}/end/")
    assert ended.status_code == 200 and ended.json()["ends_at"] is not None
    assert client(eve).post(f"/api/v1/stand-ins/{body['id']}/end/").status_code == 409

    task_claim(human_task_id=task.pk, actor=mike)
    moved = client(users["oscar"]).post(f"/api/v1/tasks/{task.pk}/reassign/",
                                        {"to_user": "max", "reason": "mike is away"}, format="json")
    assert moved.status_code == 200 and moved.json()["assignee"] == "max"
    no_reason = client(users["oscar"]).post(f"/api/v1/tasks/{task.pk}/reassign/", {"to_user": "mike"}, format="json")
    assert no_reason.status_code == 422
    assert client(users["sue"]).post(f"/api/v1/tasks/{task.pk}/reassign/", {"to_user": "sue", "reason": "x"},
                                     format="json").status_code == 403
