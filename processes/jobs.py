"""Durable jobs: claim, run outside the instance lock, record the outcome, sweep.

The ``Job`` row is the truth; a Celery message (or the embedded worker's
wake-up) is only a nudge, so a lost message delays work but loses none.
Claiming is a conditional UPDATE (``status='queued' AND run_at <= now``), which
works alike on PostgreSQL and SQLite; the attempt number taken at claim time
must still match when the result is recorded, so a worker whose lease expired
cannot overwrite the re-run's outcome. Backoff sets ``run_at``: never Celery's
countdown/ETA (with Redis, delayed messages come back after the visibility
timeout).
"""
from __future__ import annotations

import logging
import random
import re
import traceback
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from .connectors import connector_get, resolve_secrets
from .models import InstanceStatus, Job, JobStatus

log = logging.getLogger("baton.jobs")
EVENT_JOB_KINDS = ("message", "signal")  # thrown between instances: processes.messages runs them
WEBHOOK_JOB_KIND = "webhook"  # a signed HTTP delivery: processes.webhooks runs it


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def seconds_from(value: Any) -> float | None:
    """Read a per-task setting given as seconds (``30``) or an ISO-8601 duration (``PT5M``)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().upper()
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.fullmatch(text)
    if not match or text in ("P", "PT"):
        return None
    days, hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + secs


def backoff_seconds(attempt: int, base: float | None = None) -> float:
    """Exponential backoff with full jitter: base * 2^(attempt-1), capped, times U(0.5, 1)."""
    base = base if base is not None else _setting("BATON_JOB_BACKOFF_SECONDS", 5)
    cap = _setting("BATON_JOB_BACKOFF_MAX_SECONDS", 3600)
    return min(cap, base * 2 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)


def job_claim(*, job_id: int, now: datetime | None = None) -> Job | None:
    """Take a due, queued job: one conditional UPDATE, so two workers never both win."""
    now = now or timezone.now()
    lease = timedelta(seconds=_setting("BATON_JOB_LEASE_SECONDS", 120))
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED, run_at__lte=now).exclude(
        instance__status=InstanceStatus.SUSPENDED
    ).update(
        status=JobStatus.RUNNING, attempt=F("attempt") + 1, lease_expires_at=now + lease, updated_at=now
    )
    return Job.objects.get(pk=job_id) if claimed else None


def jobs_due(*, now: datetime | None = None, limit: int = 100) -> list[int]:
    """Ids of queued jobs whose time has come, oldest first."""
    now = now or timezone.now()
    return list(
        Job.objects.filter(status=JobStatus.QUEUED, run_at__lte=now).order_by("run_at", "id").values_list("pk", flat=True)[:limit]
    )


_CALLS = ThreadPoolExecutor(max_workers=int(getattr(settings, "BATON_CONNECTOR_THREADS", 4)), thread_name_prefix="connector")


def _call(job: Job) -> Any:
    """Run the job's connector with a timeout; raises whatever the connector raised."""
    registered = connector_get(job.connector)
    params = resolve_secrets(job.params)
    timeout = job.timeout_seconds or _setting("BATON_JOB_TIMEOUT_SECONDS", 30)
    future = _CALLS.submit(registered.func, params, idempotency_key=job.idempotency_key)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        raise TimeoutError(f"connector '{job.connector}' did not answer within {timeout:g} s") from None


def job_execute(*, job_id: int) -> str:
    """Claim a job, run its connector outside any lock, record the outcome. Returns what happened."""
    from . import services  # services import jobs' nudges; keep the cycle lazy

    job = job_claim(job_id=job_id)
    if job is None:
        return "skipped"
    if job.kind in EVENT_JOB_KINDS:  # a thrown message or signal: delivered, not a connector call
        from .messages import event_job_run

        return event_job_run(job=job)
    if job.kind == WEBHOOK_JOB_KIND:
        from .webhooks import webhook_job_run

        return webhook_job_run(job=job)
    if job.instance_id is None:  # a connector call that belongs to no instance (a notification e-mail)
        return _standalone_run(job)
    log.info("job %s %s attempt %s for instance %s", job.pk, job.connector, job.attempt, job.instance_id,
             extra={"job_id": job.pk, "instance_id": job.instance_id, "task_id": job.task_id,
                    "element_id": job.element_id, "attempt": job.attempt})
    try:
        result = _call(job)
    except Exception as exc:  # noqa: BLE001 - every connector error is recorded on the job
        services.job_fail(
            job_id=job.pk, attempt=job.attempt, error_type=exc.__class__.__name__,
            message=str(exc) or exc.__class__.__name__, traceback_text="".join(traceback.format_exception(exc)),
        )
        return "failed"
    services.job_complete(job_id=job.pk, attempt=job.attempt, result=result)
    return "done"


def _standalone_run(job: Job) -> str:
    """Run a claimed connector job that belongs to no instance: done, or retried with backoff, never an incident."""
    from .messages import event_job_fail

    try:
        result = _call(job)
    except Exception as exc:  # noqa: BLE001 - every connector error is recorded on the job
        event_job_fail(job_id=job.pk, attempt=job.attempt, error_type=exc.__class__.__name__,
                       message=str(exc) or exc.__class__.__name__,
                       traceback_text="".join(traceback.format_exception_only(exc)))
        return "failed"
    Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempt=job.attempt).update(
        status=JobStatus.DONE, result=result, last_error="", lease_expires_at=None, updated_at=timezone.now())
    return "done"


def jobs_recover_expired(*, now: datetime | None = None) -> list[int]:
    """Requeue running jobs whose lease expired (their worker died); return their ids."""
    from . import services
    from .messages import event_job_fail

    now = now or timezone.now()
    expired = list(Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now).values_list(
        "pk", "attempt", "kind", "instance_id"))
    for job_id, attempt, kind, instance_id in expired:
        standalone = kind in (*EVENT_JOB_KINDS, WEBHOOK_JOB_KIND) or instance_id is None
        fail = event_job_fail if standalone else services.job_fail
        fail(
            job_id=job_id, attempt=attempt, error_type="LeaseExpired",
            message="the worker running this job stopped before reporting back", traceback_text="", retry_now=True,
        )
    return [job_id for job_id, _, _, _ in expired]
