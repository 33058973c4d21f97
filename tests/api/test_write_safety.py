"""C2 (Idempotency-Key), A2 (no existence oracle), A4 (CSRF, tokens, CORS), error shape, tokens."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from processes.models import AuditEvent, HumanTask

from .conftest import start_expense, token_client


def _manager_task(clients) -> int:
    response = start_expense(clients["requester"], 500)
    assert response.status_code == 201, response.json()
    task_id = response.json()["open_tasks"][0]["id"]
    assert clients["manager"].post(f"/api/v1/tasks/{task_id}/claim/", {}, format="json").status_code == 200
    return task_id


DECIDE = {"decision": "approve", "data": {"decision": "approve", "reason": "ok"}}


@pytest.mark.django_db
def test_c2_same_key_replays_one_completion(clients, published):
    task_id = _manager_task(clients)
    url, headers = f"/api/v1/tasks/{task_id}/decide/", {"HTTP_IDEMPOTENCY_KEY": "k-1"}
    first = clients["manager"].post(url, DECIDE, format="json", **headers)
    second = clients["manager"].post(url, DECIDE, format="json", **headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() and second["Idempotent-Replayed"] == "true"
    completions = AuditEvent.objects.filter(command="task_complete", task_id=HumanTask.objects.get(pk=task_id).task_id)
    assert completions.count() == 1

    other = clients["manager"].post(url, {**DECIDE, "reason": "changed"}, format="json", **headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


@pytest.mark.django_db
def test_c2_without_key_second_request_is_409(clients, published):
    task_id = _manager_task(clients)
    url = f"/api/v1/tasks/{task_id}/decide/"
    assert clients["manager"].post(url, DECIDE, format="json").status_code == 200
    again = clients["manager"].post(url, DECIDE, format="json")
    assert again.status_code == 409
    assert set(again.json()) == {"code", "message", "details"} and again.json()["code"]


@pytest.mark.django_db
def test_c2_keys_are_per_user_and_start_is_replayed(clients, published):
    headers = {"HTTP_IDEMPOTENCY_KEY": "start-1"}
    a = start_expense(clients["requester"], 300, **headers)
    b = start_expense(clients["requester"], 300, **headers)
    assert a.status_code == b.status_code == 201 and a.json()["id"] == b.json()["id"]
    c = start_expense(clients["other"], 300, **headers)  # same key, another user: its own request
    assert c.status_code == 201 and c.json()["id"] != a.json()["id"]


@pytest.mark.django_db
def test_a2_other_users_objects_are_404_and_never_listed(clients, published):
    started = start_expense(clients["requester"], 500).json()
    iid, task_id = started["id"], started["open_tasks"][0]["id"]
    other = clients["other"]
    pairs = [(f"/api/v1/instances/{iid}/", "/api/v1/instances/999999/"),
             (f"/api/v1/instances/{iid}/history/", "/api/v1/instances/999999/history/"),
             (f"/api/v1/instances/{iid}/diagram-state/", "/api/v1/instances/999999/diagram-state/"),
             (f"/api/v1/tasks/{task_id}/", "/api/v1/tasks/999999/")]
    for hidden, missing in pairs:  # the same answer as for an id that does not exist
        a, b = other.get(hidden), other.get(missing)
        assert a.status_code == b.status_code == 404, hidden
        assert (a.json()["code"], a.json()["details"]) == (b.json()["code"], b.json()["details"])
    for url in (f"/api/v1/tasks/{task_id}/claim/", f"/api/v1/tasks/{task_id}/decide/",
                f"/api/v1/instances/{iid}/cancel/"):
        response = other.post(url, DECIDE if "decide" in url else {}, format="json")
        assert response.status_code == 404 and response.json()["code"] == "not_found", url
    assert other.get("/api/v1/instances/").json()["count"] == 0
    assert other.get(f"/api/v1/instances/?business_key={started['business_key']}").json()["count"] == 0
    for scope in ("mine", "groups", "done", "all"):
        assert other.get(f"/api/v1/tasks/?scope={scope}").json()["count"] == 0
    assert HumanTask.objects.get(pk=task_id).status == "open"


@pytest.mark.django_db
def test_a4_session_post_needs_csrf_token_post_does_not(users, published):
    session = APIClient(enforce_csrf_checks=True)
    session.force_login(users["requester"])
    body = {"process_key": "expense_approval", "data": {"employee": "r", "amount": 5, "category": "it"}}
    refused = session.post("/api/v1/instances/", body, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    assert "CSRF" in refused.json()["message"]
    assert session.get("/api/v1/instances/").status_code == 200  # safe methods need no token
    token = token_client(users["requester"]).post("/api/v1/instances/", body, format="json")
    assert token.status_code == 201
    cross = token_client(users["requester"]).get("/api/v1/instances/", HTTP_ORIGIN="https://evil.example")
    assert cross.get("Access-Control-Allow-Origin") in (None, "")
    assert cross.get("Access-Control-Allow-Credentials") in (None, "")


@pytest.mark.django_db
def test_errors_share_one_shape(clients):
    anonymous = clients["anonymous"].get("/api/v1/instances/")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Token")
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Token nope")
    for response in (anonymous, bad_token.get("/api/v1/tasks/"),
                     clients["requester"].get("/api/v1/tasks/?scope=bogus"),
                     clients["requester"].post("/api/v1/instances/", {"data": 3}, format="json"),
                     clients["requester"].delete("/api/v1/instances/"),
                     clients["requester"].post("/api/v1/instances/", "{not json", content_type="application/json"),
                     clients["requester"].get("/api/v1/definitions/nope/")):
        assert response.status_code >= 400
        assert set(response.json()) == {"code", "message", "details"}, response.json()


@pytest.mark.django_db
def test_api_token_command_creates_rotates_revokes(users, capsys):
    call_command("api_token", "requester")
    first = capsys.readouterr().out.strip()
    assert token_client(None).get("/api/v1/tasks/", HTTP_AUTHORIZATION=f"Token {first}").status_code == 200
    call_command("api_token", "requester")
    assert capsys.readouterr().out.strip() == first
    call_command("api_token", "requester", "--rotate")
    second = capsys.readouterr().out.strip()
    assert second != first
    assert APIClient().get("/api/v1/tasks/", HTTP_AUTHORIZATION=f"Token {first}").status_code == 401
    call_command("api_token", "requester", "--revoke")
    assert not Token.objects.filter(user=users["requester"]).exists()
    assert APIClient().get("/api/v1/tasks/", HTTP_AUTHORIZATION=f"Token {second}").status_code == 401


@pytest.mark.django_db
def test_unknown_api_urls_answer_the_error_body(clients):
    for url in ("/api/v1/nope/", "/api/v1/tasks", "/api/v2/"):
        response = clients["requester"].get(url)
        assert response.status_code == 404 and response.json()["code"] == "not_found", url


@pytest.mark.django_db
def test_c2_key_of_a_request_still_running_is_409(clients, users, published):
    import hashlib
    import json

    from api.models import IdempotencyRecord

    body = {"process_key": "expense_approval", "data": {"employee": "r", "amount": 5, "category": "it"}}
    digest = hashlib.sha256(b"POST /api/v1/instances/\n")
    digest.update(json.dumps(body, sort_keys=True).encode())
    # An unfinished record (status null) with this request's fingerprint: the first request is still running.
    IdempotencyRecord.objects.create(user=users["requester"], key="busy-1", method_path="POST /api/v1/instances/",
                                     body_hash=digest.hexdigest())
    running = clients["requester"].post("/api/v1/instances/", body, format="json", HTTP_IDEMPOTENCY_KEY="busy-1")
    assert running.status_code == 409 and running.json()["code"] == "idempotency_in_progress"
    other = start_expense(clients["requester"], 10, HTTP_IDEMPOTENCY_KEY="busy-1")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
