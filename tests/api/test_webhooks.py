"""Webhooks: subscriptions over the API, signed deliveries to a real receiver on loopback, retries."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from processes.jobs import job_execute
from processes.models import Job, JobStatus, WebhookSubscription

from .conftest import make_user, start_expense, token_client

pytestmark = pytest.mark.django_db


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((dict(self.headers), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def subscribe(client, url: str, events: list[str], **extra) -> dict:
    response = client.post("/api/v1/webhooks/", {"url": url, "events": events, **extra}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def run_deliveries() -> list[str]:
    return [job_execute(job_id=pk) for pk in Job.objects.filter(kind="webhook").order_by("id").values_list("pk", flat=True)]


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Baton-Signature"])


def test_create_shows_the_secret_once_and_only_operators_subscribe(clients):
    created = subscribe(clients["operator"], "https://example.org/hook", ["*"])
    assert len(created["secret"]) == 64
    detail = clients["operator"].get(f"/api/v1/webhooks/{created['id']}/").json()
    assert "secret" not in detail and detail["events"] == ["*"]
    assert [s["id"] for s in clients["operator"].get("/api/v1/webhooks/").json()["results"]] == [created["id"]]
    assert clients["requester"].post("/api/v1/webhooks/", {"url": "https://x.org", "events": ["*"]},
                                     format="json").status_code == 403
    bad = clients["operator"].post("/api/v1/webhooks/", {"url": "ftp://x.org/", "events": ["nope"]}, format="json")
    assert bad.status_code == 422 and set(bad.json()["details"]) == {"url", "events"}
    other = token_client(make_user("operator2", ["operators"]))
    assert other.get(f"/api/v1/webhooks/{created['id']}/").status_code == 404
    assert other.get("/api/v1/webhooks/").json()["results"] == []


def test_started_and_completed_are_delivered_signed_once_each(clients, published, receiver):
    sub = subscribe(clients["operator"], receiver.url, ["instance.started", "task.completed"])
    started = start_expense(clients["requester"], 5000).json()
    task_id = started["open_tasks"][0]["id"]
    decided = clients["manager"].post(f"/api/v1/tasks/{task_id}/decide/",
                                      {"decision": "approve", "data": {"decision": "approve", "reason": "ok"}},
                                      format="json")
    assert decided.status_code == 200, decided.json()
    jobs = list(Job.objects.filter(kind="webhook").order_by("id"))
    assert [j.params["event"] for j in jobs] == ["instance.started", "task.completed"]
    assert all(j.instance_id is None and j.idempotency_key == j.params["delivery_id"] for j in jobs)

    assert run_deliveries() == ["done", "done"]
    assert len(receiver.requests) == 2
    bodies = []
    for headers, body in receiver.requests:
        assert headers["Content-Type"] == "application/json"
        assert verify(sub["secret"], headers, body)
        assert not verify("wrong", headers, body)
        payload = json.loads(body)
        assert headers["X-Baton-Event"] == payload["event"] and headers["X-Baton-Delivery"] == payload["id"]
        bodies.append(payload)
    assert len({b["id"] for b in bodies}) == 2
    assert bodies[0]["event"] == "instance.started"
    assert bodies[0]["data"]["instance_id"] == started["id"]
    assert bodies[0]["data"]["process_key"] == "expense_approval"
    assert bodies[0]["data"]["business_key"] == "EXP-5000"
    assert bodies[1]["event"] == "task.completed"
    assert bodies[1]["data"]["task"]["element_id"] == "manager_approval"
    assert bodies[1]["data"]["task"]["name"]

    assert run_deliveries() == ["skipped", "skipped"]  # done: never delivered twice
    assert len(receiver.requests) == 2
    deliveries = clients["operator"].get("/api/v1/webhooks/deliveries/").json()["results"]
    assert [(d["event"], d["status"], d["attempt"]) for d in deliveries] == [
        ("task.completed", "done", 1), ("instance.started", "done", 1)]
    assert clients["admin"].get("/api/v1/webhooks/deliveries/").json()["count"] == 2
    assert token_client(make_user("operator2", ["operators"])).get(
        "/api/v1/webhooks/deliveries/").json()["results"] == []


def test_failing_receiver_is_retried_with_backoff_then_failed(clients, published, receiver, settings):
    settings.BATON_WEBHOOK_MAX_ATTEMPTS = 3
    receiver.status = 500
    subscribe(clients["operator"], receiver.url, ["instance.started"])
    start_expense(clients["requester"], 5000)
    job = Job.objects.get(kind="webhook")
    assert job.max_attempts == 3
    for attempt in (1, 2):
        before = timezone.now()
        assert job_execute(job_id=job.pk) == "failed"
        job.refresh_from_db()
        assert (job.status, job.attempt) == (JobStatus.QUEUED, attempt)
        assert job.run_at > before and "500" in job.last_error
        assert job_execute(job_id=job.pk) == "skipped"  # not due yet: backoff holds it
        Job.objects.filter(pk=job.pk).update(run_at=timezone.now() - timedelta(seconds=1))
    assert job_execute(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert (job.status, job.attempt) == (JobStatus.FAILED, 3) and "500" in job.last_error
    assert len(receiver.requests) == 3
    assert len({headers["X-Baton-Delivery"] for headers, _ in receiver.requests}) == 1  # same delivery, retried
    delivery = clients["operator"].get("/api/v1/webhooks/deliveries/?status=failed").json()["results"][0]
    assert (delivery["attempt"], delivery["max_attempts"]) == (3, 3) and "500" in delivery["last_error"]


def test_unreachable_receiver_is_a_failed_attempt(clients, published, receiver):
    url = receiver.url
    receiver.close()  # nothing listens any more
    subscribe(clients["operator"], url, ["*"])
    start_expense(clients["requester"], 5000)
    assert set(run_deliveries()) == {"failed"}
    assert set(Job.objects.filter(kind="webhook").values_list("status", "attempt")) == {(JobStatus.QUEUED, 1)}


def test_filters_by_event_and_process_and_inactive_gets_nothing(clients, users, published):
    by_process = subscribe(clients["operator"], "http://127.0.0.1:9/a", ["*"], process_key="expense_approval")
    other_process = subscribe(clients["operator"], "http://127.0.0.1:9/b", ["*"], process_key="other_process")
    created_only = subscribe(clients["operator"], "http://127.0.0.1:9/c", ["task.created"])
    inactive = subscribe(clients["operator"], "http://127.0.0.1:9/d", ["*"])
    assert clients["operator"].patch(f"/api/v1/webhooks/{inactive['id']}/", {"active": False},
                                     format="json").json()["active"] is False
    start_expense(clients["requester"], 5000)
    got = sorted((j.params["subscription_id"], j.params["event"]) for j in Job.objects.filter(kind="webhook"))
    assert got == sorted([(by_process["id"], "instance.started"), (by_process["id"], "task.created"),
                          (created_only["id"], "task.created")])
    created = Job.objects.get(kind="webhook", params__subscription_id=created_only["id"])
    assert created.params["payload"]["task"]["element_id"] == "manager_approval"
    assert not Job.objects.filter(params__subscription_id__in=[other_process["id"], inactive["id"]]).exists()


def test_cancel_emits_and_delete_cancels_waiting_deliveries(clients, published):
    sub = subscribe(clients["operator"], "http://127.0.0.1:9/a", ["instance.cancelled"])
    started = start_expense(clients["requester"], 5000).json()
    assert clients["operator"].post(f"/api/v1/instances/{started['id']}/cancel/", {"reason": "x"},
                                    format="json").status_code == 200
    job = Job.objects.get(kind="webhook")
    assert job.params["event"] == "instance.cancelled" and job.params["payload"]["status"] == "cancelled"
    assert job.status == JobStatus.QUEUED  # the instance ended, its delivery did not
    assert clients["operator"].delete(f"/api/v1/webhooks/{sub['id']}/").status_code == 204
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert not WebhookSubscription.objects.exists()


def test_no_subscription_costs_no_statement(clients, published):
    """Without subscriptions the emission runs no SQL (the cached answer), so command costs stay put."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    start_expense(clients["requester"], 5000)  # primes the "no subscription" answer
    with CaptureQueriesContext(connection) as queries:
        start_expense(clients["requester"], 6000)
    assert not [q for q in queries.captured_queries if "webhooksubscription" in q["sql"].lower()]
