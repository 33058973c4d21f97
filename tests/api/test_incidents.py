"""Incidents through HTTP: a failing script is listed, shown as failed, and retried with new data."""
from __future__ import annotations

from pathlib import Path

import pytest

FAILING = Path(__file__).resolve().parents[1] / "fixtures" / "bpmn" / "engine" / "failing_script.bpmn"


@pytest.mark.django_db
def test_operator_retries_a_failed_script_with_new_data(clients):
    with open(FAILING, "rb") as diagram:
        assert clients["designer"].post("/api/v1/definitions/", {"files": [diagram]},
                                        format="multipart").status_code == 201
    started = clients["requester"].post("/api/v1/instances/", {"process_key": "failing_script",
                                                               "data": {"divisor": 0}}, format="json").json()
    assert started["status"] == "incident"
    iid = started["id"]
    state = clients["requester"].get(f"/api/v1/instances/{iid}/diagram-state/").json()
    assert state["failed"] == ["divide"]

    assert clients["requester"].get("/api/v1/incidents/").status_code == 403
    listed = clients["operator"].get(f"/api/v1/incidents/?status=open&instance={iid}").json()
    assert listed["count"] == 1 and listed["results"][0]["error_type"] == "ZeroDivisionError"
    incident_id = listed["results"][0]["id"]

    retried = clients["operator"].post(f"/api/v1/incidents/{incident_id}/retry/", {"data": {"divisor": 2}},
                                       format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
    assert retried.status_code == 200, retried.json()
    assert retried.json()["status"] == "waiting" and retried.json()["data"]["result"] == 5
    again = clients["operator"].post(f"/api/v1/incidents/{incident_id}/retry/", {"data": {"divisor": 2}},
                                     format="json")
    assert again.status_code == 409 and again.json()["code"] == "incident_not_open"
    assert clients["operator"].get("/api/v1/incidents/?status=open").json()["count"] == 0


@pytest.mark.django_db
def test_operator_suspends_and_resumes_starter_cancels(clients, published):
    from .conftest import start_expense

    iid = start_expense(clients["requester"], 50).json()["id"]
    suspended = clients["operator"].post(f"/api/v1/instances/{iid}/suspend/", {"reason": "check"}, format="json")
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    resumed = clients["operator"].post(f"/api/v1/instances/{iid}/resume/", {}, format="json")
    assert resumed.json()["status"] == "waiting" and resumed.json()["version"] > suspended.json()["version"]
    cancelled = clients["requester"].post(f"/api/v1/instances/{iid}/cancel/", {"reason": "typo"}, format="json")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = clients["requester"].post(f"/api/v1/instances/{iid}/cancel/", {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "bad_transition"
