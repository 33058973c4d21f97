"""A quorum task through the API: each decide is a vote, claiming is refused, the quorum completes the wait."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from processes.models import AuditEvent, InstanceStatus, ProcessInstance

from .conftest import make_user, token_client

BOARD = Path(__file__).resolve().parents[2] / "processes" / "samples" / "board_approval"


@pytest.fixture
def board(db):
    designer, requester = make_user("dana", ["designers"]), make_user("alice", [])
    members = {name: token_client(make_user(name, ["Board"])) for name in ("mike", "max", "sue")}
    files = [open(p, "rb") for p in sorted(BOARD.iterdir()) if p.suffix in (".bpmn", ".json")]
    try:
        assert token_client(designer).post("/api/v1/definitions/", {"files": files},
                                           format="multipart").status_code == 201
    finally:
        for f in files:
            f.close()
    started = token_client(requester).post("/api/v1/instances/", {
        "process_key": "board_approval", "data": {"proposal": "Open an office in Lyon", "budget": 250000}},
        format="json")
    assert started.status_code == 201, started.json()
    task = members["mike"].get("/api/v1/tasks/?scope=groups").json()["results"]
    assert [t["element_id"] for t in task] == ["board_vote"]
    return started.json()["id"], task[0]["id"], members, token_client(make_user("outsider", []))


def _vote(client, task_id: int, decision: str, reason: str = ""):
    data = {"decision": decision, **({"reason": reason} if reason else {})}
    return client.post(f"/api/v1/tasks/{task_id}/decide/", {"decision": decision, "data": data}, format="json")


def test_decide_on_a_vote_task_is_a_vote_and_the_quorum_completes_it(board):
    instance_id, task_id, members, outsider = board
    first = _vote(members["mike"], task_id, "approved")
    assert first.status_code == 200, first.json()
    assert first.json()["status"] == "open"  # one vote of the two needed: the task stays open for the others

    again = _vote(members["mike"], task_id, "approved")
    assert again.status_code == 409 and again.json()["code"] == "already_voted", again.json()  # one vote each

    second = _vote(members["sue"], task_id, "approved", "Good plan")
    assert second.status_code == 200, second.json()
    assert second.json()["status"] == "completed"

    late = _vote(members["max"], task_id, "approved")
    assert late.status_code == 409 and late.json()["code"] == "task_not_open"
    instance = ProcessInstance.objects.get(pk=instance_id)
    assert instance.status == InstanceStatus.COMPLETED and instance.data["status"] == "approved"
    votes = AuditEvent.objects.filter(instance=instance, command="task_vote").order_by("seq")
    assert [e.actor_name for e in votes] == ["mike", "sue"]


def test_claiming_a_vote_task_is_409_and_outsiders_cannot_see_it(board):
    _, task_id, members, outsider = board
    claimed = members["max"].post(f"/api/v1/tasks/{task_id}/claim/", {}, format="json")
    assert claimed.status_code == 409 and claimed.json()["code"] == "vote_task", claimed.json()
    assert _vote(outsider, task_id, "approved").status_code == 404
    assert outsider.get("/api/v1/tasks/?scope=groups").json()["results"] == []
