"""The sweeper: the periodic safety net that makes nudges optional.

Run by Celery beat (exactly one) or the embedded worker: recovers jobs whose
lease expired (dead worker), fires due timers and schedules (before listing
jobs, so jobs they create are picked up by the same sweep), and nudges every
due queued job. Idempotent: two sweepers at once never run a job twice, fire
a timer twice or start a scheduled instance twice (conditional UPDATEs, and
timers re-checked under the instance lock).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from . import hooks
from .jobs import jobs_due, jobs_recover_expired
from .nudge import nudge
from .timers import schedules_run_due, timers_fire_due


@dataclass
class SweepReport:
    recovered_job_ids: list[int] = field(default_factory=list)
    due_job_ids: list[int] = field(default_factory=list)
    nudged: int = 0
    timers_fired: int = 0
    schedules_started: int = 0
    listeners_run: int = 0


def sweep(*, now: datetime | None = None, nudge_due: bool = True) -> SweepReport:
    """Recover expired leases, fire due timers and schedules, run sweep listeners, then nudge (or list) due jobs."""
    report = SweepReport()
    report.recovered_job_ids = jobs_recover_expired(now=now or timezone.now())
    report.timers_fired = timers_fire_due(now=now or timezone.now())
    report.schedules_started = schedules_run_due(now=now or timezone.now())
    report.listeners_run = hooks.swept(now or timezone.now())  # e.g. reminders; their e-mail jobs are due now
    report.due_job_ids = jobs_due(now=now or timezone.now(), limit=1000)  # recovered jobs are due from now
    if nudge_due and report.due_job_ids:
        report.nudged = nudge(report.due_job_ids)
    return report
