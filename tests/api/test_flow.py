"""End to end through HTTP only: upload, start, both approvals, completed, history."""
from __future__ import annotations

import pytest

from .conftest import start_expense


def _only_task(client, element_id: str) -> dict:
    page = client.get("/api/v1/tasks/?scope=groups").json()
    tasks = [t for t in page["results"] if t["element_id"] == element_id]
    assert len(tasks) == 1, page
    return tasks[0]


@pytest.mark.django_db
def test_expense_approval_end_to_end(clients, published):
    assert {d["process_key"] for d in published} == {"expense_approval"}
    listed = clients["requester"].get("/api/v1/definitions/").json()
    assert listed["results"][0]["versions"] == [1]
    xml = clients["requester"].get("/api/v1/definitions/expense_approval/xml/")
    assert xml.status_code == 200 and xml["Content-Type"].startswith("application/xml")

    started = start_expense(clients["requester"], 5000)
    assert started.status_code == 201, started.json()
    instance = started.json()
    assert instance["version"] >= 1 and instance["data"]["amount"] == 5000
    assert [t["element_id"] for t in instance["open_tasks"]] == ["manager_approval"]
    iid = instance["id"]

    manager = clients["manager"]
    task = _only_task(manager, "manager_approval")
    detail = manager.get(f"/api/v1/tasks/{task['id']}/").json()
    assert detail["form_schema"]["properties"]["decision"]
    claimed = manager.post(f"/api/v1/tasks/{task['id']}/claim/", {}, format="json")
    assert claimed.status_code == 200, claimed.json()
    assert claimed.json()["assignee"] == "manager"
    assert [t["id"] for t in manager.get("/api/v1/tasks/?scope=mine").json()["results"]] == [task["id"]]
    decided = manager.post(f"/api/v1/tasks/{task['id']}/decide/",
                           {"decision": "approve", "data": {"decision": "approve", "reason": "ok"}}, format="json")
    assert decided.status_code == 200, decided.json()
    assert decided.json()["status"] == "completed"

    finance = clients["finance"]
    ftask = _only_task(finance, "finance_approval")
    assert finance.post(f"/api/v1/tasks/{ftask['id']}/claim/", {}, format="json").status_code == 200
    done = finance.post(f"/api/v1/tasks/{ftask['id']}/decide/",
                        {"decision": "approve", "data": {"decision": "approve", "reason": "fine"}}, format="json")
    assert done.status_code == 200, done.json()

    final = clients["requester"].get(f"/api/v1/instances/{iid}/")
    assert final.json()["status"] == "completed", final.json()
    assert final.json()["data"]["status"] == "approved"
    assert final["ETag"] == f'"{iid}-{final.json()["version"]}"'
    history = clients["requester"].get(f"/api/v1/instances/{iid}/history/").json()
    commands = [e["command"] for e in history["events"]]
    assert commands[0] == "instance_start" and commands.count("task_complete") == 2
    assert "task_claim" in " ".join(commands) or any("claim" in c for c in commands)
    assert {a["element_id"] for a in history["activities"]} >= {"manager_approval", "finance_approval"}
    state = clients["requester"].get(f"/api/v1/instances/{iid}/diagram-state/").json()
    assert "finance_approval" in state["done"] and state["active"] == [] and state["failed"] == []
    events = clients["auditor"].get(f"/api/v1/audit/instances/{iid}/events/").json()
    assert events["count"] == len(history["events"])
    assert clients["auditor"].get(f"/api/v1/audit/verify/?instance={iid}").json()["ok"] is True
    assert clients["requester"].get("/api/v1/instances/?status=completed").json()["count"] == 1
    assert clients["requester"].get("/api/v1/instances/?status=running").json()["count"] == 0


@pytest.mark.django_db
def test_rejected_diagram_is_422_with_element_level_problems(clients):
    from django.core.files.uploadedfile import SimpleUploadedFile

    bad = SimpleUploadedFile("bad.bpmn", b"<definitions><unclosed></definitions>", content_type="application/xml")
    response = clients["designer"].post("/api/v1/definitions/", {"files": [bad]}, format="multipart")
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "diagram_rejected" and body["message"]
    assert set(body["details"][0]) == {"message", "element_id", "line", "file"}
