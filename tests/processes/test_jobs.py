"""Durable jobs: connectors, retries with backoff, incidents, leases, the sweeper, nudges."""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.utils import timezone

from core.errors import Conflict
from processes import embedded, jobs, services
from processes.connectors import connector_get, resolve_secrets
from processes.models import AuditEvent, Incident, InstanceStatus, Job, JobStatus
from processes.nudge import nudge
from processes.sweeper import sweep

from .conftest import ENGINE, SAMPLES

pytestmark = pytest.mark.django_db


def _make_due(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(run_at=timezone.now() - timedelta(seconds=1))


def test_echo_job_completes_the_service_task_and_advances(deploy, alice):
    deploy(ENGINE / "service_task.bpmn")
    instance = services.instance_start(process_key="service_task", actor=alice, data={"name": "Ada"})
    job = Job.objects.get(instance=instance)

    assert jobs.job_execute(job_id=job.pk) == "done"

    job.refresh_from_db()
    instance.refresh_from_db()
    assert job.status == JobStatus.DONE and job.attempt == 1
    assert instance.data["echo"] == {"message": "hello Ada"}
    assert instance.human_tasks.get().element_id == "after"
    assert AuditEvent.objects.filter(instance=instance, command="job_complete").count() == 1
    assert jobs.job_execute(job_id=job.pk) == "skipped"  # done jobs are never claimed again


def test_failing_job_backs_off_then_opens_incident_with_original_error(deploy, alice, settings):
    settings.BATON_JOB_BACKOFF_SECONDS = 30
    deploy(SAMPLES / "failing_service" / "failing_service.bpmn")
    instance = services.instance_start(process_key="failing_service", actor=alice, data={"number": 7})
    job = Job.objects.get(instance=instance)
    assert job.params["url"] == "http://127.0.0.1:9/invoices" and job.max_attempts == 3

    assert jobs.job_execute(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.attempt == 1
    assert job.run_at > timezone.now() + timedelta(seconds=10)  # backoff, not an immediate retry
    assert jobs.job_execute(job_id=job.pk) == "skipped"  # not due yet
    for _ in range(2):
        _make_due(job)
        assert jobs.job_execute(job_id=job.pk) == "failed"

    job.refresh_from_db()
    instance.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.attempt == 3
    assert instance.status == InstanceStatus.INCIDENT
    incident = Incident.objects.get(instance=instance)
    assert incident.element_id == "push_invoice" and incident.job_id == job.pk
    assert incident.error_type == "URLError" and "Connection refused" in incident.message
    assert "urlopen" in incident.traceback


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Receiver.received.append({"body": body, "key": self.headers["Idempotency-Key"]})
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *args):
        pass


@pytest.mark.sqlite_smoke
def test_operator_retries_incident_with_edited_data_to_success(deploy, alice):
    deploy(SAMPLES / "failing_service" / "failing_service.bpmn")
    instance = services.instance_start(process_key="failing_service", actor=alice, data={"number": 8})
    job = Job.objects.get(instance=instance)
    Job.objects.filter(pk=job.pk).update(max_attempts=1)
    assert jobs.job_execute(job_id=job.pk) == "failed"
    incident = Incident.objects.get(instance=instance)

    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/invoices"
        services.incident_retry(incident_id=incident.pk, actor=alice, data={"invoice_service_url": url})
        assert jobs.job_execute(job_id=job.pk) == "done"
    finally:
        server.shutdown()

    instance.refresh_from_db()
    assert instance.status == InstanceStatus.WAITING
    assert instance.human_tasks.get().element_id == "confirm_sync"
    assert instance.data["response"] == {"status": 201, "body": {"ok": True}}
    assert _Receiver.received[-1]["body"] == {"invoice_id": "INV-8", "number": 8}
    assert _Receiver.received[-1]["key"] == job.idempotency_key
    commands = list(instance.audit_events.order_by("seq").values_list("command", flat=True))
    assert commands[-3:] == ["incident_open", "incident_retry", "job_complete"]


def test_skip_completes_the_failed_step_with_given_data(deploy, alice):
    deploy(SAMPLES / "failing_service" / "failing_service.bpmn")
    instance = services.instance_start(process_key="failing_service", actor=alice, data={"number": 9})
    job = Job.objects.get(instance=instance)
    Job.objects.filter(pk=job.pk).update(max_attempts=1)
    jobs.job_execute(job_id=job.pk)
    incident = Incident.objects.get(instance=instance)
    services.incident_skip(incident_id=incident.pk, actor=alice, data={"response": {"status": 0, "skipped": True}})
    instance.refresh_from_db()
    job.refresh_from_db()
    assert instance.status == InstanceStatus.WAITING and job.status == JobStatus.CANCELLED
    assert instance.data["response"]["skipped"] is True


def test_expired_lease_is_recovered_by_the_sweeper_and_the_stale_worker_loses(deploy, alice):
    deploy(ENGINE / "service_task.bpmn")
    instance = services.instance_start(process_key="service_task", actor=alice, data={"name": "Bo"})
    job = Job.objects.get(instance=instance)
    dead = jobs.job_claim(job_id=job.pk)  # a worker claims, then dies
    assert dead is not None and dead.attempt == 1
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    report = sweep(nudge_due=False)

    assert report.recovered_job_ids == [job.pk] and job.pk in report.due_job_ids
    assert jobs.job_execute(job_id=job.pk) == "done"
    with pytest.raises(Conflict, match="stale"):
        services.job_complete(job_id=job.pk, attempt=dead.attempt, result={"late": True})
    instance.refresh_from_db()
    assert instance.data["echo"] == {"message": "hello Bo"}


def test_suspended_instances_jobs_are_not_claimed(deploy, alice):
    deploy(ENGINE / "service_task.bpmn")
    instance = services.instance_start(process_key="service_task", actor=alice, data={"name": "Cy"})
    job = Job.objects.get(instance=instance)
    services.instance_suspend(instance_id=instance.pk, actor=alice)
    assert jobs.job_execute(job_id=job.pk) == "skipped"
    services.instance_resume(instance_id=instance.pk, actor=alice)
    assert jobs.job_execute(job_id=job.pk) == "done"


def test_embedded_worker_sweep_runs_due_jobs(deploy, alice):
    deploy(ENGINE / "service_task.bpmn")
    instance = services.instance_start(process_key="service_task", actor=alice, data={"name": "Di"})
    assert embedded.sweep_once()["ran"] == 1
    instance.refresh_from_db()
    assert instance.human_tasks.get().element_id == "after"


def test_backoff_grows_exponentially_with_jitter(settings):
    settings.BATON_JOB_BACKOFF_SECONDS = 10
    settings.BATON_JOB_BACKOFF_MAX_SECONDS = 100
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (6, 100)]:
        values = [jobs.backoff_seconds(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= v <= ceiling for v in values)
        assert len(set(values)) > 1


def test_secrets_resolve_at_call_time_only(settings, monkeypatch):
    settings.BATON_SECRETS = {"ERP_TOKEN": "s3cr3t"}
    monkeypatch.setenv("BATON_SECRET_OTHER", "from-env")
    assert resolve_secrets({"token": {"secret": "ERP_TOKEN"}, "b": {"secret": "OTHER"}, "c": 1}) == {
        "token": "s3cr3t", "b": "from-env", "c": 1}
    with pytest.raises(Exception, match="not configured"):
        resolve_secrets({"token": {"secret": "MISSING"}})


def test_unknown_connector_names_the_known_ones():
    with pytest.raises(Exception, match="baton.echo"):
        connector_get("nope.nothing")


def test_nudge_with_the_broker_down_returns_quickly_without_raising(settings):
    """R4 (part): a dead broker never fails or holds a request; the sweeper re-nudges later."""
    from config.celery import app

    settings.BATON_EMBEDDED_WORKER = False
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    app.pool.force_close_all()
    try:
        started = time.monotonic()
        assert nudge([1, 2, 3]) == 0
        assert time.monotonic() - started < 5
    finally:
        from kombu import pools

        app.conf.broker_url = settings.CELERY_BROKER_URL or None
        app.pool.force_close_all()
        pools.reset()
        app._pool = None  # later nudges in this process get a fresh pool


def test_celery_settings_for_at_least_once_delivery():
    """R3: a test fails if the settings jobs rely on drift."""
    from config.celery import app

    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and list(conf.accept_content) == ["json"]
    assert conf.task_publish_retry is False
    assert conf.broker_transport_options["visibility_timeout"] > 120
    assert conf.broker_transport_options["socket_connect_timeout"] <= 2
    assert "baton-sweep" in conf.beat_schedule


def test_per_task_retry_timeout_and_backoff_come_from_the_diagram(deploy, alice, tmp_path):
    from .conftest import upload

    source = (ENGINE / "service_task.bpmn").read_text()
    camunda = 'xmlns:camunda="http://camunda.org/schema/1.0/bpmn"'
    text = source.replace('id="service_task"', 'id="service_task_tuned"').replace(
        "<bpmn:definitions ", f"<bpmn:definitions {camunda} ", 1)
    props = ('<camunda:properties><camunda:property name="retries" value="5" />'
             '<camunda:property name="timeout" value="PT2M" />'
             '<camunda:property name="backoff" value="PT30S" /></camunda:properties>')
    text = text.replace("<bpmn:extensionElements>", f"<bpmn:extensionElements>{props}", 1)
    path = tmp_path / "service_task_tuned.bpmn"
    path.write_text(text)
    upload(path)
    instance = services.instance_start(process_key="service_task_tuned", actor=alice, data={"name": "Ed"})
    job = Job.objects.get(instance=instance)
    assert (job.max_attempts, job.timeout_seconds, job.backoff_seconds) == (6, 120.0, 30.0)


@pytest.mark.parametrize("value, seconds", [
    (None, None), ("", None), (30, 30.0), ("45", 45.0), ("PT5M", 300.0), ("P1DT1H", 90000.0),
    ("PT1.5S", 1.5), ("R3/PT5M", None), ("soon", None),
])
def test_seconds_from_reads_numbers_and_iso_durations(value, seconds):
    assert jobs.seconds_from(value) == seconds
