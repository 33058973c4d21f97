"""A1: every route of the OpenAPI schema x every role x every method, against a reviewed table.

Each case runs in its own rolled-back transaction on the same fixture: the
expense-approval definition, an instance started by ``requester`` (amount
5000) waiting on the unclaimed ``manager_approval`` task (candidate group
Managers), and one open incident on it (without a failed step, so even an
operator's retry/skip is a 409). Documented methods must answer the table's
status exactly; undocumented methods must never succeed (401/403/405). A route
or method in the schema without a row fails the test, as does a row for a
route no longer in the schema.
"""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from approvals.discussion import attachment_add
from approvals.models import Notification, StandIn
from processes.models import Incident, ProcessInstance, WebhookSubscription

from .conftest import sample_files, start_expense

ROLES = ("anonymous", "requester", "designer", "operator", "auditor", "admin", "manager")
METHODS = ("get", "post", "put", "patch", "delete")


def row(anonymous, requester, designer, operator, auditor, admin, manager):
    return dict(zip(ROLES, (anonymous, requester, designer, operator, auditor, admin, manager)))


EVERYONE = row(401, 200, 200, 200, 200, 200, 200)
# Instance I: started by requester; visible to its starter, to candidates of its tasks (manager)
# and to operators, auditors and admins; 404 for anyone else (designer here).
SEES_I = row(401, 200, 404, 200, 200, 200, 200)
# Task T: open, unclaimed, candidate group Managers; visible to candidates, operators, auditors, admins.
SEES_T = row(401, 404, 404, 200, 200, 200, 200)
OPERATORS = row(401, 403, 403, 200, 403, 200, 403)
AUDITORS = row(401, 403, 403, 403, 200, 200, 403)

TABLE: dict[tuple[str, str], dict[str, int]] = {
    ("/api/v1/definitions/", "get"): EVERYONE,
    ("/api/v1/definitions/", "post"): row(401, 403, 201, 403, 403, 201, 403),
    ("/api/v1/definitions/{process_key}/", "get"): EVERYONE,
    ("/api/v1/definitions/{process_key}/xml/", "get"): EVERYONE,
    ("/api/v1/instances/", "get"): EVERYONE,
    ("/api/v1/instances/", "post"): row(401, 201, 201, 201, 201, 201, 201),
    ("/api/v1/instances/{instance_id}/", "get"): SEES_I,
    ("/api/v1/instances/{instance_id}/history/", "get"): SEES_I,
    ("/api/v1/instances/{instance_id}/diagram-state/", "get"): SEES_I,
    # cancel: operators, admins and the starter; visible-but-not-allowed is 403, invisible 404.
    ("/api/v1/instances/{instance_id}/cancel/", "post"): row(401, 200, 404, 200, 403, 200, 403),
    ("/api/v1/instances/{instance_id}/suspend/", "post"): row(401, 403, 404, 200, 403, 200, 403),
    # resume: the instance is not suspended, so even an operator meets a 409 bad_transition.
    ("/api/v1/instances/{instance_id}/resume/", "post"): row(401, 403, 404, 409, 403, 409, 403),
    ("/api/v1/tasks/", "get"): EVERYONE,
    ("/api/v1/tasks/{task_id}/", "get"): SEES_T,
    # claim / decide: only candidates. Operators, auditors and even admins see the task but are
    # no candidates (no implicit approver: separation of duties), so 403 not_a_candidate.
    ("/api/v1/tasks/{task_id}/claim/", "post"): row(401, 404, 404, 403, 403, 403, 200),
    # release: the task is unclaimed -> 409 for whoever may see it.
    ("/api/v1/tasks/{task_id}/release/", "post"): row(401, 404, 404, 409, 409, 409, 409),
    # delegate to finance: a candidate of the unclaimed task, or an operator / admin.
    ("/api/v1/tasks/{task_id}/delegate/", "post"): row(401, 404, 404, 200, 403, 200, 200),
    ("/api/v1/tasks/{task_id}/decide/", "post"): row(401, 404, 404, 403, 403, 403, 200),
    # reassign (to finance, with a reason): operators and admins; the assignee's directory manager too, but
    # T is unclaimed, so a candidate (manager) or an auditor who sees it gets 403.
    ("/api/v1/tasks/{task_id}/reassign/", "post"): row(401, 404, 404, 200, 403, 200, 403),
    # comments / attachments: read by whoever sees T; added by the people working on it (manager, a
    # candidate) and operators / admins; auditors read only (403). A holds manager's file on T.
    ("/api/v1/tasks/{task_id}/comments/", "get"): SEES_T,
    ("/api/v1/tasks/{task_id}/comments/", "post"): row(401, 404, 404, 201, 403, 201, 201),
    ("/api/v1/tasks/{task_id}/attachments/", "get"): SEES_T,
    ("/api/v1/tasks/{task_id}/attachments/", "post"): row(401, 404, 404, 201, 403, 201, 201),
    ("/api/v1/tasks/{task_id}/attachments/{attachment_id}/", "get"): SEES_T,
    # stand-ins: everyone lists and sets their own; S (manager away, finance stands in) may be ended by
    # the manager, an operator or an admin; anyone else gets 404.
    ("/api/v1/stand-ins/", "get"): EVERYONE,
    ("/api/v1/stand-ins/", "post"): row(401, 201, 201, 201, 201, 201, 201),
    ("/api/v1/stand-ins/{standin_id}/end/", "post"): row(401, 404, 404, 200, 404, 200, 200),
    ("/api/v1/incidents/", "get"): OPERATORS,
    ("/api/v1/incidents/{incident_id}/retry/", "post"): row(401, 403, 403, 409, 403, 409, 403),
    ("/api/v1/incidents/{incident_id}/skip/", "post"): row(401, 403, 403, 409, 403, 409, 403),
    # messages / signals act for a system: operators and admins. The message names no waiting
    # instance and no start event, so 404; a signal nobody waits for is 200 with empty lists.
    ("/api/v1/messages/", "post"): row(401, 403, 403, 404, 403, 404, 403),
    ("/api/v1/signals/", "post"): row(401, 403, 403, 200, 403, 200, 403),
    ("/api/v1/audit/instances/{instance_id}/events/", "get"): AUDITORS,
    ("/api/v1/audit/verify/", "get"): AUDITORS,
    # webhooks: operators and admins subscribe (they see every instance); subscription W belongs
    # to operator, and admins see every subscription.
    ("/api/v1/webhooks/", "get"): OPERATORS,
    ("/api/v1/webhooks/", "post"): row(401, 403, 403, 201, 403, 201, 403),
    ("/api/v1/webhooks/deliveries/", "get"): OPERATORS,
    ("/api/v1/webhooks/{subscription_id}/", "get"): OPERATORS,
    ("/api/v1/webhooks/{subscription_id}/", "patch"): OPERATORS,
    ("/api/v1/webhooks/{subscription_id}/", "delete"): row(401, 403, 403, 204, 403, 204, 403),
    # notifications: everyone reads their own; notification N is the manager's (new task), and
    # nobody else - not even an admin - may touch it (404, as if it did not exist).
    ("/api/v1/notifications/", "get"): EVERYONE,
    ("/api/v1/notifications/read-all/", "post"): EVERYONE,
    ("/api/v1/notifications/{notification_id}/read/", "post"): row(401, 404, 404, 404, 404, 404, 200),
}


