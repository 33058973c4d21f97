"""A5: schemathesis over the generated OpenAPI schema, once per role.

The schema comes straight from drf-spectacular's generator and the requests go
to the Django WSGI application in-process (no server), so every call runs in
the test's own transaction and sees the fixture world: the expense-approval
definition, an instance started by ``requester`` waiting on its manager
approval, and an open incident. Path ids are mostly random (404s); the
examples phase and a few pinned ids reach the real objects too.

Checks: no 5xx (``not_a_server_error``), the status code is documented
(``status_code_conformance``) and the body matches the documented schema
(``response_schema_conformance``). Examples are capped and Hypothesis'
deadline is off so the file stays within the fuzzing budget (RELIABILITY.md).
"""
from __future__ import annotations

import zlib

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from processes.models import Incident, ProcessInstance

from .conftest import start_expense

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]

ROLES = ("anonymous", "requester", "designer", "operator", "auditor", "admin")
MAX_EXAMPLES = 20
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = get_wsgi_application()
schema.config.phases.update(phases=["examples", "fuzzing"])
schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none")


@pytest.fixture
def keep_connection():
    """Keep the test's DB connection open across WSGI calls (Django's test client does the same).

    The WSGI handler closes "old" connections when a request starts and ends,
    which would close the test transaction's connection. Django's own test
    client reconnects the handler after each request, so this fixture must be
    set up after the world is built through it.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(clients, published) -> dict[str, dict]:
    """The objects the calls may touch; token headers per role (``clients`` made the users)."""
    started = start_expense(clients["requester"], 5000).json()
    Incident.objects.create(instance=ProcessInstance.objects.get(pk=started["id"]), error_type="Boom",
                            message="fixture incident")
    headers = {"anonymous": {}}
    for token in Token.objects.select_related("user"):
        headers[token.user.username] = {"Authorization": f"Token {token.key}"}
    task_id = started["open_tasks"][0]["id"]
    return {"headers": headers, "ids": {"instance_id": started["id"], "task_id": task_id,
                                        "incident_id": Incident.objects.get().pk, "process_key": "expense_approval"}}


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, role, world, keep_connection):
    # Random path ids mostly miss (404); for about half the cases point them at the world's objects
    # instead, so commands with fuzzed bodies also run against a real instance, task and incident.
    params = case.path_parameters or {}
    if params and zlib.crc32(repr(sorted(params.items())).encode()) % 2 == 0:
        case.path_parameters = {**params, **{k: v for k, v in world["ids"].items() if k in params}}
    case.headers = {**(case.headers or {}), **world["headers"][role]}
    if role == "anonymous":
        case.headers.pop("Authorization", None)
    case.call_and_validate(checks=CHECKS)
