"""Operations endpoints: ``/health/`` (JSON, for load balancers and people) and ``/metrics`` (Prometheus).

Both answer quickly and never raise: a few small aggregate queries over
indexed columns and, for health only, one broker ping with a 1 s timeout.
See docs/operations.md for what each field means and what to alert on.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

log = logging.getLogger("baton.operations")

BROKER_TIMEOUT_SECONDS = 1.0
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _error(exc: BaseException) -> str:
    return f"error: {exc.__class__.__name__}"


def database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health probe
        return _error(exc)


def broker_status() -> str:
    """``ok``, ``embedded`` (no broker configured: the in-process worker runs jobs) or ``error: <type>``.

    One connection attempt with a 1 s connect/read timeout and no retry, so a
    dead or hanging broker answers within about a second.
    """
    url = getattr(settings, "CELERY_BROKER_URL", "")
    if not url:
        return "embedded"
    from kombu import Connection

    options = {**getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}),
               "socket_connect_timeout": BROKER_TIMEOUT_SECONDS, "socket_timeout": BROKER_TIMEOUT_SECONDS,
               "max_retries": 0}
    try:
        with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS, transport_options=options) as conn:
            # Redis: opening the channel sends PING; other transports: the connect itself.
            conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health probe
        return _error(exc)


def _age(now: datetime, since: datetime | None) -> float | None:
    return round(max(0.0, (now - since).total_seconds()), 3) if since is not None else None


def sweeper_lag(now: datetime | None = None) -> dict[str, Any]:
    """How far behind the workers and the sweeper are: the oldest due job and the most overdue timer."""
    from processes.models import InstanceStatus, Job, JobStatus, ProcessInstance

    now = now or timezone.now()
    jobs = (Job.objects.filter(status=JobStatus.QUEUED, run_at__lte=now)
            .exclude(instance__status=InstanceStatus.SUSPENDED)
            .aggregate(oldest=Min("run_at"), count=Count("id")))
    # the sweeper fires timers of running/waiting instances only (suspended and incident ones wait for people)
    timers = (ProcessInstance.objects.filter(next_timer_at__lte=now,
                                             status__in=(InstanceStatus.RUNNING, InstanceStatus.WAITING))
              .aggregate(oldest=Min("next_timer_at"), count=Count("id")))
    return {
        "due_jobs": jobs["count"],
        "oldest_due_job_age_seconds": _age(now, jobs["oldest"]),
        "overdue_timers": timers["count"],
        "oldest_overdue_timer_age_seconds": _age(now, timers["oldest"]),
    }


def lag_limit_seconds() -> float:
    """Lag above which health says ``degraded``: ten sweep intervals, at least a minute."""
    return max(60.0, 10 * float(getattr(settings, "BATON_SWEEP_SECONDS", 5)))


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """Database (503 when down), broker and sweeper lag (``degraded``, still 200: work is delayed, not lost)."""
    db = database_status()
    body: dict[str, Any] = {"status": "ok", "database": db, "broker": broker_status()}
    if db != "ok":
        body["status"] = "down"
        return JsonResponse(body, status=503)
    try:
        lag = sweeper_lag()
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health probe
        lag = {"error": _error(exc)}
    body["sweeper"] = lag
    behind = "error" in lag or max(
        lag["oldest_due_job_age_seconds"] or 0.0, lag["oldest_overdue_timer_age_seconds"] or 0.0) > lag_limit_seconds()
    if behind or body["broker"].startswith("error"):
        body["status"] = "degraded"
    return JsonResponse(body, status=200)


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class _Exposition:
    """Prometheus text exposition format 0.0.4: HELP, TYPE, then ``name{labels} value`` lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(self, name: str, help_text: str, samples: list[tuple[dict[str, str], float]] | float) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        if not isinstance(samples, list):
            samples = [({}, samples)]
        for labels, value in samples:
            text = ",".join(f'{key}="{_label(str(val))}"' for key, val in labels.items())
            number = f"{float(value):.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(int(value))
            self.lines.append(f"{name}{{{text}}} {number}" if text else f"{name} {number}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def metrics_text(now: datetime | None = None) -> str:
    """The gauges of ``/metrics``; raises if the database is unreachable."""
    from processes.models import HumanTask, HumanTaskStatus, Incident, IncidentStatus, InstanceStatus, Job, JobStatus, ProcessInstance

    now = now or timezone.now()
    by_status = dict(ProcessInstance.objects.order_by().values_list("status").annotate(n=Count("id")))
    jobs = dict(Job.objects.order_by().values_list("status").annotate(n=Count("id")))
    lag = sweeper_lag(now)
    out = _Exposition()
    out.gauge("baton_up", "1 when this process can query its database.", 1)
    out.gauge("baton_instances", "Process instances by status.",
              [({"status": s}, by_status.get(s, 0)) for s in InstanceStatus.values])
    out.gauge("baton_human_tasks_open", "Human tasks waiting for a person.",
              HumanTask.objects.filter(status=HumanTaskStatus.OPEN).count())
    out.gauge("baton_jobs", "Jobs by status.", [({"status": s}, jobs.get(s, 0)) for s in JobStatus.values])
    out.gauge("baton_job_queue_depth", "Queued jobs that are due now (not backing off, not suspended).",
              lag["due_jobs"])
    out.gauge("baton_job_oldest_queued_age_seconds", "Seconds the oldest due queued job has waited (0 when none).",
              float(lag["oldest_due_job_age_seconds"] or 0.0))
    latencies = [
        (done - created).total_seconds()
        for created, done in HumanTask.objects.filter(
            status=HumanTaskStatus.COMPLETED, completed_at__gte=now - timedelta(hours=24)
        ).order_by("-completed_at").values_list("created_at", "completed_at")[:10000]
    ]
    out.gauge("baton_human_tasks_completed_24h", "Human tasks completed in the last 24 hours.", len(latencies))
    out.gauge("baton_human_task_completion_seconds", "Open-to-completed time of tasks completed in the last 24 h.",
              [({"stat": "avg"}, float(sum(latencies) / len(latencies)) if latencies else 0.0),
               ({"stat": "max"}, float(max(latencies, default=0.0)))])
    out.gauge("baton_incidents_open", "Open incidents.", Incident.objects.filter(status=IncidentStatus.OPEN).count())
    out.gauge("baton_timers_overdue", "Running or waiting instances whose next timer is past due.", lag["overdue_timers"])
    out.gauge("baton_timer_lag_seconds", "Seconds the most overdue timer is late (0 when none).",
              float(lag["oldest_overdue_timer_age_seconds"] or 0.0))
    return out.text()


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape target. With ``BATON_METRICS_TOKEN`` set, needs ``Authorization: Bearer <token>``."""
    token = getattr(settings, "BATON_METRICS_TOKEN", "")
    if token and request.headers.get("Authorization", "") != f"Bearer {token}":
        return HttpResponse("metrics need a bearer token\n", status=401, content_type="text/plain; charset=utf-8")
    try:
        body, status = metrics_text(), 200
    except Exception as exc:  # noqa: BLE001 - a scrape reports the outage instead of a 500 page
        log.warning("metrics: database query failed (%s)", _error(exc))
        body, status = ("# HELP baton_up 1 when this process can query its database.\n"
                        "# TYPE baton_up gauge\nbaton_up 0\n"), 503
    return HttpResponse(body, status=status, content_type=PROMETHEUS_CONTENT_TYPE)
