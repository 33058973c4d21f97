"""Operations endpoints: /health/ (database, broker, sweeper lag) and /metrics (Prometheus text format)."""
from __future__ import annotations

import os
import re
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import OperationalError
from django.utils import timezone

from processes import services
from processes.models import (
    HumanTask,
    HumanTaskStatus,
    Incident,
    IncidentStatus,
    InstanceStatus,
    Job,
    JobStatus,
    ProcessInstance,
)

ENGINE = Path(__file__).resolve().parent / "fixtures" / "bpmn" / "engine"
DEAD_BROKER_URL = "redis://127.0.0.1:1/0"

pytestmark = pytest.mark.django_db


def _deploy(*names: str) -> None:
    from bpmn.services import definition_upload

    for name in names:
        definition_upload(files=[(name, (ENGINE / name).read_bytes())], uploaded_by=None)


@pytest.fixture
def embedded(settings):
    settings.CELERY_BROKER_URL = ""
    settings.BATON_EMBEDDED_WORKER = True
    return settings


def test_health_on_the_embedded_default_reports_every_part(client, embedded):
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "embedded",
        "sweeper": {"due_jobs": 0, "oldest_due_job_age_seconds": None,
                    "overdue_timers": 0, "oldest_overdue_timer_age_seconds": None},
    }
    assert response["Cache-Control"].startswith("max-age=0")


def test_health_with_a_dead_broker_is_degraded_and_answers_within_two_seconds(client, settings):
    settings.CELERY_BROKER_URL = DEAD_BROKER_URL
    started = time.monotonic()
    response = client.get("/health/")
    assert time.monotonic() - started < 2.0
    assert response.status_code == 200  # the web tier still serves; jobs wait for the sweeper
    body = response.json()
    assert body["status"] == "degraded" and body["database"] == "ok"
    assert body["broker"].startswith("error: ")


