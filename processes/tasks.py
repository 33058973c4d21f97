"""Celery tasks: thin wrappers that parse input and call one service."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="baton.run_job", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job(job_id: int) -> str:
    from .jobs import job_execute

    return job_execute(job_id=int(job_id))


@shared_task(name="baton.sweep", ignore_result=True)
def sweep() -> dict:
    from .sweeper import sweep as run_sweep

    report = run_sweep()
    return {"recovered": len(report.recovered_job_ids), "nudged": report.nudged}