def schema_operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(path, method) for path, item in schema["paths"].items() for method in item if method in METHODS}


def _body(path: str, method: str):
    if path.endswith("/comments/"):
        return {"text": "a remark"}, "json"
    if path.endswith("/attachments/") and method == "post":
        return {"file": SimpleUploadedFile("receipt.txt", b"12 EUR", content_type="text/plain")}, "multipart"
    if path == "/api/v1/definitions/" and method == "post":
        return {"files": sample_files()}, "multipart"
    if path == "/api/v1/instances/" and method == "post":
        return {"process_key": "expense_approval", "data": {"employee": "x", "amount": 10, "category": "it"}}, "json"
    if path.endswith("/reassign/"):
        return {"to_user": "finance", "reason": "balance the load"}, "json"
    if path == "/api/v1/stand-ins/" and method == "post":
        return {"stand_in": "other", "reason": "holiday"}, "json"
    if path.endswith("/delegate/"):
        return {"to_user": "finance", "reason": "away"}, "json"
    if path in ("/api/v1/messages/", "/api/v1/signals/"):
        return {"name": "nobody_waits_for_this"}, "json"
    if path == "/api/v1/webhooks/" and method == "post":
        return {"url": "http://127.0.0.1:9/hook", "events": ["*"]}, "json"
    if path.endswith("/decide/"):
        return {"decision": "approve", "data": {"decision": "approve", "reason": "ok"}}, "json"
    return {}, "json"


def _call(client, path: str, method: str, ids: dict[str, object]) -> int:
    url = path.format(**ids)
    body, fmt = _body(path, method) if method != "get" else (None, None)
    with transaction.atomic():
        response = getattr(client, method)(url, body, format=fmt) if body is not None else client.get(url)
        transaction.set_rollback(True)
    for f in (body or {}).get("files", []):
        f.close()
    return response.status_code


@pytest.fixture
def world(clients, users, published, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "files")
    started = start_expense(clients["requester"], 5000).json()
    instance = ProcessInstance.objects.get(pk=started["id"])
    incident = Incident.objects.create(instance=instance, error_type="Boom", message="fixture incident")
    subscription = WebhookSubscription.objects.create(owner=users["operator"], url="http://127.0.0.1:9/hook",
                                                      secret="s", events=["*"])
    standin = StandIn.objects.create(user=users["manager"], stand_in=users["finance"], starts_at=timezone.now())
    notice = Notification.objects.get(user=users["manager"], task_id=started["open_tasks"][0]["id"])
    attachment = attachment_add(human_task_id=started["open_tasks"][0]["id"], actor=users["manager"],
                                filename="quote.pdf", content_type="application/pdf", data=b"%PDF quote")
    return {"process_key": "expense_approval", "instance_id": instance.pk,
            "task_id": started["open_tasks"][0]["id"], "incident_id": incident.pk,
            "subscription_id": subscription.pk, "standin_id": standin.pk, "notification_id": notice.pk,
            "attachment_id": attachment.pk}


@pytest.mark.django_db
def test_every_schema_operation_has_a_reviewed_row():
    operations = schema_operations()
    assert operations - TABLE.keys() == set(), "routes without a row in TABLE"
    assert TABLE.keys() - operations == set(), "rows for routes no longer in the schema"


@pytest.mark.django_db
def test_authorization_matrix(clients, world):
    operations = schema_operations()
    paths = {path for path, _ in operations}
    mismatches = []
    for path in sorted(paths):
        for method in METHODS:
            for role in ROLES:
                status = _call(clients[role], path, method, world)
                if (path, method) in TABLE:
                    expected = TABLE[(path, method)].get(role)
                    if status != expected:
                        mismatches.append(f"{method.upper()} {path} as {role}: {status}, table says {expected}")
                elif status not in (401, 403, 405):
                    mismatches.append(f"{method.upper()} {path} as {role}: {status} for an undocumented method")
    assert mismatches == []
