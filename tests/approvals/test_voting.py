"""N-of-M and quorum approvals: vote rows complete one engine wait, once (approvals/voting.py)."""
from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connections, transaction

from approvals.models import Vote
from approvals.services import task_claim, task_decide
from approvals.voting import vote_cast
from core.errors import BatonError, Busy, Conflict, NotFound, PermissionDenied, ValidationError
from processes import services
from processes.models import AuditEvent, HumanTaskStatus, InstanceStatus
from tests.processes.conftest import SAMPLES, upload

from .conftest import fresh, grant_override, open_task

KEY = "board_approval"
START = {"proposal": "Open an office in Lyon", "budget": 250000}
APPROVE, REJECT = {"decision": "approved"}, {"decision": "rejected", "reason": "Too expensive"}


def _board(users, *names: str) -> Group:
    board = Group.objects.get_or_create(name="Board")[0]
    for name in names:
        users[name].groups.add(board)
    return board


def _upload(tmp_path: Path | None = None, **replace: str):
    """Upload the sample, or a copy with property values replaced (``veto="true"``)."""
    if not replace:
        return upload(SAMPLES / KEY / f"{KEY}.bpmn")[0]
    folder = tmp_path / KEY
    shutil.copytree(SAMPLES / KEY, folder)
    path = folder / f"{KEY}.bpmn"
    xml = path.read_text()
    for name, value in replace.items():
        old = xml[xml.index(f'name="baton:{name}" value="'):]
        old = old[:old.index('" />') + 4]
        xml = xml.replace(old, f'name="baton:{name}" value="{value}" />')
    path.write_text(xml)
    return upload(path)[0]


@pytest.fixture
def board(users):
    """A Board of three (mike, max, sue), the sample uploaded, an instance started by alice."""
    _board(users, "mike", "max", "sue")
    _upload()
    instance = services.instance_start(process_key=KEY, actor=users["alice"], data=START)
    return instance, open_task(instance, "board_vote")


def _vote(users, name, task, data, **kwargs):
    return vote_cast(human_task_id=task.pk, actor=fresh(users[name]), outcome=data["decision"],
                     reason=data.get("reason", ""), data=data, **kwargs)


def _commands(instance, command: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(instance=instance, command=command).order_by("seq"))


def test_two_of_three_completes_on_the_second_approval_and_the_instance_moves_on(users, board):
    instance, task = board
    opened = _commands(instance, "vote_open")
    assert len(opened) == 1 and opened[0].task_id == task.task_id
    assert opened[0].payload["eligible"] == ["max", "mike", "sue"] and opened[0].payload["required"] == 2

    first = _vote(users, "mike", task, APPROVE)
    assert first.decided == "" and first.tally.approvals == 1
    task.refresh_from_db()
    assert task.status == HumanTaskStatus.OPEN and task.assignee_id is None

    second = _vote(users, "sue", task, {"decision": "approved", "reason": "Good plan"})
    assert second.decided == "approved"
    task.refresh_from_db()
    instance.refresh_from_db()
    assert task.status == HumanTaskStatus.COMPLETED and task.decision == "approved"
    assert task.completed_by == users["sue"]
    assert instance.status == InstanceStatus.COMPLETED and instance.data["status"] == "approved"
    record = instance.data["decisions"]["board_vote"]
    assert record["outcome"] == "approved" and record["by"] == "sue"
    assert record["votes"]["approved"] == 2 and record["votes"]["rejected"] == 0
    assert [v["voter"] for v in record["votes"]["voters"]] == ["mike", "sue"]
    assert instance.data["votes"]["required"] == 2 and instance.data["votes"]["eligible"] == 3

    with pytest.raises(Conflict) as late:
        _vote(users, "max", task, APPROVE)
    assert late.value.code == "task_not_open" and late.value.status == 409
    votes = _commands(instance, "task_vote")
    assert [(e.actor_name, e.payload["outcome"]) for e in votes] == [("mike", "approved"), ("sue", "approved")]
    assert votes[1].payload["reason"] == "Good plan"
    assert votes[1].payload["data"] == {"decision": "approved", "reason": "Good plan"}
    assert len(_commands(instance, "task_complete")) == 1
    assert Vote.objects.filter(task=task).count() == 2


def test_rejections_that_make_the_quorum_unreachable_reject(users, board):
    instance, task = board
    assert _vote(users, "mike", task, REJECT).decided == ""  # veto off in the sample: one "no" does not decide
    result = _vote(users, "max", task, REJECT)
    assert result.decided == "rejected" and "can no longer be reached" in result.tally.why
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED and instance.data["status"] == "rejected"
    assert instance.data["decisions"]["board_vote"]["votes"]["rejected"] == 2
    assert len(_commands(instance, "task_complete")) == 1


