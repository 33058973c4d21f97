"""Project-level behaviour: health page, embedded database settings, the demo seed."""
from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from core.errors import BatonError, Busy, Conflict, NotFound


def test_health_reports_the_database(client, db):
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["broker"] == "embedded"  # no CELERY_BROKER_URL in the test settings


@pytest.mark.sqlite_smoke
def test_embedded_sqlite_uses_immediate_transactions_and_wal(db):
    if connection.vendor != "sqlite":
        assert "lock_timeout" in settings.DATABASES["default"]["OPTIONS"]["options"]
        return
    assert settings.DATABASES["default"]["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


def test_error_family_has_codes_and_statuses():
    assert Conflict("x").status == 409 and Busy("x").status == 409 and Busy("x").code == "busy_retry_later"
    assert NotFound("gone").as_dict() == {"code": "not_found", "message": "gone", "details": None}
    assert issubclass(Busy, BatonError)


@pytest.mark.sqlite_smoke
@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_prints_the_users():
    from processes.models import ProcessInstance

    out = StringIO()
    call_command("seed_demo", stdout=out)
    first = ProcessInstance.objects.count()
    call_command("seed_demo", stdout=StringIO())
    assert "alice-demo" in out.getvalue() and "expense_approval" in out.getvalue()
    assert first >= 5
    assert ProcessInstance.objects.count() == first
    statuses = set(ProcessInstance.objects.values_list("status", flat=True))
    assert {"waiting", "completed"} <= statuses
