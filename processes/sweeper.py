"""The sweeper: the periodic safety net that makes nudges optional.

Run by Celery beat (exactly one) or the embedded worker: recovers jobs whose
lease expired (dead worker), nudges every due queued job, and fires due
timers. Idempotent: two sweepers at once never run a job twice, because
claiming is a conditional UPDATE.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from .jobs import jobs_due, jobs_recover_expired
from .nudge import nudge


@dataclass
class SweepReport:
    recovered_job_ids: list[int] = field(default_factory=list)
    due_job_ids: list[int] = field(default_factory=list)
    nudged: int = 0
    timers_fired: int = 0


def sweep(*, now: datetime | None = None, nudge_due: bool = True) -> SweepReport:
    """Recover expired leases, then nudge (or just list) every due job."""
    report = SweepReport()
    report.recovered_job_ids = jobs_recover_expired(now=now or timezone.now())
    report.due_job_ids = jobs_due(now=now or timezone.now(), limit=1000)  # recovered jobs are due from now
    if nudge_due and report.due_job_ids:
        report.nudged = nudge(report.due_job_ids)
    return report