def test_a_veto_decides_at_once(users, tmp_path):
    _board(users, "mike", "max", "sue")
    _upload(tmp_path, veto="true")
    instance = services.instance_start(process_key=KEY, actor=users["alice"], data=START)
    task = open_task(instance, "board_vote")
    _vote(users, "mike", task, APPROVE)
    result = _vote(users, "max", task, REJECT)
    assert result.decided == "rejected" and result.tally.why.startswith("vetoed")
    instance.refresh_from_db()
    assert instance.data["status"] == "rejected"


def test_majority_and_all_quorums(users, tmp_path):
    _board(users, "mike", "max", "sue")
    _upload(tmp_path, quorum="all")
    instance = services.instance_start(process_key=KEY, actor=users["alice"], data=START)
    task = open_task(instance, "board_vote")
    assert _vote(users, "mike", task, APPROVE).decided == ""
    assert _vote(users, "max", task, APPROVE).decided == ""
    assert _vote(users, "sue", task, APPROVE).decided == "approved"


def test_a_second_vote_is_409_and_the_constraint_backs_it(users, board):
    _, task = board
    _vote(users, "mike", task, APPROVE)
    with pytest.raises(Conflict) as twice:
        _vote(users, "mike", task, REJECT)
    assert twice.value.code == "already_voted" and twice.value.status == 409
    assert list(Vote.objects.filter(task=task).values_list("outcome", flat=True)) == ["approved"]
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(task=task, voter=users["mike"], outcome="rejected")


def test_the_requester_may_not_vote_unless_overridden(users):
    _board(users, "alice", "mike", "max")
    _upload()
    instance = services.instance_start(process_key=KEY, actor=users["alice"], data=START)
    task = open_task(instance, "board_vote")
    with pytest.raises(PermissionDenied) as denied:
        _vote(users, "alice", task, APPROVE)
    assert denied.value.code == "separation_of_duties" and "requesterMayNotApprove" in denied.value.message
    assert not Vote.objects.filter(task=task).exists()
    assert [e.actor_name for e in _commands(instance, "sod_denied")] == ["alice"]

    with pytest.raises(PermissionDenied) as no_right:
        _vote(users, "alice", task, APPROVE, override_reason="urgent")
    assert no_right.value.code == "override_not_permitted"
    grant_override(users["alice"])
    assert _vote(users, "alice", task, APPROVE, override_reason="Board chair asked me to vote").decided == ""
    overrides = _commands(instance, "sod_override")
    assert len(overrides) == 1 and overrides[0].payload["reason"] == "Board chair asked me to vote"
    assert Vote.objects.get(task=task).voter == users["alice"]


def test_non_members_cannot_vote(users, board):
    instance, task = board
    with pytest.raises(NotFound):  # cannot see the task at all (A2)
        _vote(users, "eve", task, APPROVE)
    with pytest.raises(PermissionDenied) as operator:  # sees every task, but is not a voter
        _vote(users, "oscar", task, APPROVE)
    assert operator.value.code == "not_a_voter" and operator.value.status == 403
    _board(users, "fiona")  # joined after the task opened: not in the snapshot
    with pytest.raises(PermissionDenied) as late_member:
        _vote(users, "fiona", task, APPROVE)
    assert late_member.value.code == "not_a_voter"
    assert not Vote.objects.exists() and not _commands(instance, "task_vote")


def test_vote_tasks_are_not_claimed_nor_completed_directly(users, board):
    instance, task = board
    with pytest.raises(Conflict) as claim:
        task_claim(human_task_id=task.pk, actor=users["mike"])
    assert claim.value.code == "vote_task" and "nothing to claim" in claim.value.message
    with pytest.raises(Conflict) as direct:
        services.task_complete(human_task_id=task.pk, actor=users["mike"], data=APPROVE, decision="approved")
    assert direct.value.code == "vote_task"
    task.refresh_from_db()
    assert task.status == HumanTaskStatus.OPEN and task.assignee_id is None
    assert not _commands(instance, "task_claim")


def test_task_decide_casts_a_vote_with_form_validation(users, board):
    instance, task = board
    with pytest.raises(ValidationError) as missing_reason:
        task_decide(human_task_id=task.pk, actor=users["mike"], data={}, decision="rejected")
    assert {d["field"] for d in missing_reason.value.details} == {"/reason"}
    with pytest.raises(ValidationError) as unknown:
        task_decide(human_task_id=task.pk, actor=users["mike"], data={}, decision="maybe")
    assert unknown.value.status == 422
    returned = task_decide(human_task_id=task.pk, actor=users["mike"], data={}, decision="approved")
    assert returned.pk == task.pk and returned.status == HumanTaskStatus.OPEN
    assert Vote.objects.get(task=task, voter=users["mike"]).outcome == "approved"
    assert len(_commands(instance, "task_vote")) == 1 and not _commands(instance, "task_complete")