def test_health_with_a_hanging_broker_gives_up_after_about_a_second(client, settings):
    """A broker that accepts the connection and never answers (a hung Redis) must not hold the probe."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel; nobody ever reads or replies
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        response = client.get("/health/")
        elapsed = time.monotonic() - started
    assert response.json()["broker"].startswith("error: ")
    assert elapsed < 2.5, f"health took {elapsed:.2f} s"


def test_health_with_the_real_broker_says_ok(client, settings):
    url = os.environ.get("CELERY_TEST_BROKER_URL") or "redis://127.0.0.1:6379/15"
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {url}")
    settings.CELERY_BROKER_URL = url
    body = client.get("/health/").json()
    assert body["broker"] == "ok" and body["status"] == "ok"


def test_health_reports_sweeper_lag_from_due_jobs_and_overdue_timers(client, embedded):
    _deploy("service_task.bpmn", "single_user_task.bpmn")
    with_job = services.instance_start(process_key="service_task", actor=None, data={"name": "Ada"})
    with_timer = services.instance_start(process_key="single_user_task", actor=None, data={})
    now = timezone.now()
    Job.objects.filter(instance=with_job).update(run_at=now - timedelta(seconds=120))
    ProcessInstance.objects.filter(pk=with_timer.pk).update(next_timer_at=now - timedelta(seconds=30))
    # neither counts: a job backing off (due later) and a suspended instance's overdue timer
    later = services.instance_start(process_key="service_task", actor=None, data={"name": "Bo"})
    Job.objects.filter(instance=later).update(run_at=now + timedelta(seconds=60))
    parked = services.instance_start(process_key="single_user_task", actor=None, data={})
    services.instance_suspend(instance_id=parked.pk, actor=None)
    ProcessInstance.objects.filter(pk=parked.pk).update(next_timer_at=now - timedelta(seconds=500))

    body = client.get("/health/").json()

    lag = body["sweeper"]
    assert lag["due_jobs"] == 1 and lag["overdue_timers"] == 1
    assert 119 <= lag["oldest_due_job_age_seconds"] < 180
    assert 29 <= lag["oldest_overdue_timer_age_seconds"] < 90
    assert body["status"] == "degraded"  # two minutes behind: more than ten sweep intervals


def test_health_with_the_database_down_is_503(client, embedded, monkeypatch):
    import core.views

    class Down:
        def cursor(self):
            raise OperationalError("connection refused")

    monkeypatch.setattr(core.views, "connection", Down())
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "database": "error: OperationalError", "broker": "embedded"}


# --- /metrics ---------------------------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{({_LABEL}(?:,{_LABEL})*)?\}})? (-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf)$")
_COMMENT = re.compile(rf"^# (HELP|TYPE) ({_NAME}) (.+)$")


def parse_exposition(text: str) -> dict[str, dict[tuple, float]]:
    """Parse Prometheus text format 0.0.4 strictly; return {metric: {sorted label pairs: value}}."""
    assert text.endswith("\n")
    samples: dict[str, dict[tuple, float]] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        comment = _COMMENT.match(line)
        if comment:
            kind, name, rest = comment.groups()
            if kind == "TYPE":
                assert rest in ("counter", "gauge", "histogram", "summary", "untyped"), line
                assert name not in types, f"TYPE twice for {name}"
                types[name] = rest
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a valid exposition line: {line!r}"
        name, labels, value = match.groups()
        assert name in types, f"{name} has no TYPE line before its samples"
        pairs = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or "")))
        assert pairs not in samples.setdefault(name, {}), f"duplicate sample {name}{pairs}"
        samples[name][pairs] = float(value)
    return samples


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def test_metrics_parse_as_prometheus_text_and_match_the_database(client, embedded):
    _deploy("service_task.bpmn", "single_user_task.bpmn", "failing_script.bpmn")
    for name in ("Ada", "Bo", "Cy"):
        services.instance_start(process_key="service_task", actor=None, data={"name": name})
    waiting = [services.instance_start(process_key="single_user_task", actor=None, data={}) for _ in range(2)]
    services.instance_start(process_key="failing_script", actor=None, data={})  # -> incident
    services.instance_suspend(instance_id=waiting[0].pk, actor=None)
    Job.objects.filter(pk=Job.objects.order_by("id").first().pk).update(run_at=timezone.now() - timedelta(seconds=42))
    Job.objects.filter(pk=Job.objects.order_by("-id").first().pk).update(run_at=timezone.now() + timedelta(hours=1))
    ProcessInstance.objects.filter(pk=waiting[1].pk).update(next_timer_at=timezone.now() - timedelta(seconds=7))

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse_exposition(response.content.decode())
    assert _value(samples, "baton_up") == 1
    for status in InstanceStatus.values:
        assert _value(samples, "baton_instances", status=status) == ProcessInstance.objects.filter(status=status).count()
    assert _value(samples, "baton_instances", status="incident") == 1
    assert _value(samples, "baton_instances", status="suspended") == 1
    assert _value(samples, "baton_human_tasks_open") == HumanTask.objects.filter(status=HumanTaskStatus.OPEN).count() == 2
    for status in JobStatus.values:
        assert _value(samples, "baton_jobs", status=status) == Job.objects.filter(status=status).count()
    assert _value(samples, "baton_jobs", status="queued") == 3
    assert _value(samples, "baton_job_queue_depth") == 2  # the third backs off for an hour
    assert 42 <= _value(samples, "baton_job_oldest_queued_age_seconds") < 100
    assert _value(samples, "baton_incidents_open") == Incident.objects.filter(status=IncidentStatus.OPEN).count() == 1
    assert _value(samples, "baton_timers_overdue") == 1
    assert 7 <= _value(samples, "baton_timer_lag_seconds") < 60


def test_metrics_on_an_empty_database_are_zero_not_missing(client, embedded):
    samples = parse_exposition(client.get("/metrics").content.decode())
    assert _value(samples, "baton_job_oldest_queued_age_seconds") == 0
    assert _value(samples, "baton_timer_lag_seconds") == 0
    assert {labels for labels in samples["baton_instances"]} == {(("status", s),) for s in InstanceStatus.values}


def test_metrics_with_the_database_down_report_baton_up_0(client, embedded, monkeypatch):
    import core.views

    def down(now=None):
        raise OperationalError("connection refused")

    monkeypatch.setattr(core.views, "metrics_text", down)
    response = client.get("/metrics")
    assert response.status_code == 503
    assert _value(parse_exposition(response.content.decode()), "baton_up") == 0


def test_metrics_token_when_configured(client, embedded):
    embedded.BATON_METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


def test_operations_endpoints_refuse_writes(client, embedded):
    assert client.post("/health/").status_code == 405
    assert client.post("/metrics").status_code == 405


def test_metrics_report_task_completion_latency(client, embedded):
    _deploy("single_user_task.bpmn")
    instances = [services.instance_start(process_key="single_user_task", actor=None, data={}) for _ in range(2)]
    for instance, minutes in zip(instances, (10, 30)):
        task = instance.human_tasks.get()
        HumanTask.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(minutes=minutes))
        services.task_complete(human_task_id=task.pk, actor=None)
    samples = parse_exposition(client.get("/metrics").content.decode())
    assert _value(samples, "baton_human_tasks_completed_24h") == 2
    assert 19 * 60 <= _value(samples, "baton_human_task_completion_seconds", stat="avg") <= 21 * 60
    assert 29 * 60 <= _value(samples, "baton_human_task_completion_seconds", stat="max") <= 31 * 60
