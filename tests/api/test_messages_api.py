"""Messages and signals through HTTP: start by message, correlate by key, ambiguity, signals, roles."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MESSAGE_STARTED = ROOT / "processes" / "samples" / "message_started"
MESSAGES = ROOT / "tests" / "fixtures" / "bpmn" / "messages"

pytestmark = pytest.mark.django_db


def upload(client, *paths: Path) -> None:
    """Upload diagrams (with the JSON forms beside them) as a designer, through the API."""
    names = {p.name: p for p in paths}
    for path in paths:
        for extra in sorted(path.parent.iterdir()):
            if extra.suffix == ".json":
                names.setdefault(extra.name, extra)
    files = [open(p, "rb") for p in names.values()]
    try:
        response = client.post("/api/v1/definitions/", {"files": files}, format="multipart")
    finally:
        for f in files:
            f.close()
    assert response.status_code == 201, response.json()


def post(client, url: str, body: dict, **extra):
    return client.post(url, body, format="json", **extra)


def test_a_message_starts_an_instance_that_then_appears_in_the_list(clients):
    upload(clients["designer"], MESSAGE_STARTED / "message_started.bpmn")
    operator = clients["operator"]
    order = {"order_id": "SO-1001", "customer": "ACME", "lines": [{"sku": "A-1", "qty": 2}]}

    response = post(operator, "/api/v1/messages/",
                     {"name": "order_received", "correlation_key": "SO-1001", "payload": order})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["advanced"] == [] and len(body["started"]) == 1
    (instance_id,) = body["started"]
    listed = operator.get("/api/v1/instances/?process_key=message_started").json()["results"]
    assert [(i["id"], i["business_key"], i["status"]) for i in listed] == [(instance_id, "SO-1001", "waiting")]
    detail = operator.get(f"/api/v1/instances/{instance_id}/").json()
    assert detail["data"]["order"] == order
    assert [t["element_id"] for t in detail["open_tasks"]] == ["review_order"]


def test_idempotency_key_replays_the_correlation_instead_of_starting_twice(clients):
    upload(clients["designer"], MESSAGE_STARTED / "message_started.bpmn")
    operator = clients["operator"]
    body = {"name": "order_received", "payload": {"order_id": "SO-2"}}

    first = post(operator, "/api/v1/messages/", body, HTTP_IDEMPOTENCY_KEY="order-SO-2")
    again = post(operator, "/api/v1/messages/", body, HTTP_IDEMPOTENCY_KEY="order-SO-2")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert operator.get("/api/v1/instances/?process_key=message_started").json()["count"] == 1


def test_correlation_by_key_advances_only_the_matching_instance(clients):
    upload(clients["designer"], MESSAGES / "payment_wait.bpmn")
    operator = clients["operator"]
    ids = {}
    for order_id in ("A-1", "A-2"):
        started = post(operator, "/api/v1/instances/", {"process_key": "payment_wait", "data": {"order_id": order_id}})
        assert started.status_code == 201, started.json()
        ids[order_id] = started.json()["id"]

    ambiguous = post(operator, "/api/v1/messages/", {"name": "payment_received", "payload": {"order_id": "A-2"}})
    assert ambiguous.status_code == 409
    assert ambiguous.json()["code"] == "ambiguous_correlation"
    assert ambiguous.json()["details"] == {"instances": sorted(ids.values())}

    payload = {"order_id": "A-2", "amount": 120}
    response = post(operator, "/api/v1/messages/",
                    {"name": "payment_received", "correlation_key": "A-2", "payload": payload})

    assert response.status_code == 200, response.json()
    assert response.json() == {"advanced": [ids["A-2"]], "started": []}
    second = operator.get(f"/api/v1/instances/{ids['A-2']}/").json()
    assert second["status"] == "completed" and second["data"]["payment"] == payload
    assert operator.get(f"/api/v1/instances/{ids['A-1']}/").json()["status"] != "completed"

    missing = post(operator, "/api/v1/messages/", {"name": "payment_received", "correlation_key": "A-9"})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    invalid = post(operator, "/api/v1/messages/", {"name": "", "payload": "not an object"})
    assert invalid.status_code == 422 and set(invalid.json()["details"]) == {"name", "payload"}


def test_a_signal_advances_every_waiting_instance(clients):
    upload(clients["designer"], MESSAGES / "shutdown_wait.bpmn")
    operator = clients["operator"]
    waiting = [post(operator, "/api/v1/instances/", {"process_key": "shutdown_wait"}).json()["id"] for _ in range(2)]

    response = post(clients["admin"], "/api/v1/signals/", {"name": "shutdown", "payload": {"reason": "maintenance"}})

    assert response.status_code == 200, response.json()
    assert response.json() == {"advanced": sorted(waiting), "started": []}
    for instance_id in waiting:
        assert operator.get(f"/api/v1/instances/{instance_id}/").json()["status"] == "completed"
    assert post(operator, "/api/v1/signals/", {"name": "nobody_listens"}).json() == {"advanced": [], "started": []}


@pytest.mark.parametrize("role, status", [("anonymous", 401), ("requester", 403), ("designer", 403),
                                          ("auditor", 403)])
def test_only_operators_and_admins_send_messages_and_signals(clients, role, status):
    for url in ("/api/v1/messages/", "/api/v1/signals/"):
        response = post(clients[role], url, {"name": "anything"})
        assert response.status_code == status and set(response.json()) == {"code", "message", "details"}