def test_the_task_page_shows_the_tally_and_its_buttons_vote(users, board, client):
    _, task = board
    client.force_login(users["mike"])
    page = client.get(f"/tasks/{task.pk}/")
    assert b"0 of 2</strong> approvals needed" in page.content and b"Not voted yet: max, mike, sue" in page.content
    response = client.post(f"/tasks/{task.pk}/", {"decision": "approved", "reason": ""})
    assert response.status_code == 302
    assert Vote.objects.get(task=task).voter == users["mike"]
    page = client.get(f"/tasks/{task.pk}/")
    assert b"1 of 2</strong> approvals needed" in page.content
    assert b"You voted <strong>approved</strong>" in page.content
    again = client.post(f"/tasks/{task.pk}/", {"decision": "approved"})
    assert b"you already voted" in again.content
    client.force_login(users["eve"])
    assert client.get(f"/tasks/{task.pk}/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_three_concurrent_votes_complete_the_engine_task_exactly_once(users):
    _board(users, "mike", "max", "sue")
    _upload()
    for _ in range(3):
        instance = services.instance_start(process_key=KEY, actor=users["alice"], data=START)
        task = open_task(instance, "board_vote")
        barrier = threading.Barrier(3)

        def cast(name):
            try:
                barrier.wait(timeout=30)
                for _attempt in range(20):  # a lock wait past the timeout answers Busy: retry, as a client would
                    try:
                        return _vote(users, name, task, APPROVE).decided or "counted"
                    except Busy:
                        time.sleep(0.05)
                return "busy"
            except BatonError as exc:
                return exc.code
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=3) as pool:
            outcome = sorted(pool.map(cast, ["mike", "max", "sue"]))
        assert outcome == ["approved", "counted", "task_not_open"], outcome
        assert len(_commands(instance, "task_complete")) == 1
        assert len(_commands(instance, "task_vote")) == 2 and Vote.objects.filter(task=task).count() == 2
        instance.refresh_from_db()
        assert instance.status == InstanceStatus.COMPLETED and instance.data["status"] == "approved"


def test_the_api_decide_endpoint_votes_and_claim_answers_409(users, board):
    from rest_framework.test import APIClient

    instance, task = board
    api = APIClient()
    api.force_authenticate(users["mike"])
    claim = api.post(f"/api/v1/tasks/{task.pk}/claim/", {}, format="json")
    assert claim.status_code == 409 and claim.json()["code"] == "vote_task"
    first = api.post(f"/api/v1/tasks/{task.pk}/decide/", {"decision": "approved"}, format="json")
    assert first.status_code == 200 and first.json()["status"] == "open"
    again = api.post(f"/api/v1/tasks/{task.pk}/decide/", {"decision": "approved"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "already_voted"
    api.force_authenticate(users["max"])
    second = api.post(f"/api/v1/tasks/{task.pk}/decide/", {"decision": "approved"}, format="json")
    assert second.status_code == 200 and second.json()["status"] == "completed"
    assert second.json()["decision"] == "approved"
    api.force_authenticate(users["eve"])
    assert api.post(f"/api/v1/tasks/{task.pk}/decide/", {"decision": "approved"}, format="json").status_code == 404


def test_a_stand_in_votes_for_the_absent_member_once(users, board):
    from datetime import timedelta

    from django.utils import timezone

    from approvals.models import StandIn

    instance, task = board
    StandIn.objects.create(user=users["mike"], stand_in=users["eve"], starts_at=timezone.now() - timedelta(hours=1))
    result = _vote(users, "eve", task, APPROVE)
    assert (result.vote.voter, result.vote.acting_for) == (users["eve"], users["mike"])
    assert result.tally.waiting_for == ["max", "sue"]
    assert _commands(instance, "task_vote")[0].payload["acting_for"] == "mike"
    with pytest.raises(Conflict) as taken:
        _vote(users, "mike", task, APPROVE)
    assert taken.value.code == "already_voted"
    final = _vote(users, "max", task, APPROVE)
    assert final.decided == "approved"
    instance.refresh_from_db()
    assert instance.data["votes"]["voters"][0] == {**instance.data["votes"]["voters"][0], "voter": "eve",
                                                   "acting_for": "mike"}


def test_a_deactivated_voter_no_longer_keeps_the_quorum_reachable(users, board):
    instance, task = board
    users["sue"].is_active = False
    users["sue"].save(update_fields=["is_active"])
    result = _vote(users, "mike", task, REJECT)  # 0 approvals + 1 active voter left < 2
    assert result.decided == "rejected"
    instance.refresh_from_db()
    assert instance.data["status"] == "rejected" and instance.data["votes"]["eligible"] == 3
