"""Tell a worker that jobs are ready: after commit, never blocking, never raising.

A nudge is only a hint: the sweeper finds every due job from the database, so
a broker outage (or a crash between commit and nudge) delays work and loses
none. Publishing uses a short connect timeout and no retry, so a broker outage
never holds a web request.
"""
from __future__ import annotations

import logging
from typing import Iterable

from django.conf import settings
from django.db import transaction

log = logging.getLogger("baton.nudge")


def nudge(job_ids: Iterable[int]) -> int:
    """Publish one message per job (or wake the embedded worker); return how many went out."""
    ids = list(job_ids)
    if not ids:
        return 0
    if settings.BATON_EMBEDDED_WORKER:
        from .embedded import wake

        wake()
        return len(ids)
    from .tasks import run_job

    sent = 0
    for job_id in ids:
        try:
            run_job.apply_async(args=[job_id], retry=False)
            sent += 1
        except Exception as exc:  # noqa: BLE001 - the sweeper re-nudges; a request must not fail
            log.warning("could not nudge job %s (%s: %s); the sweeper will pick it up",
                        job_id, exc.__class__.__name__, exc)
            break
    return sent


def nudge_on_commit(job_ids: Iterable[int]) -> None:
    """Nudge once the current transaction has committed (jobs are visible to workers by then)."""
    ids = list(job_ids)
    if ids:
        transaction.on_commit(lambda: nudge(ids), robust=True)
